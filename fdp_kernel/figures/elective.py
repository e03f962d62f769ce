"""Elective recovery (RTT) figures for templates/elective_recovery.ipynb.

For a trust, every figure is an aggregate of its own governed tables, released through the
workspace. For an ICB, the same metric runs at each trust under the elective agreement
(``ws.federated``); each trust releases its own figures, and the ICB view sums them
(``FederatedResult.combined``). Percentages are computed from released (suppressed and
rounded) counts.
"""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd

from fdp_kernel import codes
from fdp_kernel.figures.base import Figures
from fdp_kernel.figures.common import headline, month_ends
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import rtt as m


class ElectiveFigures(Figures):
    """The figures of one elective recovery report, for a trust or (federated) an ICB."""

    MONTH_END_ONLY = True

    def __init__(self, ws, as_of: dt.date, months: int = 12) -> None:
        super().__init__(ws, as_of)
        self.months = months
        self.previous = month_ends(as_of, 2)[0]

    # -- figures ----------------------------------------------------------------------------
    def trend(self) -> Released:
        """Waiting list and % within 18 weeks at each month end."""
        days = month_ends(self.as_of, self.months)

        def make(node):
            rtt = node.table("rtt_pathways")
            parts = [
                m.waiting_list_summary(rtt, day).mutate(month_end=ibis.literal(day)) for day in days
            ]
            return (
                ibis.union(*parts)
                .select(
                    "month_end",
                    "waiting_list",
                    "within_18_weeks",
                    "over_52_weeks",
                    "over_65_weeks",
                    "over_78_weeks",
                )
                .order_by("month_end")
            )

        released = self._figure(
            make,
            title="Waiting list by month end",
            by=("month_end",),
            percentages={"pct_within_18_weeks": ("within_18_weeks", "waiting_list")},
        )
        released.data["month_end"] = pd.to_datetime(released.data["month_end"]).dt.date
        # Charts place each month end's figure in its month (a date at 31 Oct would sit under
        # the November tick): ``month`` is the first of the month.
        released.data["month"] = [d.replace(day=1) for d in released.data["month_end"]]
        return released

    def summary(self, trend: Released) -> pd.DataFrame:
        """The one-screen headline: now against the previous month and the standards."""
        data = trend.data.set_index("month_end")
        now = data.loc[self.as_of]
        before = data.loc[self.previous] if self.previous in data.index else now * None
        dna = self.dna().data.iloc[0]
        targets = m.TARGETS
        rows = [
            ("Waiting list (incomplete pathways)", now["waiting_list"], before["waiting_list"], ""),
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
        ]
        if not self.icb:
            percentiles = self.percentiles().data.iloc[0]
            rows += [
                ("Median wait (weeks)", percentiles["median_weeks"], None, ""),
                ("92nd percentile wait (weeks)", percentiles["p92_weeks"], None, "18 weeks"),
            ]
        rows.append(
            ("Outpatient DNA rate, last 12 months (%)", dna["dna_rate"], None, "national ~6-8%")
        )
        return headline(rows)

    def distribution(self) -> Released:
        return self._figure(
            lambda node: m.weeks_waited_distribution(node.table("rtt_pathways"), self.as_of, by=()),
            title="Weeks waited (incomplete pathways)",
            by=("weeks_band",),
        )

    def long_waiters(self) -> Released:
        released = self._figure(
            lambda node: m.long_waiters_by_treatment_function(
                node.table("rtt_pathways"), self.as_of
            ),
            title="Long waiters by treatment function",
            by=("treatment_function_code",),
        )
        names = released.data["treatment_function_code"].map(codes.TREATMENT_FUNCTIONS)
        released.data.insert(1, "treatment_function", names)
        return released

    def flow(self) -> Released:
        start = month_ends(self.as_of, self.months)[0].replace(day=1)
        released = self._figure(
            lambda node: m.clock_starts_and_stops(node.table("rtt_pathways"), start, self.as_of),
            title="Clock starts and stops by month",
            by=("month",),
        )
        released.data["month"] = pd.to_datetime(released.data["month"]).dt.date
        return released

    def percentiles(self):
        released = self._figure(
            lambda node: m.wait_percentiles(node.table("rtt_pathways"), self.as_of),
            title="Median and 92nd percentile wait",
            statistics={"median_weeks": "pathways", "p92_weeks": "pathways"},
        )
        for col in ("median_weeks", "p92_weeks"):
            released.data[col] = released.data[col].round(1)
        return released

    def validation(self) -> Released:
        return self._figure(
            lambda node: m.validation_summary(node.table("rtt_pathways"), self.as_of),
            title="Validation cohort",
            percentages={"pct_validated": ("validated_last_12_weeks", "cohort")},
        )

    def dna(self, by: tuple[str, ...] = ()) -> Released:
        start = self.as_of - dt.timedelta(days=365)

        def make(node):
            appointments = node.table("outpatient_appointments")
            if by:
                patients = node.table("patients")
                people = patients.select("nhs_number", imd_quintile=(patients.imd_decile + 1) // 2)
                appointments = appointments.left_join(people, "nhs_number")
            return m.dna_rate(appointments, start, self.as_of, by=by)

        return self._figure(
            make,
            title="Outpatient DNA rate",
            by=by,
            percentages={"dna_rate": ("dna", "appointments_with_outcome")},
        )

    def equity(self) -> tuple[Released, Released]:
        pct = {
            "pct_over_52_weeks": ("over_52_weeks", "pathways"),
            "pct_within_18_weeks": ("within_18_weeks", "pathways"),
        }

        def by_imd(node):
            return m.equity_by_imd_quintile(
                node.table("rtt_pathways"), node.table("patients"), self.as_of
            )

        def by_ethnicity(node):
            return m.equity_by_ethnic_group(
                node.table("rtt_pathways"), node.table("patients"), self.as_of
            )

        return (
            self._figure(
                by_imd, title="Waits by IMD quintile", by=("imd_quintile",), percentages=pct
            ),
            self._figure(
                by_ethnicity, title="Waits by ethnic group", by=("ethnic_group",), percentages=pct
            ),
        )
