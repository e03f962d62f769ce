"""Statistical disclosure control for tables before a person sees them ("safe outputs").

Rules and anchors (ARCHITECTURE.md "Governance defaults", DOMAIN.md section 0):

- Counts: the NHS England HES/ECDS rule (since September 2018; OpenSAFELY does the same):
  0 is shown as 0, 1-7 are suppressed (``*``), 8 and over are rounded to the nearest 5 (half
  up), and percentages are calculated from the rounded figures.
- Statistics (means, medians, percentiles) based on 1-7 people are suppressed (HES/ECDS).
- Magnitude tables (sums): the ACRO defaults, i.e. at least 10 contributors, no dominance by
  the nk rule (n=2, k=0.90) and none by the p% rule (p=0.10).
- Secondary suppression (ACRO, DataSHIELD): every margin is assumed known, so no margin may
  hold exactly one suppressed cell. Fail closed: what cannot be checked is refused.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from fdp_kernel.errors import GovernanceError, UsageError

SECONDARY = "secondary"
MAGNITUDE_CONTRIBUTORS = "magnitude: contributors"
MAGNITUDE_DOMINANCE = "magnitude: dominance"
MAGNITUDE_P_RATIO = "magnitude: p-ratio"
STATISTIC_SMALL_BASE = "statistic: small base"
PERCENTAGE_COMPONENT = "percentage: component suppressed"
OVERLAP = "overlap: differs from an earlier release by 1-7"

_NULL = "null, so it cannot be checked; fill in the true value (0 if none) or drop the row"
_NEGATIVE = "negative, so it cannot be checked; the rules hold for non-negative values only"
_FRACTION = "not a whole number; counts must be integers (declare a rate as a statistic)"
_INCONSISTENT = "inconsistent helpers; need 0 <= top2 <= top1, top1 + top2 <= total, top2 = 0 \
for one contributor and total = 0 for none; check the Magnitude columns"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real | Decimal) and not isinstance(value, bool)


@dataclass(frozen=True)
class DisclosureRules:
    """Thresholds: HES/ECDS for counts, ACRO for magnitudes. k=1 or p=0 turn those rules off."""

    min_count: int = 8
    rounding_base: int = 5
    secondary_suppression: bool = True
    min_contributors: int = 10
    dominance_n: int = 2
    dominance_k: float = 0.90
    p_ratio: float = 0.10

    def __post_init__(self) -> None:
        for name, low in (("min_count", 1), ("rounding_base", 1), ("min_contributors", 0)):
            if not _is_int(getattr(self, name)) or getattr(self, name) < low:
                raise UsageError(f"DisclosureRules.{name} must be an integer >= {low}")
        if not isinstance(self.secondary_suppression, bool):
            raise UsageError("DisclosureRules.secondary_suppression must be True or False")
        if not _is_int(self.dominance_n) or self.dominance_n not in (1, 2):
            raise UsageError("DisclosureRules.dominance_n must be 1 or 2")
        k, p = self.dominance_k, self.p_ratio
        real = all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in (k, p))
        if not (real and 0 < k <= 1 and 0 <= p <= 1):  # NaN fails the comparisons
            raise UsageError("DisclosureRules needs 0 < dominance_k <= 1 and 0 <= p_ratio <= 1")

    @classmethod
    def none(cls) -> DisclosureRules:
        """Suppress and round nothing (non-personal data such as supply chain prices)."""
        off = {"secondary_suppression": False, "dominance_k": 1.0, "p_ratio": 0.0}
        return cls(min_count=1, rounding_base=1, min_contributors=0, **off)


@dataclass(frozen=True)
class Magnitude:
    """The helper columns of a sum column: checked, then dropped from the release."""

    contributors: str
    top1: str
    top2: str


@dataclass(frozen=True)
class Mean:
    """The helper columns of a mean: its sum, contributors and two largest contributions. A
    mean is shown only where its sum would pass the magnitude rules."""

    total: str
    contributors: str
    top1: str
    top2: str


def _names(value: object, what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else tuple(value)  # type: ignore[arg-type]
    if not all(isinstance(item, str) and item for item in items):
        raise UsageError(f"{what} must be column names (strings), got {items!r}")
    return items


def _frozen(value: object, what: str) -> MappingProxyType:
    if not isinstance(value, Mapping):
        raise UsageError(f"{what} must be a mapping, got {type(value).__name__}")
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})


@dataclass(frozen=True)
class ReleaseSpec:
    """The role of every column of a table to be released (see ``infer_spec``).

    ``statistics``: statistic column -> the count column of people it is based on.
    ``magnitudes``: sum column -> its ``Magnitude`` helper columns (never released).
    ``percentages``: NEW column -> (numerator, denominator); both must be in ``counts``.
    """

    dimensions: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    statistics: Mapping[str, str] = field(default_factory=dict)
    magnitudes: Mapping[str, Magnitude] = field(default_factory=dict)
    percentages: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Set by the release pipeline from the expression, never by the requester:
    means: Mapping[str, Mean] = field(default_factory=dict)  # mean -> its helpers
    bases: Mapping[str, str] = field(default_factory=dict)  # statistic -> its contributors
    dropped: tuple[str, ...] = ()  # columns the requester computed as helpers: never released

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", _names(self.dimensions, "dimensions"))
        object.__setattr__(self, "counts", _names(self.counts, "counts"))
        object.__setattr__(self, "dropped", _names(self.dropped, "dropped"))
        for what in ("statistics", "magnitudes", "percentages", "means", "bases"):
            object.__setattr__(self, what, _frozen(getattr(self, what), what))
        for mag, m in self.magnitudes.items():
            if not isinstance(m, Magnitude):
                raise UsageError(f"magnitudes[{mag!r}] must be Magnitude(contributors, top1, top2)")
        for pct, parts in self.percentages.items():
            if not isinstance(parts, tuple) or len(parts) != 2:
                raise UsageError(f"percentages[{pct!r}] must be (numerator, denominator)")
        names = [*self.declared, *self.percentages]
        _names((*names, *(c for _, c in self.references)), "statistics, magnitudes, percentages")
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise UsageError(f"column(s) {twice} are declared more than once; give each one role")

    @property
    def helpers(self) -> tuple[str, ...]:
        """Helper columns: checked (or, ``dropped``, not even used) but never released."""
        out = [c for m in self.magnitudes.values() for c in (m.contributors, m.top1, m.top2)]
        out += [c for m in self.means.values() for c in (m.total, m.contributors, m.top1, m.top2)]
        out += [*self.bases.values(), *self.dropped]
        return tuple(dict.fromkeys(out))

    @property
    def declared(self) -> list[str]:
        """Every input column the spec gives a role."""
        return [
            *self.dimensions,
            *self.counts,
            *self.statistics,
            *self.magnitudes,
            *self.means,
            *self.bases,
            *self.helpers,
        ]

    @property
    def references(self) -> list[tuple[str, str]]:
        """(statistic or percentage, count column it is based on) pairs."""
        refs = list(self.statistics.items())
        return refs + [(p, c) for p, parts in self.percentages.items() for c in parts]


def _check_frame(df: object, spec: ReleaseSpec, *, final: bool) -> None:
    """Column names are unique strings, named columns exist, percentage outputs are new; if
    ``final``, every column has a role and statistics and percentages are based on counts."""
    if not isinstance(df, pd.DataFrame):
        raise UsageError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if not all(isinstance(c, str) for c in df.columns) or df.columns.has_duplicates:
        raise UsageError(f"column names must be unique strings, got {list(df.columns)!r}")
    clash = sorted(set(spec.percentages) & set(df.columns))
    if clash:
        raise UsageError(f"percentage output(s) {clash} are already columns; choose new names")
    unknown = sorted({*spec.declared, *(c for _, c in spec.references)} - {*df.columns})
    if unknown:
        raise UsageError(f"unknown column(s) {unknown}; the table has {list(df.columns)}")
    undeclared = [c for c in df.columns if c not in spec.declared]
    if final and undeclared:
        raise GovernanceError(
            f"column(s) {undeclared} are not in the release spec, so they "
            "cannot be checked; declare them (see infer_spec) or drop them",
            rule="disclosure:unchecked",
        )
    for user, col in spec.references if final else ():
        if col not in spec.counts and not (user in spec.percentages and col in spec.magnitudes):
            raise UsageError(f"{user!r} is based on {col!r}: declare {col!r} as a count")


def _classify(s: pd.Series) -> str:
    """'dimension', 'count' or 'numeric' (must be declared) for an undeclared column."""
    dt = s.dtype
    if isinstance(dt, pd.CategoricalDtype | pd.PeriodDtype) or dt.kind in "bM":
        return "dimension"
    if ptypes.is_integer_dtype(dt):
        return "count"
    if ptypes.is_object_dtype(dt):
        return "numeric" if any(_is_number(v) for v in s[s.notna()]) else "dimension"
    return "dimension" if ptypes.is_string_dtype(dt) else "numeric"  # floats, decimals, ...


def infer_spec(
    df: pd.DataFrame,
    *,
    dimensions: Iterable[str] = (),
    counts: Iterable[str] = (),
    statistics: Mapping[str, str] | None = None,
    magnitudes: Mapping[str, Magnitude] | None = None,
    percentages: Mapping[str, tuple[str, str]] | None = None,
) -> ReleaseSpec:
    """Declared columns as given; every other column inferred, failing closed.

    Strings, categories, booleans, dates and datetimes become dimensions; integers become
    counts; other numbers (floats, decimals, durations) must be declared as a statistic (with
    its count column) or a magnitude, else GovernanceError. Unknown or twice-declared columns
    are a UsageError.
    """
    spec = ReleaseSpec(dimensions, counts, statistics or {}, magnitudes or {}, percentages or {})
    _check_frame(df, spec, final=False)
    new: dict[str, list[str]] = {"dimension": [], "count": []}
    for col in df.columns:
        kind = "declared" if col in spec.declared else _classify(df[col])
        if kind == "numeric":
            raise GovernanceError(
                f"column {col!r} ({df[col].dtype}) is not an integer count and is not declared, "
                "so it cannot be checked: declare it as a statistic with the count it is based "
                f"on (statistics={{{col!r}: 'n'}}), as a magnitude, or as a count; or drop it",
                rule="disclosure:unchecked",
            )
        new.get(kind, []).append(col)
    dims, cnts = spec.dimensions + tuple(new["dimension"]), spec.counts + tuple(new["count"])
    spec = replace(spec, dimensions=dims, counts=cnts)
    _check_frame(df, spec, final=True)
    return spec


@dataclass(frozen=True, eq=False)
class DisclosureResult:
    """Released ``data``; per measure cell the reason it is hidden ('' if shown); the numbers
    of primary and secondary suppressions (derived percentages are counted in neither)."""

    data: pd.DataFrame
    suppressed: pd.DataFrame
    n_primary: int
    n_secondary: int

    def display(self) -> pd.DataFrame:
        """``data`` with every suppressed cell shown as ``"*"`` (object columns), for printing."""
        out = self.data.copy()
        for col in self.suppressed.columns:
            out[col] = out[col].astype(object).mask(self.suppressed[col] != "", "*")
        return out


def _refuse(bad: np.ndarray, values: np.ndarray, col: str, role: str, what: str) -> None:
    """GovernanceError naming the first offending row, if any; ``what`` says how to fix it."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise GovernanceError(
            # The row, never its value: an error message must not carry data out.
            f"{role} column {col!r}, row {row}: {what}",
            rule="disclosure:unchecked",
        )


