"""The population health explorer's queries, figures and chart, as pure functions.

``fdp_kernel.workbench.explorer.PopulationExplorer`` wires these to ipywidgets; here they are plain
functions of governed Ibis tables (the explorer passes ``ws.table(...)``) and of released
figures, so they are unit-tested without a browser or a kernel.

A :class:`Selection` is what the analyst chose: a QOF register, and optionally an age band,
a deprivation group and a broad ethnic group; and which of those three the chart compares.
:func:`prevalence_query` is the expression released for it: people on the register and people
on the list of the register's ages (QOF rules, ``fdp_kernel.metrics.population``) in the
filtered population, in total or per group of the compared breakdown. :func:`figure_frame`
turns the released figures into what is drawn and shown: suppressed cells stay empty and are
labelled "suppressed (<8)", never filled in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields

import altair as alt
import ibis
import ibis.expr.types as ir
import pandas as pd

from fdp_kernel import codes, viz
from fdp_kernel.errors import UsageError
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import population as m
from fdp_kernel.metrics.vaccination import born_by

ALL = "All"
NOT_KNOWN = "Not known"
AGE_BANDS = tuple(label for label, _, _ in m.AGE_BANDS)
ETHNIC_GROUPS = tuple(dict.fromkeys(codes.ETHNIC_GROUP.values()))
DEPRIVATION = {"imd_quintile": 5, "imd_decile": 10}  # column -> number of groups
WIDTH = 560  # the chart's plot width (px)
# Breakdowns the chart compares: name -> the label of its axis.
BREAKDOWNS = {
    "deprivation": "Deprivation (IMD, 1 = most deprived)",
    "age_band": "Age band",
    "ethnic_group": "Ethnic group",
}
FILTERS = ("age_band", "deprivation", "ethnic_group")  # in the order they are described


@dataclass(frozen=True)
class Selection:
    """The explorer's choices. ``deprivation`` is a group of ``deprivation_column`` (1 = most
    deprived); each filter is ``ALL`` or one group; ``compare_by`` names a ``BREAKDOWNS``."""

    condition: str = "HYP"
    age_band: str = ALL
    deprivation: int | str = ALL
    ethnic_group: str = ALL
    compare_by: str = "deprivation"
    deprivation_column: str = "imd_quintile"

    def __post_init__(self) -> None:
        if self.condition not in m.REGISTERS:
            raise UsageError(f"unknown register {self.condition!r}; use one of {m.REGISTERS}")
        if self.deprivation_column not in DEPRIVATION:
            raise UsageError(f"deprivation_column must be one of {list(DEPRIVATION)}")
        if self.compare_by not in BREAKDOWNS:
            raise UsageError(f"compare_by must be one of {list(BREAKDOWNS)}")
        for name, allowed in self.choices().items():
            if getattr(self, name) not in (ALL, *allowed):
                raise UsageError(f"{name} must be {ALL!r} or one of {list(allowed)}")

    def choices(self) -> dict[str, tuple]:
        """Each filter's groups (besides ``ALL``)."""
        groups = tuple(range(1, DEPRIVATION[self.deprivation_column] + 1))
        return {"age_band": AGE_BANDS, "deprivation": groups, "ethnic_group": ETHNIC_GROUPS}

    def filters(self, skip: str | None = None) -> dict[str, object]:
        """The chosen filters (breakdown name -> group), leaving out ``skip``."""
        return {
            name: getattr(self, name)
            for name in FILTERS
            if name != skip and getattr(self, name) != ALL
        }

    def describe(self, skip: str | None = None) -> str:
        """The filters in words, e.g. "aged 65-74, IMD quintile 1, White"."""
        words = {
            "age_band": "aged {}",
            "deprivation": f"IMD {self.deprivation_column.removeprefix('imd_')} {{}}",
            "ethnic_group": "{}",
        }
        chosen = [words[k].format(v) for k, v in self.filters(skip).items()]
        return ", ".join(chosen) or "everyone"

    def replace(self, **changes) -> Selection:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return Selection(**{**values, **changes})


