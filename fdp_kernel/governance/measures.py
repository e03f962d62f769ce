"""What each output column of a release is, decided from the expression itself, and the helper
figures disclosure control needs, computed by the pipeline rather than supplied.

Under a purpose that releases aggregates only, every column computed by an aggregation is a
measure, whatever the requester declares, and its kind comes from the reduction that computes
it (through casts, renames and ``coalesce(..., 0)``):

- ``count`` (``count``, ``nunique``...): suppressed and rounded as a count;
- ``sum``: a magnitude; the pipeline adds, beside it in the same aggregation, the number of
  contributing records and the two largest contributions (``_fdp_n__``, ``_fdp_t1__``,
  ``_fdp_t2__``), so the ACRO threshold, nk and p% rules are applied to values nobody supplied;
- ``mean``: released only where its sum and count would be (the same helpers, and the sum);
- ``quantile``, ``extreme`` (max, min), ``spread`` of numbers: statistics, suppressed when
  fewer than ``min_count`` records contribute (``_fdp_n__``, counted by the pipeline);
- ``record``: an aggregate of text, dates or booleans (``max(date_of_birth)``, ``max(status)``),
  or one that returns a record's value (``first``, ``arbitrary``, ``mode``, ``collect``): refused;
- ``derived``: computed from other measures after the aggregation: refused (release the
  measures; derive from the released figures).

``plan(expr)`` rewrites the expression so that every aggregation computes its helpers and they
reach the output; ``Measure.helpers`` names them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir

from fdp_kernel.errors import GovernanceError

_COUNTS = tuple(
    getattr(ops, n)
    for n in ("Count", "CountStar", "CountDistinct", "CountDistinctStar", "ApproxCountDistinct")
    if hasattr(ops, n)
)
_KINDS = {
    "sum": ("Sum",),
    "mean": ("Mean",),
    "quantile": ("Median", "ApproxMedian", "Quantile", "MultiQuantile", "ApproxQuantile"),
    "extreme": ("Max", "Min"),
    "spread": ("StandardDev", "Variance"),
}
_BY_CLASS = {getattr(ops, n): k for k, names in _KINDS.items() for n in names if hasattr(ops, n)}
_PASS = tuple(
    getattr(ops, n)
    for n in ("Filter", "Sort", "Limit", "Distinct", "DropNull", "FillNull", "DropColumns")
    if hasattr(ops, n)
)
ROLES = ("n", "t1", "t2", "sum")


def helper(role: str, column: str) -> str:
    return f"_fdp_{role}__{column}"


@dataclass(frozen=True)
class Measure:
    kind: str  # count, sum, mean, quantile, extreme, spread, record, derived, mixed
    helpers: dict[str, str] = field(default_factory=dict)  # role -> helper column


def _strip(value: ops.Value) -> ops.Value:
    """The reduction under casts, renames and coalesce(reduction, literal)."""
    while True:
        if isinstance(value, ops.Alias | ops.Cast):
            value = value.arg
        elif (
            isinstance(value, ops.Coalesce)
            and len(value.arg) == 2
            and isinstance(value.arg[1], ops.Literal)
        ):
            value = value.arg[0]
        else:
            return value


def kind_of(metric: ops.Value) -> str:
    core = _strip(metric)
    if isinstance(core, _COUNTS):
        return "count"
    if isinstance(core, ops.Reduction) and not isinstance(core, ops.Analytic):
        kind = _BY_CLASS.get(type(core))
        dtype = core.dtype
        if kind is None or not dtype.is_numeric():
            return "record"  # a record's value, or an aggregate of text, dates or booleans
        arg = getattr(core, "arg", None)
        if kind == "sum" and arg is not None and arg.dtype.is_boolean():
            return "count"  # a sum of true/false is the number of trues
        if (
            kind in ("sum", "mean")
            and arg is not None
            and not (arg.dtype.is_numeric() or arg.dtype.is_boolean())
        ):
            return "record"
        return kind
    return "derived"


def _helpers_for(core: ops.Reduction, name: str, kind: str, groups: list, parent: ir.Table):
    """(rank column to add to the parent or None, helper metric expressions)."""
    arg = core.arg.to_expr()
    where = core.where.to_expr() if core.where is not None else None
    counted = arg.count(where=where)
    out = {helper("n", name): counted}
    rank_name = None
    if kind in ("sum", "mean"):
        x = arg.cast("float64")
        present = arg.notnull() if where is None else (where & arg.notnull())
        rank_name = helper("rank", name)
        order = [ibis.desc(present), ibis.desc(x)]
        rank = ibis.row_number().over(ibis.window(group_by=groups, order_by=order))
        out[helper("t1", name)] = ibis.coalesce(x.max(where=present), 0.0)
        out[helper("t2", name)] = (rank_name, present, x)  # resolved once the rank exists
        if kind == "mean":
            out[helper("sum", name)] = ibis.coalesce(x.sum(where=where), 0.0)
        return rank_name, rank, out
    return None, None, out


def _aggregate(agg: ops.Aggregate) -> tuple[ops.Relation, dict[str, Measure]]:
    parent = agg.parent.to_expr()
    groups = [v.to_expr().name(k) for k, v in agg.groups.items()]
    measures: dict[str, Measure] = {}
    metrics = {k: v.to_expr() for k, v in agg.metrics.items()}
    ranks, pending = {}, {}
    for name, value in agg.metrics.items():
        kind = kind_of(value)
        if kind not in ("sum", "mean", "quantile", "extreme", "spread"):
            measures[name] = Measure(kind)
            continue
        rank_name, rank, extra = _helpers_for(_strip(value), name, kind, groups, parent)
        if rank_name is not None:
            ranks[rank_name] = rank
        roles = {}
        for column, expr in extra.items():
            role = column.removeprefix("_fdp_").split("__", 1)[0]
            roles[role] = column
            if isinstance(expr, tuple):
                pending[column] = expr
            else:
                metrics[column] = expr
        measures[name] = Measure(kind, roles)
    if ranks:
        ranked = parent.mutate(**ranks)
        swap = {agg.parent: ranked.op()}  # every metric and key now reads the ranked parent
        metrics = {k: v.op().replace(swap).to_expr() for k, v in metrics.items()}
        groups = [g.op().replace(swap).to_expr() for g in groups]
        for column, (rank_name, present, x) in pending.items():
            second = present.op().replace(swap).to_expr() & (ranked[rank_name] == 1)
            metrics[column] = ibis.coalesce(x.op().replace(swap).to_expr().max(where=second), 0.0)
        parent = ranked
    rebuilt = parent.aggregate(metrics, by=groups) if groups else parent.aggregate(metrics)
    return rebuilt.op(), measures


def _unwrap(value: ops.Value) -> ops.Value:
    """A value under casts, renames and coalesce(value, literal) (a missing row as 0)."""
    while True:
        if isinstance(value, ops.Alias | ops.Cast):
            value = value.arg
        elif (
            isinstance(value, ops.Coalesce)
            and len(value.arg) == 2
            and isinstance(value.arg[1], ops.Literal)
        ):
            value = value.arg[0]
        else:
            return value


def _zero_if_missing(field: ops.Field) -> ops.Value:
    """A helper where an outer join found no row of the aggregation: no contributors."""
    return ibis.coalesce(field.to_expr(), 0).op()


def _through(value: ops.Value, rel_measures) -> Measure | None:
    """The measure a projected value carries: a field (through casts/renames) of a measure
    keeps it; any other value built on measures is derived; else it is not a measure."""
    core = _unwrap(value)
    if isinstance(core, ops.Field):
        return rel_measures(core.rel).get(core.name)
    fields = [f for f in core.find(ops.Field) if rel_measures(f.rel).get(f.name) is not None]
    return Measure("derived") if fields else None


def plan(expr: ir.Table) -> tuple[ir.Table, dict[str, Measure]]:
    """``expr`` with every aggregation's helpers computed and carried to the output, and the
    measure of each output column (dimensions are absent)."""
    memo: dict[int, tuple[ops.Relation, dict[str, Measure]]] = {}

    def rebuild(rel: ops.Relation) -> tuple[ops.Relation, dict[str, Measure]]:
        key = id(rel)
        if key not in memo:
            memo[key] = _rebuild(rel)
        return memo[key]

    def measures_of(rel: ops.Relation) -> dict[str, Measure]:
        if isinstance(rel, ops.JoinReference):
            return rebuild(rel.parent)[1]
        return rebuild(rel)[1]

    def _rebuild(rel: ops.Relation):
        if isinstance(rel, ops.Aggregate):
            return _aggregate(rel)
        if isinstance(rel, ops.Project):
            parent, found = rebuild(rel.parent)
            swap = {rel.parent: parent}
            values = {k: v.replace(swap) if parent is not rel.parent else v
                      for k, v in rel.values.items()}  # fmt: skip
            out: dict[str, Measure] = {}
            for name, value in rel.values.items():
                measure = _through(value, lambda r: found if r is rel.parent else {})
                if measure is None:
                    continue
                helpers = {}
                for role, column in measure.helpers.items():
                    values[helper(role, name)] = _zero_if_missing(ops.Field(parent, column))
                    helpers[role] = helper(role, name)
                out[name] = Measure(measure.kind, helpers)
            return ops.Project(parent, values), out
        if isinstance(rel, ops.JoinChain):
            new = rel
            for link_rel in [rel.first, *(link.table for link in rel.rest)]:
                inner, _ = rebuild(link_rel.parent)
                if inner is not link_rel.parent:
                    new = new.replace({link_rel.parent: inner})
            refs = {r.identifier: r for r in [new.first, *(link.table for link in new.rest)]}
            values = dict(new.values)
            out = {}
            for name, value in rel.values.items():
                measure = _through(value, measures_of)
                if measure is None:
                    continue
                core = _unwrap(value)
                helpers = {}
                if measure.helpers and isinstance(core, ops.Field):
                    ref = refs[core.rel.identifier]
                    for role, column in measure.helpers.items():
                        values[helper(role, name)] = _zero_if_missing(ops.Field(ref, column))
                        helpers[role] = helper(role, name)
                out[name] = Measure(measure.kind, helpers)
            if len(values) != len(new.values):
                new = ops.JoinChain(new.first, new.rest, values)
            return new, out
        if isinstance(rel, ops.Set):
            left, lm = rebuild(rel.left)
            right, rm = rebuild(rel.right)
            out = {}
            for name in set(lm) | set(rm):
                a, b = lm.get(name), rm.get(name)
                if a is None or b is None or a.kind != b.kind or a.helpers != b.helpers:
                    out[name] = Measure("mixed")
                else:
                    out[name] = a
            keep = list(rel.schema.names)
            if left.schema.names != right.schema.names:  # helpers differ: drop them both sides
                left = ops.Project(left, {c: ops.Field(left, c) for c in keep})
                right = ops.Project(right, {c: ops.Field(right, c) for c in keep})
                out = {n: Measure("mixed" if m.helpers else m.kind) for n, m in out.items()}
            return type(rel)(left, right, **{k: getattr(rel, k) for k in rel.__argnames__
                                            if k not in ("left", "right")}), out  # fmt: skip
        if isinstance(rel, _PASS):
            parent, found = rebuild(rel.parent)
            node = rel.replace({rel.parent: parent}) if parent is not rel.parent else rel
            return node, dict(found)
        return rel, {}

    root, measures = rebuild(expr.op())
    return root.to_expr(), measures


def refuse_unreleasable(measures: dict[str, Measure]) -> None:
    """Refuse measures no rule can check: a record's value, or a figure derived after the
    aggregation, or one whose parts differ across a union."""
    for name, m in measures.items():
        if m.kind == "record":
            raise GovernanceError(
                f"output column {name!r} is an aggregate of text, dates or true/false values, "
                "or a single record's value (first, arbitrary, mode, collect): it would release "
                "a record's value. Count records instead, or coarsen the value first (a year, "
                "a band)",
                rule="release:record-value",
            )
        if m.kind == "derived":
            raise GovernanceError(
                f"output column {name!r} is computed from other measures after the aggregation, "
                "so disclosure control cannot check it: release the measures themselves and "
                "compute it from the released figures (or use percentages=...)",
                rule="release:derived",
            )
        if m.kind == "mixed":
            raise GovernanceError(
                f"output column {name!r} is computed differently in the parts of a union, so "
                "it cannot be checked as one measure: release the parts separately",
                rule="release:derived",
            )
