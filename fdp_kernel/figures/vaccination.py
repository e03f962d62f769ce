"""Vaccination and immunisation figures for templates/vaccination.ipynb.

For a GP practice, every figure comes from one aggregate of its own governed tables,
released through its workspace. For an ICB, the same query runs at each practice under the
vaccination agreement (``ws.federated``): each practice releases its own disclosure-controlled
figures, and the ICB view adds them up.

Adding up released figures: where a practice's eligible or vaccinated count for a row is
suppressed, that practice is left out of the row (both counts), and the row says how many
practices it includes and how many were left out (``federation.combine_where_released``).
Summing with a suppressed cell as a lower bound (``FederatedResult.combined``) would hide
almost every ICB uptake for small cohorts, since some practice always has 1-7 children turning
one in a year. Uptake is computed from the summed counts. The practice league table shows each
practice's own released figures.

Percentages are computed from released (suppressed and rounded) counts; inequality gaps and
the slope index of inequality from released percentages.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

import fdp_kernel
from fdp_kernel.errors import GovernanceError
from fdp_kernel.federation import combine_where_released
from fdp_kernel.figures.base import Figures
from fdp_kernel.figures.common import headline
from fdp_kernel.governance import policy
from fdp_kernel.governance.released import Released, rate
from fdp_kernel.metrics import vaccination as m

NOW, PREVIOUS, LAST_SEASON = "now", "previous", "last_season"
POINT_LABELS = {
    NOW: "Now",
    PREVIOUS: "A year earlier",
    LAST_SEASON: "Last season (final)",
}
KEYS = ["cohort", "point", "breakdown", "group"]
CALL_LIST_COLUMNS = ("nhs_number", "given_name", "family_name", "date_of_birth", "sex")
TABLES = ("patients", "ltc_registers", "vaccinations")
UPTAKE = "Vaccination uptake"  # the title of the uptake release (and of its by_node entry)


def _blocks(points) -> dict[tuple[str, str], dict[str, str]]:
    """The column pair of an ``uptake_table`` for each (cohort, point)."""
    return {
        (cohort, point): {k: m.column(cohort, point, k) for k in ("eligible", "vaccinated")}
        for cohort, point, _ in points
    }


def melt(data: pd.DataFrame, points, ids: list[str]) -> pd.DataFrame:
    """The rows of an ``uptake_table`` (wide: a column pair per point) as long rows ``*ids``,
    ``cohort``, ``point``, ``eligible``, ``vaccinated``."""
    frames = []
    for (cohort, point), columns in _blocks(points).items():
        part = data[ids].copy()
        part.insert(len(ids), "cohort", cohort)
        part.insert(len(ids) + 1, "point", point)
        for k, c in columns.items():
            part[k] = data[c].astype("Int64")
        frames.append(part)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def combine_practices(
    data: pd.DataFrame, by: list[str], title: str = "", note: str = "", source: str = ""
) -> Released:
    """ICB figures from practice-released ones: per ``by`` group, sums of ``eligible`` and
    ``vaccinated`` over the practices whose two figures were both released, with
    ``practices`` (how many were summed) and ``practices_suppressed`` (how many were left out
    because a figure was suppressed), and ``uptake_pct``. A group no practice could contribute
    to is <NA>."""
    return combine_where_released(
        data,
        by,
        ("eligible", "vaccinated"),
        noun="practice",
        percentages={"uptake_pct": ("vaccinated", "eligible")},
        title=title,
        source=source or "federated",
        note=note,
    )


def _combined_note(result) -> str:
    note = (
        f"Sum of the figures released by {len(result.ok)} practices; a practice whose eligible or "
        "vaccinated count for a row was suppressed is left out of that row "
        "(practices_suppressed). Uptake from the summed counts."
    )
    if result.partial:
        note += " PARTIAL: " + ", ".join(result.missing) + " not included."
    return note


def _order(frame: pd.DataFrame) -> list[int]:
    """Row positions in a stable, readable order: cohorts as in COHORTS, points, breakdowns,
    groups (numbers in numeric order)."""
    group = frame["group"].astype(str) if "group" in frame else pd.Series("", index=frame.index)
    order = pd.DataFrame(
        {
            "c": frame["cohort"].map({c: i for i, c in enumerate(m.COHORTS)}),
            "p": frame["point"].map({p: i for i, p in enumerate(POINT_LABELS)}),
            "b": frame["breakdown"].map({b: i for i, b in enumerate((m.ALL, *m.BREAKDOWNS))})
            if "breakdown" in frame
            else 0,
            "n": pd.to_numeric(group, errors="coerce").fillna(1e9),
            "g": group,
            "row": range(len(frame)),
        }
    )
    return order.sort_values(["c", "p", "b", "n", "g"], kind="stable")["row"].to_list()


def for_display(frame: pd.DataFrame, index: str | None = None) -> pd.DataFrame:
    """``frame`` for a report table: missing values (suppressed) shown as "*", numbers as
    released, ``index`` (a column) as the row labels instead of 0, 1, 2..."""
    out = frame.copy()
    for col in out.columns:
        if out[col].isna().any():
            out[col] = out[col].astype(object).where(out[col].notna(), "*")
    return out.set_index(index) if index else out


def inequality_gap(frame: pd.DataFrame, value: str = "uptake_pct") -> float:
    """Uptake in IMD quintile 5 (least deprived) minus quintile 1, in percentage points, from
    released figures (``group`` "1".."5"); NaN when either is suppressed or missing."""
    by = frame.set_index(frame["group"].astype(str))[value]
    q1, q5 = by.get("1", pd.NA), by.get("5", pd.NA)
    if pd.isna(q1) or pd.isna(q5):
        return float("nan")
    return round(float(q5) - float(q1), 1)


def slope_index(frame: pd.DataFrame, value: str = "uptake_pct", weight: str = "eligible") -> float:
    """Slope index of inequality across IMD quintiles from released figures: the fitted
    difference in ``value`` between the least and the most deprived end of the population,
    weighting each quintile by its (released) ``weight`` and placing it at the midpoint of its
    cumulative population share, most deprived first. Positive: higher in less deprived areas.
    NaN unless all five quintiles are released."""
    rows = frame[frame["group"].astype(str).isin([str(q) for q in range(1, 6)])]
    rows = rows.assign(q=rows["group"].astype(int)).sort_values("q")
    if len(rows) != 5 or rows[[value, weight]].isna().any().any():
        return float("nan")
    w = rows[weight].astype(float).to_numpy()
    if w.sum() <= 0:
        return float("nan")
    share = w / w.sum()
    rank = np.cumsum(share) - share / 2
    y = rows[value].astype(float).to_numpy()
    mean_r, mean_y = np.average(rank, weights=w), np.average(y, weights=w)
    var = np.average((rank - mean_r) ** 2, weights=w)
    if var == 0:
        return float("nan")
    return round(float(np.average((rank - mean_r) * (y - mean_y), weights=w) / var), 1)


class VaccinationFigures(Figures):
    """The figures of one vaccination report, for a GP practice or (federated) an ICB."""

    def __init__(self, ws, as_of: dt.date) -> None:
        super().__init__(ws, as_of)
        self.season = m.Season.of(as_of)
        self.nodes = self.practices() if self.icb else None

    # -- the one query ------------------------------------------------------------------------
    def points(self, cohorts=tuple(m.COHORTS)) -> list[tuple[str, str, dt.date]]:
        """(cohort, point, date): now; a year earlier (last season at the same point for the
        seasonal cohorts); and last season's final figure (seasonal cohorts)."""
        last = self.season.previous
        out = []
        for cohort in cohorts:
            seasonal = m.COHORTS[cohort].programme != "childhood"
            before = last.same_point(self.as_of) if seasonal else m.add_years(self.as_of, -1)
            out += [(cohort, NOW, self.as_of), (cohort, PREVIOUS, before)]
            if seasonal:
                out.append((cohort, LAST_SEASON, last.campaign_end(m.COHORTS[cohort].programme)))
        return out

    def practices(self) -> list[str]:
        """The practices the ICB's vaccination agreement covers (the school-aged service is
        left out: its patients are the children it vaccinated, not a registered list)."""
        fed = self.ws.federation
        return [
            o
            for o in policy.providers(self.ws.federation, self.ws.purpose.id, self.ws.org)
            if fed.org(o).org_type == "gp_practice"
        ]

    def _per_practice(self, make, title: str):
        """``make(patients, registers, vaccinations)`` released here (a practice) or at every
        practice, per practice (the ICB: a ``FederatedResult``)."""
        return self._figure(lambda node: make(*self._tables(node, *TABLES)), title=title, by=None)

    def uptake(self) -> Released:
        """Long rows: ``cohort``, ``point``, ``breakdown``, ``group``, ``eligible``,
        ``vaccinated``, ``uptake_pct`` (released at the practice; at the ICB summed over the
        practices, with ``practices`` and ``practices_suppressed``)."""
        return self._cached("uptake", self._uptake)

    def _uptake(self) -> Released:
        points, ids = self.points(), ["breakdown", "group"]

        def make(patients, registers, vaccinations):
            return m.uptake_table(patients, registers, vaccinations, points, m.BREAKDOWNS)

        got = self._per_practice(make, UPTAKE)
        if self.icb:
            long = melt(got.data, points, ["org", *ids])
            source = (
                f"{self.org.code} federated over {len(got.ok)} practices ({self.ws.purpose.id})"
            )
            uptake = combine_practices(
                long, ["cohort", "point", *ids], UPTAKE, _combined_note(got), source
            )
        else:
            uptake = got.stacked(ids, _blocks(points), ("cohort", "point"))
            uptake = uptake.with_percentages({"uptake_pct": ("vaccinated", "eligible")})
        return uptake.reordered(_order(uptake.data))

    def _all(self) -> pd.DataFrame:
        data = self.uptake().data
        return data[data["breakdown"] == m.ALL]

    def _pct(self, cohort: str, point: str):
        rows = self._all()
        value = rows.loc[(rows["cohort"] == cohort) & (rows["point"] == point), "uptake_pct"]
        return None if value.empty or pd.isna(value.iloc[0]) else float(value.iloc[0])

    # -- figures ------------------------------------------------------------------------------
    def standard(self, cohort: str) -> str:
        """The standard or target for ``cohort``, and England's latest published figure."""
        c = m.COHORTS[cohort]
        if c.programme == "childhood":
            target = f"{m.TARGETS['childhood']:.0%} (WHO)"
        elif cohort in m.TARGETS:
            target = f"{m.TARGETS[cohort]:.0%} (WHO)"
        elif c.programme == "flu":
            target = "≥ last season"
        else:
            target = "none set"
        if cohort in m.ENGLAND:
            year, value = m.ENGLAND[cohort]
            target += f"; England {value:.1%} ({year})"
        return target

    def target(self, cohort: str) -> float | None:
        key = "childhood" if m.COHORTS[cohort].programme == "childhood" else cohort
        return m.TARGETS.get(key)

    def summary(self) -> pd.DataFrame:
        """The one-screen headline: uptake (%) now against a year earlier (the same point of
        last season for seasonal cohorts), last season's final figure, and the standard."""
        rows, final = [], []
        for cohort, c in m.COHORTS.items():
            label = f"{c.label} (%)"
            now, before = self._pct(cohort, NOW), self._pct(cohort, PREVIOUS)
            rows.append((label, now, before, self.standard(cohort)))
            final.append(self._pct(cohort, LAST_SEASON) if c.programme != "childhood" else None)
        table = headline(rows)
        shown = headline([("(%)", v, None, "") for v in final])["now"]
        table.insert(4, "last season final", shown.where([v is not None for v in final], "-"))
        return table.rename(columns={"previous": "a year earlier", "change": "change (pp)"})

    def periods(self) -> pd.DataFrame:
        """What "now" and "a year earlier" mean for each cohort (dates)."""
        out = []
        for cohort, point, on in self.points():
            rule = m.Rule.of(cohort, on, point)
            if rule.birthday:
                start = m.add_months(on, -12) + dt.timedelta(days=1)
                what = f"birthdays {start} to {on}"
            else:
                what = f"vaccinated {rule.dose_from} to {rule.census}"
            out.append(
                {"cohort": m.COHORTS[cohort].label, "point": POINT_LABELS[point], "window": what}
            )
        return pd.DataFrame(out)

    def counts(self) -> Released:
        """Eligible, vaccinated and uptake per cohort and point (the whole cohort)."""
        all_rows = self.uptake().data["breakdown"] == m.ALL
        part = self.uptake().where(all_rows, "Eligible and vaccinated")
        data = part.data
        data.insert(0, "cohort_label", data["cohort"].map(lambda c: m.COHORTS[c].label))
        data["point"] = data["point"].map(POINT_LABELS)
        data.drop(columns=["breakdown", "group", "cohort"], inplace=True)
        return part

    def weekly(self) -> pd.DataFrame:
        """Cumulative weekly uptake of the seasonal cohorts, this season against last:
        ``cohort``, ``season`` (label), ``week``, ``week_end``, ``eligible`` (the cohort on the
        season's census date: this season's "now", last season's final figure), ``vaccinated``
        (cumulative), ``uptake_pct`` and ``uptake`` (a share; <NA> where suppressed). At the
        ICB, each practice's released counts are summed as in :meth:`uptake`."""
        return self._cached("weekly", self._weekly)

    def _weekly(self) -> pd.DataFrame:
        title = "Cumulative weekly uptake"

        def make(patients, registers, vaccinations):
            return m.cumulative_weekly_uptake(
                patients, registers, vaccinations, m.SEASONAL, self.as_of
            )

        got = self._per_practice(make, title)
        rows = got.data.copy()
        point = {self.season.label: NOW, self.season.previous.label: LAST_SEASON}
        rows["point"] = rows["season"].map(point)
        # Every week's eligible is the cohort on the census date, which the uptake table
        # also releases; take it from there (secondary suppression may hide it here).
        self.uptake()
        ids = ["org"] if self.icb else []
        source = self.by_node[UPTAKE].data if self.icb else self.uptake().data
        if self.icb:
            source = melt(source, self.points(), ["org", "breakdown", "group"])
        whole = source[source["breakdown"] == m.ALL].set_index([*ids, "cohort", "point"])
        keys = pd.MultiIndex.from_frame(rows[[*ids, "cohort", "point"]])
        rows["eligible"] = whole["eligible"].reindex(keys).to_numpy()
        if self.icb:
            by = ["cohort", "season", "week", "point"]
            rows = combine_practices(rows, by).data
        else:
            rows["uptake_pct"] = rate(rows["vaccinated"], rows["eligible"])
        rows["week"] = rows["week"].astype(int)
        seasons = {s.label: s for s in (self.season, self.season.previous)}

        def week_end(row) -> dt.date:
            ends = m.week_ends(seasons[row["season"]], m.COHORTS[row["cohort"]].programme)
            return ends[min(row["week"], len(ends)) - 1]

        rows["week_end"] = rows.apply(week_end, axis=1) if len(rows) else []
        rows["uptake"] = rows["uptake_pct"].astype("Float64") / 100
        order = pd.DataFrame(
            {
                "c": rows["cohort"].map({c: i for i, c in enumerate(m.COHORTS)}),
                "s": rows["season"],
                "w": rows["week"],
            }
        ).sort_values(["c", "s", "w"], kind="stable")
        columns = ["cohort", "season", "week", "week_end", "eligible", "vaccinated"]
        return rows.loc[order.index, [*columns, "uptake_pct", "uptake"]].reset_index(drop=True)

    def equity(self, breakdown: str, point: str) -> Released:
        """Uptake by ``imd_quintile`` or ``ethnic_group`` at ``point`` (now or last season)."""
        data = self.uptake().data
        mask = (data["breakdown"] == breakdown) & (data["point"] == point)
        name = "IMD quintile (1 = most deprived)" if breakdown == "imd_quintile" else "ethnic group"
        return self.uptake().where(mask, f"Uptake by {name}: {POINT_LABELS[point].lower()}")

    def gaps(self, point: str) -> pd.DataFrame:
        """Per cohort: uptake in IMD quintiles 1 and 5, the gap (Q5 - Q1, percentage points)
        and the slope index of inequality, from released figures."""
        by_imd = self.equity("imd_quintile", point).data
        out = []
        for cohort, c in m.COHORTS.items():
            rows = by_imd[by_imd["cohort"] == cohort]
            if rows.empty:
                continue
            q = rows.set_index(rows["group"].astype(str))["uptake_pct"]
            out.append(
                {
                    "cohort": c.label,
                    "Q1 most deprived (%)": q.get("1", pd.NA),
                    "Q5 least deprived (%)": q.get("5", pd.NA),
                    "gap Q5-Q1 (pp)": inequality_gap(rows),
                    "slope index (pp)": slope_index(rows),
                }
            )
        return pd.DataFrame(out)

    def ethnic_gaps(self, point: str, reference: str = "White") -> pd.DataFrame:
        """Uptake (%) per cohort (rows) and broad ethnic group (columns), each with its gap from
        ``reference`` in percentage points: "66.6 (-13.4)"; "*" where suppressed."""
        by_group = self.equity("ethnic_group", point).data
        out = {}
        for cohort, c in m.COHORTS.items():
            rows = by_group[by_group["cohort"] == cohort].set_index("group")["uptake_pct"]
            if rows.empty:
                continue
            base = rows.get(reference, pd.NA)
            cells = {}
            for group, value in rows.items():
                if pd.isna(value):
                    cells[group] = "*"
                elif group == reference or pd.isna(base):
                    cells[group] = f"{value:.1f}"
                else:
                    cells[group] = f"{value:.1f} ({value - base:+.1f})"
            out[c.label] = cells
        table = pd.DataFrame.from_dict(out, orient="index").fillna("")
        first = [reference] if reference in table.columns else []
        return table[first + sorted(c for c in table.columns if c != reference)]

    def league(self, cohort: str, point: str = NOW) -> pd.DataFrame:
        """ICB only: each practice's released uptake for ``cohort`` at ``point`` against the
        target, highest first; practices with a suppressed figure last."""
        if not self.icb:
            exc = GovernanceError(
                "the practice league table is an ICB view; a practice sees its own",
                rule="view:other-organisation",
            )
            raise self.ws.refuse("league", exc)
        self.uptake()
        long = melt(self.by_node[UPTAKE].data, self.points(), ["org", "breakdown", "group"])
        rows = long[
            (long["cohort"] == cohort) & (long["point"] == point) & (long["breakdown"] == m.ALL)
        ].copy()
        rows["uptake_pct"] = rate(rows["vaccinated"], rows["eligible"])
        rows.insert(1, "practice", rows["org"].map(lambda o: self.ws.federation.org(o).name))
        target = self.target(cohort)

        def meets(value) -> str:
            if pd.isna(value) or target is None:
                return ""
            return "yes" if value >= target * 100 else "no"

        rows["meets target"] = rows["uptake_pct"].map(meets)
        rows = rows.sort_values(["uptake_pct", "org"], ascending=[False, True], na_position="last")
        rows["uptake"] = rows["uptake_pct"].astype("Float64") / 100
        columns = ["org", "practice", "eligible", "vaccinated", "uptake_pct", "uptake"]
        return rows[[*columns, "meets target"]].reset_index(drop=True)

    def icb_comparison(self) -> pd.DataFrame | str:
        """Practice only: its uptake against the ICB's (now and last season), when the user
        holds the vaccination purpose at the ICB; otherwise a sentence saying why not."""
        if self.icb:
            exc = GovernanceError(
                "this is the ICB's own report; see the league table",
                rule="view:other-organisation",
            )
            raise self.ws.refuse("icb comparison", exc)
        parent = self.org.parent_icb
        if not parent:
            return "This practice has no parent ICB in the federation file."
        try:
            icb_ws = fdp_kernel.connect(purpose=self.ws.purpose.id, org=parent)
        except GovernanceError as exc:
            return f"The ICB figure needs the {self.ws.purpose.id} role at {parent}: {exc}"
        with icb_ws:
            icb = VaccinationFigures(icb_ws, self.as_of)
            points = [p for p in self.points() if p[1] in (NOW, LAST_SEASON)]

            def make(patients, registers, vaccinations):
                return m.uptake_table(patients, registers, vaccinations, points)

            got = icb._per_practice(make, "ICB uptake")
            long = melt(got.data, points, ["org"])
            combined = combine_practices(long, ["cohort", "point"]).data
        theirs = combined.set_index(["cohort", "point"])["uptake_pct"]
        out = []
        for cohort, point, _ in points:
            mine = self._pct(cohort, point)
            value = theirs.get((cohort, point), pd.NA)
            icb_pct = None if pd.isna(value) else float(value)
            diff = round(mine - icb_pct, 1) if mine is not None and icb_pct is not None else None
            out.append(
                {
                    "cohort": m.COHORTS[cohort].label,
                    "point": POINT_LABELS[point],
                    f"{self.org.code} (%)": mine,
                    f"{parent} (%)": icb_pct,
                    "difference (pp)": diff,
                }
            )
        frame = pd.DataFrame(out)
        for col in frame.columns[2:]:
            frame[col] = frame[col].astype("Float64")
        return frame