def _numbers(s: pd.Series, col: str, role: str = "count", *, nulls: bool = False) -> np.ndarray:
    """A column as float64, refusing what is not a finite number (and nulls unless allowed)."""
    if ptypes.is_object_dtype(s.dtype) and all(_is_number(v) for v in s[s.notna()]):
        values = np.array([np.nan if pd.isna(v) else float(v) for v in s], dtype=np.float64)
    elif ptypes.is_numeric_dtype(s.dtype) and s.dtype.kind not in "bc":
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        raise GovernanceError(
            f"{role} column {col!r} ({s.dtype}) must hold numbers; convert it",
            rule="disclosure:unchecked",
        )
    if not nulls:
        _refuse(np.isnan(values), values, col, role, _NULL)
    _refuse(np.isinf(values), values, col, role, "infinite; fix the upstream value")
    return values


def _counts(s: pd.Series, col: str, role: str = "count") -> np.ndarray:
    """Non-negative whole numbers (floats such as 12.0 are accepted), as int64."""
    values = _numbers(s, col, role)
    _refuse(values < 0, values, col, role, _NEGATIVE)
    _refuse(values != np.floor(values), values, col, role, _FRACTION)
    return values.astype(np.int64)


def _margin_groups(frame: pd.DataFrame, dims: list[str]) -> list[np.ndarray]:
    """Row positions (in row order) of every margin group with more than one cell: for each
    dimension d, the rows sharing the values of the other dimensions (all rows if none)."""
    n = len(frame)
    if not dims and n > 1:
        raise GovernanceError(
            f"{n} rows but no dimensions: declare them (reset_index() first?)",
            rule="disclosure:unchecked",
        )
    duplicated = frame.duplicated(subset=dims, keep=False).to_numpy() if dims else []
    if np.any(duplicated):
        row = int(np.flatnonzero(duplicated)[0])
        raise GovernanceError(
            f"the dimension values of row {row} ({', '.join(dims)}) occur in several rows, so "
            "margins cannot "
            "be reasoned about; aggregate to one row per cell first",
            rule="disclosure:unchecked",
        )
    # A dimension that moves one-to-one with another adds no margin of its own: margins are
    # taken over the distinct ones, so a copied dimension cannot switch secondary suppression
    # off. The grand total is always a margin too.
    distinct: list[str] = []
    for d in dims:
        if not any(_one_to_one(frame, d, kept) for kept in distinct):
            distinct.append(d)
    dims = distinct
    groups: list[np.ndarray] = [np.arange(n)] if n > 1 else []
    for d in dims:
        others = [c for c in dims if c != d]
        labels = np.zeros(n, dtype=np.int64)
        if others:
            labels = frame.groupby(others, dropna=False, sort=False).ngroup().to_numpy()
        order = np.argsort(labels, kind="stable")
        cuts = np.flatnonzero(np.diff(labels[order])) + 1
        groups.extend(g for g in np.split(order, cuts) if len(g) > 1)
    return groups


