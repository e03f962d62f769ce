"""Care coordination and discharge figures for templates/care_coordination.ipynb.

One template serves three kinds of organisation; the organisation's type decides the view and
the purposes, so the template never names a purpose itself (``CareCoordinationFigures.open``):

============== ====================================== =========================================
view           purpose(s)                             where the figures come from
============== ====================================== =========================================
acute trust    care_coordination_planning             its own inpatient spells and G&A sitrep
ICB            care_coordination_planning             each trust (and the local authority) runs
                                                      the metric under DSA-DISCHARGE-ICB and
                                                      releases it; the ICB adds the released
                                                      figures up (``combined``)
local          care_coordination_planning (its care   its own care packages (aggregates), and
authority      packages) + direct_care (the list)     under DSA-DISCHARGE-DIRECT the trusts'
                                                      discharge-ready patients, record by record
============== ====================================== =========================================

Every figure is released through a workspace: aggregates with disclosure control, the
discharge list as an audited direct-care listing. Percentages, averages and shares are
computed from released (suppressed and rounded) figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import ibis
import pandas as pd

from fdp_kernel import codes
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.figures.base import Figures, Sections
from fdp_kernel.figures.common import headline, month_start, plain, ratio
from fdp_kernel.governance import policy
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.governance.released import Released, rate
from fdp_kernel.metrics import discharge as m

PLANNING = "care_coordination_planning"
DIRECT_CARE = "direct_care"
VIEWS = {"acute_trust": "trust", "icb": "icb", "local_authority": "local_authority"}
HOSPITAL_VIEWS = ("trust", "icb")
BED_DAYS_LOST = {
    "bed_days_lost": Magnitude("bed_days_contributors", "bed_days_top1", "bed_days_top2")
}
PERIODS = ("this week", "previous week")
DAILY_TITLE = "Daily NCTR patients, discharges and G&A beds"

# Short labels for charts (at most 12 characters; codes.NCTR_REASONS has the sitrep wording).
REASON_LABELS = {
    "MED": "Medical",
    "THR": "Therapy",
    "HUB": "Transfer hub",
    "DIA": "Diagnostics",
    "TTO": "Medicines",
    "TRN": "Transport",
    "P1H": "P1 home care",
    "P2B": "P2 rehab bed",
    "P3C": "P3 care home",
    "EQP": "Equipment",
    "DIS": "Disagrees",
    "HML": "Homeless",
    "SAF": "Safeguarding",
    "REP": "Repatriation",
    "INF": "Infection",
    "NOP": "No plan",
    m.NOT_RECORDED: "Not recorded",
}
PATHWAY_LABELS = {p: f"P{p}" for p in m.PATHWAYS}

# The template's sections: title, introduction, and the views that show them.
SECTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "flow": (
        "Patients not meeting the criteria to reside, discharges and G&A beds",
        "Each day's midnight count: patients in hospital past their discharge-ready date "
        "(NCTR), discharges, and general and acute bed occupancy against the 92% planning "
        "assumption.",
        HOSPITAL_VIEWS,
    ),
    "pathways": (
        "Discharges by pathway",
        "Share of discharges on each pathway over the report period against the "
        "discharge-to-assess planning model (P0 50%, P1 45%, P2 4%, P3 1%; configuration in "
        "`fdp_kernel.metrics.discharge.PATHWAY_MODEL`).",
        HOSPITAL_VIEWS,
    ),
    "reasons": (
        "Reasons for delay",
        "Patients not meeting the criteria to reside on at least one day of the report period, "
        "by their main reason for delay (largest first), and split by discharge pathway.",
        HOSPITAL_VIEWS,
    ),
    "length_of_stay": (
        "Length of stay: stranded and super-stranded patients",
        "Patients in hospital 7+ days (stranded), 14+ days and 21+ days (super-stranded) at each "
        "midnight, and today's inpatients by treatment function.",
        HOSPITAL_VIEWS,
    ),
    "delay": (
        "Bed days lost to delay and discharge on the ready date",
        "Bed days lost: midnights spent in hospital after the discharge-ready date (a sum over "
        "patients, released under the magnitude rules). And how many discharges happened on "
        "the discharge-ready date.",
        HOSPITAL_VIEWS,
    ),
    "social_care": (
        "Social care: care packages after discharge",
        "The local authority's care packages: referrals and starts by month, and packages "
        "awaited today by referring trust and pathway.",
        ("icb", "local_authority"),
    ),
    "discharge_list": (
        "Discharge list: patients ready to leave hospital awaiting support",
        "Patients the trusts have recorded as discharge-ready on pathways 1-3 who have not yet "
        "left hospital, shared with the local authority for their direct care under "
        "DSA-DISCHARGE-DIRECT (only the agreed columns). Record-level: every release is audited "
        "at the local authority and at each trust.",
        ("local_authority",),
    ),
}


def _whole(data: pd.DataFrame, column: str) -> None:
    """Show a released magnitude of whole numbers (bed days) without decimals."""
    values = data[column].astype("Float64")
    if (values.dropna() % 1 == 0).all():
        data[column] = values.round().astype("Int64")


class CareCoordinationFigures(Sections, Figures):
    """The figures of one care coordination report, for a trust, an ICB or a local authority.

    ``ws`` is a ``care_coordination_planning`` workspace; ``direct`` (local authority only) a
    ``direct_care`` workspace for the discharge list. Use :meth:`open` in a template.
    """

    SECTIONS = SECTIONS
    VIEWS = VIEWS
    REPORT = "care coordination"
    PURPOSE = PLANNING
    SECOND, SECOND_FOR = DIRECT_CARE, ("local_authority",)

    def __init__(self, ws, as_of: dt.date, weeks: int = 12, direct=None) -> None:
        if weeks < 2:
            raise UsageError(f"weeks must be at least 2 (this week and the previous), got {weeks}")
        super().__init__(ws, as_of, direct)
        self.weeks = weeks
        self.start = as_of - dt.timedelta(days=7 * weeks - 1)
        self.periods = {
            PERIODS[0]: (as_of - dt.timedelta(days=6), as_of),
            PERIODS[1]: (as_of - dt.timedelta(days=13), as_of - dt.timedelta(days=7)),
        }
        fed = ws.federation
        providers = (
            policy.providers(ws.federation, ws.purpose.id, ws.org) if self.view == "icb" else []
        )
        self.trusts = [o for o in providers if fed.org(o).org_type == "acute_trust"]
        self.councils = [o for o in providers if fed.org(o).org_type == "local_authority"]
        self.nodes = self.trusts

    @classmethod
    def open(cls, org: str, as_of: dt.date, weeks: int = 12) -> CareCoordinationFigures:
        """Connect with the purposes the organisation's view needs and return its figures.

        Every view uses ``care_coordination_planning``; a local authority also connects for
        ``direct_care`` (the discharge list). Someone at a local authority without the
        direct-care role still gets the care package figures; the list then says why it is
        not shown.
        """
        ws, direct = cls._connect(org)
        return cls(ws, as_of, weeks, direct)

    @property
    def direct(self):
        """The ``direct_care`` workspace (local authority), or the refusal saying why not."""
        return self.second

    @property
    def by_trust(self) -> dict:
        """ICB: each organisation's released figures (a ``FederatedResult``) by title."""
        return self.by_node

    # -- layout helpers ---------------------------------------------------------------------
    def describe(self) -> str:
        """One paragraph saying whose figures these are and how they were obtained."""
        fed = self.ws.federation
        name = fed.org(self.ws.org).name
        if self.view == "trust":
            how = f"from its own inpatient spells and daily G&A bed sitrep ({PLANNING})"
        elif self.view == "icb":
            how = (
                f"across {', '.join(self.trusts)} and local authority "
                f"{', '.join(self.councils) or 'none'}: each organisation ran the analysis on its "
                "own data under DSA-DISCHARGE-ICB and released only disclosure-controlled "
                "figures, which are added up here"
            )
        else:
            how = (
                f"from its own care packages ({PLANNING}) and, for direct care, the discharge-"
                "ready patients the trusts share under DSA-DISCHARGE-DIRECT"
            )
        return f"**{name} ({self.ws.org})**, {self.weeks} weeks to {self.as_of:%d %B %Y}, {how}."

    def _hospital_only(self) -> None:
        if self.view not in HOSPITAL_VIEWS:
            raise UsageError("hospital flow figures are for a trust or an ICB")

    # -- hospital flow ----------------------------------------------------------------------
    def daily(self) -> Released:
        """The daily sitrep over the report period, with NCTR % of occupied beds and
        occupancy % (from released counts)."""
        self._hospital_only()

        def make(node):
            spells = node.table("inpatient_spells")
            return m.daily_flow(spells, node.table("bed_occupancy"), self.start, self.as_of)

        def run():
            released = self._figure(
                make,
                title=DAILY_TITLE,
                by=("date",),
                percentages={
                    "pct_nctr_of_occupied": ("nctr_patients", "ga_beds_occupied"),
                    "pct_occupancy": ("ga_beds_occupied", "ga_beds_available"),
                },
            )
            released.data["date"] = pd.to_datetime(released.data["date"]).dt.date
            return released

        return self._cached("daily", run)

    def breakdown(self) -> Released:
        """The summary broken down: a trust's inpatients today by treatment function, an ICB's
        week by trust, a local authority's awaited care packages by referring trust."""
        if self.view == "trust":
            return self.length_of_stay_by_specialty()
        if self.view == "local_authority":
            return self.care_packages_awaited()
        return self.trust_comparison()

    def trust_comparison(self) -> Released:
        """ICB: this week at each trust, from the daily figures each trust released (a
        figure is * where any of its days is suppressed)."""
        self.daily()
        result = self.by_trust[DAILY_TITLE]
        lo, hi = self.periods[PERIODS[0]]
        dates = pd.to_datetime(result.data["date"]).dt.date

        def week(part: pd.DataFrame) -> dict:
            def total(column: str):
                values = part[column]
                return None if values.isna().any() else int(values.sum())

            nctr, occupied = total("nctr_patients"), total("ga_beds_occupied")
            today = part[dates[part.index] == hi]
            return {
                "nctr_per_day": None if nctr is None else round(nctr / len(part), 1),
                "pct_nctr_of_occupied": ratio(nctr, occupied),
                "pct_occupancy": ratio(occupied, total("ga_beds_available")),
                "discharges": total("discharges"),
                "in_hospital_21_plus_today": plain(today["los_21_plus"].iloc[0])
                if len(today)
                else None,
            }

        return result.per_node(
            week,
            rows=(dates >= lo) & (dates <= hi),
            title=f"This week by trust ({lo:%d %b} to {hi:%d %b %Y})",
            note="From each trust's daily released figures; averages and percentages computed "
            "from them; * where a trust suppressed a day's figure.",
            noun="trust",
        )

    def occupancy_by_trust(self) -> pd.DataFrame:
        """ICB: each trust's daily G&A occupancy % from its own released figures."""
        self.daily()
        result = self.by_trust.get(DAILY_TITLE)
        if result is None:
            return pd.DataFrame(columns=["org", "date", "pct_occupancy"])
        data = result.data.copy()
        data["date"] = pd.to_datetime(data["date"]).dt.date
        data["pct_occupancy"] = rate(data["ga_beds_occupied"], data["ga_beds_available"])
        return data[["org", "date", "pct_occupancy"]]

    def pathways(self) -> Released:
        """Discharges by pathway over the report period, with share and the planning model."""
        self._hospital_only()
        released = self._figure(
            lambda node: m.discharges_by_pathway(
                node.table("inpatient_spells"), self.start, self.as_of
            ),
            title="Discharges by pathway",
            by=("discharge_pathway",),
            percentages={"pct_of_discharges": ("discharges", "all_discharges")},
        )
        data = released.data
        data.insert(1, "pathway", data["discharge_pathway"].map(codes.DISCHARGE_PATHWAY))
        data["model_pct"] = data["discharge_pathway"].map(
            {p: round(s * 100, 1) for p, s in m.PATHWAY_MODEL.items()}
        )
        return released

    def reasons(self, by_pathway: bool = False) -> Released:
        """Delayed patients by reason over the report period (for the Pareto chart), or by
        reason and pathway. Release the overall table first: the split's cells that differ
        from it by 1-7 patients are then suppressed (differencing)."""
        self._hospital_only()
        by = ("discharge_pathway",) if by_pathway else ()
        released = self._figure(
            lambda node: m.delay_reasons(
                node.table("inpatient_spells"), self.start, self.as_of, by=by
            ),
            title="Delayed patients by reason" + (" and pathway" if by_pathway else ""),
            by=("nctr_reason", *by),
        )
        data = released.data
        data.insert(1, "reason", data["nctr_reason"].map(REASON_LABELS))
        if by_pathway:
            data.insert(3, "pathway", data["discharge_pathway"].map(PATHWAY_LABELS))
        return released

    def length_of_stay_by_specialty(self) -> Released:
        """Inpatients at ``as_of`` by treatment function, with 7+/14+/21+ day cohorts."""
        self._hospital_only()
        return self._cached("los", self._length_of_stay_by_specialty)

    def _length_of_stay_by_specialty(self) -> Released:
        key = "treatment_function_code"
        released = self._figure(
            lambda node: m.length_of_stay(node.table("inpatient_spells"), self.as_of, by=(key,)),
            title="Inpatients by length of stay and treatment function",
            by=(key,),
        )
        names = released.data[key].map(codes.TREATMENT_FUNCTIONS)
        released.data.insert(1, "treatment_function", names)
        return released

    def bed_days_lost(self) -> Released:
        """Bed days lost to delay over the report period, by pathway (magnitudes)."""
        self._hospital_only()
        key = "discharge_pathway"
        released = self._figure(
            lambda node: m.bed_days_lost(
                node.table("inpatient_spells"), self.start, self.as_of, by=(key,)
            ),
            title="Bed days lost to delay by pathway",
            by=(key,),
            magnitudes=BED_DAYS_LOST,
        )
        released.data.insert(1, "pathway", released.data[key].map(PATHWAY_LABELS))
        _whole(released.data, "bed_days_lost")
        return released

    def ready_date_performance(self):
        """Discharges on the discharge-ready date and mean days from ready to discharge over
        the report period (ICB: per trust, as the means do not add up)."""
        self._hospital_only()
        released = self._figure(
            lambda node: m.ready_date_performance(
                node.table("inpatient_spells"), self.start, self.as_of
            ),
            title="Discharge on the discharge-ready date",
            percentages={
                "pct_on_ready_date": ("discharged_on_ready_date", "discharges_with_ready_date")
            },
            statistics={"mean_days_ready_to_discharge": "discharges_with_ready_date"},
        )
        column = "mean_days_ready_to_discharge"
        released.data[column] = released.data[column].astype("Float64").round(1)
        return released

    # -- the one-screen summary -------------------------------------------------------------
    def _weekly(self) -> dict[str, pd.DataFrame]:
        """This week's and the previous week's released figures behind the headline."""

        def spells(node):
            return node.table("inpatient_spells")

        lost = self._figure(
            lambda node: self._periods(lambda lo, hi: m.bed_days_lost(spells(node), lo, hi)),
            title="Bed days lost to delay, weekly",
            by=("period",),
            magnitudes=BED_DAYS_LOST,
        )
        ready = self._figure(
            lambda node: self._periods(
                lambda lo, hi: m.ready_date_performance(spells(node), lo, hi).drop(
                    "mean_days_ready_to_discharge"
                )
            ),
            title="Discharge on the ready date, weekly",
            by=("period",),
        )
        pathway = self._figure(
            lambda node: self._periods(
                lambda lo, hi: m.discharges_by_pathway(spells(node), lo, hi)
            ),
            title="Discharges by pathway, weekly",
            by=("period", "discharge_pathway"),
        )
        return {"lost": lost.data, "ready": ready.data, "pathway": pathway.data}

    def summary(self) -> pd.DataFrame:
        """The headline: this week against the previous week and the standards."""
        if self.view == "local_authority":
            return self._council_summary()
        daily = self.daily().data.set_index("date")
        weekly = self._weekly()
        rows = []
        weeks = {
            name: daily.loc[[d for d in daily.index if lo <= d <= hi]]
            for name, (lo, hi) in self.periods.items()
        }

        def over(column: str, how: str) -> list:
            out = []
            for name in PERIODS:
                values = weeks[name][column]
                if values.isna().any() or values.empty:
                    out.append(None)
                elif how == "mean":
                    out.append(round(float(values.mean()), 1))
                else:
                    out.append(int(values.sum()))
            return out

        nctr = over("nctr_patients", "sum")
        occupied = over("ga_beds_occupied", "sum")
        available = over("ga_beds_available", "sum")
        rows.append(("NCTR patients per day (7-day average)", *over("nctr_patients", "mean"), ""))
        rows.append(
            (
                "NCTR as % of occupied G&A beds",
                *(ratio(n, o) for n, o in zip(nctr, occupied, strict=True)),
                "",
            )
        )
        rows.append(
            (
                "G&A bed occupancy (%)",
                *(ratio(o, a) for o, a in zip(occupied, available, strict=True)),
                f"<= {m.TARGETS['ga_bed_occupancy_max']:.0%} (planning assumption)",
            )
        )
        week_ago = self.as_of - dt.timedelta(days=7)
        for n in m.LOS_THRESHOLDS:
            col = f"los_{n}_plus"
            now = daily[col].get(self.as_of)
            before = daily[col].get(week_ago)
            label = {7: " (stranded)", 21: " (super-stranded)"}.get(n, "")
            standard = (
                f"{m.TARGETS['super_stranded_reduction']:.0%} reduction (2018/19 ambition)"
                if n == 21
                else ""
            )
            rows.append((f"In hospital {n}+ days{label}", plain(now), plain(before), standard))
        _whole(weekly["lost"], "bed_days_lost")
        lost = weekly["lost"].set_index("period")["bed_days_lost"]
        rows.append(("Bed days lost to delay (7 days)", *(plain(lost.get(p)) for p in PERIODS), ""))
        ready = weekly["ready"].set_index("period")
        rows.append(
            (
                "% discharged on their discharge-ready date (7 days)",
                *(
                    ratio(
                        ready["discharged_on_ready_date"].get(p),
                        ready["discharges_with_ready_date"].get(p),
                    )
                    for p in PERIODS
                ),
                "",
            )
        )
        pathway = weekly["pathway"]
        p0 = pathway[pathway["discharge_pathway"] == 0].set_index("period")
        rows.append(
            ("Discharges (7 days)", *(plain(p0["all_discharges"].get(p)) for p in PERIODS), "")
        )
        rows.append(
            (
                "% of discharges on pathway 0",
                *(ratio(p0["discharges"].get(p), p0["all_discharges"].get(p)) for p in PERIODS),
                f"{m.PATHWAY_MODEL[0]:.0%} (discharge-to-assess model)",
            )
        )
        return headline(rows)

    # -- social care ------------------------------------------------------------------------
    def _council_figure(self, make: Callable, **kwargs):
        if self.view == "trust":
            raise UsageError("care packages are held by the local authority")
        return self._figure(make, orgs=self.councils, **kwargs)

    def care_package_months(self, months: int = 12) -> Released:
        """Care package referrals and starts in each of the last ``months`` calendar months
        (the first whole month to ``as_of``)."""
        first = month_start(self.as_of, months - 1)
        released = self._council_figure(
            lambda node: m.care_package_months(node.table("care_packages"), first, self.as_of),
            title="Care package referrals and starts by month",
            by=("month",),
        )
        released.data["month"] = pd.to_datetime(released.data["month"]).dt.date
        return released

    def care_packages_awaited(self) -> Released:
        """Care packages awaited at ``as_of`` by referring trust and pathway."""
        return self._cached("awaited", self._care_packages_awaited)

    def _care_packages_awaited(self) -> Released:
        by = ("referring_org_code", "discharge_pathway")
        released = self._council_figure(
            lambda node: m.care_packages_awaited(node.table("care_packages"), self.as_of, by=by),
            title="Care packages awaited by referring trust and pathway",
            by=by,
        )
        released.data.insert(2, "pathway", released.data["discharge_pathway"].map(PATHWAY_LABELS))
        return released

    def _council_summary(self) -> pd.DataFrame:
        def packages(node):
            return node.table("care_packages")

        activity = self._council_figure(
            lambda node: self._periods(
                lambda lo, hi: m.care_package_activity(packages(node), lo, hi)
            ),
            title="Care package referrals and starts, weekly",
            statistics={"mean_days_referral_to_start": "starts"},
        ).data.set_index("period")
        days = {PERIODS[0]: self.as_of, PERIODS[1]: self.as_of - dt.timedelta(days=7)}
        awaited = self._council_figure(
            lambda node: ibis.union(
                *(
                    m.care_packages_awaited(packages(node), day).mutate(period=ibis.literal(name))
                    for name, day in days.items()
                )
            ),
            title="Care packages awaited",
            by=("period",),
        ).data.set_index("period")
        listing = self.discharge_list()
        listed = len(listing.data) if isinstance(listing, Released) else None
        table = headline(
            [
                (
                    "Discharge-ready patients awaiting pathway 1-3 (trusts' lists, today)",
                    listed,
                    None,
                    "",
                ),
                ("Care package referrals (7 days)", *self._two(activity, "referrals"), ""),
                ("Care packages started (7 days)", *self._two(activity, "starts"), ""),
                ("Care packages awaited (end of week)", *self._two(awaited, "awaiting"), ""),
                (
                    "Awaited 7+ days since referral",
                    *self._two(awaited, "awaiting_7_plus_days"),
                    "",
                ),
                (
                    "Mean days from referral to start (7 days)",
                    *(
                        None if v is None else round(v, 1)
                        for v in self._two(activity, "mean_days_referral_to_start")
                    ),
                    "",
                ),
            ]
        )
        # The list is today's only: there is no previous figure (headline shows None as *).
        table.loc[0, ["previous", "change"]] = "n/a"
        if listed is None:
            table.loc[0, "now"] = "n/a"
        return table

    @staticmethod
    def _two(frame: pd.DataFrame, column: str) -> list:
        return [plain(frame[column].get(p)) if p in frame.index else None for p in PERIODS]

    # -- direct care: the discharge list -----------------------------------------------------
    def discharge_list(self):
        """Patients discharge-ready at ``as_of`` awaiting pathway 1-3 support, from every
        trust sharing with this local authority under a direct-care agreement (a record-level
        ``Released`` listing), or a sentence saying why it cannot be shown."""
        return self._cached("list", self._discharge_list)

    def _discharge_list(self):
        if self.view != "local_authority":
            raise UsageError("the discharge list is for the local authority's direct care")
        direct = self.direct
        if direct is None or isinstance(direct, GovernanceError):
            return f"The discharge list needs the {DIRECT_CARE} role at {self.ws.org}: {direct}"
        return discharge_list(direct, self.as_of)


