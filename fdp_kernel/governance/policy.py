"""Policy decisions: who may act, for which purpose, at which organisation, and what a governed
table of a dataset looks like under that purpose (or an agreement). Every refusal raises
``GovernanceError`` with a reason that says what would allow the request; the workspace
audits it. Nothing here touches data: the result is a ``ViewPlan`` that an engine compiles.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fdp_kernel.catalog import CATALOG, ColumnClass, Dataset, Priority, dataset
from fdp_kernel.config import Federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance.model import Agreement, Level, Purpose, User


def identify(environ: Mapping[str, str]) -> str:
    """The person running this: JupyterHub's authenticated user, else the OS account."""
    user = environ.get("JUPYTERHUB_USER", "").strip()
    return user or getpass.getuser()


def is_public_reference(ds: Dataset) -> bool:
    """Reference data about organisations and products, never about people: open to every
    purpose, with no own-rows filter (the organisation list names every organisation)."""
    return Priority.REFERENCE in ds.priorities and ds.patient_column is None


def authorise(fed: Federation, user_id: str, purpose_id: str, org: str | None) -> tuple:
    """(User, Purpose, org) when the user holds the purpose at the org; else a refusal that
    lists what the user does hold."""
    user = fed.users.get(user_id)
    if user is None:
        raise GovernanceError(
            f"user {user_id!r} has no role in this federation ({fed.path}); ask your data "
            "protection officer or node administrator to add you to its 'users' section"
        )
    held = {r.org: r.purposes for r in user.roles}
    if org is None:
        if len(held) > 1:
            raise GovernanceError(
                f"{user_id} acts for several organisations ({', '.join(held)}); "
                "say which one with org=..."
            )
        org = next(iter(held))
    if org not in held:
        raise GovernanceError(
            f"{user_id} holds no role at {org}; their organisations are: {', '.join(held)}"
        )
    if purpose_id not in fed.purposes:
        raise GovernanceError(
            f"unknown purpose {purpose_id!r}; {user_id} holds at {org}: {', '.join(held[org])}"
        )
    if purpose_id not in held[org]:
        raise GovernanceError(
            f"{user_id} does not hold purpose {purpose_id!r} at {org}; they hold: "
            f"{', '.join(held[org])}"
        )
    return user, fed.purposes[purpose_id], org


@dataclass(frozen=True)
class ColumnPlan:
    name: str
    pseudonymise: bool


@dataclass(frozen=True)
class ViewPlan:
    """A governed table: which rows and columns of which node's dataset, and how identifiers
    are replaced. Engines compile it (DuckDB view, PostgreSQL view)."""

    dataset: str
    provider: str  # the node whose data it is
    columns: tuple[ColumnPlan, ...]
    own_rows: bool  # keep only rows whose org_code is the provider
    opt_out: bool  # remove people with a national data opt-out
    key_label: str | None  # "purpose:<id>" or "agreement:<id>" when anything is pseudonymised
    purpose: str
    agreement: str | None
    level: Level


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


def _find_agreement(
    fed: Federation, purpose: Purpose, provider: str, recipient: str, name: str, today: dt.date
) -> Agreement:
    candidates = [
        a
        for a in fed.agreements.values()
        if provider in a.providers and recipient in a.recipients and a.purpose == purpose.id
    ]
    live = [a for a in candidates if a.in_force(today) and a.covers(name)]
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
            f"{purpose.id}{hint}; nothing crosses between nodes without one"
        )
    expired = [a for a in candidates if not a.in_force(today)]
    if expired:
        a = expired[0]
        raise GovernanceError(
            f"agreement {a.id} ({provider} -> {recipient}, {purpose.id}) is not in force on "
            f"{today}: valid {a.valid_from} to {a.valid_to}. Renew it before using it"
        )
    raise GovernanceError(
        f"agreement(s) {', '.join(a.id for a in candidates)} between {provider} and "
        f"{recipient} for {purpose.id} do not cover dataset {name}"
    )


def plan_table(
    fed: Federation,
    purpose: Purpose,
    org: str,
    name: str,
    *,
    columns: Sequence[str] | None = None,
    provider: str | None = None,
    today: dt.date,
) -> ViewPlan:
    """The governed table of dataset ``name`` for a workspace at ``org`` under ``purpose``.

    ``provider`` other than ``org`` asks for another node's rows: only under a row-level
    agreement in force that covers the dataset and columns.
    """
    ds = dataset(name)
    provider = provider or org
    node = fed.org(provider)
    if provider == org and not is_public_reference(ds) and not purpose.allows(name):
        raise GovernanceError(
            f"purpose {purpose.id} does not allow dataset {name}: {_who_allows(fed, name)}"
        )
    if node.org_type not in ds.held_by:
        raise GovernanceError(
            f"{provider} ({node.org_type}) does not hold {name}; it is held by "
            f"{', '.join(ds.held_by)} nodes"
        )
    agreement = None
    if is_public_reference(ds):
        allowed = ds.column_names
    elif provider == org:
        allowed = purpose.datasets[name]
    else:
        agreement = _find_agreement(fed, purpose, provider, org, name, today)
        if agreement.level is Level.AGGREGATE:
            raise GovernanceError(
                f"agreement {agreement.id} shares {name} from {provider} at aggregate level "
                "only: rows never leave the node. Run the analysis there with ws.federated(...)"
            )
        allowed = agreement.datasets[name]
    if columns is not None:
        outside = [c for c in columns if c not in allowed]
        for c in outside:
            ds.column(c)  # an unknown column is a usage error naming the real ones
        if outside:
            by = agreement.id if agreement else f"purpose {purpose.id}"
            raise GovernanceError(
                f"{by} does not allow {name} column(s) {', '.join(outside)}: "
                + "; ".join(_who_allows(fed, name, c) for c in outside)
            )
        allowed = tuple(c for c in ds.column_names if c in columns)
    level = (
        purpose.level
        if agreement is None
        else min(purpose.level, agreement.level, key=lambda lv: lv.rank)
    )
    pseudo = level is not Level.IDENTIFIABLE
    plans = tuple(
        ColumnPlan(c, pseudo and ds.column(c).classification is ColumnClass.DIRECT_IDENTIFIER)
        for c in allowed
    )
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
    )


def direct_identifiers(name: str) -> frozenset[str]:
    return frozenset(CATALOG[name].columns_of(ColumnClass.DIRECT_IDENTIFIER))


def holders_of(user: User) -> str:
    return "; ".join(f"{r.org}: {', '.join(r.purposes)}" for r in user.roles)