def _one_to_one(frame: pd.DataFrame, a: str, b: str) -> bool:
    pairs = frame[[a, b]].drop_duplicates()
    return len(pairs) == frame[a].nunique(dropna=False) == frame[b].nunique(dropna=False)


def _secondary(values: np.ndarray, reasons: np.ndarray, groups: list[np.ndarray]) -> None:
    """Hide the smallest shown cell (first in canonical order on ties) of any margin group with
    exactly one hidden cell; repeat until no group does. Zero cells are eligible."""
    hidden = reasons != ""
    changed = True
    while changed:
        changed = False
        for members in groups:
            inside = hidden[members]
            if inside.sum() == 1:
                shown = members[~inside]
                pick = shown[int(np.argmin(values[shown]))]
                hidden[pick], reasons[pick], changed = True, SECONDARY, True


def _round_counts(values: np.ndarray, rules: DisclosureRules) -> np.ndarray:
    """Nearest multiple of the base, half up; never below the smallest multiple >= min_count
    (so a shown count is never 0 or in 1..min_count-1)."""
    base = rules.rounding_base
    rounded = (2 * values + base) // (2 * base) * base
    floor = -(-rules.min_count // base) * base
    return np.where((values >= rules.min_count) & (rounded < floor), floor, rounded)


def _magnitude(frame: pd.DataFrame, col: str, mag: Magnitude, rules: DisclosureRules) -> tuple:
    """A sum column's totals and primary reasons: ACRO threshold, then nk, then p% rule."""
    total = _numbers(frame[col], col, "magnitude")
    _refuse(total < 0, total, col, "magnitude", _NEGATIVE)
    contributors = _counts(frame[mag.contributors], mag.contributors, "contributors")
    top1, top2 = (_numbers(frame[c], c, "top contribution") for c in (mag.top1, mag.top2))
    tol = 1e-9 * np.maximum(1.0, total)
    bad = (top2 < 0) | (top2 > top1 + tol) | (top1 + top2 > total + tol)
    bad |= ((contributors <= 1) & (top2 > 0)) | ((contributors == 0) & (total > 0))
    _refuse(bad, total, col, "magnitude", _INCONSISTENT)
    off = np.zeros(len(total), dtype=bool)
    top = top1 + top2 if rules.dominance_n == 2 else top1
    # ACRO's nk rule: the n largest contributions make up k or more of the total (>=).
    dominant = (top >= rules.dominance_k * total) & (total > 0) if rules.dominance_k < 1 else off
    p_rule = total - top1 - top2 < rules.p_ratio * top1 if rules.p_ratio > 0 else off
    rule = [contributors < rules.min_contributors, dominant, p_rule]
    why = np.select(rule, [MAGNITUDE_CONTRIBUTORS, MAGNITUDE_DOMINANCE, MAGNITUDE_P_RATIO], "")
    return total, why.astype(object)


def apply_disclosure_control(
    df: pd.DataFrame,
    spec: ReleaseSpec,
    rules: DisclosureRules,
    forced: np.ndarray | Mapping[str | None, np.ndarray] | None = None,
) -> DisclosureResult:
    """Apply primary, magnitude and secondary suppression, rounding and percentages.

    Counts: 0 shown, 1..min_count-1 suppressed, the rest rounded (HES/ECDS). Statistics:
    suppressed when their count (unrounded) is below min_count, 0 included. Magnitudes:
    suppressed on too few contributors, nk dominance or the p% rule (ACRO). Then secondary
    suppression per count and per magnitude column; percentages from the released counts.
    ``forced`` marks rows whose counts must be hidden for a reason found outside this table
    (or, a mapping, ``None`` -> such rows and a count column -> rows where that count alone is)
    (an overlap with an earlier release); they count as primary suppressions.
    The input frame is not changed; the output has a fresh RangeIndex and keeps row order.
    """
    if not isinstance(spec, ReleaseSpec) or not isinstance(rules, DisclosureRules):
        raise UsageError("apply_disclosure_control(df, spec: ReleaseSpec, rules: DisclosureRules)")
    _check_frame(df, spec, final=True)
    # Work in a canonical row order so that the same figures get the same suppression
    # whatever order an engine returned them in; the caller's order is restored at the end.
    order = _canonical_order(df, list(spec.dimensions))
    frame = df.iloc[order].reset_index(drop=True)
    if forced is not None and not isinstance(forced, Mapping):
        forced = {None: forced}
    if forced is not None:
        forced = {k: np.asarray(v)[order] for k, v in forced.items()}
    n = len(frame)
    groups = _margin_groups(frame, list(spec.dimensions))
    groups = groups if rules.secondary_suppression else []
    why: dict[str, np.ndarray] = {}
    out: dict[str, pd.api.extensions.ExtensionArray] = {}
    raw: dict[str, np.ndarray] = {}
    for col in spec.counts:
        values = raw[col] = _counts(frame[col], col)
        why[col] = np.full(n, "", dtype=object)
        why[col][(values >= 1) & (values < rules.min_count)] = f"primary: 1-{rules.min_count - 1}"
        for key in (None, col) if forced is not None else ():
            if key in forced:
                why[col][forced[key] & (why[col] == "")] = OVERLAP
        _secondary(values.astype(np.float64), why[col], groups)
        out[col] = pd.arrays.IntegerArray(_round_counts(values, rules), mask=why[col] != "")
    for col, base in spec.statistics.items():
        values = _numbers(frame[col], col, "statistic", nulls=True)
        why[col] = np.where(raw[base] < rules.min_count, STATISTIC_SMALL_BASE, "").astype(object)
        out[col] = pd.arrays.FloatingArray(values, mask=(why[col] != "") | np.isnan(values))
    for col, mag in spec.magnitudes.items():
        total, why[col] = _magnitude(frame, col, mag, rules)
        _secondary(total, why[col], groups)
        if ptypes.is_integer_dtype(frame[col].dtype):  # a sum of whole numbers stays whole
            out[col] = pd.arrays.IntegerArray(total.astype(np.int64), mask=why[col] != "")
        else:
            out[col] = pd.arrays.FloatingArray(total, mask=why[col] != "")
    for col, mean in spec.means.items():  # shown only where its sum would be
        helpers = Magnitude(mean.contributors, mean.top1, mean.top2)
        _, why[col] = _magnitude(frame, mean.total, helpers, rules)
        few = _counts(frame[mean.contributors], col, "mean contributors") < rules.min_count
        why[col][few & (why[col] == "")] = STATISTIC_SMALL_BASE
        values = _numbers(frame[col], col, "statistic", nulls=True)
        out[col] = pd.arrays.FloatingArray(values, mask=(why[col] != "") | np.isnan(values))
    for col, base in spec.bases.items():  # contributors counted by the pipeline
        few = _counts(frame[base], col, "statistic contributors") < rules.min_count
        why[col] = np.where(few, STATISTIC_SMALL_BASE, "").astype(object)
        values = _numbers(frame[col], col, "statistic", nulls=True)
        out[col] = pd.arrays.FloatingArray(values, mask=(why[col] != "") | np.isnan(values))
    n_primary = sum(int(((w != "") & (w != SECONDARY)).sum()) for w in why.values())
    n_secondary = sum(int((w == SECONDARY).sum()) for w in why.values())
    for col, (num, den) in spec.percentages.items():
        hidden = (why[num] != "") | (why[den] != "")
        top, bottom = (out[c].to_numpy(dtype=np.float64, na_value=0.0) for c in (num, den))
        ok = ~hidden & (bottom != 0)
        pct = np.round(np.divide(top * 100.0, bottom, out=np.zeros(n), where=ok), 1)
        why[col] = np.where(hidden, PERCENTAGE_COMPONENT, "").astype(object)
        out[col] = pd.arrays.FloatingArray(pct, mask=~ok)
    columns = [c for c in frame.columns if c not in spec.helpers] + list(spec.percentages)
    data = pd.DataFrame({c: out[c] if c in out else frame[c] for c in columns})
    reasons = {c: pd.Series(why[c], dtype=object) for c in columns if c in why}
    suppressed = pd.DataFrame(reasons, index=pd.RangeIndex(n), columns=list(reasons))
    back = np.argsort(order, kind="stable")
    data = data.iloc[back].reset_index(drop=True)
    suppressed = suppressed.iloc[back].reset_index(drop=True)
    return DisclosureResult(data, suppressed, n_primary, n_secondary)


def _canonical_order(frame: pd.DataFrame, dims: list[str]) -> np.ndarray:
    """Row positions sorted by the dimensions, then every other column (as text, nulls
    first): an order that does not depend on how the rows arrived."""
    if len(frame) < 2:
        return np.arange(len(frame))
    columns = [*dims, *(c for c in frame.columns if c not in dims)]
    keys = pd.DataFrame(
        {i: frame[c].astype("string").fillna("") for i, c in enumerate(columns)}
    ).reset_index(drop=True)
    return keys.sort_values(list(keys.columns), kind="stable").index.to_numpy()
