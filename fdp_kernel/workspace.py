"""The notebook-facing API: ``connect`` a purpose at an organisation, read governed tables,
``release`` results.

    import fdp_kernel as fdp
    ws = fdp.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    released = ws.release(rtt.group_by("treatment_function_code").agg(pathways=rtt.count()))

A workspace only composes: policy decides (``governance.policy``), engines run
(``engines.pool``), the release pipeline checks and controls (``governance.release``) and the
recorder audits every decision (``governance.recorder``) before anything is returned; if the
audit cannot be written, nothing is returned.

This is the embedded mode: it runs in the analyst's own process, which can read the stores,
keys and audit logs, so it is not a security boundary (docs/governance.md). Identity is the
authenticated user (JupyterHub's ``JUPYTERHUB_USER``, else the OS account).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from fdp_kernel.catalog import dataset
from fdp_kernel.config import Federation, find_federation, load_federation
from fdp_kernel.engines.base import EngineContext
from fdp_kernel.engines.pool import EnginePool
from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.federation import FederatedResult, Query, run_at_nodes
from fdp_kernel.governance import policy
from fdp_kernel.governance import release as pipeline
from fdp_kernel.governance.decision import Decision, allow
from fdp_kernel.governance.disclosure import DisclosureRules, Magnitude
from fdp_kernel.governance.keys import plan_key
from fdp_kernel.governance.model import Agreement, Purpose
from fdp_kernel.governance.overlap import Ledger
from fdp_kernel.governance.recorder import Recorder
from fdp_kernel.governance.released import Released
from fdp_kernel.version import __version__

MODE = "embedded: in-process, not a security boundary"
SERVICE_MODE = "node service"


def connect(purpose: str, org: str | None = None) -> Workspace:
    """A workspace for the person running this, acting for ``purpose`` at ``org``.

    ``org`` may be left out when the user acts for one organisation only. A purpose or org the
    user does not hold is refused with an error listing what they do hold. With ``FDP_SERVICE``
    set, the workspace is a thin client of the node service (``fdp_kernel.service.client``),
    which decides who you are from the connection.
    """
    from fdp_kernel.service.client import SERVICE_ENV

    if os.environ.get(SERVICE_ENV):
        from fdp_kernel.service.client import connect as connect_to_service

        return connect_to_service(purpose, org)
    fed = load_federation(find_federation(os.environ))
    user_id = policy.identify(os.environ)
    try:
        user, purpose_obj, org, decision = policy.authorise(fed, user_id, purpose, org)
    except GovernanceError as exc:
        raise Recorder(fed, user_id, org or "?", purpose).refused("connect", exc) from None
    return Workspace(fed, user.id, purpose_obj, org, decision)


class Workspace:
    """A user acting for one purpose at one organisation. Use ``connect`` to make one.

    The node service makes its sessions' workspaces with ``mode=SERVICE_MODE``,
    ``sandbox=True`` (engines lock themselves down: ``EngineContext.sandbox``) and ``peers``
    (how to reach provider nodes that another service hosts) and ``journal`` (a function of the
    workspace giving the ledger's journal across sessions)."""

    def __init__(
        self,
        fed: Federation,
        user: str,
        purpose: Purpose,
        org: str,
        decision: Decision,
        *,
        recorder: Recorder | None = None,
        today: dt.date | None = None,
        mode: str = MODE,
        sandbox: bool = False,
        peers: Any = None,
        journal: Any = None,
    ) -> None:
        self._fed, self._user, self._purpose, self._org = fed, user, purpose, org
        self._today = today or dt.date.today()
        self._mode, self._sandbox, self._peers, self._journal = mode, sandbox, peers, journal
        self._recorder = recorder or Recorder(fed, user, org, purpose.id)
        readable = (org, *policy.providers(fed, purpose.id, org, rows=True))
        ctx = EngineContext(fed, user, self._refused_access, sandbox, readable)
        self._engines = EnginePool(ctx, org)
        # The differencing ledger: this session's, or (``journal``: the node service's) kept
        # across every session of this person, organisation and purpose.
        self._ledger = Ledger(purpose.disclosure.min_count, journal=journal and journal(self))
        self._nodes: dict[str, Any] = {}
        self._recorder.record("connect", decision)

    # Read-only: rewriting who, where, for what or when changes nothing that is allowed.
    federation = property(lambda self: self._fed)
    user = property(lambda self: self._user)
    purpose = property(lambda self: self._purpose)
    org = property(lambda self: self._org)
    today = property(lambda self: self._today)
    mode = property(lambda self: self._mode, doc="embedded (not a security boundary) or service")

    def refuse(self, action: str, exc: FdpError) -> FdpError:
        """Record a refusal made by code built on this workspace (a figure that only direct
        care may see, say) and return it to be raised: every refusal is audited."""
        return self._recorder.refused(action, exc)

    def _refused_access(self, what: str) -> None:
        reason = f"direct access {what} to a governed engine refused"
        self._recorder.record("engine", Decision(False, "engine:direct-access", reason), what=what)

    # -- what the purpose allows ------------------------------------------------------------
    def datasets(self) -> list[str]:
        """Datasets this purpose allows that this organisation's node holds."""
        node = self._fed.org(self._org)
        return [d for d in self._purpose.datasets if node.org_type in dataset(d).held_by]

    def catalog(self, name: str | None = None) -> pd.DataFrame:
        """The catalogue as this workspace sees it (``policy.catalogue``); in a notebook it
        shows as one table per dataset (``fdp_kernel.workbench.catalogue``)."""
        from fdp_kernel.workbench.catalogue import catalogue_frame

        try:
            rows = policy.catalogue(self._fed, self._purpose, self._org, name)
        except GovernanceError as exc:
            raise self._recorder.refused("catalog", exc, dataset=name) from None
        return catalogue_frame(rows, self._purpose.id, self._org)

    def columns(self, name: str) -> list[str]:
        """Columns of ``name`` this purpose allows (identifiers shown as pseudonyms)."""
        return list(self._purpose.datasets.get(name, ()))

    # -- governed tables ------------------------------------------------------------------
    def table(
        self, name: str, *, columns: Sequence[str] | None = None, source: str | None = None
    ) -> ir.Table:
        """The governed table of dataset ``name``: allowed columns, own rows (or rows shared
        by ``source`` under a row-level agreement), identifiers pseudonymised, opt-outs
        removed for planning. Build expressions on it; pass results to ``release``."""
        provider = source or self._org
        details = {"dataset": name, "provider": provider, "columns": list(columns or [])}
        try:
            plan = policy.plan_table(
                self._fed,
                self._purpose,
                self._org,
                name,
                columns=columns,
                provider=provider,
                today=self._today,
            )
            table = self._engines.governed_table(plan, columns, lambda: plan_key(self._fed, plan))
        except FdpError as exc:
            raise self._recorder.refused("table", exc, [provider], **details) from None
        self._recorder.record("table", plan.decision, [provider], **details, level=plan.level.value)
        return table

    # -- release: the only path to a person -------------------------------------------------
    def release(
        self,
        obj: ir.Table | pd.DataFrame,
        *,
        title: str | None = None,
        dimensions: Sequence[str] = (),
        counts: Sequence[str] = (),
        statistics: Mapping[str, str] | None = None,
        magnitudes: Mapping[str, Magnitude] | None = None,
        percentages: Mapping[str, tuple[str, str]] | None = None,
    ) -> Released:
        """Run ``obj`` (or take a DataFrame), apply disclosure control, audit, and return the
        released figures. Integer columns are counts; other numbers must be declared as
        statistics (with the count they are based on) or magnitudes. Refuses what it cannot
        check."""
        spec = pipeline.Spec(dimensions, counts, statistics, magnitudes, percentages)
        outcome = pipeline.release(
            obj,
            purpose=self._purpose,
            org=self._org,
            ledger=self._ledger,
            locate=self._engines.locate,
            title=title,
            spec=spec,
        )
        providers = [p for p in outcome.providers if p != self._org]
        agreement = outcome.agreement
        events = []
        if outcome.query is not None:
            ran = allow("query:governed", "governed expression run", agreement)
            q = outcome.query
            events.append(
                self._recorder.event("query", ran, sql_sha256=q.sql_sha256, row_count=q.rows)
            )
        decision = outcome.decision
        if decision.agreement is None and agreement:
            decision = Decision(decision.allowed, decision.rule, decision.reason, agreement)
        if outcome.released is None:
            events.append(self._recorder.event("release", decision, title=title))
        else:
            r = outcome.released
            events.append(
                self._recorder.event(
                    "release",
                    decision,
                    title=title,
                    rows=len(r),
                    columns=list(r.data.columns),
                    suppressed=r.n_suppressed,
                    sql_sha256=outcome.query.sql_sha256 if outcome.query else None,
                )
            )
        self._recorder.write(events, providers)
        return outcome.result()

    # -- federation -----------------------------------------------------------------------
    def federated(
        self, query: Query, orgs: Sequence[str] | None = None, *, title: str | None = None, **spec
    ) -> FederatedResult:
        """Run ``query`` at each node an agreement permits (default: every provider of an
        agreement naming this org for this purpose) and combine the node-released results.
        See ``fdp_kernel.federation``."""
        try:
            requests = policy.federated_nodes(
                self._fed, self._purpose, self._org, orgs, self._today
            )
        except FdpError as exc:
            raise self._recorder.refused("federated", exc) from None
        nodes: dict[str, NodeWorkspace | Decision] = {}
        for r in requests:
            if not r.decision.allowed:
                self._recorder.record("federated", r.decision, [r.org], node=r.org)
                nodes[r.org] = r.decision
            else:
                nodes[r.org] = self.node(r.org)
        result = run_at_nodes(nodes, query, title, spec)
        for org, reason in result.failed.items():
            failed = Decision(False, "federated:node-failed", reason, nodes[org].agreement.id)
            self._recorder.record("federated", failed, [org], node=org)
        agreements = ",".join(
            sorted({o.agreement for o in result.outcomes.values() if o.agreement})
        )
        combined = allow("federated:combined", "federated request combined", agreements or None)
        self._recorder.record(
            "federated",
            combined,
            title=title,
            nodes=list(nodes),
            ok=[o for o, x in result.outcomes.items() if x.status == "ok"],
            declined=result.declined,
            failed=result.failed,
            partial=result.partial,
        )
        return result

    def node(self, org: str) -> NodeWorkspace:
        """This session's workspace at provider node ``org``, under the agreement in force that
        lets it answer this workspace's federated requests (opened once)."""
        if org not in self._nodes:
            agreement = policy.agreement_for(
                self._fed, self._purpose.id, org, self._org, self._today
            )
            if self._peers is not None and not self._peers.hosts(org):
                self._nodes[org] = self._peers.node(self, org, agreement)  # another service
            else:
                self._nodes[org] = NodeWorkspace(self, org, agreement)
        return self._nodes[org]

    # -- provenance -----------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        """What a report records about how its figures were made (no secrets)."""
        stores = dict(self._engines.fingerprints())
        plans = self._engines.plans()
        for node in self._nodes.values():
            if isinstance(node, Workspace):  # a node another service hosts tells its own
                stores.update(node._engines.fingerprints())
                plans += node._engines.plans()
        agreements = {p.agreement for p in plans if p.agreement}
        agreements |= {n.agreement.id for n in self._nodes.values()}
        fed_hash = hashlib.sha256(self._fed.path.read_bytes()).hexdigest()[:16]
        data = hashlib.sha256(repr(sorted(stores.items())).encode()).hexdigest()[:16]
        return {
            "user": self._user,
            "org": self._org,
            "purpose": self._purpose.id,
            "mode": self.mode,
            "agreements": sorted(agreements),
            "datasets": sorted({p.dataset for p in plans}),
            "nodes": sorted(self._nodes),
            "data_fingerprint": data,
            "policy_fingerprint": fed_hash,
            "fdp_version": __version__,
        }

    def close(self) -> None:
        for node in self._nodes.values():
            node.close()
        self._engines.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self._user} at {self._org} for {self._purpose.id} ({self.mode})>"


class NodeWorkspace(Workspace):
    """A requester's federated query running at a provider node, under one agreement: the
    node's own store, policy and key, only what the agreement covers, audited at the node."""

    def __init__(self, requester: Workspace, org: str, agreement: Agreement) -> None:
        self.requester = requester.org
        self.agreement = agreement
        purpose = policy.restricted_purpose(requester.purpose, agreement)
        reason = f"federated request from {requester.org} under {agreement.id}"
        recorder = Recorder(
            requester.federation,
            requester.user,
            org,
            purpose.id,
            agreement=agreement.id,
            details={"requester": requester.org},
        )
        decision = allow("federated:agreement", reason, agreement.id)
        super().__init__(
            requester.federation,
            requester.user,
            purpose,
            org,
            decision,
            recorder=recorder,
            today=requester.today,
            mode=requester.mode,
            sandbox=requester._sandbox,
            journal=requester._journal,
        )

    def federated(self, *args, **kwargs):
        exc = GovernanceError(
            "a federated request cannot start further federated requests",
            rule="federated:nested",
        )
        raise self._recorder.refused("federated", exc)


__all__ = ["DisclosureRules", "Magnitude", "Workspace", "connect"]
