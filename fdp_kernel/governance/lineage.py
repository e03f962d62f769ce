"""Where each output column of an Ibis expression comes from, for release checks.

``Lineage(expr)`` walks the expression graph and, for every output column, finds the source
columns it is computed from (``(table name, column)`` pairs), whether it passed through an
aggregation, and whether it is a source column carried through unchanged. Counting a column
(``count``, ``nunique``) uses it without revealing its values, so counts are not traced to
their input. Anything the walker does not understand is reported as unknown, and the release
refuses it: fail closed.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis.expr.operations as ops
import ibis.expr.types as ir

_COUNTING = tuple(
    getattr(ops, name)
    for name in ("Count", "CountStar", "CountDistinct", "CountDistinctStar", "ApproxCountDistinct")
    if hasattr(ops, name)
)
_PASS_THROUGH = tuple(
    getattr(ops, name)
    for name in (
        "Filter", "Sort", "Limit", "Distinct", "DropNull", "FillNull", "Sample", "DropColumns",
        "SelfReference", "JoinReference", "AliasedRelation",
    )
    if hasattr(ops, name)
)  # fmt: skip
UNKNOWN = ("?", "?")


@dataclass(frozen=True)
class ColumnLineage:
    sources: frozenset[tuple[str, str]]  # (table name, column); UNKNOWN when not traceable
    aggregated: bool  # computed by an aggregation (not row by row)
    direct: tuple[str, str] | None  # a source column passed through unchanged (or renamed/cast)


class Lineage:
    def __init__(self, expr: ir.Table) -> None:
        self.root = expr.op()
        self._memo: dict[tuple[int, str], ColumnLineage] = {}

    def tables(self) -> list[ops.Relation]:
        """Every leaf relation: database tables, in-memory tables and raw SQL."""
        leaves = (ops.PhysicalTable, ops.SQLQueryResult, ops.SQLStringView)
        return list(self.root.find(leaves))

    def columns(self) -> dict[str, ColumnLineage]:
        return {name: self.field(self.root, name) for name in self.root.schema.names}

    def field(self, rel: ops.Relation, name: str) -> ColumnLineage:
        key = (id(rel), name)
        if key not in self._memo:
            self._memo[key] = self._field(rel, name)
        return self._memo[key]

    def _field(self, rel: ops.Relation, name: str) -> ColumnLineage:
        if isinstance(rel, ops.InMemoryTable | ops.DummyTable):
            return ColumnLineage(frozenset(), False, None)
        if isinstance(rel, ops.DatabaseTable | ops.UnboundTable):
            return ColumnLineage(frozenset({(rel.name, name)}), False, (rel.name, name))
        if isinstance(rel, ops.Project | ops.JoinChain):
            return self.value(rel.values[name])
        if isinstance(rel, ops.Aggregate):
            if name in rel.groups:  # a key of this aggregation: a dimension, however computed
                inner = self.value(rel.groups[name])
                return ColumnLineage(inner.sources, False, inner.direct)
            inner = self.value(rel.metrics[name])
            return ColumnLineage(inner.sources, True, None)
        if isinstance(rel, ops.Set):
            left, right = self.field(rel.left, name), self.field(rel.right, name)
            direct = left.direct if left.direct == right.direct else None
            both = left.aggregated and right.aggregated
            return ColumnLineage(left.sources | right.sources, both, direct)
        if isinstance(rel, _PASS_THROUGH):
            return self.field(rel.parent, name)
        return ColumnLineage(frozenset({UNKNOWN}), False, None)

    def value(self, value: ops.Value) -> ColumnLineage:
        if isinstance(value, ops.Field):
            return self.field(value.rel, value.name)
        if isinstance(value, ops.Alias | ops.Cast):
            return self.value(value.arg)
        if isinstance(value, _COUNTING):
            return ColumnLineage(frozenset(), True, None)
        sources: set[tuple[str, str]] = set()
        aggregated = isinstance(value, ops.Reduction) and not isinstance(value, ops.Analytic)
        for arg in _args(value):
            if isinstance(arg, ops.Relation):  # a subquery: its values could surface
                sources.add(UNKNOWN)
            elif isinstance(arg, ops.Value):
                inner = self.value(arg)
                sources |= inner.sources
                aggregated = aggregated or inner.aggregated
        if isinstance(value, ops.WindowFunction):
            aggregated = False  # one value per row, even when it is a sum over a window
        return ColumnLineage(frozenset(sources), aggregated, None)


def _args(node: ops.Node):
    for arg in node.args:
        if isinstance(arg, ops.Node):
            yield arg
        elif isinstance(arg, tuple | list):
            yield from (a for a in arg if isinstance(a, ops.Node))
        elif isinstance(arg, dict):
            yield from (a for a in arg.values() if isinstance(a, ops.Node))
