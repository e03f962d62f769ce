"""Vaccination and immunisation: eligible cohorts and uptake as backend-agnostic Ibis expressions.

Every function takes Ibis tables shaped like the catalogue datasets ``patients`` (a GP
practice's registered list), ``ltc_registers`` and ``vaccinations`` (a subset of columns is
enough) and returns an unexecuted Ibis expression, so the same code compiles for DuckDB,
PostgreSQL and PySpark and runs on each practice's node.

Results are counts: ``eligible`` (the denominator) and ``vaccinated`` (the numerator) per
cohort and grouping. Compute uptake percentages, targets met and inequality gaps from the
released (suppressed and rounded) figures, never inside this module.

Cohorts (DOMAIN.md section 2; UKHSA Green Book chapters 19 and 14a; the annual flu letter;
COVER):

================================  ==========================================  ==================
key                               eligible                                    vaccinated
================================  ==========================================  ==================
``flu_65_plus``                   aged 65 or over on 31 March of the season   a flu vaccination
                                  (turning 65 by 31 March counts)             1 Sep - census
``flu_at_risk_under_65``          aged 6 months to under 65 on 31 March and   as above
                                  on a clinical-risk register (below)
``flu_children_2_3``              aged 2 or 3 on 31 August (season start)     as above
``covid_75_plus``                 aged 75 or over on 31 January (the autumn   a COVID-19 dose
                                  campaign's last day)                        1 Sep - 31 Jan
``six_in_one_12m``                first birthday in the 12 months to ``on``   3 doses of 6-in-1
                                                                              by the birthday
``mmr1_24m``                      second birthday in the 12 months to ``on``  1 dose of MMR by it
``mmr2_5y``                       fifth birthday in the 12 months to ``on``   2 doses of MMR by it
================================  ==========================================  ==================

* **Seasons.** The flu season runs from 1 September to the end of February. ``on`` (the
  census date) picks the season: the one it falls in, or from March to August the one that
  has just ended. Vaccinations count from 1 September to ``min(on, campaign end)``; the
  eligible are the registered people alive on that date.
* **Clinical risk groups** (Green Book chapter 19) mapped to our QOF registers: chronic
  respiratory disease (``AST``, ``COPD``), chronic heart disease (``CHD``, ``HF``), chronic
  kidney disease (``CKD``), diabetes (``DM``), chronic neurological disease including stroke/TIA
  and dementia (``STIA``, ``DEM``) and learning disability (``LD``). Not mapped: liver disease,
  immunosuppression, asplenia, BMI >= 40 (the obesity register is BMI >= 30), pregnancy,
  carers. A register entry counts when its ``diagnosis_date`` is null or on or before the
  census date.
* **Childhood (COVER).** COVER counts children reaching their 1st, 2nd or 5th birthday in the
  period who completed the course by that birthday. The period here is the 12 months ending
  on ``on`` (``months`` to change it; COVER's quarterly figures are ``months=3``); doses are
  counted on distinct days.
* **Ages.** "Aged N on day D" means the N-th birthday falls on or before D. Birthdays are
  ``date_of_birth + N years`` as DuckDB, PostgreSQL and Spark add years (29 February + 1 year
  is 28 February); cut-off dates that depend only on the reference date are computed in Python
  with the same rule and passed as date literals.
* **COVID-19** counts age on the campaign's last day (31 January here, as the autumn
  programme counts people "aged 75 and over by the end of the campaign"); check each season's
  JCVI advice and change ``Season.campaign_end`` and ``Rule.of`` with it.
* **Registered population.** The catalogue holds no registration dates: the list is today's
  list, less people who had died by the census date.

Targets are configuration (``TARGETS``); national figures for context are in ``ENGLAND``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir

from fdp_kernel import codes
from fdp_kernel.errors import UsageError
from fdp_kernel.metrics.dates import check_date, date_literal

# Policy targets are configuration: they change with each season's letter and planning round.
TARGETS: dict[str, float] = {
    "flu_65_plus": 0.75,  # WHO target for people aged 65 and over
    "childhood": 0.95,  # WHO target for childhood vaccines (herd immunity)
}
# England's published uptake for context (DOMAIN.md; check the publication before quoting):
# UKHSA seasonal flu in GP patients 2024/25, COVER 2023/24 (MMR figures approximate).
ENGLAND: dict[str, tuple[str, float]] = {
    "flu_65_plus": ("2024/25", 0.749),
    "flu_at_risk_under_65": ("2024/25", 0.400),
    "flu_children_2_3": ("2024/25", 0.426),
    "six_in_one_12m": ("2023/24", 0.912),
    "mmr1_24m": ("2023/24", 0.89),
    "mmr2_5y": ("2023/24", 0.84),
}

FLU_PROCEDURES = ("822851000000102",)
COVID_PROCEDURES = ("1324681000000101", "1324691000000104", "1362591000000103")
SIX_IN_ONE = "1082441000000108"
MMR = "38598009"
FLU_RISK_REGISTERS = ("AST", "COPD", "CHD", "HF", "CKD", "DM", "STIA", "DEM", "LD")
UNKNOWN_ETHNIC_GROUP = "Unknown"


# Which procedure codes count as a dose of each kind of vaccine.
DOSE_KINDS: dict[str, tuple[str, ...]] = {
    "flu": FLU_PROCEDURES,
    "covid": COVID_PROCEDURES,
    "six_in_one": (SIX_IN_ONE,),
    "mmr": (MMR,),
}
assert all(p in codes.VACCINATION_PROCEDURES for ps in DOSE_KINDS.values() for p in ps)


@dataclass(frozen=True)
class Cohort:
    """One eligible cohort: the kind of dose that counts, how many, and for the childhood
    schedule the birthday (in years) by which the course should be complete."""

    key: str
    label: str
    programme: str  # "flu", "covid" or "childhood"
    dose_kind: str  # a key of DOSE_KINDS
    doses: int = 1
    birthday: int | None = None


COHORTS: dict[str, Cohort] = {
    c.key: c
    for c in (
        Cohort("flu_65_plus", "Flu: aged 65 and over", "flu", "flu"),
        Cohort(
            "flu_at_risk_under_65", "Flu: clinical risk groups, 6 months to under 65", "flu", "flu"
        ),
        Cohort("flu_children_2_3", "Flu: children aged 2 and 3", "flu", "flu"),
        Cohort("covid_75_plus", "COVID-19 autumn: aged 75 and over", "covid", "covid"),
        Cohort("six_in_one_12m", "6-in-1 at 12 months", "childhood", "six_in_one", 3, 1),
        Cohort("mmr1_24m", "MMR1 at 24 months", "childhood", "mmr", 1, 2),
        Cohort("mmr2_5y", "MMR2 at 5 years", "childhood", "mmr", 2, 5),
    )
}
SEASONAL = tuple(k for k, c in COHORTS.items() if c.programme != "childhood")
CHILDHOOD = tuple(k for k, c in COHORTS.items() if c.programme == "childhood")
# uptake_table breakdowns: deprivation and ethnic group.
BREAKDOWNS = ("imd_quintile", "ethnic_group")
ALL = "All"  # breakdown and group of the whole population in uptake_table
NOT_KNOWN = "Not known"  # the IMD quintile group of people whose IMD decile is not known
# The patient columns the cohort rules read; other columns pass through only when asked for.
STATUS_COLUMNS = ("nhs_number", "date_of_birth", "date_of_death", "imd_decile", "ethnicity")


# -- dates ---------------------------------------------------------------------------------
def add_years(day: dt.date, years: int) -> dt.date:
    """``day`` + ``years`` as SQL engines add an interval: 29 February becomes 28 February."""
    year = day.year + years
    if day.month == 2 and day.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return day.replace(year=year)


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` + ``months``, the day clipped to the month's length (31 Aug - 6 months = 28 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return dt.date(year, month + 1, min(day.day, last))


def born_by(day: dt.date, years: int) -> dt.date:
    """The latest date of birth of someone aged ``years`` or more on ``day``: their birthday
    (``add_years(dob, years)``) falls on or before ``day``. Someone born on 29 February of a
    leap year is ``years`` old on 28 February of a common year."""
    latest = add_years(day, -years)
    later = latest + dt.timedelta(days=1)
    return later if add_years(later, years) <= day else latest


@dataclass(frozen=True)
class Season:
    """A flu season: 1 September of ``start_year`` to the end of February."""

    start_year: int

    @classmethod
    def of(cls, day: dt.date) -> Season:
        """The season ``day`` falls in; from March to August, the season just ended."""
        return cls(day.year if day.month >= 9 else day.year - 1)

    @property
    def start(self) -> dt.date:
        return dt.date(self.start_year, 9, 1)

    @property
    def end(self) -> dt.date:
        year = self.start_year + 1
        return dt.date(year, 2, calendar.monthrange(year, 2)[1])

    @property
    def label(self) -> str:
        return f"{self.start_year}/{(self.start_year + 1) % 100:02d}"

    @property
    def previous(self) -> Season:
        return Season(self.start_year - 1)

    def campaign_end(self, programme: str) -> dt.date:
        """The last day vaccinations count: end of February (flu), 31 January (COVID-19)."""
        return dt.date(self.start_year + 1, 1, 31) if programme == "covid" else self.end

    def same_point(self, day: dt.date) -> dt.date:
        """The date in this season as far in as ``day`` is in its own season."""
        shift = self.start_year - Season.of(day).start_year
        return min(max(add_years(day, shift), self.start), self.end)


# -- who is eligible, which doses count: one rule per (cohort, point) -------------------------
EARLIEST = dt.date(1800, 1, 1)  # "no lower bound" for dates of birth and doses


def _cohort(name: str) -> Cohort:
    try:
        return COHORTS[name]
    except KeyError:
        raise UsageError(f"unknown cohort {name!r}; cohorts are: {', '.join(COHORTS)}") from None


@dataclass(frozen=True)
class Rule:
    """Cohort ``cohort`` measured on ``on``, labelled ``point``, as date cut-offs.

    Eligible: ``born_after < date_of_birth <= born_by``, alive on ``census``, and for
    ``at_risk`` rules on a clinical-risk register recorded by ``census``. A dose counts when
    it is of ``dose_kind`` and dated from ``dose_from`` to ``dose_to`` (childhood: to the
    ``birthday``-th birthday instead); vaccinated means ``doses`` doses on distinct days.
    """

    cohort: str
    point: str
    born_after: dt.date
    born_by: dt.date
    census: dt.date
    dose_kind: str
    doses: int
    dose_from: dt.date
    dose_to: dt.date
    birthday: int | None
    at_risk: bool

    @classmethod
    def of(cls, cohort: str, on: dt.date, point: str = "", months: int = 12) -> Rule:
        c, day = _cohort(cohort), check_date(on, "on")
        common = {"cohort": cohort, "point": point, "dose_kind": c.dose_kind, "doses": c.doses}
        if c.programme == "childhood":
            if months < 1:
                raise UsageError(f"months must be at least 1, got {months}")
            return cls(
                **common,
                born_after=born_by(add_months(day, -months), c.birthday),  # birthday after it
                born_by=born_by(day, c.birthday),  # birthday on or before the census
                census=day,
                dose_from=EARLIEST,
                dose_to=day,  # not used: doses count up to the birthday
                birthday=c.birthday,
                at_risk=False,
            )
        season = Season.of(day)
        census = min(day, season.campaign_end(c.programme))
        march31 = dt.date(season.start_year + 1, 3, 31)
        if c.key == "flu_children_2_3":
            aug31 = dt.date(season.start_year, 8, 31)
            ages = (born_by(aug31, 4), born_by(aug31, 2))
        elif c.key == "flu_at_risk_under_65":
            ages = (born_by(march31, 65), add_months(march31, -6))
        elif c.key == "covid_75_plus":
            ages = (EARLIEST, born_by(dt.date(season.start_year + 1, 1, 31), 75))
        else:  # flu_65_plus
            ages = (EARLIEST, born_by(march31, 65))
        return cls(
            **common,
            born_after=ages[0],
            born_by=ages[1],
            census=census,
            dose_from=season.start,
            dose_to=census,
            birthday=None,
            at_risk=c.key == "flu_at_risk_under_65",
        )


_RULE_SCHEMA = {
    "rule": "int64",
    "cohort": "string",
    "point": "string",
    "born_after": "date",
    "born_by": "date",
    "census": "date",
    "dose_kind": "string",
    "doses": "int64",
    "dose_from": "date",
    "dose_to": "date",
    "birthday": "int64",
    "at_risk": "boolean",
}


def _rules_table(rules: Sequence[Rule]) -> ir.Table:
    if not rules:
        raise UsageError("at least one (cohort, point, date) is needed")
    keys = [(r.cohort, r.point) for r in rules]
    if len(set(keys)) != len(keys):
        raise UsageError("each (cohort, point) may appear once")
    columns = {name: [getattr(r, name, None) for r in rules] for name in _RULE_SCHEMA}
    columns["rule"] = list(range(len(rules)))
    return ibis.memtable(columns, schema=_RULE_SCHEMA)


def _rules(points: Sequence[tuple[str, str, dt.date]], months: int) -> list[Rule]:
    return [Rule.of(cohort, on, point, months) for cohort, point, on in points]


# -- cohorts and their vaccination status -------------------------------------------------------
def _with_groups(patients: ir.Table) -> ir.Table:
    """Add ``imd_quintile`` ((imd_decile + 1) // 2, 1 = most deprived) and ``ethnic_group``
    (``codes.ETHNIC_GROUP``; "Unknown" when the code is null or not in the list)."""
    extra = {}
    if "imd_decile" in patients.columns:
        extra["imd_quintile"] = ((patients.imd_decile.cast("int64") + 1) // 2).cast("int64")
    if "ethnicity" in patients.columns:
        extra["ethnic_group"] = patients.ethnicity.substitute(
            codes.ETHNIC_GROUP, else_=UNKNOWN_ETHNIC_GROUP
        )
    return patients.mutate(**extra)


def _dose_kind(procedure: ir.StringValue) -> ir.StringValue:
    return ibis.cases(*((procedure.isin(ps), kind) for kind, ps in DOSE_KINDS.items()), else_=None)


def _status(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    rules: Sequence[Rule],
    keep: Sequence[str] = (),
) -> ir.Table:
    """One row per (rule, eligible person): ``cohort``, ``point``, the patient columns read
    (``STATUS_COLUMNS`` present, plus ``keep``), ``imd_quintile``, ``ethnic_group``,
    ``census``, ``first_dose`` and ``vaccinated``."""
    rule = _rules_table(rules)
    wanted = [c for c in dict.fromkeys((*STATUS_COLUMNS, *keep)) if c in patients.columns]
    people = _with_groups(patients.select(*wanted))
    person_columns = people.columns
    grid = people.cross_join(rule)
    grid = grid.filter(
        grid.date_of_birth > grid.born_after,
        grid.date_of_birth <= grid.born_by,
        grid.date_of_death.isnull() | (grid.date_of_death > grid.census),
    )
    if any(r.at_risk for r in rules):
        recorded = ibis.coalesce(registers.diagnosis_date, date_literal(EARLIEST))
        risk = registers.filter(registers.condition.isin(FLU_RISK_REGISTERS))
        risk = risk.group_by("nhs_number").aggregate(at_risk_from=recorded.min())
        grid = grid.left_join(risk, "nhs_number").select(
            *(grid[c] for c in grid.columns), "at_risk_from"
        )
        grid = grid.filter(~grid.at_risk | (grid.at_risk_from <= grid.census)).drop("at_risk_from")
    # The last day a dose counts: the census, or for childhood the birthday itself.
    years = sorted({r.birthday for r in rules if r.birthday is not None})
    if years:
        birthday = (
            (grid.birthday == y, grid.date_of_birth + ibis.interval(years=y)) for y in years
        )
        grid = grid.mutate(dose_to=ibis.cases(*birthday, else_=grid.dose_to).cast("date"))
    doses = vaccinations.select(
        "nhs_number", "vaccination_date", dose_kind=_dose_kind(vaccinations.procedure_code)
    )
    doses = doses.filter(doses.dose_kind.notnull())
    matched = grid.inner_join(
        doses,
        [
            grid.nhs_number == doses.nhs_number,
            grid.dose_kind == doses.dose_kind,
            doses.vaccination_date >= grid.dose_from,
            doses.vaccination_date <= grid.dose_to,
        ],
    ).select("cohort", "point", "nhs_number", "vaccination_date")
    given = matched.group_by("cohort", "point", "nhs_number").aggregate(
        n_doses=matched.vaccination_date.nunique(), first=matched.vaccination_date.min()
    )
    status = grid.left_join(given, ["cohort", "point", "nhs_number"])
    done = ibis.coalesce(status.n_doses, 0) >= status.doses
    return status.select(
        "rule",
        "cohort",
        "point",
        *person_columns,
        "census",
        first_dose=ibis.ifelse(done, status.first, ibis.null("date")),
        vaccinated=done,
    )


def cohort_status(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    points: Sequence[tuple[str, str, dt.date]],
    months: int = 12,
    keep: Sequence[str] = (),
) -> ir.Table:
    """Record-level: for each (cohort, point label, date ``on``), the eligible people (see the
    module docstring) and whether they are vaccinated.

    Columns: ``cohort``, ``point``, the patient columns ``STATUS_COLUMNS`` (those present) and
    ``keep``, ``imd_quintile``, ``ethnic_group``, ``census`` (the date eligibility is counted
    on), ``first_dose`` (the first counted dose when vaccinated, else null) and ``vaccinated``.
    ``registers`` is read for ``flu_at_risk_under_65`` only; ``months`` is the childhood
    birthday window. Keep it on the node: release aggregates of it.
    """
    return _status(patients, registers, vaccinations, _rules(points, months), keep)


def _counts(t: ir.Table) -> dict[str, ir.IntegerScalar]:
    return {"eligible": t.count(), "vaccinated": t.count(where=t.vaccinated)}


def uptake(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    cohort: str,
    on: dt.date,
    by: Sequence[str] = (),
    months: int = 12,
) -> ir.Table:
    """``eligible`` and ``vaccinated`` people of ``cohort`` measured on ``on``, per ``by``.

    ``by`` may name ``imd_quintile``, ``ethnic_group`` or a column of ``patients``. An empty
    cohort gives one row of zeros when ``by`` is empty, and no rows otherwise.
    """
    extra = [c for c in by if c not in ("imd_quintile", "ethnic_group")]
    t = cohort_status(patients, registers, vaccinations, [(cohort, "", on)], months, extra)
    if not by:
        return t.aggregate(**_counts(t))
    return t.group_by(list(by)).aggregate(**_counts(t))


def week_ends(season: Season, programme: str, until: dt.date | None = None) -> list[dt.date]:
    """Week ends of ``season``: week k ends on day 7k of the season; the last week is cut at
    the campaign end. Up to ``until`` (weeks that have ended by then) or the campaign end."""
    end = season.campaign_end(programme)
    last = min(until, end) if until else end
    out, day = [], season.start + dt.timedelta(days=6)
    while day < end and day <= last:
        out.append(day)
        day += dt.timedelta(days=7)
    if day >= end and end <= last:
        out.append(end)
    return out


def _weekly(status: ir.Table, rules: Sequence[Rule], key: str = "point") -> ir.Table | None:
    """Cumulative counts per week of the season for the seasonal rules: ``cohort``, ``key``
    (the point label), ``week``, ``eligible``, ``vaccinated``; None when no week has ended."""
    spine: dict[str, list] = {"cohort": [], "point": [], "week": [], "week_end": []}
    for r in rules:
        c = COHORTS[r.cohort]
        if c.programme == "childhood":
            continue
        for k, end in enumerate(week_ends(Season.of(r.census), c.programme, r.census), start=1):
            for name, value in zip(spine, (r.cohort, r.point, k, end), strict=True):
                spine[name].append(value)
    if not spine["week"]:
        return None
    weeks = ibis.memtable(
        spine, schema={"cohort": "string", "point": "string", "week": "int64", "week_end": "date"}
    )
    grid = status.inner_join(weeks, ["cohort", "point"]).rename({key: "point"})
    return grid.group_by("cohort", key, "week").aggregate(
        eligible=grid.count(), vaccinated=grid.count(where=grid.first_dose <= grid.week_end)
    )


def column(cohort: str, point: str, measure: str) -> str:
    """The :func:`uptake_table` column of ``measure`` ("eligible" or "vaccinated")."""
    return f"{cohort}__{point}__{measure}"


def _group_label(t: ir.Table) -> ir.StringValue:
    quintile = ibis.coalesce(t.imd_quintile.cast("string"), NOT_KNOWN)
    ethnic = ibis.coalesce(t.ethnic_group, UNKNOWN_ETHNIC_GROUP)
    return ibis.cases((t.breakdown == "imd_quintile", quintile), else_=ethnic)


def uptake_table(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    points: Sequence[tuple[str, str, dt.date]],
    breakdowns: Sequence[str] = (),
    months: int = 12,
) -> ir.Table:
    """Uptake for several (cohort, point label, date) triples in one table: a row per
    population group, two count columns per triple (one query, so a federated request is one
    round per node).

    Rows: ``breakdown`` = ``group`` = "All" (always; zeros for empty cohorts), then for each
    of ``breakdowns`` a row per group with someone eligible: ``imd_quintile`` ("1" = most
    deprived .. "5", "Not known") and ``ethnic_group`` (broad groups, "Unknown"). Columns:
    ``breakdown``, ``group``, then for each triple ``column(cohort, point, "eligible")`` and
    ``column(cohort, point, "vaccinated")``. Each triple is a measure of its own, so
    disclosure control's margins run over population groups only, never across cohorts or
    dates. Point labels must be names (``now``, ``last_season``).
    """
    unknown = [b for b in breakdowns if b not in BREAKDOWNS]
    if unknown:
        raise UsageError(f"unknown breakdown(s) {unknown}; breakdowns are: {BREAKDOWNS}")
    for _, point, _ in points:
        if not point.isidentifier() or "__" in point:
            raise UsageError(f"point label {point!r} must be a name such as 'now' or 'last_year'")
    rules = _rules(points, months)
    status = _status(patients, registers, vaccinations, rules)

    def measures(t: ir.Table) -> dict[str, ir.IntegerScalar]:
        out = {}
        for i, r in enumerate(rules):
            out[column(r.cohort, r.point, "eligible")] = t.count(where=t.rule == i)
            out[column(r.cohort, r.point, "vaccinated")] = t.count(
                where=(t.rule == i) & t.vaccinated
            )
        return out

    whole = status.aggregate(**measures(status))
    whole = whole.select(
        breakdown=ibis.literal(ALL), group=ibis.literal(ALL), **{c: whole[c] for c in whole.columns}
    )
    if not breakdowns:
        return whole
    names = list(dict.fromkeys(breakdowns))
    grid = status.cross_join(ibis.memtable({"breakdown": names}, schema={"breakdown": "string"}))
    grid = grid.mutate(group=_group_label(grid))
    parts = grid.group_by("breakdown", "group").aggregate(**measures(grid))
    return ibis.union(whole, parts, distinct=False)


def cumulative_weekly_uptake(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    cohorts: Sequence[str],
    on: dt.date,
) -> ir.Table:
    """Cumulative uptake by week, this season (to ``on``) and the whole of last season.

    Columns: ``cohort``, ``season`` (label, e.g. "2026/27"), ``week`` (1 = the 7 days from
    1 September), ``eligible`` (the cohort on the season's census date: ``on`` this season,
    the campaign end last season; the same every week) and ``vaccinated`` (eligible people
    whose first dose was on or before the week's end). This season has only the weeks that
    have ended by ``on``. Seasonal cohorts only. Week end dates: :func:`week_ends`.
    """
    day = check_date(on, "on")
    this = Season.of(day)
    rules = []
    for cohort in cohorts:
        c = _cohort(cohort)
        if c.programme == "childhood":
            raise UsageError(f"{cohort} is not a seasonal cohort; weekly uptake is for {SEASONAL}")
        rules.append(Rule.of(cohort, day, this.label))
        last_end = this.previous.campaign_end(c.programme)
        rules.append(Rule.of(cohort, last_end, this.previous.label))
    if not rules:
        raise UsageError("cumulative_weekly_uptake needs at least one cohort")
    counted = _weekly(_status(patients, registers, vaccinations, rules), rules, key="season")
    if counted is None:
        raise UsageError(f"no week of the {this.previous.label} season has ended")
    return counted


def unvaccinated(
    patients: ir.Table,
    registers: ir.Table,
    vaccinations: ir.Table,
    cohorts: Sequence[str],
    on: dt.date,
    months: int = 12,
) -> ir.Table:
    """Record-level call list: eligible people of each cohort on ``on`` with no counted dose.

    Columns: ``cohort`` and every column of ``patients`` (someone eligible for two cohorts
    appears twice). For direct care only: under a planning purpose the workspace refuses to
    release it (record-level rows, direct identifiers).
    """
    if not cohorts:
        raise UsageError("unvaccinated needs at least one cohort")
    points = [(c, c, on) for c in cohorts]
    t = cohort_status(patients, registers, vaccinations, points, months, keep=patients.columns)
    t = t.filter(~t.vaccinated)
    return t.select("cohort", *patients.columns)
