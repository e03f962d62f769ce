"""Elective recovery: referral to treatment (RTT) metrics as backend-agnostic Ibis expressions.

Every function takes Ibis tables shaped like the catalogue datasets ``rtt_pathways``,
``outpatient_appointments`` and ``patients`` (a subset of columns is enough: each function uses
only the columns it needs) and returns an unexecuted Ibis expression, so the same code compiles
for DuckDB, PostgreSQL and PySpark and runs on each federation node.

Results are aggregate tables of integer counts (pathways, people or appointments), ready for
disclosure control. Rates are returned as numerator and denominator columns: compute
percentages from the released (suppressed and rounded) figures, never inside this module.

Rules (DOMAIN.md section 1, RTT guidance v5.0):

* An incomplete (open) pathway at ``as_of`` has ``rtt_start_date <= as_of`` and
  ``rtt_end_date`` null or after ``as_of``. Nullified pathways (period status 33) are excluded
  from numerator and denominator alike.
* ``days_waited = as_of - rtt_start_date``. Week band 0 ("0-1 weeks") covers days 0-7; band k
  (k >= 1, "k to k+1 weeks") covers days 7k+1..7k+7. So 126 days is band 17 (17-18 weeks),
  364 days band 51 and 729 days band 104 ("104+").
* Within 18 weeks: days <= 126. Over 52/65/78/104 weeks: days > 364/455/546/728.

Date thresholds that depend only on ``as_of`` are computed in Python and passed as date
literals; the only date arithmetic in SQL is ``DateValue.delta(..., unit="day")``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from fdp_kernel import codes
from fdp_kernel.errors import UsageError
from fdp_kernel.metrics.dates import check_date, date_literal

# Policy targets are configuration, not rules: they change every planning round (DOMAIN.md).
# Templates read them from here; update them when the planning guidance changes.
TARGETS: dict[str, float] = {
    "within_18_weeks_standard": 0.92,  # NHS Constitution standard
    "within_18_weeks_interim_2026_03": 0.65,  # national interim target, March 2026
    "within_18_weeks_2029_03": 0.92,  # Elective Reform Plan (Jan 2025): 92% by March 2029
    "over_52_weeks_max_share_2026_03": 0.01,  # <1% of the list over 52 weeks by March 2026
}

WITHIN_18_WEEKS_DAYS = 126  # days <= 126 is within 18 weeks
# Long waits: over N weeks means days waited > these thresholds.
OVER_WEEKS_DAYS: dict[int, int] = {52: 364, 65: 455, 78: 546, 104: 728}
TOP_BAND = 104  # the distribution's last band is "104+" (729 days or more)

VALIDATION_MIN_DAYS = 84  # waiting over 12 weeks
VALIDATION_LOOKBACK_DAYS = 84  # no activity, or validation, in the last 12 weeks
VALIDATION_LOOKAHEAD_DAYS = 28  # nothing booked in the next 4 weeks

UNKNOWN_ETHNIC_GROUP = "Unknown"


def _not_nullified(rtt: ir.Table) -> ir.BooleanValue:
    return ibis.coalesce(rtt.rtt_period_status, "") != codes.RTT_NULLIFIED_STATUS


def open_pathways(rtt: ir.Table, as_of: dt.date) -> ir.Table:
    """Incomplete (open) RTT pathways at ``as_of``, with ``days_waited`` and ``weeks_band``.

    Open: ``rtt_start_date <= as_of`` and (``rtt_end_date`` is null or ``> as_of``), and the
    period is not nullified (``rtt_period_status != '33'``). A pathway that ended on ``as_of``
    is closed. ``days_waited`` = ``as_of - rtt_start_date`` (int64); ``weeks_band`` = 0 for
    days 0-7, else ``(days_waited - 1) // 7`` (band k covers days 7k+1..7k+7), uncapped.
    Needs ``rtt_start_date``, ``rtt_end_date`` and ``rtt_period_status``; keeps all columns.
    """
    day = date_literal(check_date(as_of, "as_of"))
    still_open = rtt.rtt_end_date.isnull() | (rtt.rtt_end_date > day)
    opened = rtt.filter(rtt.rtt_start_date <= day, still_open, _not_nullified(rtt))
    days = day.delta(opened.rtt_start_date, unit="day").cast("int64")
    opened = opened.mutate(days_waited=days)
    band = ibis.ifelse(opened.days_waited <= 7, 0, (opened.days_waited - 1) // 7)
    return opened.mutate(weeks_band=band.cast("int64"))


def _wait_counts(t: ir.Table) -> dict[str, ir.IntegerScalar]:
    """Counts over an open-pathways table: total, within 18 weeks, over 52/65/78/104 weeks."""
    counts = {
        "pathways": t.count(),
        "within_18_weeks": t.count(where=t.days_waited <= WITHIN_18_WEEKS_DAYS),
    }
    for weeks, days in OVER_WEEKS_DAYS.items():
        counts[f"over_{weeks}_weeks"] = t.count(where=t.days_waited > days)
    return counts


def waiting_list_summary(rtt: ir.Table, as_of: dt.date) -> ir.Table:
    """One row: the waiting list at ``as_of`` and its long-wait counts.

    Columns: ``waiting_list`` (open pathways, the denominator of % within 18 weeks),
    ``within_18_weeks`` (days <= 126, the numerator), ``over_52_weeks`` (days > 364),
    ``over_65_weeks`` (> 455), ``over_78_weeks`` (> 546), ``over_104_weeks`` (> 728).
    An empty input gives one row of zeros.
    """
    t = open_pathways(rtt, as_of)
    counts = _wait_counts(t)
    counts["waiting_list"] = counts.pop("pathways")
    order = ["waiting_list", "within_18_weeks", *(f"over_{w}_weeks" for w in OVER_WEEKS_DAYS)]
    return t.aggregate(**{name: counts[name] for name in order})


def weeks_waited_distribution(
    rtt: ir.Table, as_of: dt.date, by: Sequence[str] = ("treatment_function_code",)
) -> ir.Table:
    """Open pathways at ``as_of`` per week band and grouping columns ``by``.

    Columns: ``*by``, ``weeks_band`` (int64; 104 stands for "104+", 729 days or more) and
    ``pathways`` (count). Only bands with at least one pathway appear (no zero rows).
    """
    t = open_pathways(rtt, as_of)
    t = t.mutate(weeks_band=ibis.least(t.weeks_band, TOP_BAND).cast("int64"))
    keys = [*by, "weeks_band"]
    return t.group_by(keys).aggregate(pathways=t.count()).order_by(keys)


def long_waiters_by_treatment_function(rtt: ir.Table, as_of: dt.date) -> ir.Table:
    """Per ``treatment_function_code``: open pathways at ``as_of`` and long-wait counts.

    Columns: ``treatment_function_code``, ``pathways`` (all open), ``over_52_weeks``
    (days > 364), ``over_65_weeks`` (> 455), ``over_78_weeks`` (> 546), ``over_104_weeks``
    (> 728). Only treatment functions with an open pathway appear.
    """
    t = open_pathways(rtt, as_of)
    counts = _wait_counts(t)
    del counts["within_18_weeks"]
    key = "treatment_function_code"
    return t.group_by(key).aggregate(**counts).order_by(key)


def wait_percentiles(rtt: ir.Table, as_of: dt.date, by: Sequence[str] = ()) -> ir.Table:
    """Median and 92nd-percentile wait of open pathways at ``as_of``, in weeks.

    Columns: ``*by``, ``pathways`` (count), ``median_weeks`` and ``p92_weeks`` (float64, weeks
    = days_waited / 7, not banded). Quantiles are exact and use linear interpolation between
    the closest ranks (``percentile_cont`` on DuckDB and PostgreSQL, ``percentile`` on Spark:
    Hyndman-Fan type 7, as numpy's default), so every backend gives the same answer. Not
    ``approx_quantile``: DuckDB's is a t-digest sketch, Spark's returns an observed value.
    Null when a group has no pathways. Suppress them when ``pathways`` is 1-7.
    """
    t = open_pathways(rtt, as_of)
    weeks = t.days_waited.cast("float64") / 7.0  # float before aggregating: PostgreSQL numeric
    metrics = {
        "pathways": t.count(),
        "median_weeks": weeks.quantile(0.5).cast("float64"),
        "p92_weeks": weeks.quantile(0.92).cast("float64"),
    }
    if not by:
        return t.aggregate(**metrics)
    return t.group_by(list(by)).aggregate(**metrics).order_by(list(by))


def _month_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    months, month = [], start.replace(day=1)
    while month <= end:
        months.append(month)
        month = (month + dt.timedelta(days=32)).replace(day=1)
    return months


def clock_starts_and_stops(rtt: ir.Table, start: dt.date, end: dt.date) -> ir.Table:
    """Monthly flow in [``start``, ``end``]: clock starts, clock stops and validation removals.

    One row per calendar month that intersects the range, ``month`` being its first day (date),
    with zeros for months without activity. Only event dates within [start, end] are counted,
    so partial months at the edges count only their days in range.

    * ``clock_starts``: ``rtt_start_date`` in the month, not nullified (status 33).
    * ``clock_stops``: ``rtt_end_date`` in the month, status a stop (30, 31, 32, 34, 35, 36),
      not ``removed_by_validation``.
    * ``validation_removals``: ``rtt_end_date`` in the month and ``removed_by_validation``.

    Net change in list size = starts - stops - removals (compute it from released figures).
    """
    lo, hi = check_date(start, "start"), check_date(end, "end")
    if lo > hi:
        raise UsageError(f"start ({lo}) is after end ({hi})")
    removed = ibis.coalesce(rtt.removed_by_validation, False)
    stop_status = rtt.rtt_period_status.isin(codes.RTT_STOP_STATUSES)

    def events(column: str, condition: ir.BooleanValue, kind: str) -> ir.Table:
        chosen = rtt.filter(rtt[column].between(date_literal(lo), date_literal(hi)), condition)
        date = chosen[column]
        return chosen.select(year=date.year(), month_of_year=date.month(), kind=ibis.literal(kind))

    all_events = ibis.union(
        events("rtt_start_date", _not_nullified(rtt), "start"),
        events("rtt_end_date", stop_status & ~removed, "stop"),
        events("rtt_end_date", removed, "removal"),
        distinct=False,
    )
    monthly = all_events.group_by("year", "month_of_year").aggregate(
        clock_starts=all_events.count(where=all_events.kind == "start"),
        clock_stops=all_events.count(where=all_events.kind == "stop"),
        validation_removals=all_events.count(where=all_events.kind == "removal"),
    )
    # The spine is a small literal table, so months without events still appear. Join on
    # EXTRACT(year/month) of both sides (on PostgreSQL both are numeric, so they compare).
    spine = ibis.memtable({"month": _month_starts(lo, hi)}, schema={"month": "date"})
    spine = spine.mutate(year=spine.month.year(), month_of_year=spine.month.month())
    joined = spine.left_join(monthly, ["year", "month_of_year"])
    names = ("clock_starts", "clock_stops", "validation_removals")
    return joined.select(
        "month", **{n: ibis.coalesce(joined[n], 0).cast("int64") for n in names}
    ).order_by("month")


def validation_cohort(rtt: ir.Table, as_of: dt.date) -> ir.Table:
    """Open pathways at ``as_of`` in scope for validation (rows, not an aggregate).

    In scope: waiting over 12 weeks (``days_waited > 84``), no activity in the last 12 weeks
    (``date_last_attended`` null or ``< as_of - 84 days``) and nothing booked in the next
    4 weeks (neither ``tci_date`` nor ``outpatient_future_appointment_date`` within
    [as_of, as_of + 28 days]; a booking on day 29 does not count). Columns of
    :func:`open_pathways`. Keep it on the node: it is record-level.
    """
    day = check_date(as_of, "as_of")
    t = open_pathways(rtt, day)
    last_activity = date_literal(day - dt.timedelta(days=VALIDATION_LOOKBACK_DAYS))
    horizon = (date_literal(day), date_literal(day + dt.timedelta(days=VALIDATION_LOOKAHEAD_DAYS)))

    def booked(col: ir.DateColumn) -> ir.BooleanValue:
        # between() on a null date is null, and NOT null is null: coalesce to False first.
        return ibis.coalesce(col.between(*horizon), False)

    inactive = t.date_last_attended.isnull() | (t.date_last_attended < last_activity)
    nothing_booked = ~(booked(t.tci_date) | booked(t.outpatient_future_appointment_date))
    return t.filter(t.days_waited > VALIDATION_MIN_DAYS, inactive, nothing_booked)


def validation_summary(rtt: ir.Table, as_of: dt.date) -> ir.Table:
    """One row: ``cohort`` (see :func:`validation_cohort`) and ``validated_last_12_weeks``.

    ``validated_last_12_weeks`` counts cohort pathways whose ``last_pas_validation_date`` is
    within (as_of - 84 days, as_of]. The validation rate is validated / cohort.
    """
    day = check_date(as_of, "as_of")
    t = validation_cohort(rtt, day)
    since = date_literal(day - dt.timedelta(days=VALIDATION_LOOKBACK_DAYS))
    validated = (t.last_pas_validation_date > since) & (
        t.last_pas_validation_date <= date_literal(day)
    )
    return t.aggregate(cohort=t.count(), validated_last_12_weeks=t.count(where=validated))


def dna_rate(
    appointments: ir.Table, start: dt.date, end: dt.date, by: Sequence[str] = ()
) -> ir.Table:
    """Outpatient attendances and DNAs with ``appointment_date`` in [``start``, ``end``].

    Columns: ``*by``, ``attended`` (attendance_status 5 or 6), ``dna`` (status 3) and
    ``appointments_with_outcome`` (attended + dna). DNA rate = dna / appointments_with_outcome.
    Status 7 (arrived late, not seen), cancellations (2, 4) and null (future) are in neither.
    """
    lo, hi = check_date(start, "start"), check_date(end, "end")
    a = appointments.filter(
        appointments.appointment_date.between(date_literal(lo), date_literal(hi))
    )
    status = a.attendance_status
    metrics = {
        "attended": a.count(where=status.isin(codes.ATTENDED_CODES)),
        "dna": a.count(where=status.isin(codes.DNA_CODES)),
        "appointments_with_outcome": a.count(
            where=status.isin((*codes.ATTENDED_CODES, *codes.DNA_CODES))
        ),
    }
    if not by:
        return a.aggregate(**metrics)
    return a.group_by(list(by)).aggregate(**metrics).order_by(list(by))


def _equity(
    rtt: ir.Table, people: ir.Table, as_of: dt.date, group: str, missing: object = None
) -> ir.Table:
    t = open_pathways(rtt, as_of)
    joined = t.left_join(people, t.nhs_number == people.nhs_number)
    if missing is not None:  # label pathways whose patient was not found before grouping
        joined = joined.mutate(**{group: ibis.coalesce(joined[group], missing)})
    counts = _wait_counts(joined)
    metrics = {k: counts[k] for k in ("pathways", "over_52_weeks", "within_18_weeks")}
    return joined.group_by(group).aggregate(**metrics).order_by(group)


def _one_row_per_person(patients: ir.Table, column: str) -> ir.Table:
    # Guards against fan-out: if a person appears twice, the lowest value wins (deterministic).
    return patients.group_by("nhs_number").aggregate(**{column: patients[column].min()})


def equity_by_imd_quintile(rtt: ir.Table, patients: ir.Table, as_of: dt.date) -> ir.Table:
    """Open pathways at ``as_of`` per IMD quintile: ``pathways``, ``over_52_weeks``,
    ``within_18_weeks``.

    ``imd_quintile`` = (imd_decile + 1) // 2, 1 = most deprived (int64). Pathways whose patient
    is not in ``patients`` or has a null ``imd_decile`` are in the ``imd_quintile`` null group.
    ``patients`` should hold one row per ``nhs_number`` (filter it to the organisation first);
    duplicates take the lowest decile rather than counting a pathway twice.
    """
    people = _one_row_per_person(patients, "imd_decile")
    quintile = ((people.imd_decile.cast("int64") + 1) // 2).cast("int64")
    people = people.select("nhs_number", imd_quintile=quintile)
    return _equity(rtt, people, as_of, "imd_quintile")


def equity_by_ethnic_group(rtt: ir.Table, patients: ir.Table, as_of: dt.date) -> ir.Table:
    """Open pathways at ``as_of`` per broad ethnic group: ``pathways``, ``over_52_weeks``,
    ``within_18_weeks``.

    ``ethnic_group`` maps ``ethnicity`` through ``codes.ETHNIC_GROUP`` (White, Mixed, Asian,
    Black, Other, "Not stated or not known" for Z and 99). Pathways whose patient is not in
    ``patients``, or whose code is null or not in the list, are in the group "Unknown".
    ``patients`` should hold one row per ``nhs_number``; duplicates take the lowest code.
    """
    people = _one_row_per_person(patients, "ethnicity")
    group = people.ethnicity.substitute(codes.ETHNIC_GROUP, else_=UNKNOWN_ETHNIC_GROUP)
    people = people.select("nhs_number", ethnic_group=group)
    return _equity(rtt, people, as_of, "ethnic_group", missing=UNKNOWN_ETHNIC_GROUP)
