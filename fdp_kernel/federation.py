"""Federated analysis: a query written once runs at each node an agreement permits.

``ws.federated(query, orgs=...)`` sends the query to each provider node. At the node it runs
on that node's own store, under that node's own policy (own rows, opt-outs, pseudonyms with the
node's key) and limited to what the agreement covers; the node applies disclosure control
before anything leaves it, and audits the request with the agreement id. The requester gets
the released tables combined with an ``org`` column, plus which nodes declined (no agreement in
force) or failed (store missing, engine error) and why: nothing is dropped silently.

A query is either a function of a node (``lambda node: metric(node.table("rtt_pathways"))``)
or an Ibis expression over catalogue tables (``fdp_kernel.catalog.table("rtt_pathways")``).

Which nodes are asked, under which agreement, is policy's answer
(``governance.policy.federated_nodes``); the requester's workspace opens the node workspaces
and audits the request. This module only runs the query at each node and combines.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandas as pd

from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.governance.released import Released

Query = Callable[[Any], ir.Table] | ir.Table


@dataclass(frozen=True)
class NodeOutcome:
    org: str
    status: str  # "ok" | "declined" | "failed"
    reason: str = ""
    agreement: str | None = None
    seconds: float = 0.0
    released: Released | None = None


@dataclass(frozen=True, eq=False)
class FederatedResult:
    """Node-released figures combined; ``partial`` when any node declined or failed."""

    data: pd.DataFrame
    suppressed: pd.DataFrame
    outcomes: Mapping[str, NodeOutcome]
    title: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def declined(self) -> dict[str, str]:
        return {o.org: o.reason for o in self.outcomes.values() if o.status == "declined"}

    @property
    def failed(self) -> dict[str, str]:
        return {o.org: o.reason for o in self.outcomes.values() if o.status == "failed"}

    @property
    def partial(self) -> bool:
        return bool(self.declined or self.failed)

    @property
    def caption(self) -> str:
        ok = [o for o in self.outcomes.values() if o.status == "ok"]
        text = f"Combined from {len(ok)} node(s), each applying disclosure control before release."
        if self.partial:
            missing = {**self.declined, **self.failed}
            text += f" PARTIAL: {', '.join(missing)} not included."
        return text

    def display(self) -> pd.DataFrame:
        out = self.data.copy()
        for col in self.suppressed.columns:
            out[col] = out[col].astype(object).mask(self.suppressed[col] != "", "*")
        return out

    def totals(self, columns: Sequence[str]) -> pd.Series:
        """Sums over nodes of released figures; <NA> where any node's figure is suppressed."""
        return pd.Series({c: self.data[c].sum(skipna=False) for c in columns}, dtype="Float64")

    def __repr__(self) -> str:
        head = f"{self.title}\n" if self.title else ""
        return f"{head}{self.display().to_string(index=False)}\n{self.caption}"

    def _repr_html_(self) -> str:
        title = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        shown = self.display().astype(object)
        body = shown.where(shown.notna(), "").to_html(index=False, border=0)
        problems = "".join(
            f"<li>{html.escape(org)}: {html.escape(reason)}</li>"
            for org, reason in {**self.declined, **self.failed}.items()
        )
        extra = f"<ul class='fdp-partial'>{problems}</ul>" if problems else ""
        return f"{title}{body}<p><small>{html.escape(self.caption)}</small></p>{extra}"


def _bind(query: Query, node) -> ir.Table:
    if callable(query):
        return query(node)
    tables = {op for op in query.op().find(ops.UnboundTable)}
    mapping = {op: node.table(op.name).op() for op in tables}
    return query.op().replace(mapping).to_expr()


def run_at_nodes(
    nodes: Mapping[str, Any], query: Query, title: str | None, spec: Mapping[str, Any]
) -> FederatedResult:
    """Run ``query`` at each node and combine what they release.

    ``nodes`` maps each organisation asked, in order, to its node workspace (whose public
    ``table`` and ``release`` apply that node's policy, disclosure control and audit), or to the
    policy decision that declined it. A node's refusal is "declined", any other failure
    "failed", with the reason: nothing is dropped silently. The caller audits the request.
    """

    def at_node(org: str) -> NodeOutcome:
        node = nodes[org]
        if not hasattr(node, "release"):  # declined by policy: a Decision
            return NodeOutcome(org, "declined", node.reason, node.agreement)
        start = time.perf_counter()
        agreement = node.agreement.id
        try:
            released = node.release(_bind(query, node), title=title, **spec)
        except GovernanceError as exc:
            return NodeOutcome(org, "declined", str(exc), agreement)
        except (FdpError, Exception) as exc:  # a node's failure is reported, never dropped
            return NodeOutcome(org, "failed", f"{type(exc).__name__}: {exc}", agreement)
        return NodeOutcome(org, "ok", "", agreement, time.perf_counter() - start, released)

    orgs = list(nodes)
    workers = max(1, min(len(orgs), (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = {o.org: o for o in pool.map(at_node, orgs)}
    frames, hidden = [], []
    for org in orgs:
        outcome = outcomes[org]
        if outcome.released is not None:
            frames.append(outcome.released.data.assign(org=org))
            hidden.append(outcome.released.suppressed)
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"org": []})
    data = data[["org", *[c for c in data.columns if c != "org"]]]
    suppressed = pd.concat(hidden, ignore_index=True) if hidden else pd.DataFrame()
    return FederatedResult(data, suppressed.fillna(""), outcomes, title)