def people(patients: ir.Table, as_of: dt.date, deprivation_column: str = "imd_quintile"):
    """Record-level: the population on ``as_of`` (``metrics.population.population``) with the
    explorer's breakdown columns ``age_band``, ``deprivation`` (an integer group, null when not
    known) and ``ethnic_group`` (``codes.ETHNIC_GROUP``). Stays in the workspace."""
    t = m.population(patients, as_of)
    deprivation = t.imd_decile.cast("int64") if deprivation_column == "imd_decile" else None
    return t.mutate(
        deprivation=t.imd_quintile if deprivation is None else deprivation,
        ethnic_group=t.ethnicity.substitute(codes.ETHNIC_GROUP, else_=ETHNIC_GROUPS[-1]),
    )


def cohort(
    patients: ir.Table, as_of: dt.date, selection: Selection, skip: str | None = None
) -> ir.Table:
    """The people the selection's filters keep (all but ``skip``'s)."""
    t = people(patients, as_of, selection.deprivation_column)
    keep = [t[name] == value for name, value in selection.filters(skip).items()]
    return t.filter(*keep) if keep else t


def prevalence_query(
    patients: ir.Table,
    registers: ir.Table,
    as_of: dt.date,
    selection: Selection,
    by: str | None = None,
) -> ir.Table:
    """``register`` (people on the selected register by ``as_of``) and ``list_size`` (people on
    the list of the register's ages: the denominator, QOF 2023/24 rules) in the selection's
    cohort: one row, or with ``by`` (a ``BREAKDOWNS`` name) one row per ``group`` (text; "Not
    known" for no recorded deprivation) with ``by``'s own filter not applied.

    The aggregation is the expression's root, so ``ws.release`` applies the differencing
    ledger to every cell (slicing a cohort one way and then another cannot reveal 1-7 people).
    """
    t = cohort(patients, as_of, selection, skip=by)
    code = selection.condition
    recorded = registers.diagnosis_date.isnull() | (registers.diagnosis_date <= as_of)
    entries = registers.filter(registers.condition == code, recorded)
    entries = entries.select("nhs_number").distinct().mutate(on_register=ibis.literal(True))
    joined = t.left_join(entries, "nhs_number")
    columns = [c for c in t.columns if c != "nhs_number"]
    joined = joined.select(*columns, on_register=ibis.coalesce(joined.on_register, False))
    if by is not None:
        if by not in BREAKDOWNS:
            raise UsageError(f"by must be one of {list(BREAKDOWNS)}, not {by!r}")
        # A column of the aggregated relation, so the ledger can list each cell's records.
        joined = joined.mutate(group=ibis.coalesce(joined[by].cast("string"), NOT_KNOWN))
    min_age = m.REGISTER_MIN_AGE.get(code, 0)
    old_enough = joined.date_of_birth <= ibis.literal(born_by(as_of, min_age), type="date")
    measures = {
        "register": joined.count(where=joined.on_register & old_enough),
        "list_size": joined.count(where=old_enough),
    }
    if by is None:
        return joined.aggregate(**measures)
    return joined.group_by("group").aggregate(**measures)


def group_order(by: str, selection: Selection) -> list[str]:
    """The display order of ``by``'s groups."""
    if by == "deprivation":
        return [*(str(g) for g in selection.choices()["deprivation"]), NOT_KNOWN]
    return [str(g) for g in selection.choices()[by]]


def ordered(released: Released, by: str, selection: Selection) -> Released:
    """``released`` (of ``prevalence_query(..., by=by)``) with its rows in display order."""
    rank = {g: i for i, g in enumerate(group_order(by, selection))}
    data = released.data.reset_index(drop=True)
    order = data["group"].astype(str).map(rank).fillna(len(rank)).sort_values(kind="stable")
    return released.take(order.index.to_numpy())


def shown(value, reason: str, min_count: int = 8, *, percent: bool = False) -> str:
    """How a released figure reads: "1,234", "12.3%", "suppressed (<8)" (or why else it is
    hidden), "-" when there is nothing to divide by."""
    if reason:
        if reason.startswith("primary"):
            return f"suppressed (<{min_count})"
        if reason.startswith("overlap"):
            return "suppressed (would reveal a difference from an earlier figure)"
        return "suppressed (protects another cell)" if reason == "secondary" else "suppressed"
    if value is None or pd.isna(value):
        return "-"
    return f"{float(value):.1f}%" if percent else f"{int(value):,}"


def _reason(released: Released, column: str, row: int) -> str:
    if column not in released.suppressed.columns:
        return ""
    return str(released.suppressed[column].iloc[row] or "")


