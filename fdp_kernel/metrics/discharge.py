"""Care coordination and discharge metrics as backend-agnostic Ibis expressions.

Every function takes Ibis tables shaped like the catalogue datasets ``inpatient_spells``,
``bed_occupancy``, ``care_packages`` and ``patients`` (a subset of columns is enough: each
function uses only the columns it needs) and returns an unexecuted Ibis expression, so the same
code compiles for DuckDB, PostgreSQL and PySpark and runs on each federation node.

Results are aggregate tables of integer counts (patients, spells, bed days), ready for
disclosure control, with the helper columns a magnitude (a sum over people) needs. Rates are
returned as numerator and denominator columns: compute percentages from the released
(suppressed and rounded) figures, never inside this module. The one record-level result,
:func:`discharge_list`, is for direct care only.

Rules (DOMAIN.md section 4; discharge sitrep, UEC sitrep, DHSC discharge guidance 2024):

* **In hospital on day D** means at the midnight count of D, as the G&A sitrep counts beds:
  ``admission_date <= D`` and (``discharge_date`` null or ``> D``). A day case (admitted and
  discharged the same day) is never in hospital at midnight.
* **NCTR on day D** (does not meet the criteria to reside): in hospital on D and
  ``discharge_ready_date <= D``. A patient discharged on their discharge-ready date is never
  NCTR at a midnight; one discharged k days after it was NCTR on k midnights.
* **Bed days lost to delay** in [start, end]: the NCTR midnights in the range, i.e. the sum over
  the days D of the NCTR patients on D. Per spell it is
  ``least(discharge_date or end + 1, end + 1) - greatest(discharge_ready_date, admission_date,
  start)`` days when positive.
* **Length of stay** on day D = ``D - admission_date`` in days (midnights so far). Stranded:
  7 or more; 14 or more; super-stranded: 21 or more.
* **Discharges** in [start, end]: ``discharge_date`` in the range and not ``died_in_hospital``.
  By pathway, only discharges with a recorded pathway 0-3 count (numerator and denominator).
* **Discharged on the discharge-ready date**: ``discharge_date <= discharge_ready_date`` among
  discharges with a ready date.
* **Care package awaited on day D**: ``referral_date <= D`` and (``start_date`` null or
  ``> D``).

Date thresholds are computed in Python and passed as date literals; the only date arithmetic
in SQL is ``DateValue.delta(..., unit="day")``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from fdp_kernel import codes
from fdp_kernel.errors import UsageError
from fdp_kernel.metrics.dates import check_date, date_literal, date_range

# Policy targets are configuration, not rules: they change every planning round (DOMAIN.md).
TARGETS: dict[str, float] = {
    "ga_bed_occupancy_max": 0.92,  # NHS operational planning assumption: G&A occupancy <= 92%
    "super_stranded_reduction": 0.25,  # 2018/19 ambition: cut 21+ day patients by 25%
}
# DHSC discharge-to-assess planning model: share of discharges per pathway 0-3.
PATHWAY_MODEL: dict[int, float] = dict(codes.DISCHARGE_PATHWAY_MODEL)
PATHWAYS: tuple[int, ...] = (0, 1, 2, 3)
SUPPORTED_PATHWAYS: tuple[int, ...] = (1, 2, 3)  # need health or social care support
LOS_THRESHOLDS: tuple[int, ...] = (7, 14, 21)  # stranded, 14+, super-stranded
NOT_RECORDED = "NR"  # nctr_reason of a delayed patient whose reason is not recorded

# The record-level discharge list shows these columns and nothing else (direct care only).
DISCHARGE_LIST_COLUMNS: tuple[str, ...] = (
    "org_code",
    "nhs_number",
    "family_name",
    "given_name",
    "date_of_birth",
    "discharge_pathway",
    "nctr_reason",
    "discharge_ready_date",
    "days_since_ready",
    "admission_date",
    "sex",
    "spell_id",
)


def _group(t: ir.Table, by: Sequence[str], metrics: dict) -> ir.Table:
    if not by:
        return t.aggregate(**metrics)
    return t.group_by(list(by)).aggregate(**metrics).order_by(list(by))


def _days(start: dt.date, end: dt.date) -> ir.Table:
    """A small literal table: one row per date in [start, end]."""
    days = [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]
    return ibis.memtable({"date": days}, schema={"date": "date"})


def _leaves(spells: ir.Table, after: dt.date) -> ir.DateValue:
    """The day the spell stops occupying a bed: discharge_date, or ``after`` if still in."""
    return ibis.coalesce(spells.discharge_date, date_literal(after))


def in_hospital(spells: ir.Table, day: dt.date) -> ir.Table:
    """Spells in hospital at the midnight count of ``day``, with ``los_days`` and ``nctr``.

    In hospital: ``admission_date <= day`` and (``discharge_date`` null or ``> day``).
    ``los_days`` = ``day - admission_date`` (int64); ``nctr`` = ``discharge_ready_date <= day``
    (False when there is no ready date). Keeps all columns. Record-level: keep it on the node.
    """
    d = date_literal(check_date(day, "day"))
    after = day + dt.timedelta(days=1)
    t = spells.filter(spells.admission_date <= d, _leaves(spells, after) > d)
    return t.mutate(
        los_days=d.delta(t.admission_date, unit="day").cast("int64"),
        nctr=ibis.coalesce(t.discharge_ready_date <= d, False),
    )


def _los_counts(t: ir.Table, los: ir.IntegerValue) -> dict[str, ir.IntegerScalar]:
    return {f"los_{n}_plus": t.count(where=los >= n) for n in LOS_THRESHOLDS}


def daily_flow(spells: ir.Table, beds: ir.Table, start: dt.date, end: dt.date) -> ir.Table:
    """One row per day in [``start``, ``end``]: the daily discharge sitrep and G&A beds.

    Columns (int64, zeros on days without activity):

    * ``date``;
    * ``inpatients``: spells in hospital at midnight; ``nctr_patients``: of them, NCTR;
    * ``los_7_plus``, ``los_14_plus``, ``los_21_plus``: of them, length of stay 7+/14+/21+;
    * ``discharges``: alive discharges with ``discharge_date`` on the day;
    * ``ga_beds_occupied``, ``ga_beds_available``: sums of ``bed_occupancy`` on the day
      (0 on a day with no sitrep row).

    NCTR as % of occupied G&A beds = nctr_patients / ga_beds_occupied; G&A bed occupancy =
    ga_beds_occupied / ga_beds_available (compute both from released figures).
    """
    lo, hi = date_range(start, end)
    after = hi + dt.timedelta(days=1)
    leaves = _leaves(spells, after)
    live = spells.filter(spells.admission_date <= date_literal(hi), leaves > date_literal(lo))
    live = live.mutate(_leaves=_leaves(live, after))
    spine = _days(lo, hi)
    # Range join: one row per spell and midnight it spent in hospital within the range.
    nights = spine.inner_join(
        live, [live.admission_date <= spine.date, live._leaves > spine.date]
    ).select("date", "admission_date", "discharge_ready_date")
    los = nights.date.delta(nights.admission_date, unit="day")
    nctr = ibis.coalesce(nights.discharge_ready_date <= nights.date, False)
    occupied = nights.group_by("date").aggregate(
        inpatients=nights.count(),
        nctr_patients=nights.count(where=nctr),
        **_los_counts(nights, los),
    )
    gone = spells.filter(
        spells.discharge_date.between(date_literal(lo), date_literal(hi)), ~spells.died_in_hospital
    )
    discharged = gone.group_by(date=gone.discharge_date).aggregate(discharges=gone.count())
    sitrep = beds.filter(beds.date.between(date_literal(lo), date_literal(hi)))
    sitrep = sitrep.group_by("date").aggregate(
        ga_beds_occupied=sitrep.ga_beds_occupied.sum(),
        ga_beds_available=sitrep.ga_beds_available.sum(),
    )
    joined = spine.left_join(occupied, "date").left_join(discharged, "date")
    joined = joined.left_join(sitrep, "date")
    names = (
        "inpatients",
        "nctr_patients",
        *(f"los_{n}_plus" for n in LOS_THRESHOLDS),
        "discharges",
        "ga_beds_occupied",
        "ga_beds_available",
    )
    return joined.select(
        "date", **{n: ibis.coalesce(joined[n], 0).cast("int64") for n in names}
    ).order_by("date")


def length_of_stay(spells: ir.Table, day: dt.date, by: Sequence[str] = ()) -> ir.Table:
    """Current inpatients at the midnight of ``day`` and their length-of-stay cohorts.

    Columns: ``*by`` (e.g. ``treatment_function_code``), ``inpatients``, ``nctr_patients``,
    ``los_7_plus`` (stranded), ``los_14_plus``, ``los_21_plus`` (super-stranded). With no
    ``by``, an empty input gives one row of zeros.
    """
    t = in_hospital(spells, day)
    metrics = {
        "inpatients": t.count(),
        "nctr_patients": t.count(where=t.nctr),
        **_los_counts(t, t.los_days),
    }
    return _group(t, by, metrics)


def _discharged(spells: ir.Table, lo: dt.date, hi: dt.date) -> ir.Table:
    chosen = spells.filter(spells.discharge_date.between(date_literal(lo), date_literal(hi)))
    return chosen.filter(~chosen.died_in_hospital)


def discharges_by_pathway(spells: ir.Table, start: dt.date, end: dt.date) -> ir.Table:
    """Alive discharges in [``start``, ``end``] per discharge pathway 0-3.

    Four rows, one per pathway (zeros included): ``discharge_pathway`` (int8),
    ``discharges`` and ``all_discharges`` (discharges with any pathway 0-3: the denominator of
    the share, the same on every row). Compare the shares with ``PATHWAY_MODEL``.
    """
    lo, hi = date_range(start, end)
    t = _discharged(spells, lo, hi)
    t = t.filter(t.discharge_pathway.isin(PATHWAYS))
    counts = t.group_by("discharge_pathway").aggregate(discharges=t.count())
    total = t.aggregate(all_discharges=t.count())
    spine = ibis.memtable(
        {"discharge_pathway": list(PATHWAYS)}, schema={"discharge_pathway": "int8"}
    )
    joined = spine.left_join(counts, "discharge_pathway").cross_join(total)
    return joined.select(
        "discharge_pathway",
        discharges=ibis.coalesce(joined.discharges, 0).cast("int64"),
        all_discharges=joined.all_discharges.cast("int64"),
    ).order_by("discharge_pathway")


def _delayed_in(spells: ir.Table, lo: dt.date, hi: dt.date) -> ir.Table:
    """Spells NCTR on at least one midnight in [lo, hi], with ``lost_days`` in the range."""
    after = hi + dt.timedelta(days=1)
    t = spells.filter(spells.discharge_ready_date.notnull())
    first = ibis.greatest(t.discharge_ready_date, t.admission_date, date_literal(lo))
    last = ibis.least(_leaves(t, after), date_literal(after))  # exclusive
    t = t.mutate(lost_days=last.delta(first, unit="day").cast("int64"))
    return t.filter(t.lost_days > 0)


def delay_reasons(
    spells: ir.Table, start: dt.date, end: dt.date, by: Sequence[str] = ("discharge_pathway",)
) -> ir.Table:
    """Patients delayed (NCTR on at least one midnight in [``start``, ``end``]) per reason.

    Columns: ``nctr_reason`` (``codes.NCTR_REASONS``; ``"NR"`` where a delayed spell has none
    recorded), ``*by`` and ``delayed_patients`` (spells). Sorted by reason then ``by``.
    """
    lo, hi = date_range(start, end)
    t = _delayed_in(spells, lo, hi)
    t = t.mutate(nctr_reason=ibis.coalesce(t.nctr_reason, NOT_RECORDED))
    keys = ["nctr_reason", *by]
    return t.group_by(keys).aggregate(delayed_patients=t.count()).order_by(keys)


def bed_days_lost(
    spells: ir.Table, start: dt.date, end: dt.date, by: Sequence[str] = ()
) -> ir.Table:
    """Bed days lost to delay in [``start``, ``end``]: NCTR midnights, a sum over people.

    Columns: ``*by``, ``bed_days_lost`` (int64, a magnitude), ``delayed_patients`` (people with
    at least one NCTR midnight; a count) and the magnitude helpers ``bed_days_contributors``
    (the same people), ``bed_days_top1`` and ``bed_days_top2`` (the two largest per-person
    totals; 0 where there is none). Release ``bed_days_lost`` as
    ``Magnitude("bed_days_contributors", "bed_days_top1", "bed_days_top2")``. A person with
    several spells is one contributor (``nhs_number``, pseudonymised or not). With no ``by``,
    an empty input gives one row of zeros.
    """
    lo, hi = date_range(start, end)
    t = _delayed_in(spells, lo, hi)
    person = t.group_by(["nhs_number", *by]).aggregate(lost_days=t.lost_days.sum())
    rank = ibis.row_number().over(group_by=list(by), order_by=ibis.desc(person.lost_days))
    person = person.mutate(_rank=rank)
    lost = person.lost_days
    metrics = {
        "bed_days_lost": ibis.coalesce(lost.sum(), 0).cast("int64"),
        "delayed_patients": person.count(),
        "bed_days_contributors": person.count(),
        "bed_days_top1": ibis.coalesce(lost.max(), 0).cast("int64"),
        "bed_days_top2": ibis.coalesce(lost.max(where=person._rank == 1), 0).cast("int64"),
    }
    return _group(person, by, metrics)


def ready_date_performance(
    spells: ir.Table, start: dt.date, end: dt.date, by: Sequence[str] = ()
) -> ir.Table:
    """Alive discharges in [``start``, ``end``] that had a discharge-ready date.

    Columns: ``*by``, ``discharges_with_ready_date``, ``discharged_on_ready_date``
    (``discharge_date <= discharge_ready_date``) and ``mean_days_ready_to_discharge``
    (float64, mean of ``discharge_date - discharge_ready_date`` floored at 0; null when there
    are none: suppress it when its base is 1-7). % on the ready date = on / with.
    """
    lo, hi = date_range(start, end)
    t = _discharged(spells, lo, hi)
    t = t.filter(t.discharge_ready_date.notnull())
    wait = ibis.greatest(t.discharge_date.delta(t.discharge_ready_date, unit="day"), 0)
    metrics = {
        "discharges_with_ready_date": t.count(),
        "discharged_on_ready_date": t.count(where=t.discharge_date <= t.discharge_ready_date),
        "mean_days_ready_to_discharge": wait.cast("float64").mean().cast("float64"),
    }
    return _group(t, by, metrics)


def bed_days(beds: ir.Table, start: dt.date, end: dt.date) -> ir.Table:
    """G&A bed days per calendar month in [``start``, ``end``] (the activity denominator).

    Columns: ``month`` (first day, date), ``occupied_bed_days`` and ``available_bed_days``
    (int64 sums of the daily midnight counts); only months with a sitrep row appear.
    """
    lo, hi = date_range(start, end)
    t = beds.filter(beds.date.between(date_literal(lo), date_literal(hi)))
    t = t.mutate(month=ibis.date(t.date.year(), t.date.month(), 1))
    return (
        t.group_by("month")
        .aggregate(
            occupied_bed_days=t.ga_beds_occupied.sum().cast("int64"),
            available_bed_days=t.ga_beds_available.sum().cast("int64"),
        )
        .order_by("month")
    )


# -- social care (local authority) ---------------------------------------------------------


def care_package_activity(
    packages: ir.Table, start: dt.date, end: dt.date, by: Sequence[str] = ()
) -> ir.Table:
    """Care package referrals and starts in [``start``, ``end``].

    Columns: ``*by`` (e.g. ``service_type``, ``referring_org_code``), ``referrals``
    (``referral_date`` in the range), ``starts`` (``start_date`` in the range) and
    ``mean_days_referral_to_start`` (float64, over the starts; suppress when ``starts`` is
    1-7). With no ``by``, an empty input gives zeros and a null mean.
    """
    lo, hi = date_range(start, end)
    referred = packages.referral_date.between(date_literal(lo), date_literal(hi))
    started = ibis.coalesce(packages.start_date.between(date_literal(lo), date_literal(hi)), False)
    t = packages.filter(referred | started).mutate(_started=started, _referred=referred)
    days = t.start_date.delta(t.referral_date, unit="day").cast("float64")
    metrics = {
        "referrals": t.count(where=t._referred),
        "starts": t.count(where=t._started),
        "mean_days_referral_to_start": days.mean(where=t._started).cast("float64"),
    }
    return _group(t, by, metrics)


def care_packages_awaited(packages: ir.Table, day: dt.date, by: Sequence[str] = ()) -> ir.Table:
    """Care packages referred but not started at ``day``.

    Columns: ``*by`` (e.g. ``referring_org_code``, ``discharge_pathway``), ``awaiting``
    (``referral_date <= day`` and ``start_date`` null or later) and ``awaiting_7_plus_days``
    (referred 7 or more days before ``day``). With no ``by``, an empty input gives zeros.
    """
    d = check_date(day, "day")
    t = packages.filter(
        packages.referral_date <= date_literal(d),
        packages.start_date.isnull() | (packages.start_date > date_literal(d)),
    )
    week = date_literal(d - dt.timedelta(days=7))
    metrics = {
        "awaiting": t.count(),
        "awaiting_7_plus_days": t.count(where=t.referral_date <= week),
    }
    return _group(t, by, metrics)


def care_package_months(packages: ir.Table, start: dt.date, end: dt.date) -> ir.Table:
    """Monthly referrals and starts in [``start``, ``end``], zeros for quiet months.

    One row per calendar month that intersects the range: ``month`` (first day, date),
    ``referrals`` and ``starts``; only dates within the range count.
    """
    lo, hi = date_range(start, end)

    def events(column: str, kind: str) -> ir.Table:
        chosen = packages.filter(packages[column].between(date_literal(lo), date_literal(hi)))
        date = chosen[column]
        return chosen.select(year=date.year(), month_of_year=date.month(), kind=ibis.literal(kind))

    both = ibis.union(events("referral_date", "referral"), events("start_date", "start"))
    monthly = both.group_by("year", "month_of_year").aggregate(
        referrals=both.count(where=both.kind == "referral"),
        starts=both.count(where=both.kind == "start"),
    )
    months, month = [], lo.replace(day=1)
    while month <= hi:
        months.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    spine = ibis.memtable({"month": months}, schema={"month": "date"})
    spine = spine.mutate(year=spine.month.year(), month_of_year=spine.month.month())
    joined = spine.left_join(monthly, ["year", "month_of_year"])
    return joined.select(
        "month", **{n: ibis.coalesce(joined[n], 0).cast("int64") for n in ("referrals", "starts")}
    ).order_by("month")


# -- direct care ---------------------------------------------------------------------------


def discharge_list(
    spells: ir.Table,
    patients: ir.Table,
    day: dt.date,
    packages: ir.Table | None = None,
) -> ir.Table:
    """Patients discharge-ready on ``day`` and awaiting pathway 1-3 support: a record-level
    list for direct care (release it only under a direct-care purpose and agreement).

    A spell is listed when ``discharge_pathway`` is 1, 2 or 3, ``discharge_ready_date <= day``
    and the patient has not left hospital:

    * if ``spells`` has ``discharge_date``: it is null or after ``day``;
    * if ``packages`` (the local authority's own ``care_packages``) is given: no package for
      the same person, referred by the same trust (``referring_org_code = org_code``), started
      on or after the ready date and by ``day`` (a started package means the person has gone).

    Give at least one of the two. ``patients`` (the trust's patient index: ``nhs_number``,
    names, ``date_of_birth``, ``sex``, and ``org_code`` when it pools several trusts) adds who
    the person is, matched on ``nhs_number`` (and ``org_code``); a spell whose patient is
    missing is still listed, with null names. The index should hold one row per person and
    trust. Columns: ``DISCHARGE_LIST_COLUMNS`` (``days_since_ready`` = day - ready date),
    longest wait first.
    """
    d = date_literal(check_date(day, "day"))
    has_discharge = "discharge_date" in spells.columns
    if not has_discharge and packages is None:
        raise UsageError(
            "discharge_list needs discharge_date on the spells or the care packages to tell "
            "who is still in hospital"
        )
    t = spells.filter(
        spells.discharge_pathway.isin(SUPPORTED_PATHWAYS), spells.discharge_ready_date <= d
    )
    if has_discharge:
        t = t.filter(t.discharge_date.isnull() | (t.discharge_date > d))
    if packages is not None:
        started = packages.filter(packages.start_date.notnull(), packages.start_date <= d)
        t = t.anti_join(
            started,
            [
                t.nhs_number == started.nhs_number,
                t.org_code == started.referring_org_code,
                started.start_date >= t.discharge_ready_date,
            ],
        )
    shown = ("given_name", "family_name", "date_of_birth", "sex")
    people = patients.select(*shown, _p_nhs=patients.nhs_number)
    match = [t.nhs_number == people._p_nhs]
    if "org_code" in patients.columns:  # a pooled index: match the trust too
        people = patients.select(*shown, _p_nhs=patients.nhs_number, _p_org=patients.org_code)
        match = [t.nhs_number == people._p_nhs, t.org_code == people._p_org]
    joined = t.left_join(people, match)
    listing = joined.select(
        "org_code",
        "nhs_number",
        "family_name",
        "given_name",
        "date_of_birth",
        "discharge_pathway",
        "nctr_reason",
        "discharge_ready_date",
        days_since_ready=d.delta(joined.discharge_ready_date, unit="day").cast("int64"),
        admission_date=joined.admission_date,
        sex=joined.sex,
        spell_id=joined.spell_id,
    )
    return listing.order_by(
        [ibis.desc(listing.days_since_ready), listing.org_code, listing.spell_id]
    )
