"""The release pipeline: the only path from governed data to a person, as one unit.

``release(request, ...)`` takes a workspace's governed tables (through ``locate``, which says
which engine runs an expression and the plans of the tables it reads) and an expression, and
returns an ``Outcome``: the ``Released`` figures with the decision that allowed them, or the
refusal. The steps, each failing closed:

1. lineage: every table read is a governed table; no output column is traced to a direct
   identifier (unless the purpose is identifiable), to a fine quasi-identifier as a dimension,
   or to nothing the walker understands; under a planning purpose every measure is an
   aggregation and at least one exists;
2. run: exactly the SQL that is hashed for the audit;
3. differencing: the ledger hides cells that differ from an earlier release by a small group;
4. disclosure control: suppression, rounding, secondary suppression, magnitude rules.

Nothing here writes the audit: the caller records ``Outcome.query`` and ``Outcome.decision``
(the same code runs in a workspace and, in service mode, in the node service).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandas as pd

from fdp_kernel.errors import FdpError, GovernanceError, UsageError
from fdp_kernel.governance import measures
from fdp_kernel.governance.decision import Decision, allow, refusal
from fdp_kernel.governance.disclosure import (
    Magnitude,
    Mean,
    ReleaseSpec,
    apply_disclosure_control,
    infer_spec,
)
from fdp_kernel.governance.lineage import UNKNOWN, Lineage
from fdp_kernel.governance.model import Level, Purpose
from fdp_kernel.governance.overlap import Ledger, carried, top_aggregate
from fdp_kernel.governance.policy import ViewPlan
from fdp_kernel.governance.released import Released, rules_note

# Quasi-identifiers too fine to release as a table dimension without coarsening them first.
FINE_QUASI_IDENTIFIERS = frozenset({"date_of_birth", "date_of_death", "lsoa_code"})


class Runner(Protocol):
    """What the pipeline needs of an engine (``fdp_kernel.engines.base.Engine`` is one)."""

    def compile(self, expr: ir.Table) -> str: ...

    def run(self, expr: ir.Table, sql: str | None = None) -> pd.DataFrame: ...


Locate = Callable[[ir.Table], tuple[Runner, Mapping[str, ViewPlan]]]


@dataclass(frozen=True)
class Spec:
    """What the requester declared about the columns (checked, never trusted for lineage)."""

    dimensions: Sequence[str] = ()
    counts: Sequence[str] = ()
    statistics: Mapping[str, str] | None = None
    magnitudes: Mapping[str, Magnitude] | None = None
    percentages: Mapping[str, tuple[str, str]] | None = None

    def declared(self) -> set[str]:
        return {*self.counts, *(self.statistics or {}), *(self.magnitudes or {})}

    def arguments(self, dimensions: Sequence[str]) -> dict[str, Any]:
        given = {
            "dimensions": list(dimensions),
            "counts": self.counts,
            "statistics": self.statistics,
            "magnitudes": self.magnitudes,
            "percentages": self.percentages,
        }
        return {k: v for k, v in given.items() if v}


@dataclass(frozen=True)
class QueryRun:
    sql_sha256: str
    rows: int


@dataclass(frozen=True, eq=False)
class Partial:
    """An exact partial aggregate, passed service to service under an agreement that says so
    and never shown to a person: its counts, its sums with their helpers (contributors and
    the two largest contributions), keyed by its dimensions."""

    frame: pd.DataFrame
    dimensions: tuple[str, ...]
    counts: tuple[str, ...]
    sums: Mapping[str, Mapping[str, str]]  # sum column -> role (n, t1, t2) -> helper column
    sources: tuple[str, ...] = ()  # the datasets read


@dataclass(frozen=True, eq=False)
class Outcome:
    decision: Decision
    released: Released | None = None
    query: QueryRun | None = None  # the governed query, when it ran
    plans: tuple[ViewPlan, ...] = ()  # the governed tables read
    error: FdpError | None = None  # what to raise once the refusal is recorded
    partial: Partial | None = None

    @property
    def providers(self) -> list[str]:
        return sorted({p.provider for p in self.plans})

    @property
    def agreement(self) -> str | None:
        return ",".join(sorted({p.agreement for p in self.plans if p.agreement})) or None

    def result(self) -> Released:
        if self.error is not None:
            raise self.error
        assert self.released is not None
        return self.released


def release(
    obj: ir.Table | pd.DataFrame,
    *,
    purpose: Purpose,
    org: str,
    ledger: Ledger,
    locate: Locate,
    title: str | None = None,
    spec: Spec = Spec(),
) -> Outcome:
    """Check, run, difference-check and disclosure-control ``obj``; never raises a refusal
    (it is in the outcome, for the caller to record and raise)."""
    query = None
    read: tuple[ViewPlan, ...] = ()
    try:
        if isinstance(obj, Released):
            raise UsageError("this is already released; use its .data")
        if isinstance(obj, pd.DataFrame):
            released, decision = _control(
                obj, ("supplied table",), purpose, org, title, spec, spec.dimensions
            )
            return Outcome(decision, released)
        if not isinstance(obj, ir.Table):
            raise UsageError(
                f"release takes an Ibis table expression or a pandas DataFrame, "
                f"got {type(obj).__name__}"
            )
        runner, plans = locate(obj)
        read = tuple(dict.fromkeys(plans.values()))
        sources = tuple(sorted({p.dataset for p in read}))
        listing, dimensions = check_lineage(obj, plans, purpose, spec)
        measured = None
        run = obj
        rules = purpose.disclosure
        protects = rules.min_count > 1 or rules.rounding_base > 1 or rules.min_contributors > 0
        if not listing and purpose.level is not Level.IDENTIFIABLE and protects:
            # What each column is comes from the expression, and the helper figures the
            # rules need are computed with it: nothing the requester declares is trusted.
            run, measured = measures.plan(obj)
            declared = _check_declared(spec, measured)
            measures.refuse_unreleasable({k: v for k, v in measured.items() if k not in declared})
        sql = runner.compile(run)
        frame = runner.run(run, sql)
        query = QueryRun(hashlib.sha256(sql.encode()).hexdigest(), len(frame))
        if listing:
            released, decision = _listing(frame, sources, purpose, org, title)
        else:
            forced = _overlap(obj, frame, runner, ledger, purpose.disclosure.min_count)
            if measured is not None:
                derived = _derived_spec(frame, spec, measured)
                released, decision = _controlled(
                    frame, sources, purpose, org, title, derived, forced
                )
            else:
                released, decision = _control(
                    frame, sources, purpose, org, title, spec, dimensions, forced
                )
        return Outcome(decision, released, query, read)
    except FdpError as exc:
        return Outcome(refusal(exc), None, query, read, exc)


def partial(obj: ir.Table, *, purpose: Purpose, locate: Locate) -> Outcome:
    """An exact partial aggregate of ``obj`` for a requester's combined release: the same
    lineage and measure checks as a release, counts and sums only (their helpers computed
    here), no disclosure control (the requester applies it once, to the combined figures)."""
    query, read = None, ()
    try:
        if not isinstance(obj, ir.Table):
            raise UsageError("an exact partial is computed from an Ibis table expression")
        runner, plans = locate(obj)
        read = tuple(dict.fromkeys(plans.values()))
        listing, _ = check_lineage(obj, plans, purpose, Spec())
        if listing or purpose.level is Level.IDENTIFIABLE:
            raise UsageError("exact partials are aggregates under a planning purpose")
        run, measured = measures.plan(obj)
        measures.refuse_unreleasable(measured)
        other = sorted(n for n, m in measured.items() if m.kind not in ("count", "sum"))
        if other:
            raise GovernanceError(
                f"column(s) {', '.join(other)} are not counts or sums, so exact partials of "
                "them cannot be added up across nodes: ask for them node by node",
                rule="release:spec",
            )
        sql = runner.compile(run)
        frame = runner.run(run, sql)
        query = QueryRun(hashlib.sha256(sql.encode()).hexdigest(), len(frame))
        helpers = {c for m in measured.values() for c in m.helpers.values()}
        dims = tuple(c for c in frame.columns if c not in measured and c not in helpers)
        counts = tuple(n for n, m in measured.items() if m.kind == "count")
        sums = {n: dict(m.helpers) for n, m in measured.items() if m.kind == "sum"}
        reason = "exact partial aggregate for the requester's combined release"
        return Outcome(
            allow("release:exact-partial", reason), None, query, read,
            partial=Partial(frame, dims, counts, sums, tuple(sorted({p.dataset for p in read}))),
        )  # fmt: skip
    except FdpError as exc:
        return Outcome(refusal(exc), None, query, read, exc)


def release_combined(
    frame: pd.DataFrame,
    spec: ReleaseSpec,
    *,
    purpose: Purpose,
    org: str,
    title: str | None,
    sources: Sequence[str],
) -> Outcome:
    """Disclosure control, once, over figures combined from nodes' exact partials."""
    try:
        released, decision = _controlled(frame, tuple(sources), purpose, org, title, spec)
        return Outcome(decision, released)
    except FdpError as exc:
        return Outcome(refusal(exc), None, None, (), exc)


