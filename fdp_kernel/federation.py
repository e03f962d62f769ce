"""Federated analysis: a query written once runs at each node an agreement permits.

``ws.federated(query, orgs=...)`` sends the query to each provider node. At the node it runs
on that node's own store, under that node's own policy (own rows, opt-outs, pseudonyms with the
node's key) and limited to what the agreement covers; the node applies disclosure control
before anything leaves it, and audits the request with the agreement id. The requester gets
the released tables combined with an ``org`` column, plus which nodes declined (no agreement in
force) or failed (store missing, engine error) and why: nothing is dropped silently.

What nodes released is combined here too, never by hand in a figure: summed over nodes
(``FederatedResult.combined``: a node's suppressed figure makes the total a lower bound), summed
over the nodes that released every figure of a row (``combine_where_released``), or one row of
figures per node (``FederatedResult.per_node``). Each is a ``Released`` whose suppression marks
follow the nodes' own.

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
from fdp_kernel.governance.released import Released, rate

Query = Callable[[Any], ir.Table] | ir.Table
LOWER_BOUND = "lower bound: a node's figure is suppressed"
NODE_SUPPRESSED = "node suppressed"


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

    @property
    def ok(self) -> list[str]:
        """The nodes that released their figures, in the order asked."""
        return [o for o, x in self.outcomes.items() if x.status == "ok"]

    def combined(
        self,
        by: Sequence[str] = (),
        counts: Sequence[str] | None = None,
        *,
        title: str | None = None,
        percentages: Mapping[str, tuple[str, str]] | None = None,
        also: Sequence[str] = (),
        exact: Sequence[str] = (),
    ) -> Released:
        """The nodes' figures as one: per ``by`` group, the sum over nodes of each of ``counts``
        (default: every integer column, and ``also``), then ``exact`` columns, then
        ``percentages`` (name -> (numerator, denominator)) from the sums.

        Each node has already applied disclosure control, so a sum over nodes is a sum of
        released (rounded) figures. Where a node's count is suppressed, the total is at least
        the sum of the others (a lower bound, shown ≥), or suppressed if no node's is shown; an
        ``exact`` sum (money) is unknown, shown *, where any node's figure is. The caption says
        which nodes were summed and which are missing. ``n_suppressed`` counts ``counts``.
        """
        by, data = list(by), self.data
        if counts is None:
            counts = [
                c
                for c in data.columns
                if c not in ("org", *by, *exact)
                and (pd.api.types.is_integer_dtype(data[c]) or c in also)
            ]
        frame, hidden = _sums(data, by, list(counts))
        n = int((hidden != "").sum().sum())
        for column in exact:
            groups = data.groupby(by, dropna=False, sort=True) if by else [((), data)]
            totals = [part[column].astype("Float64").sum(skipna=False) for _, part in groups]
            frame[column] = pd.array(totals, dtype="Float64")
            hidden[column] = frame[column].isna().map({True: NODE_SUPPRESSED, False: ""})
        for name, (numerator, denominator) in (percentages or {}).items():
            frame[name] = rate(frame[numerator], frame[denominator])
        orgs = ", ".join(self.ok)
        note = (
            f"Sum of figures released by each node ({orgs}); where a node suppressed its figure "
            "the total shown is a lower bound (≥). "
            + (f"PARTIAL: {', '.join(self.missing)} not included." if self.partial else "")
        )
        return Released(frame, hidden, title or self.title, f"federated: {orgs}", note.strip(), n)

    def per_node(
        self,
        figures: Callable[[pd.DataFrame], dict[str, Any]],
        *,
        title: str,
        note: str,
        rows: pd.Series | None = None,
        noun: str = "node",
    ) -> Released:
        """One row per node (its code in a column named ``noun``) of the figures
        ``figures(part)`` computes from the rows that node released (those of ``data`` where
        ``rows`` holds): None for a figure that needs one the node suppressed, shown *."""
        data = self.data if rows is None else self.data[rows]
        out = [{noun: org, **figures(part)} for org, part in data.groupby("org", sort=True)]
        frame = pd.DataFrame(out, dtype=object)
        hidden = frame.drop(columns=noun).isna().replace({True: NODE_SUPPRESSED, False: ""})
        frame = frame.where(frame.notna(), None)
        source = f"released by each {noun}: {', '.join(self.ok)}"
        return Released(frame, hidden, title, source, note, int((hidden != "").sum().sum()))

    @property
    def missing(self) -> dict[str, str]:
        """The nodes that declined or failed, with why."""
        return {**self.declined, **self.failed}

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


def _sums(data: pd.DataFrame, by: list[str], counts: list[str]):
    """Per ``by`` group, the sums over nodes of ``counts`` and why each is marked (lower bound,
    suppressed or '')."""
    if data.empty:
        frame = pd.DataFrame(columns=[*by, *counts])
        return frame, pd.DataFrame({c: pd.Series(dtype=object) for c in counts})
    grouped = data.groupby(by, dropna=False, sort=True) if by else [((), data)]
    rows, marks = [], []
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row, mark = dict(zip(by, key, strict=True)), {}
        for c in counts:
            shown, hidden_any = part[c].sum(skipna=True), bool(part[c].isna().any())
            if hidden_any and part[c].notna().any():
                row[c], mark[c] = shown, LOWER_BOUND  # at least the nodes' shown figures
            elif hidden_any:
                row[c], mark[c] = None, NODE_SUPPRESSED
            else:
                row[c], mark[c] = shown, ""
        rows.append(row)
        marks.append(mark)
    frame = pd.DataFrame(rows)
    for c in counts:
        frame[c] = frame[c].astype("Int64")
    return frame, pd.DataFrame(marks, columns=counts).fillna("")


def combine_where_released(
    data: pd.DataFrame,
    by: Sequence[str],
    counts: Sequence[str],
    *,
    noun: str = "node",
    percentages: Mapping[str, tuple[str, str]] | None = None,
    title: str | None = None,
    source: str = "federated",
    note: str = "",
) -> Released:
    """Node-released rows (``data``: one per node and group) as one, counting only the nodes
    that released the figures: per ``by`` group, the sums of ``counts`` over the nodes whose
    every count in the row was released, ``{noun}s`` (how many were summed) and
    ``{noun}s_suppressed`` (how many were left out because a figure was suppressed), then
    ``percentages`` from the sums. A group no node could contribute to is <NA>, shown *.
    ``n_suppressed`` counts ``counts``."""
    by, counts = list(by), list(counts)
    rows = []
    if not data.empty:
        for key, part in data.groupby(by, dropna=False, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            shown = part[counts].notna().all(axis=1)
            n = int(shown.sum())
            row = dict(zip(by, key, strict=True))
            row.update({c: int(part.loc[shown, c].sum()) if n else pd.NA for c in counts})
            rows.append({**row, f"{noun}s": n, f"{noun}s_suppressed": int((~shown).sum())})
    frame = pd.DataFrame(rows, columns=[*by, *counts, f"{noun}s", f"{noun}s_suppressed"])
    for c in counts:
        frame[c] = frame[c].astype("Int64")
    for name, (numerator, denominator) in (percentages or {}).items():
        frame[name] = rate(frame[numerator], frame[denominator])
    why = {True: f"no {noun} released it", False: ""}
    hidden = pd.DataFrame({c: frame[c].isna().map(why) for c in (*counts, *(percentages or {}))})
    n = int(frame[counts].isna().sum().sum())
    return Released(frame, hidden, title, source, note, n)


def _bind(query: Query, node) -> ir.Table:
    if callable(query):
        return query(node)
    tables = {op for op in query.op().find(ops.UnboundTable)}
    mapping = {op: node.table(op.name).op() for op in tables}
    return query.op().replace(mapping).to_expr()


def run_partials(nodes: Mapping[str, Any], query: Query, title: str | None) -> dict[str, Any]:
    """Each node's exact partial of ``query`` (``node.partial``, for an agreement that lets
    them pass); a node that declines or fails is its NodeOutcome instead."""

    def at_node(org: str):
        node = nodes[org]
        if not hasattr(node, "partial"):
            return org, NodeOutcome(org, "declined", node.reason, node.agreement)
        try:
            return org, node.partial(_bind(query, node), title=title)
        except GovernanceError as exc:
            return org, NodeOutcome(org, "declined", str(exc), node.agreement.id)
        except Exception as exc:  # reported, never dropped; no data value in the reason
            reason = str(exc) if isinstance(exc, FdpError) else type(exc).__name__
            return org, NodeOutcome(org, "failed", reason, node.agreement.id)

    workers = max(1, min(len(nodes), (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(at_node, list(nodes)))


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
            # An engine's own message may quote a value of the node's data: only fdp's own
            # errors (which never do) are passed on in full.
            detail = f": {exc}" if isinstance(exc, FdpError) else " (details at the node)"
            return NodeOutcome(org, "failed", f"{type(exc).__name__}{detail}", agreement)
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