def discharge_list(direct, day: dt.date) -> Released:
    """The discharge list for a local authority's ``direct_care`` workspace ``direct``.

    For each trust that shares discharge-ready patients with it under a direct-care agreement
    in force, reads that trust's ``inpatient_spells`` and ``patients`` (``source=trust``, only
    the columns the list needs, all within the agreement) and the local authority's own
    ``care_packages``, and releases :func:`fdp_kernel.metrics.discharge.discharge_list` as one
    audited record-level listing. Refused (``GovernanceError``) under any other purpose or
    without an agreement.
    """
    try:
        policy.may_list_records(direct.purpose, "discharge list")
    except GovernanceError as exc:
        raise direct.refuse("discharge list", exc) from None
    fed = direct.federation
    trusts = policy.providers(fed, direct.purpose.id, direct.org, org_type="acute_trust")
    if not trusts:
        exc = GovernanceError(
            f"no direct-care agreement shares discharge-ready patients with {direct.org}",
            rule="agreement:none",
        )
        raise direct.refuse("discharge list", exc)
    spell_columns = [
        "org_code",
        "spell_id",
        "nhs_number",
        "admission_date",
        "discharge_ready_date",
        "discharge_pathway",
        "nctr_reason",
    ]
    patient_columns = ["nhs_number", "given_name", "family_name", "date_of_birth", "sex"]
    packages = direct.table(
        "care_packages", columns=["nhs_number", "referring_org_code", "start_date"]
    )
    parts = [
        m.discharge_list(
            direct.table("inpatient_spells", source=trust, columns=spell_columns),
            direct.table("patients", source=trust, columns=patient_columns),
            day,
            packages=packages,
        )
        for trust in trusts
    ]
    listing = ibis.union(*parts) if len(parts) > 1 else parts[0]
    listing = listing.order_by(
        [ibis.desc(listing.days_since_ready), listing.org_code, listing.spell_id]
    )
    released = direct.release(listing, title="Discharge-ready patients awaiting pathway 1-3")
    for column in ("date_of_birth", "admission_date", "discharge_ready_date"):
        released.data[column] = pd.to_datetime(released.data[column]).dt.date
    return released


