"""Population health management figures for templates/population_health.ipynb.

For a GP practice, every figure is an aggregate of its own governed tables (its list and
registers; a practice cannot see hospital data). For an ICB, the population health agreement
(DSA-PHM-ICB, pseudonymised, row-level) lets the ICB read each practice's list and registers
and each trust's inpatient spells with ``ws.table(name, source=ORG)``; the agreement's linkage
pseudonym is the same at every node, so a person's GP record links to their hospital spells.
The ICB view is the union of the practices' rows, linked to the union of the trusts' spells,
and every figure is released by the ICB's workspace with disclosure control.

Rates and shares are computed from released (suppressed and rounded) counts.
"""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd

from fdp_kernel import codes
from fdp_kernel.figures.base import Figures
from fdp_kernel.figures.common import headline
from fdp_kernel.governance import policy
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.governance.released import Released, rate
from fdp_kernel.metrics import population as m
from fdp_kernel.metrics.vaccination import add_years

NOW, PREVIOUS = "now", "a year earlier"
HEADLINE_REGISTERS = ("HYP", "DM", "COPD", "AST", "MH", "DEM")
MAGNITUDES = {"bed_days": Magnitude(*m.BED_DAYS_HELPERS)}

# Orders for sorting released rows: registers as in QOF lists, age bands, count groups.
_ORDERS = {
    "condition": list(m.REGISTERS),
    "conditions": list(m.MULTIMORBIDITY_GROUPS),
    "group": [NOW, PREVIOUS, *(b[0] for b in m.AGE_BANDS)],
}


def _sorted(released: Released, keys: list[str], orders: dict | None = None) -> Released:
    """``released`` with rows sorted by ``keys`` (known orders, numbers numerically, else the
    order of first appearance)."""
    data = released.data.reset_index(drop=True)
    orders = {**_ORDERS, **(orders or {})}
    sort = {}
    for key in keys:
        values = data[key].astype(str)
        if key in orders:
            rank = {v: i for i, v in enumerate(orders[key])}
            number = pd.to_numeric(values, errors="coerce")
            sort[key] = values.map(rank).fillna(number + 1000).fillna(10_000)
        else:
            sort[key] = values.map({v: i for i, v in enumerate(dict.fromkeys(values))})
    return released.reordered(pd.DataFrame(sort).sort_values(keys, kind="stable").index)