def check_lineage(
    expr: ir.Table, plans: Mapping[str, ViewPlan], purpose: Purpose, spec: Spec
) -> tuple[bool, list[str]]:
    """(whether it is a direct-care record listing, the dimensions): refuses what may not be
    released. What is not computed by an aggregation is a dimension, whatever its type."""
    _refuse_code(expr)
    lineage = Lineage(expr)
    columns = lineage.columns()
    if purpose.level is Level.IDENTIFIABLE:
        return not any(info.aggregated for info in columns.values()), list(spec.dimensions)
    _identifiers_only_link(expr, lineage, plans, purpose)
    declared = spec.declared()
    measures = [c for c, info in columns.items() if c in declared or info.aggregated]
    for name, info in columns.items():
        if UNKNOWN in info.sources:
            raise GovernanceError(
                f"cannot trace where output column {name!r} comes from, so it is not "
                "released; simplify the expression (no raw SQL or scalar subqueries)",
                rule="release:untraceable",
            )
        identifiers = sorted(
            c for (view, c) in info.sources if view in plans and plans[view].is_direct_identifier(c)
        )
        if identifiers:
            raise GovernanceError(
                f"output column {name!r} is computed from direct identifier(s) "
                f"{', '.join(identifiers)}: under {purpose.id} only aggregates leave "
                "the workspace. Count people instead (e.g. .nunique())",
                rule="release:identifier",
            )
        if name not in measures and info.direct and info.direct[1] in FINE_QUASI_IDENTIFIERS:
            raise GovernanceError(
                f"output column {name!r} is {info.direct[1]} itself; coarsen it before "
                "release (a year, an age band, an area at a higher level)",
                rule="release:fine-quasi-identifier",
            )
        if name in declared and not info.aggregated:
            raise GovernanceError(
                f"measure {name!r} is not computed by an aggregation: release aggregate "
                "tables (group_by(...).aggregate(...)), not rows",
                rule="release:rows",
            )
    if not measures:
        raise GovernanceError(
            "a release needs at least one count or statistic computed by an aggregation: "
            "record-level rows are not released under a planning purpose",
            rule="release:no-measure",
        )
    given = list(spec.dimensions)
    return False, [*given, *(c for c in columns if c not in measures and c not in given)]