# -- frames for charts (from released figures) -----------------------------------------------


def flow_frame(daily: Released) -> pd.DataFrame:
    """Long frame of NCTR patients and discharges per day, for a line chart."""
    long = daily.data.melt(
        id_vars="date",
        value_vars=["nctr_patients", "discharges"],
        var_name="measure",
        value_name="patients",
    )
    names = {"nctr_patients": "NCTR patients (midnight)", "discharges": "Discharges"}
    long["measure"] = long["measure"].map(names)
    return long


def length_of_stay_frame(daily: Released) -> pd.DataFrame:
    """Long frame of the 7+/14+/21+ day cohorts per day, for a line chart."""
    columns = {f"los_{n}_plus": f"{n}+ days" for n in m.LOS_THRESHOLDS}
    long = daily.data.melt(
        id_vars="date", value_vars=list(columns), var_name="cohort", value_name="patients"
    )
    long["cohort"] = long["cohort"].map(columns)
    return long


def share_frame(data: pd.DataFrame, column: str) -> pd.DataFrame:
    """``data`` with ``share`` = ``column`` / 100 (a 0-1 fraction for a % axis)."""
    return data.assign(share=data[column].astype("Float64") / 100)


def pathway_shares(pathways: Released) -> pd.DataFrame:
    """Long frame: each pathway's share of discharges and its planning-model share."""
    data = pathways.data
    label = data["discharge_pathway"].map(PATHWAY_LABELS)
    actual = pd.DataFrame(
        {
            "pathway": label,
            "series": "Discharges",
            "share": data["pct_of_discharges"].astype("Float64") / 100,
        }
    )
    model = pd.DataFrame(
        {
            "pathway": label,
            "series": "Planning model",
            "share": data["model_pct"].astype("Float64") / 100,
        }
    )
    return pd.concat([actual, model], ignore_index=True)


def care_package_frame(months: Released) -> pd.DataFrame:
    """Long frame of care package referrals and starts per month."""
    long = months.data.melt(
        id_vars="month", value_vars=["referrals", "starts"], var_name="measure", value_name="n"
    )
    long["measure"] = long["measure"].map({"referrals": "Referrals", "starts": "Starts"})
    return long