def call_list(ws, as_of: dt.date, cohorts=tuple(m.COHORTS)) -> Released:
    """Eligible people with no counted dose, for the practice to invite: a record-level list,
    so only under a direct-care purpose (the workspace would refuse it under planning too)."""
    try:
        policy.may_list_records(ws.purpose, "call list")
    except GovernanceError as exc:
        raise ws.refuse("call list", exc) from None
    patients = ws.table("patients")
    expr = m.unvaccinated(
        patients, ws.table("ltc_registers"), ws.table("vaccinations"), list(cohorts), as_of
    )
    expr = expr.select("cohort", *(c for c in CALL_LIST_COLUMNS if c in patients.columns))
    released = ws.release(expr, title="Call list: eligible and not vaccinated")
    data = released.data
    data["cohort"] = data["cohort"].map(lambda c: m.COHORTS[c].label)
    if "date_of_birth" in data:
        data["date_of_birth"] = pd.to_datetime(data["date_of_birth"]).dt.date
    if "nhs_number" in data:  # shown 3-3-4, as on NHS letters and screens
        data["nhs_number"] = data["nhs_number"].str.replace(
            r"^(\d{3})(\d{3})(\d{4})$", r"\1 \2 \3", regex=True
        )
    return released.reordered(
        data.sort_values(["cohort", "family_name", "given_name"], kind="stable").index
    )
