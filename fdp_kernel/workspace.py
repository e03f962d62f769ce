"""The notebook-facing API: ``connect`` a purpose at an organisation, read governed tables,
``release`` results.

    import fdp_kernel as fdp
    ws = fdp.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    released = ws.release(rtt.group_by("treatment_function_code").agg(pathways=rtt.count()))

``fdp_kernel.connect`` (``fdp_kernel.connection``) makes one. A workspace only composes:
policy decides (``governance.policy``), engines run (``engines.pool``), the release pipeline
checks and controls (``governance.release``) and the recorder audits every decision
(``governance.recorder``) before anything is returned; if the audit cannot be written,
nothing is returned.

This is the embedded mode: it runs in the analyst's own process, which can read the stores,
keys and audit logs, so it is not a security boundary (docs/governance.md). Identity is the
authenticated user (JupyterHub's ``JUPYTERHUB_USER``, else the OS account).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import ibis.expr.types as ir
import pandas as pd

from fdp_kernel.catalog import dataset
from fdp_kernel.config import Federation
from fdp_kernel.engines.base import EngineContext
from fdp_kernel.engines.pool import EnginePool
from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.federation import FederatedResult, Query, run_at_nodes, run_partials
from fdp_kernel.governance import partials, policy
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
        self, obj: ir.Table | pd.DataFrame, *, title: str | None = None, **spec: Any
    ) -> Released:
        """Run ``obj`` (or take a DataFrame), apply disclosure control, audit, and return the
        released figures. What each column is (a dimension, a count, a sum, a mean, a
        statistic) comes from the expression; the helpers the rules need are computed with it.
        ``spec`` may add ``percentages={name: (numerator, denominator)}``; ``dimensions``,
        ``counts``, ``statistics`` and ``magnitudes`` are checked against the expression (and
        describe a supplied DataFrame). Refuses what it cannot check."""
        outcome = pipeline.release(
            obj,
            purpose=self._purpose,
            org=self._org,
            ledger=self._ledger,
            locate=self._engines.locate,
            title=title,
            spec=pipeline.Spec(**spec),
        )
        self._recorder.outcome(outcome, title)
        return outcome.result()

    # -- federation -----------------------------------------------------------------------
    def federated(
        self,
        query: Query,
        orgs: Sequence[str] | None = None,
        *,
        title: str | None = None,
        combine_by: Sequence[str] | None = None,
        **spec,
    ) -> FederatedResult | Released:
        """Run ``query`` at each node an agreement permits (default: every provider of an
        agreement naming this org for this purpose) and combine the node-released results.
        With ``combine_by``, where every agreement lets exact partials pass, the nodes' exact
        figures are added up and released once, here (``governance.partials``).
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
        if combine_by is not None and policy.exact_partials(nodes.values()):
            return self._combined(nodes, query, title, combine_by, spec.get("percentages"))
        result = run_at_nodes(nodes, query, title, spec)
        self._record_failed(result.outcomes)
        if combine_by is not None:  # each node released its own: their figures summed
            return self._record_combined(result, nodes, title).combined(
                list(combine_by), title=title, percentages=spec.get("percentages")
            )
        return self._record_combined(result, nodes, title)

    def _record_combined(self, result: FederatedResult, nodes, title) -> FederatedResult:
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

    def _combined(self, nodes, query, title, by, percentages) -> Released:
        """Exact partials from each node, added up, released once under this purpose."""
        answers = run_partials(nodes, query, title)
        self._record_failed(answers)
        outcome, ok = partials.release(
            answers, by, percentages, purpose=self._purpose, org=self._org, title=title
        )
        self._recorder.outcome(outcome, title, exchange="exact_partials", nodes=ok)
        return outcome.result()

    def _record_failed(self, outcomes) -> None:
        for org, o in outcomes.items():
            if getattr(o, "status", "") == "failed":
                why = Decision(False, "federated:node-failed", o.reason, o.agreement)
                self._recorder.record("federated", why, [org], node=org)

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

    def __init__(
        self, requester: Workspace, org: str, agreement: Agreement, via: str | None = None
    ) -> None:
        self.requester, self.agreement = requester.org, agreement
        fed, user = requester.federation, requester.user
        purpose = policy.restricted_purpose(requester.purpose, agreement)
        reason = f"federated request from {requester.org} under {agreement.id}"
        details = {"requester": requester.org, **({"via": via} if via else {})}
        recorder = Recorder(fed, user, org, purpose.id, agreement=agreement.id, details=details)
        decision = allow("federated:agreement", reason, agreement.id)
        super().__init__(
            fed, user, purpose, org, decision, recorder=recorder, today=requester.today,
            mode=requester.mode, sandbox=requester._sandbox, journal=requester._journal,
        )  # fmt: skip

    def federated(self, *args, **kwargs):
        exc = GovernanceError(
            "a federated request cannot start further federated requests",
            rule="federated:nested",
        )
        raise self._recorder.refused("federated", exc)

    def partial(self, expr: ir.Table, *, title: str | None = None) -> pipeline.Partial:
        """This node's exact partial of ``expr`` for the requester's combined release (only
        under an agreement that lets exact partials pass); audited here."""
        if self.agreement.exchange != "exact_partials":
            exc = GovernanceError(
                f"agreement {self.agreement.id} does not let exact partials pass: each node "
                "releases its own figures",
                rule="federated:exact-partials",
            )
            raise self._recorder.refused("partial", exc)
        outcome = pipeline.partial(expr, purpose=self._purpose, locate=self._engines.locate)
        self._recorder.outcome(outcome, title, action="partial")
        return outcome.result() if outcome.error else outcome.partial


__all__ = ["DisclosureRules", "Magnitude", "NodeWorkspace", "Workspace"]