def headline(released: Released, min_count: int = 8) -> dict[str, str]:
    """The one-row release as text: ``register``, ``list_size``, ``prevalence``."""
    if len(released) != 1:
        raise UsageError("headline takes the one-row release of prevalence_query(..., by=None)")
    row = released.data.iloc[0]
    return {
        "register": shown(row["register"], _reason(released, "register", 0), min_count),
        "list_size": shown(row["list_size"], _reason(released, "list_size", 0), min_count),
        "prevalence": shown(
            row["prevalence_pct"], _reason(released, "prevalence_pct", 0), min_count, percent=True
        ),
    }


def figure_frame(
    released: Released, selection: Selection, by: str, min_count: int = 8
) -> pd.DataFrame:
    """What the chart draws, from a release of ``prevalence_query(..., by=by)``: one row per
    group in display order with ``prevalence`` (a fraction; NaN where suppressed), the
    figures as text (``register_text``, ``list_size_text``, ``prevalence_text``) and
    ``selected`` (the group the filter picks, if any). Only released values are used."""
    data = released.data.reset_index(drop=True)
    rows = []
    for i, record in data.iterrows():
        texts = {
            f"{col}_text": shown(
                record[col], _reason(released, col, i), min_count, percent=col == "prevalence_pct"
            )
            for col in ("register", "list_size", "prevalence_pct")
        }
        pct = record["prevalence_pct"]
        rows.append(
            {
                "group": str(record["group"]),
                "prevalence": float("nan") if pd.isna(pct) else float(pct) / 100,
                "register_text": texts["register_text"],
                "list_size_text": texts["list_size_text"],
                "prevalence_text": texts["prevalence_pct_text"],
                "selected": str(record["group"]) == str(getattr(selection, by)),
            }
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "group",
            "prevalence",
            "register_text",
            "list_size_text",
            "prevalence_text",
            "selected",
        ],
    )
    order = {g: i for i, g in enumerate(group_order(by, selection))}
    frame["_order"] = frame["group"].map(order).fillna(len(order))
    frame = frame.sort_values(["_order", "group"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def explorer_chart(
    frame: pd.DataFrame, selection: Selection, by: str, released: Released
) -> alt.VConcatChart:
    """Bars of released prevalence per group (the selected group darker), "*" where a group is
    suppressed, tooltips with the released figures; titled and captioned (``viz``)."""
    data = frame.assign(
        label=frame["prevalence"].map(lambda v: "*" if pd.isna(v) else ""),
        prevalence=frame["prevalence"].astype("float64"),
    )
    order = list(data["group"])
    hover = alt.selection_point(name="hover", on="pointerover", fields=["group"], empty=False)
    x = alt.X("group:N", sort=order, title=BREAKDOWNS[by], axis=alt.Axis(labelAngle=0))
    tooltip = [
        alt.Tooltip("group:N", title=BREAKDOWNS[by]),
        alt.Tooltip("register_text:N", title="On the register"),
        alt.Tooltip("list_size_text:N", title="On the list"),
        alt.Tooltip("prevalence_text:N", title="Prevalence"),
    ]
    base = alt.Chart(data).encode(x=x, tooltip=tooltip)
    colour = alt.condition("datum.selected", alt.value(viz.DARK_BLUE), alt.value(viz.NHS_BLUE))
    bars = (
        base.transform_filter("isValid(datum.prevalence)")
        .mark_bar()
        .encode(
            y=alt.Y("prevalence:Q", title="Recorded prevalence", axis=alt.Axis(format=".1%")),
            color=colour,
            opacity=alt.condition(hover, alt.value(1.0), alt.value(0.8)),
        )
        .add_params(hover)
    )
    stars = base.mark_text(baseline="bottom", dy=-2, fontSize=16).encode(
        y=alt.datum(0), text="label:N"
    )
    n = int(data["prevalence"].isna().sum())
    name = codes.LTC_REGISTERS[selection.condition]
    title = f"{name}: recorded prevalence by {BREAKDOWNS[by].split(' (')[0].lower()}"
    note = f"Cohort: {selection.describe(skip=by)}. Darker bar: the group selected above."
    text = viz.caption(released.source, n, note=note, noun="group")
    chart = alt.layer(bars, stars).properties(width=WIDTH, height=240)
    with alt.theme.enable("nhs"):
        spec = viz.with_caption(chart, title=title, text=text, width=WIDTH)
        return alt.VConcatChart.from_dict(spec.to_dict(), validate=False)  # theme baked in