class PopulationFigures(Figures):
    """The figures of one population health report, for a GP practice or (linked) an ICB."""

    def __init__(self, ws, as_of: dt.date) -> None:
        super().__init__(ws, as_of)
        self.previous = add_years(as_of, -1)
        self.deprivation = "imd_decile" if self.icb else "imd_quintile"
        if self.icb:
            # What an ICB sees: the providers of its row-level agreements (policy's one answer,
            # as the population explorer asks it).
            fed, purpose = ws.federation, ws.purpose.id
            self.practices = policy.providers(
                fed, purpose, ws.org, org_type="gp_practice", rows=True
            )
            self.trusts = policy.providers(fed, purpose, ws.org, org_type="acute_trust", rows=True)
            self.patients = self._union("patients", self.practices)
            self.registers = self._union("ltc_registers", self.practices)
            self.spells = self._union("inpatient_spells", self.trusts) if self.trusts else None
        else:
            self.practices, self.trusts = [ws.org], []
            self.patients = ws.table("patients")
            self.registers = ws.table("ltc_registers")
            self.spells = None

    def _union(self, name: str, orgs: list[str]):
        return ibis.union(*(self.ws.table(name, source=o) for o in orgs), distinct=False)

    @property
    def linked(self) -> bool:
        """Whether hospital spells are linked (the ICB, under the population health agreement)."""
        return self.spells is not None

    # -- the releases: each stacks several breakdowns into one table -----------------------------
    def _stack(self, make, breakdowns: dict[str, tuple[str, object]], measures: list[str]):
        """One expression: ``make(by, day)`` for each breakdown name -> (column or "", date
        or group label), with ``breakdown`` and ``group`` (text) columns in front. Each
        breakdown's groups form their own margins in disclosure control, as separate releases
        would; one release per table keeps the audit and the node round trips down."""
        parts = []
        for name, (column, value) in breakdowns.items():
            if column:
                expr = make((column,), self.as_of)
                group = expr[column].cast("string")
            else:  # the whole population on a date, labelled
                label, day = value
                expr = make((), day)
                group = ibis.literal(label)
            parts.append(
                expr.select(
                    breakdown=ibis.literal(name),
                    group=group,
                    **{c: expr[c] for c in expr.columns if c not in (column, "breakdown")},
                )
            )
        return ibis.union(*parts, distinct=False).select("breakdown", "group", *measures)

    def _groups(self) -> dict[str, tuple[str, object]]:
        return {
            "age_band": ("age_band", None),
            self.deprivation: (self.deprivation, None),
        }

    def prevalence_all(self) -> Released:
        """Recorded prevalence per register (``prevalence_pct``) for the whole list now and a
        year earlier (breakdown ``year``), by age band and by deprivation (``imd_quintile``
        at a practice, ``imd_decile`` at the ICB)."""
        if "prevalence" not in self._cache:
            years = {
                f"year {i}": ("", (label, day))
                for i, (label, day) in enumerate(((NOW, self.as_of), (PREVIOUS, self.previous)))
            }

            def make(by, day):
                return m.prevalence(self.patients, self.registers, day, by)

            expr = self._stack(
                make, {**years, **self._groups()}, ["condition", "register", "list_size"]
            )
            released = self.ws.release(
                expr,
                title="Recorded prevalence",
                percentages={"prevalence_pct": ("register", "list_size")},
            )
            data = released.data
            data["breakdown"] = data["breakdown"].where(
                ~data["breakdown"].str.startswith("year "), "year"
            )
            data.insert(3, "register_name", data["condition"].map(codes.LTC_REGISTERS))
            self._cache["prevalence"] = _sorted(released, ["breakdown", "group", "condition"])
        return self._cache["prevalence"]

    def prevalence(self, by: str = "year") -> Released:
        """The rows of :meth:`prevalence_all` for one breakdown (``group`` = its values)."""
        part = self.prevalence_all()
        return part.where(part.data["breakdown"] == by)

    def list_sizes(self, by: str = "year") -> dict:
        """Released list sizes per group of ``by``: the denominators of hypertension
        prevalence, which covers all ages."""
        rows = self.prevalence(by).data
        rows = rows[rows["condition"] == "HYP"]
        return dict(zip(rows["group"], rows["list_size"], strict=True))

    def multimorbidity(self, by: str = "age_band") -> Released:
        """People by number of registers (0, 1, 2, 3, 4+) per group of ``by`` (``age_band``,
        or ``year``: the whole list now and a year earlier), with ``share_pct`` of the group's
        list size."""
        if "multimorbidity" not in self._cache:
            years = {
                f"year {i}": ("", (label, day))
                for i, (label, day) in enumerate(((NOW, self.as_of), (PREVIOUS, self.previous)))
            }

            def make(by, day):
                return m.multimorbidity(self.patients, self.registers, day, by)

            expr = self._stack(
                make, {**years, "age_band": ("age_band", None)}, ["conditions", "people"]
            )
            released = self.ws.release(expr, title="Multimorbidity: people by number of registers")
            data = released.data
            data["breakdown"] = data["breakdown"].where(
                ~data["breakdown"].str.startswith("year "), "year"
            )
            self._cache["multimorbidity"] = _sorted(released, ["breakdown", "group", "conditions"])
        stacked = self._cache["multimorbidity"]
        released = stacked.where(stacked.data["breakdown"] == by)
        data = released.data
        sizes = self.list_sizes(by)
        totals = data["group"].map(sizes).astype("Float64")
        data["share_pct"] = (data["people"].astype("Float64") * 100 / totals).round(1)
        return released

    def activity(self) -> Released:
        """Risk tiers and segments in one release (breakdown ``risk_tier`` or ``segment``):
        people and ``people_pct`` of the list; at the ICB also emergency admissions and bed
        days in the last 12 months, with rates per 1,000 people."""
        if "activity" not in self._cache:
            linked = self.linked
            spells = self.spells
            measures = ["people"]
            if linked:
                measures += [
                    "people_admitted",
                    "emergency_admissions",
                    "bed_days",
                    *m.BED_DAYS_HELPERS,
                ]

            def make(by, day):
                fn = m.risk_tiers if by == ("risk_tier",) else m.segments
                return fn(self.patients, self.registers, day, spells)

            expr = self._stack(
                make, {"risk_tier": ("risk_tier", None), "segment": ("segment", None)}, measures
            )
            spec = {"magnitudes": MAGNITUDES} if linked else {}
            released = self.ws.release(expr, title="Risk tiers and segments", **spec)
            data = released.data
            total = self.list_sizes().get(NOW, pd.NA)
            data["people_pct"] = (data["people"].astype("Float64") * 100 / total).round(1)
            if linked:
                data["admissions_per_1000"] = rate(
                    data["emergency_admissions"], data["people"], 1000
                )
                data["bed_days_per_1000"] = rate(data["bed_days"], data["people"], 1000)
            order = [t for t, _ in m.RISK_TIERS] + list(m.SEGMENTS)
            self._cache["activity"] = _sorted(released, ["breakdown", "group"], {"group": order})
        return self._cache["activity"]

    def _part(self, name: str, title: str) -> Released:
        part = self.activity()
        part = part.where(part.data["breakdown"] == name, title)
        part.data.drop(columns="breakdown", inplace=True)
        part.data.rename(columns={"group": name}, inplace=True)
        return part

    def risk_tiers(self) -> Released:
        """People per risk tier (illustrative score); at the ICB with activity."""
        return self._part("risk_tier", "Risk tiers")

    def segments(self) -> Released:
        """People per segment (simplified Bridges to Health); at the ICB with activity."""
        return self._part("segment", "Population segments")

    def core20plus5(self) -> Released:
        """Core20 against the rest: people, and prevalence of hypertension, COPD and SMI (%);
        at the ICB also emergency admissions per 1,000."""
        if "core20" not in self._cache:
            released = self.ws.release(
                m.core20plus5(self.patients, self.registers, self.as_of, self.spells),
                title="Core20PLUS5: Core20 against the rest",
            )
            data = released.data
            for name in m.CORE20PLUS5_REGISTERS:
                data[f"{name}_pct"] = rate(data[name], data["people"])
            if self.linked:
                data["admissions_per_1000"] = rate(
                    data["emergency_admissions"], data["people"], 1000
                )
            order = {"core20": [m.CORE20, m.REST, m.IMD_NOT_KNOWN]}
            self._cache["core20"] = _sorted(released, ["core20"], order)
        return self._cache["core20"]

    def scorecard(self) -> pd.DataFrame:
        """The Core20PLUS5 scorecard: each measure for Core20 and the rest, and the gap."""
        data = self.core20plus5().data.set_index("core20")
        measures = [
            ("Share of the population (%)", None),
            ("Hypertension prevalence (%)", "hypertension_pct"),
            ("COPD prevalence (%)", "copd_pct"),
            ("Serious mental illness prevalence (%)", "smi_pct"),
        ]
        if self.linked:
            measures.append(("Emergency admissions per 1,000 (12 months)", "admissions_per_1000"))
        total = data["people"].sum(skipna=False)
        rows = []
        for label, column in measures:
            if column is None:
                values = (data["people"].astype("Float64") * 100 / total).round(1)
            else:
                values = data[column]
            core20 = values.get(m.CORE20, pd.NA)
            rest = values.get(m.REST, pd.NA)
            gap = pd.NA  # a gap in shares of the population means nothing
            if column is not None and not (pd.isna(core20) or pd.isna(rest)):
                gap = core20 - rest
            rows.append(
                {
                    "measure": label,
                    "Core20": core20,
                    "rest": rest,
                    "gap": round(float(gap), 1) if not pd.isna(gap) else pd.NA,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """The one-screen headline: the list, multimorbidity, key registers' prevalence (now
        against a year earlier, England for reference), Core20 and, at the ICB, emergency
        admissions."""
        prevalence = self.prevalence("year").data.set_index(["group", "condition"])
        mm = self.multimorbidity("year").data
        rows = []

        def size(point):
            values = mm.loc[mm["group"] == point, "people"]
            total = values.sum(skipna=False) if len(values) else pd.NA
            return None if pd.isna(total) else int(total)

        def multi(point):
            part = mm[mm["group"] == point]
            if part.empty:
                return None
            people = part["people"]
            two_plus = people[part["conditions"].isin(["2", "3", "4+"])].sum(skipna=False)
            total = people.sum(skipna=False)
            if pd.isna(two_plus) or pd.isna(total) or not total:
                return None
            return round(float(two_plus) * 100 / float(total), 1)

        rows.append(("People on the list", size(NOW), size(PREVIOUS), ""))
        rows.append(("People on 2 or more registers (%)", multi(NOW), multi(PREVIOUS), ""))
        for code in HEADLINE_REGISTERS:

            def pct(point, code=code):
                key = (point, code)
                value = prevalence["prevalence_pct"].get(key, pd.NA)
                return None if pd.isna(value) else float(value)

            england = f"England {m.ENGLAND_PREVALENCE[code]:.1%} (QOF 2023/24)"
            rows.append(
                (f"{codes.LTC_REGISTERS[code]}: prevalence (%)", pct(NOW), pct(PREVIOUS), england)
            )
        card = self.scorecard().set_index("measure")
        share = card.loc["Share of the population (%)", "Core20"]
        rows.append(
            (
                "Living in Core20 areas (%)",
                None if pd.isna(share) else float(share),
                None,
                "20% nationally",
            )
        )
        gap = card.loc["Hypertension prevalence (%)", "gap"]
        rows.append(
            (
                "Hypertension prevalence, Core20 - rest (% points)",
                None if pd.isna(gap) else float(gap),
                None,
                "",
            )
        )
        if self.linked:
            tiers = self.risk_tiers().data
            admissions = tiers["emergency_admissions"].sum(skipna=False)
            people = tiers["people"].sum(skipna=False)
            rate = (
                None
                if pd.isna(admissions) or pd.isna(people) or not people
                else round(float(admissions) * 1000 / float(people), 1)
            )
            rows.append(("Emergency admissions per 1,000 (12 months)", rate, None, ""))
        table = headline(rows)
        return table.rename(columns={"previous": "a year earlier"})

    def prevalence_table(self, by: str) -> pd.DataFrame:
        """Prevalence (%) with registers as rows and the groups of ``by`` (``age_band`` or the
        deprivation breakdown) as columns; "*" where suppressed."""
        data = self.prevalence(by).data
        table = data.pivot_table(
            index="register_name",
            columns="group",
            values="prevalence_pct",
            aggfunc="first",
            dropna=False,
            sort=False,
        )
        table = table.reindex(columns=list(dict.fromkeys(data["group"])))
        table.columns.name = by
        return table.astype(object).where(table.notna(), "*")
