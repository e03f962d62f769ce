"""Elective recovery (RTT) figures for templates/elective_recovery.ipynb.

Every figure is an aggregate released through the workspace; percentages are computed from
the released (suppressed and rounded) counts.
"""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd

from fdp_kernel import codes
from fdp_kernel.figures.common import headline, month_ends
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import rtt as m

PERCENT_WITHIN = {"pct_within_18_weeks": ("within_18_weeks", "waiting_list")}


class ElectiveFigures:
    """The figures of one elective recovery report: ``ws`` under an elective purpose."""

    def __init__(self, ws, as_of: dt.date, months: int = 12) -> None:
        self.ws = ws
        self.as_of = as_of
        self.months = months
        self.rtt = ws.table("rtt_pathways")
        self.appointments = ws.table("outpatient_appointments")
        self.patients = ws.table("patients")
        self.previous = month_ends(as_of, 2)[0]

    def trend(self) -> Released:
        """Waiting list and % within 18 weeks at each month end."""
        parts = [
            m.waiting_list_summary(self.rtt, day).mutate(month_end=ibis.literal(day))
            for day in month_ends(self.as_of, self.months)
        ]
        expr = ibis.union(*parts).select(
            "month_end",
            "waiting_list",
            "within_18_weeks",
            "over_52_weeks",
            "over_65_weeks",
            "over_78_weeks",
        )
        released = self.ws.release(
            expr.order_by("month_end"),
            title="Waiting list by month end",
            percentages=PERCENT_WITHIN,
        )
        released.data["month_end"] = pd.to_datetime(released.data["month_end"]).dt.date
        return released

    def summary(self, trend: Released) -> pd.DataFrame:
        """The one-screen headline: now against the previous month and the standards."""
        data = trend.data.set_index("month_end")
        now = data.loc[self.as_of]
        before = data.loc[self.previous] if self.previous in data.index else now * None
        percentiles = self.percentiles().data.iloc[0]
        dna = self.dna().data.iloc[0]
        targets = m.TARGETS
        return headline(
            [
                (
                    "Waiting list (incomplete pathways)",
                    now["waiting_list"],
                    before["waiting_list"],
                    "",
                ),
                (
                    "% within 18 weeks",
                    now["pct_within_18_weeks"],
                    before["pct_within_18_weeks"],
                    f"{targets['within_18_weeks_standard']:.0%} standard; "
                    f"{targets['within_18_weeks_interim_2026_03']:.0%} interim (Mar 2026)",
                ),
                (
                    "Waiting over 52 weeks",
                    now["over_52_weeks"],
                    before["over_52_weeks"],
                    f"< {targets['over_52_weeks_max_share_2026_03']:.0%} of the list (Mar 2026)",
                ),
                ("Waiting over 65 weeks", now["over_65_weeks"], before["over_65_weeks"], "zero"),
                ("Waiting over 78 weeks", now["over_78_weeks"], before["over_78_weeks"], "zero"),
                ("Median wait (weeks)", percentiles["median_weeks"], None, ""),
                ("92nd percentile wait (weeks)", percentiles["p92_weeks"], None, "18 weeks"),
                (
                    "Outpatient DNA rate, last 12 months (%)",
                    dna["dna_rate"],
                    None,
                    "national ~6-8%",
                ),
            ]
        )

    def distribution(self) -> Released:
        expr = m.weeks_waited_distribution(self.rtt, self.as_of, by=())
        return self.ws.release(expr, title="Weeks waited (incomplete pathways)")

    def long_waiters(self) -> Released:
        released = self.ws.release(
            m.long_waiters_by_treatment_function(self.rtt, self.as_of),
            title="Long waiters by treatment function",
        )
        return _with_tfc_names(released)

    def flow(self) -> Released:
        start = month_ends(self.as_of, self.months)[0].replace(day=1)
        expr = m.clock_starts_and_stops(self.rtt, start, self.as_of)
        return self.ws.release(expr, title="Clock starts and stops by month")

    def percentiles(self) -> Released:
        released = self.ws.release(
            m.wait_percentiles(self.rtt, self.as_of),
            title="Median and 92nd percentile wait",
            statistics={"median_weeks": "pathways", "p92_weeks": "pathways"},
        )
        for col in ("median_weeks", "p92_weeks"):
            released.data[col] = released.data[col].round(1)
        return released

    def validation(self) -> Released:
        return self.ws.release(
            m.validation_summary(self.rtt, self.as_of),
            title="Validation cohort",
            percentages={"pct_validated": ("validated_last_12_weeks", "cohort")},
        )

    def dna(self, by: tuple[str, ...] = ()) -> Released:
        start = self.as_of - dt.timedelta(days=365)
        appointments = self.appointments
        if by:
            people = self.patients.select(
                "nhs_number", imd_quintile=(self.patients.imd_decile + 1) // 2
            )
            appointments = appointments.left_join(people, "nhs_number")
        expr = m.dna_rate(appointments, start, self.as_of, by=by)
        return self.ws.release(
            expr,
            title="Outpatient DNA rate",
            percentages={"dna_rate": ("dna", "appointments_with_outcome")},
        )

    def equity(self) -> tuple[Released, Released]:
        pct = {
            "pct_over_52_weeks": ("over_52_weeks", "pathways"),
            "pct_within_18_weeks": ("within_18_weeks", "pathways"),
        }
        by_imd = self.ws.release(
            m.equity_by_imd_quintile(self.rtt, self.patients, self.as_of),
            title="Waits by IMD quintile",
            percentages=pct,
        )
        by_ethnicity = self.ws.release(
            m.equity_by_ethnic_group(self.rtt, self.patients, self.as_of),
            title="Waits by ethnic group",
            percentages=pct,
        )
        return by_imd, by_ethnicity


def _with_tfc_names(released: Released) -> Released:
    data = released.data.copy()
    data.insert(
        1, "treatment_function", data["treatment_function_code"].map(codes.TREATMENT_FUNCTIONS)
    )
    return Released(
        data,
        released.suppressed,
        released.title,
        released.source,
        released.note,
        released.n_suppressed,
        released.listing,
    )
