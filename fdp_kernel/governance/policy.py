"""Policy: the one module that answers "may this happen?".

Who may act for which purpose at which organisation (``authorise``); what a governed table of
a dataset is under a purpose or an agreement (``plan_table``); which agreement covers a
request between two nodes (``agreement_for``); which providers a federated or row-level
request goes to (``providers``, ``federated_nodes``); what a purpose shows in the catalogue
(``catalogue``); whether a record-level list may be released (``may_list_records``). No other
module selects agreements.

What is allowed comes back as a ``Decision`` (``ViewPlan.decision`` for tables), carrying its
rule and reason; what is refused raises ``GovernanceError`` with the rule that refused it and a
reason that says what would allow the request. Nothing here touches data, writes the audit or
reads a key: callers record the decision, engines compile the plan.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fdp_kernel.catalog import CATALOG, DATASETS, ColumnClass, Dataset, Priority, dataset
from fdp_kernel.config import Federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance.decision import Decision, allow
from fdp_kernel.governance.model import Agreement, Level, Purpose, PurposeKind, User


def identify(environ: Mapping[str, str]) -> str:
    """The person running this, in embedded mode: JupyterHub's user, else the OS account.

    In embedded mode the analyst's own process says who it is, so this is not a security
    boundary (docs/governance.md); the node service takes identity from the connection."""
    user = environ.get("JUPYTERHUB_USER", "").strip()
    return user or getpass.getuser()


def is_public_reference(ds: Dataset) -> bool:
    """Reference data about organisations and products, never about people: open to every
    purpose, with no own-rows filter (the organisation list names every organisation)."""
    return Priority.REFERENCE in ds.priorities and ds.patient_column is None


def user_for_account(fed: Federation, account: str) -> str:
    """The federation user an authenticated account is (its id, or a user listing it under
    ``accounts``); the account itself when none is, which ``authorise`` then refuses."""
    if account in fed.users:
        return account
    return next((u.id for u in fed.users.values() if account in u.accounts), account)


# -- who may act -------------------------------------------------------------------------------
def authorise(
    fed: Federation, user_id: str, purpose_id: str, org: str | None
) -> tuple[User, Purpose, str, Decision]:
    """(User, Purpose, org, decision) when the user holds the purpose at the org; else a
    refusal that lists what the user does hold."""
    user = fed.users.get(user_id)
    if user is None:
        raise GovernanceError(
            f"user {user_id!r} has no role in this federation ({fed.path}); ask your data "
            "protection officer or node administrator to add you to its 'users' section",
            rule="identity:unknown-user",
        )
    held = {r.org: r.purposes for r in user.roles}
    if org is None:
        if len(held) > 1:
            raise GovernanceError(
                f"{user_id} acts for several organisations ({', '.join(held)}); "
                "say which one with org=...",
                rule="identity:which-org",
            )
        org = next(iter(held))
    if org not in held:
        raise GovernanceError(
            f"{user_id} holds no role at {org}; their organisations are: {', '.join(held)}",
            rule="identity:no-role-at-org",
        )
    if purpose_id not in fed.purposes:
        raise GovernanceError(
            f"unknown purpose {purpose_id!r}; {user_id} holds at {org}: {', '.join(held[org])}",
            rule="purpose:unknown",
        )
    if purpose_id not in held[org]:
        raise GovernanceError(
            f"{user_id} does not hold purpose {purpose_id!r} at {org}; they hold: "
            f"{', '.join(held[org])}",
            rule="purpose:not-held",
        )
    decision = allow("connect:role", f"{user_id} holds {purpose_id} at {org}")
    return user, fed.purposes[purpose_id], org, decision


# -- agreements --------------------------------------------------------------------------------
def agreements_between(
    fed: Federation, purpose_id: str, provider: str, recipient: str
) -> list[Agreement]:
    """Every agreement for ``purpose_id`` from ``provider`` to ``recipient``, in file order."""
    return [
        a
        for a in fed.agreements.values()
        if a.purpose == purpose_id and provider in a.providers and recipient in a.recipients
    ]


def agreement_for(
    fed: Federation,
    purpose_id: str,
    provider: str,
    recipient: str,
    today: dt.date,
    name: str | None = None,
) -> Agreement:
    """The agreement in force that lets ``provider`` share with ``recipient`` for the purpose
    (covering dataset ``name`` when given); else the refusal that says why none does."""
    candidates = agreements_between(fed, purpose_id, provider, recipient)
    live = [a for a in candidates if a.in_force(today) and (name is None or a.covers(name))]
    if live:
        return live[0]
    if not candidates:
        others = [
            a.id
            for a in fed.agreements.values()
            if provider in a.providers and recipient in a.recipients
        ]
        hint = (
            f" (agreements between them for other purposes: {', '.join(others)})" if others else ""
        )
        raise GovernanceError(
            f"no data sharing agreement lets {provider} share with {recipient} for purpose "
            f"{purpose_id}{hint}; nothing crosses between nodes without one",
            rule="agreement:none",
        )
    expired = [a for a in candidates if not a.in_force(today)]
    if expired:
        a = expired[0]
        raise GovernanceError(
            f"agreement {a.id} ({provider} -> {recipient}, {purpose_id}) is not in force on "
            f"{today}: valid {a.valid_from} to {a.valid_to}. Renew it before using it",
            rule="agreement:not-in-force",
            agreement=a.id,
        )
    raise GovernanceError(
        f"agreement(s) {', '.join(a.id for a in candidates)} between {provider} and "
        f"{recipient} for {purpose_id} do not cover dataset {name}",
        rule="agreement:dataset",
    )


def providers(
    fed: Federation,
    purpose_id: str,
    org: str,
    *,
    org_type: str | None = None,
    rows: bool = False,
) -> list[str]:
    """The providers that agreements for ``purpose_id`` name with ``org`` as a recipient, in
    file order (of type ``org_type`` when given). With ``rows``, those of row-level
    (pseudonymised or identifiable) agreements when there are any; else of any agreement,
    whose row-level requests ``plan_table`` then refuses (and the caller audits)."""
    found: dict[bool, list[str]] = {True: [], False: []}
    for a in fed.agreements.values():
        if a.purpose != purpose_id or org not in a.recipients:
            continue
        kind = found[rows and a.level is not Level.AGGREGATE]
        kind += [
            p
            for p in a.providers
            if p not in kind and (org_type is None or fed.org(p).org_type == org_type)
        ]
    if rows and found[True]:
        return found[True]
    return list(dict.fromkeys([*found[True], *found[False]]))


@dataclass(frozen=True)
class NodeRequest:
    """Whether one node may answer a federated request, and under which agreement."""

    org: str
    decision: Decision
    agreement: Agreement | None = None


def federated_nodes(
    fed: Federation, purpose: Purpose, org: str, orgs: Sequence[str] | None, today: dt.date
) -> list[NodeRequest]:
    """For a federated request from ``org``: each node asked (default: every provider an
    agreement for the purpose names) and the decision for it. Refuses when there is no node
    to ask."""
    asked = list(orgs) if orgs is not None else providers(fed, purpose.id, org)
    if not asked:
        raise GovernanceError(
            f"no agreement names {org} as a recipient for purpose {purpose.id}, so there "
            "is no node to ask; a data sharing agreement is needed first",
            rule="federated:no-provider",
        )
    out = []
    for node in asked:
        fed.org(node)  # an unknown organisation is a configuration error naming the real ones
        if node == org:
            reason = "the requester's own node: use ws.table there, not ws.federated"
            out.append(NodeRequest(node, Decision(False, "federated:own-node", reason)))
            continue
        try:
            agreement = agreement_for(fed, purpose.id, node, org, today)
        except GovernanceError as exc:
            reason = str(exc).split(";")[0] if exc.rule == "agreement:none" else str(exc)
            decision = Decision(False, exc.rule, reason, exc.agreement)
            out.append(NodeRequest(node, decision))
            continue
        reason = f"{agreement.id} lets {node} answer {org} for {purpose.id}"
        out.append(NodeRequest(node, allow("federated:agreement", reason, agreement.id), agreement))
    return out


def passes_exact_partials(fed: Federation, purpose: Purpose, org: str, orgs, today) -> bool:
    """Whether a federated request from ``org`` to ``orgs`` would go where every agreement
    in force lets exact partials pass (so its figures are combined, then released once)."""
    requests = federated_nodes(fed, purpose, org, orgs, today)
    agreements = [r.agreement for r in requests if r.agreement is not None]
    return bool(agreements) and all(a.exchange == "exact_partials" for a in agreements)


def exact_partials(nodes) -> bool:
    """Whether every node a federated request goes to answers under an agreement that lets
    exact partial aggregates pass (nodes that declined do not count; none at all: no)."""
    agreements = [n.agreement for n in nodes if hasattr(n, "release")]
    return bool(agreements) and all(a.exchange == "exact_partials" for a in agreements)


def restricted_purpose(purpose: Purpose, agreement: Agreement) -> Purpose:
    """The purpose as a provider node applies it for one agreement: only the agreed datasets
    and columns."""
    datasets = {
        name: tuple(c for c in cols if c in agreement.datasets.get(name, ()))
        for name, cols in purpose.datasets.items()
        if name in agreement.datasets
    }
    return dataclasses.replace(purpose, datasets=datasets)


# -- governed tables ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnPlan:
    name: str
    pseudonymise: bool


@dataclass(frozen=True)
class ViewPlan:
    """A governed table: which rows and columns of which node's dataset, and how identifiers
    are replaced. Engines compile it (DuckDB and Spark views, PostgreSQL materialized views);
    ``decision`` is why it is allowed."""

    dataset: str
    provider: str  # the node whose data it is
    columns: tuple[ColumnPlan, ...]
    own_rows: bool  # keep only rows whose org_code is the provider
    opt_out: bool  # remove people with a national data opt-out
    key_label: str | None  # "purpose:<id>" or "agreement:<id>" when anything is pseudonymised
    purpose: str
    agreement: str | None
    level: Level
    decision: Decision | None = field(default=None, compare=False)

    def is_direct_identifier(self, column: str) -> bool:
        return dataset(self.dataset).column(column).classification is ColumnClass.DIRECT_IDENTIFIER


def _who_allows(fed: Federation, name: str, column: str | None = None) -> str:
    purposes = [p.id for p in fed.purposes.values() if p.allows(name, column)]
    agreements = [a.id for a in fed.agreements.values() if a.covers(name, column)]
    what = f"{name}.{column}" if column else name
    if not purposes and not agreements:
        return f"no purpose or agreement in this federation allows {what}"
    parts = []
    if purposes:
        parts.append(f"purpose(s) {', '.join(purposes)}")
    if agreements:
        parts.append(f"agreement(s) {', '.join(agreements)}")
    return f"{what} is allowed by {' and by '.join(parts)}"


def pseudonymised(level: Level, ds: Dataset, column: str) -> bool:
    """Identifiers become pseudonyms unless the level is identifiable: the one rule, used by
    governed tables and by what the catalogue says a purpose shows."""
    direct = ds.column(column).classification is ColumnClass.DIRECT_IDENTIFIER
    return direct and level is not Level.IDENTIFIABLE


def plan_table(
    fed: Federation,
    purpose: Purpose,
    org: str,
    name: str,
    *,
    columns: Sequence[str] | None = None,
    provider: str | None = None,
    today: dt.date,
    under: Agreement | None = None,
) -> ViewPlan:
    """The governed table of dataset ``name`` for a workspace at ``org`` under ``purpose``.

    ``provider`` other than ``org`` asks for another node's rows: only under a row-level
    agreement in force that covers the dataset and columns (``under`` names which one, for a
    server compiling each agreement's tables; by default the first in force that covers it).
    """
    ds = dataset(name)
    provider = provider or org
    node = fed.org(provider)
    if provider == org and not is_public_reference(ds) and not purpose.allows(name):
        raise GovernanceError(
            f"purpose {purpose.id} does not allow dataset {name}: {_who_allows(fed, name)}",
            rule="purpose:dataset",
        )
    if node.org_type not in ds.held_by:
        raise GovernanceError(
            f"{provider} ({node.org_type}) does not hold {name}; it is held by "
            f"{', '.join(ds.held_by)} nodes",
            rule="node:not-held",
        )
    agreement = None
    if is_public_reference(ds):
        allowed = ds.column_names
        decision = allow("table:public-reference", f"{name} is public reference data")
    elif provider == org:
        allowed = purpose.datasets[name]
        decision = allow("table:purpose", f"{purpose.id} allows {name}")
    else:
        agreement = under or agreement_for(fed, purpose.id, provider, org, today, name)
        if agreement.level is Level.AGGREGATE:
            raise GovernanceError(
                f"agreement {agreement.id} shares {name} from {provider} at aggregate level "
                "only: rows never leave the node. Run the analysis there with ws.federated(...)",
                rule="agreement:aggregate-only",
                agreement=agreement.id,
            )
        allowed = agreement.datasets[name]
        reason = f"{agreement.id} shares {name} from {provider} with {org} for {purpose.id}"
        decision = allow("table:agreement", reason, agreement.id)
    if columns is not None:
        outside = [c for c in columns if c not in allowed]
        for c in outside:
            ds.column(c)  # an unknown column is a usage error naming the real ones
        if outside:
            by = agreement.id if agreement else f"purpose {purpose.id}"
            raise GovernanceError(
                f"{by} does not allow {name} column(s) {', '.join(outside)}: "
                + "; ".join(_who_allows(fed, name, c) for c in outside),
                rule="agreement:columns" if agreement else "purpose:columns",
                agreement=agreement.id if agreement else None,
            )
        allowed = tuple(c for c in ds.column_names if c in columns)
    level = (
        purpose.level
        if agreement is None
        else min(purpose.level, agreement.level, key=lambda lv: lv.rank)
    )
    plans = tuple(ColumnPlan(c, pseudonymised(level, ds, c)) for c in allowed)
    return ViewPlan(
        dataset=name,
        provider=provider,
        columns=plans,
        own_rows=ds.org_column is not None and not is_public_reference(ds),
        opt_out=purpose.opt_out_applies and ds.patient_column is not None,
        key_label=(f"agreement:{agreement.id}" if agreement else f"purpose:{purpose.id}")
        if any(p.pseudonymise for p in plans)
        else None,
        purpose=purpose.id,
        agreement=agreement.id if agreement else None,
        level=level,
        decision=decision,
    )


def agreement_plans(fed: Federation, org: str, today: dt.date) -> dict[str, list[ViewPlan]]:
    """Agreement id -> the governed tables that node ``org`` shares under it at row level, for
    the agreements in force on ``today`` (a server node compiles them, so that a recipient's
    login reads only these; ``plan_table`` still checks the agreement when a recipient asks)."""
    held = {d.name for d in DATASETS if fed.org(org).org_type in d.held_by}
    out: dict[str, list[ViewPlan]] = {}
    for a in fed.agreements.values():
        if org not in a.providers or a.level is Level.AGGREGATE or not a.in_force(today):
            continue
        recipient = next((r for r in a.recipients if r != org), None)
        names = sorted(n for n in a.datasets if n in held)
        if recipient is None or not names or a.purpose not in fed.purposes:
            continue
        purpose = fed.purposes[a.purpose]
        out[a.id] = [
            plan_table(fed, purpose, recipient, n, provider=org, today=today, under=a)
            for n in names
        ]
    return out


def agreement_users(fed: Federation, agreement: Agreement, provider: str) -> tuple[str, ...]:
    """The users who may read what ``provider`` shares under ``agreement``: those holding its
    purpose at one of its recipient organisations."""
    recipients = [r for r in agreement.recipients if r != provider]
    return tuple(
        u.id
        for u in fed.users.values()
        if any(agreement.purpose in u.purposes_at(r) for r in recipients)
    )


# -- what people are shown ---------------------------------------------------------------------
def catalogue(
    fed: Federation, purpose: Purpose, org: str, name: str | None = None
) -> list[dict[str, str]]:
    """The catalogue as a workspace sees it: every column of the datasets the node holds, its
    type, class and description, and whether this purpose shows it (as is, as a pseudonym) or
    not (and which purposes would)."""
    node = fed.org(org)
    rows = []
    for ds in DATASETS:
        if (name and ds.name != name) or node.org_type not in ds.held_by:
            continue
        for col in ds.columns:
            if not (is_public_reference(ds) or purpose.allows(ds.name, col.name)):
                others = [p.id for p in fed.purposes.values() if p.allows(ds.name, col.name)]
                shown = "not shown" + (f" (allowed by {', '.join(others)})" if others else "")
            elif pseudonymised(purpose.level, ds, col.name):
                shown = "pseudonym"
            else:
                shown = "as is"
            rows.append(
                {
                    "dataset": ds.name,
                    "column": col.name,
                    "type": col.dtype,
                    "class": col.classification.value,
                    "this purpose": shown,
                    "description": col.description,
                }
            )
    if name and not rows:
        dataset(name)  # unknown names get the catalogue's error listing what exists
        raise GovernanceError(
            f"{org} ({node.org_type}) does not hold {name}", rule="catalog:not-held"
        )
    return rows


def may_list_records(purpose: Purpose, what: str) -> Decision:
    """Record-level lists (a discharge list, a call list) are for direct care only."""
    if purpose.kind is not PurposeKind.DIRECT_CARE:
        raise GovernanceError(
            f"the {what} is record-level: it names patients, so it is for direct care only "
            f"(a {PurposeKind.DIRECT_CARE.value} purpose), not {purpose.id}",
            rule="listing:direct-care-only",
        )
    return allow("release:direct-care-listing", f"{purpose.id} is a direct-care purpose")


def direct_identifiers(name: str) -> frozenset[str]:
    return frozenset(CATALOG[name].columns_of(ColumnClass.DIRECT_IDENTIFIER))


def holders_of(user: User) -> str:
    return "; ".join(f"{r.org}: {', '.join(r.purposes)}" for r in user.roles)