def _check_declared(spec: Spec, measured: dict[str, measures.Measure]) -> set[str]:
    """Refuse a declaration the expression contradicts; the requester's own helper columns
    (of declared magnitudes), which are never used or released."""
    for name in spec.dimensions:
        if name in measured:
            raise GovernanceError(
                f"column {name!r} is computed by an aggregation, so it is a measure and cannot "
                "be released as a dimension",
                rule="release:spec",
            )
    for name in spec.counts:
        if name in measured and measured[name].kind != "count":
            raise GovernanceError(
                f"column {name!r} is a {measured[name].kind}, not a count of records: it "
                "cannot be released as a count",
                rule="release:spec",
            )
    return {c for m in (spec.magnitudes or {}).values() for c in (m.contributors, m.top1, m.top2)}


def _derived_spec(frame: pd.DataFrame, spec: Spec, measured) -> ReleaseSpec:
    """The release spec from the expression: group keys and labels are dimensions, every
    aggregated column a measure of its kind, with the helpers the pipeline computed."""
    own_helpers = [c for m in (spec.magnitudes or {}).values()
                   for c in (m.contributors, m.top1, m.top2)]  # fmt: skip
    helper_columns = {c for m in measured.values() for c in m.helpers.values()}
    counts, magnitudes, means, bases = [], {}, {}, {}
    for name, m in measured.items():
        if name in own_helpers:
            continue
        h = m.helpers
        if m.kind == "count":
            counts.append(name)
        elif m.kind == "sum":
            magnitudes[name] = Magnitude(h["n"], h["t1"], h["t2"])
        elif m.kind == "mean":
            means[name] = Mean(h["sum"], h["n"], h["t1"], h["t2"])
        else:  # quantile, extreme, spread
            bases[name] = h["n"]
    # The requester's own helpers, and what the pipeline counted for them, are not released.
    unused = set(own_helpers) | {c for n in own_helpers if n in measured
                                 for c in measured[n].helpers.values()}  # fmt: skip
    taken = {*measured, *helper_columns, *own_helpers}
    dimensions = [c for c in frame.columns if c not in taken]
    return ReleaseSpec(
        dimensions=dimensions,
        counts=counts,
        magnitudes=magnitudes,
        percentages=spec.percentages or {},
        means=means,
        bases=bases,
        dropped=tuple(c for c in frame.columns if c in unused),
    )


_UDFS = tuple(getattr(ops, n) for n in ("ScalarUDF", "AggUDF", "VectorizedUDF") if hasattr(ops, n))
# What a direct identifier may be used for under a purpose that releases aggregates only:
# linking records (a join or comparison with another identifier), counting people, grouping
# records per person inside the query, and carrying it (renamed or cast) to those uses.
_LINKING = (ops.Equals, ops.NotEquals, ops.IdenticalTo)
_COUNTING_IDS = tuple(
    getattr(ops, n) for n in ("Count", "CountDistinct", "ApproxCountDistinct") if hasattr(ops, n)
)
_CARRYING = (ops.Alias, ops.Cast, ops.IsNull, ops.NotNull, ops.Coalesce)


def _refuse_code(expr: ir.Table) -> None:
    """No user-defined function runs over governed rows: it would see every one of them,
    whatever is released (in a filter, a condition of an aggregation, anywhere)."""
    found = next((n for n in expr.op().find(ops.Value) if _UDFS and isinstance(n, _UDFS)), None)
    if found is not None:
        raise GovernanceError(
            f"the expression runs a user-defined function ({type(found).__name__}), which would "
            "see every governed row it is given: use Ibis's own operations",
            rule="release:operation",
        )


def _identifiers_only_link(expr: ir.Table, lineage: Lineage, plans, purpose: Purpose) -> None:
    """Refuse a direct identifier used in a condition or a computation (``nhs_number == '...'``
    in a filter or in ``count(where=...)``, ``substr``, ``length``): it would tell whether a
    given person is in the data, or reveal part of the identifier, through a count."""

    def identifier(value: ops.Value) -> str | None:
        if not isinstance(value, ops.Field):
            return None
        info = lineage.field(value.rel, value.name)
        return next(
            (c for v, c in info.sources if v in plans and plans[v].is_direct_identifier(c)),
            None,
        )

    for node in expr.op().find(ops.Value):
        if isinstance(node, (ops.Field, *_COUNTING_IDS, *_CARRYING)):
            continue
        args = [a for a in _value_args(node) if isinstance(a, ops.Field)]
        used = [c for c in (identifier(a) for a in args) if c]
        if not used:
            continue
        if isinstance(node, _LINKING) and len(used) == 2:
            continue  # two identifiers compared: records linked, no value revealed
        raise GovernanceError(
            f"direct identifier {used[0]} is used in {type(node).__name__}: under "
            f"{purpose.id} identifiers may only link records and be counted, not compared "
            "with values or computed on",
            rule="release:identifier",
        )


def _value_args(node: ops.Node):
    for arg in node.args:
        if isinstance(arg, ops.Node):
            yield arg
        elif isinstance(arg, tuple | list):
            yield from (a for a in arg if isinstance(a, ops.Node))


def _overlap(expr: ir.Table, frame: pd.DataFrame, runner: Runner, ledger: Ledger, min_count):
    """Rows to hide because they would difference against an earlier release."""
    if min_count <= 1:
        return None
    aggregate = top_aggregate(expr)
    if aggregate is None:
        return None
    stars = [n for n, v in aggregate.metrics.items() if isinstance(v, ops.CountStar)]
    is_root = aggregate is expr.op() or (
        stars
        and carried(expr, aggregate, [*aggregate.groups, stars[0]])
        and not _filters_after(expr, aggregate)
    )
    exact = frame if is_root else runner.run(aggregate.to_expr())
    hide = ledger.check_all(aggregate, exact, runner.run)
    shown = {k: v for k, v in hide.items() if k is None or k in frame.columns}
    if is_root and len(shown) == len(hide):
        return shown
    if not any(v.any() for v in hide.values()):
        return None
    raise GovernanceError(
        "this release overlaps an earlier one so closely that the difference would reveal "
        f"a group of 1-{min_count - 1} records; it is not released",
        rule="release:overlap",
    )


def _filters_after(expr: ir.Table, aggregate) -> bool:
    """Whether rows of the aggregate are filtered or limited away before release."""
    rel = expr.op()
    while rel is not aggregate:
        if isinstance(rel, ops.Filter | ops.Limit):
            return True
        rel = rel.parent
    return False


def _source(org: str, sources: Sequence[str], purpose: Purpose) -> str:
    return f"{org} {', '.join(sources)} ({purpose.id})"


def _listing(frame, sources, purpose, org, title) -> tuple[Released, Decision]:
    empty = pd.DataFrame(index=frame.index)
    note = rules_note(purpose.disclosure, 0, listing=True)
    released = Released(
        frame.reset_index(drop=True), empty, title, _source(org, sources, purpose), note, 0, True
    )
    return released, allow("release:direct-care-listing", "direct care listing")


def _control(frame, sources, purpose, org, title, spec: Spec, dimensions, forced=None):
    declared = infer_spec(frame, **spec.arguments(dimensions))
    return _controlled(frame, sources, purpose, org, title, declared, forced)


def _controlled(frame, sources, purpose, org, title, declared: ReleaseSpec, forced=None):
    rules = purpose.disclosure
    result = apply_disclosure_control(frame, declared, rules, forced)
    n = result.n_primary + result.n_secondary
    released = Released(
        result.data,
        result.suppressed,
        title,
        _source(org, sources, purpose),
        rules_note(rules, n),
        n,
    )
    return released, allow("release:disclosure-control", "disclosure control applied")
