"""Population health management: recorded prevalence, multimorbidity, risk tiers, segments and
Core20PLUS5, as backend-agnostic Ibis expressions.

Every function takes Ibis tables shaped like the catalogue datasets ``patients`` (a GP
practice's registered list, or the union of several practices' lists), ``ltc_registers`` and,
where hospital activity can be linked, ``inpatient_spells`` (a subset of columns is enough) and
returns an unexecuted Ibis expression that compiles for DuckDB, PostgreSQL and PySpark.

Results are counts (people, register entries, admissions) with their denominators, and sums of
bed days with the helper columns magnitude control needs (contributors, largest and second
largest contribution). Compute prevalence, rates per 1,000 and shares from the released
figures, never here.

Definitions (DOMAIN.md section 3; QOF 2023/24 business rules; NHS England Core20PLUS5):

* **Population on ``as_of``**: people on the list who had not died by ``as_of``
  (``date_of_death`` null or after it). The catalogue holds no registration dates, so a past
  date uses today's list less the people who had died by then.
* **Ages** are whole years on ``as_of``: someone is N or older when born on or before
  ``born_by(as_of, N)`` (``fdp_kernel.metrics.vaccination``), computed in Python and passed as
  date literals. Age bands: ``AGE_BANDS``.
* **Recorded prevalence** = people on the register (``diagnosis_date`` null or on or before
  ``as_of``) / people on the list old enough for the register: QOF's age-restricted
  denominators (``REGISTER_MIN_AGE``: depression, obesity and CKD 18+, diabetes 17+, asthma
  6+, the rest all ages). Register entries of people below the minimum age are not counted.
* **Multimorbidity**: the number of the 15 QOF registers a person is on (0, 1, 2, 3, 4+).
* **Core20PLUS5**: Core20 = IMD deciles 1-2 (the most deprived 20% of LSOAs nationally),
  against everyone else; people with no recorded decile form their own group.
* **Emergency admissions** (where spells are linked): spells with an emergency admission
  method (``codes.ADMISSION_METHOD`` 2x) admitted in the 365 days to ``as_of``; **bed days**
  = (discharge date, or ``as_of`` for people still in hospital) - admission date, per spell.
* **Risk score** (``RISK_WEIGHTS``; illustrative, not a validated model): one point per
  register, one more for each register that signals limited reserve or decline (heart
  failure, COPD, CKD, dementia, cancer), plus age points (65-74: 1, 75-84: 2, 85+: 3).
  People are ranked by score (older first within a score) and **risk tiers** are the top
  0.5%, the next 1.5% (to 2%), the next 3% (to 5%) and the rest, by ``percent_rank``; people
  with the same score and date of birth share a tier. Replace it with a validated tool (the
  Cambridge Multimorbidity Score with its published weights and code lists, Payne et al.
  CMAJ 2020; or the ICB's emergency admission risk model) before it informs care.
* **Segments** (``SEGMENTS``; a simplified, illustrative Bridges to Health segmentation,
  Lynn et al. Milbank Q 2007, from registers, age and emergency admissions): each person
  takes the first that applies of 8 frailty or dementia (dementia register, or 85+ on two or
  more registers), 7 limited reserve (heart failure, COPD or CKD), 6 short decline (cancer
  diagnosed in the last year), 5 stable but serious disability (learning disability), 4
  chronic condition (any other register), 3 acutely ill (an emergency admission in the last
  year; only where spells are linked), 2 infant (under 1; maternity is not in the data) and
  1 healthy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from fdp_kernel import codes
from fdp_kernel.metrics.dates import check_date, date_literal
from fdp_kernel.metrics.vaccination import born_by

# (label, lowest age, highest age or None): bands for prevalence and multimorbidity.
AGE_BANDS: tuple[tuple[str, int, int | None], ...] = (
    ("0-17", 0, 17),
    ("18-34", 18, 34),
    ("35-49", 35, 49),
    ("50-64", 50, 64),
    ("65-74", 65, 74),
    ("75-84", 75, 84),
    ("85+", 85, None),
)
REGISTERS = tuple(codes.LTC_REGISTERS)
# QOF 2023/24 register age rules: the register and its denominator start at this age.
REGISTER_MIN_AGE: dict[str, int] = {"DEP": 18, "OB": 18, "DM": 17, "AST": 6, "CKD": 18}
# England's recorded prevalence, QOF 2023/24 (DOMAIN.md; check the publication before quoting).
ENGLAND_PREVALENCE: dict[str, float] = {
    "HYP": 0.148,
    "DEP": 0.13,
    "OB": 0.13,
    "DM": 0.077,
    "AST": 0.065,
    "CKD": 0.04,
    "CAN": 0.036,
    "CHD": 0.030,
    "AF": 0.022,
    "STIA": 0.019,
    "COPD": 0.019,
    "HF": 0.011,
    "MH": 0.0095,
    "DEM": 0.0075,
    "LD": 0.006,
}
CORE20_DECILES = (1, 2)
CORE20, REST, IMD_NOT_KNOWN = "Core20 (IMD deciles 1-2)", "Rest of the population", "IMD not known"
CORE20PLUS5_REGISTERS = {"hypertension": "HYP", "copd": "COPD", "smi": "MH"}
EMERGENCY_METHODS = tuple(k for k in codes.ADMISSION_METHOD if k.startswith("2"))
ADMISSION_WINDOW_DAYS = 365
MULTIMORBIDITY_GROUPS = ("0", "1", "2", "3", "4+")

# Illustrative risk score: 1 point per register, 2 for these; age points by band.
RISK_WEIGHTS: dict[str, int] = {
    r: 2 if r in ("HF", "COPD", "CKD", "DEM", "CAN") else 1 for r in REGISTERS
}
RISK_AGE_POINTS: tuple[tuple[int, int], ...] = ((85, 3), (75, 2), (65, 1))  # (age from, points)
# (label, share of people ranked at or above the tier's end): top 0.5%, 2%, 5%, rest.
RISK_TIERS: tuple[tuple[str, float], ...] = (
    ("Top 0.5%", 0.005),
    ("0.5-2%", 0.02),
    ("2-5%", 0.05),
    ("Rest (95%)", 1.0),
)
SEGMENTS: tuple[str, ...] = (
    "1 Healthy",
    "2 Maternal and infant health",
    "3 Acutely ill but curable",
    "4 Chronic condition, normal function",
    "5 Stable but serious disability",
    "6 Short period of decline before dying",
    "7 Limited reserve, serious exacerbations",
    "8 Long course of decline (frailty, dementia)",
)
BED_DAYS_HELPERS = ("bed_days_contributors", "bed_days_top1", "bed_days_top2")


def age_band(dob: ir.DateValue, as_of: dt.date) -> ir.StringValue:
    """The ``AGE_BANDS`` label of a date of birth on ``as_of`` (null for a birth after it)."""
    branches = [
        (dob <= date_literal(born_by(as_of, low)), label) for label, low, _ in reversed(AGE_BANDS)
    ]
    return ibis.cases(*branches, else_=None)


def population(patients: ir.Table, as_of: dt.date) -> ir.Table:
    """Record-level: the people on the list on ``as_of`` (alive, born by then), with
    ``age_band``, ``imd_quintile`` (1 = most deprived; null when the decile is) and ``core20``
    (``CORE20``, ``REST`` or ``IMD_NOT_KNOWN``). Keep it on the node."""
    day = check_date(as_of, "as_of")
    alive = patients.date_of_death.isnull() | (patients.date_of_death > date_literal(day))
    people = patients.filter(alive, patients.date_of_birth <= date_literal(day))
    decile = people.imd_decile.cast("int64")
    core20 = ibis.cases(
        (decile.isnull(), IMD_NOT_KNOWN), (decile.isin(CORE20_DECILES), CORE20), else_=REST
    )
    return people.mutate(
        age_band=age_band(people.date_of_birth, day),
        imd_quintile=((decile + 1) // 2).cast("int64"),
        core20=core20,
    )


def _on_register(registers: ir.Table, as_of: dt.date) -> ir.Table:
    """Register entries recorded by ``as_of``, one per person and register."""
    recorded = registers.diagnosis_date.isnull() | (registers.diagnosis_date <= date_literal(as_of))
    return registers.filter(recorded).select("nhs_number", "condition").distinct()


def list_size(patients: ir.Table, as_of: dt.date, by: Sequence[str] = ()) -> ir.Table:
    """``people`` on the list on ``as_of`` per ``by`` (columns of :func:`population`)."""
    people = population(patients, as_of)
    if not by:
        return people.aggregate(people=people.count())
    return people.group_by(list(by)).aggregate(people=people.count())


def prevalence(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, by: Sequence[str] = ()
) -> ir.Table:
    """Recorded prevalence per register on ``as_of``, per ``by`` (columns of
    :func:`population`, e.g. ``age_band``, ``imd_quintile``, ``imd_decile``).

    Columns: ``*by``, ``condition`` (QOF register code), ``register`` (people on it, of the
    age it covers) and ``list_size`` (people on the list of that age: the denominator). A row
    for every register and group present in the population, zeros included.
    """
    day = check_date(as_of, "as_of")
    people = population(patients, day).select("nhs_number", "date_of_birth", *by)
    ages = ibis.memtable(
        {
            "condition": list(REGISTERS),
            "born_by": [born_by(day, REGISTER_MIN_AGE.get(r, 0)) for r in REGISTERS],
        },
        schema={"condition": "string", "born_by": "date"},
    )
    grid = people.cross_join(ages)
    entries = _on_register(registers, day).mutate(on_register=ibis.literal(True))
    grid = grid.left_join(entries, ["nhs_number", "condition"]).select(
        *by, "condition", "date_of_birth", "born_by", "on_register"
    )
    old_enough = grid.date_of_birth <= grid.born_by
    counted = ibis.coalesce(grid.on_register, False) & old_enough
    return grid.group_by([*by, "condition"]).aggregate(
        register=grid.count(where=counted), list_size=grid.count(where=old_enough)
    )


def _register_counts(registers: ir.Table, as_of: dt.date) -> ir.Table:
    """Per person on any register by ``as_of``: ``n_registers``, ``risk_points`` (the sum of
    ``RISK_WEIGHTS``) and flags used by the segmentation."""
    entries = _on_register(registers, as_of)
    weight = entries.condition.substitute(RISK_WEIGHTS, else_=0).cast("int64")
    recent_cancer = registers.filter(
        registers.condition == "CAN",
        registers.diagnosis_date > date_literal(as_of - dt.timedelta(days=365)),
        registers.diagnosis_date <= date_literal(as_of),
    ).select("nhs_number", "condition")
    entries = entries.mutate(weight=weight).left_join(
        recent_cancer.mutate(recent=ibis.literal(True)), ["nhs_number", "condition"]
    )
    c = entries.condition
    return entries.group_by("nhs_number").aggregate(
        n_registers=entries.count(),
        risk_points=entries.weight.sum(),
        dementia=(c == "DEM").any(),
        organ_failure=c.isin(("HF", "COPD", "CKD")).any(),
        recent_cancer=ibis.coalesce(entries.recent, False).any(),
        learning_disability=(c == "LD").any(),
    )


def _admissions(spells: ir.Table, as_of: dt.date) -> ir.Table:
    """Per person: ``emergency_admissions`` and ``bed_days`` in the 365 days to ``as_of``."""
    start = date_literal(as_of - dt.timedelta(days=ADMISSION_WINDOW_DAYS - 1))
    s = spells.filter(
        spells.admission_method.isin(EMERGENCY_METHODS),
        spells.admission_date.between(start, date_literal(as_of)),
    )
    left = ibis.least(ibis.coalesce(s.discharge_date, date_literal(as_of)), date_literal(as_of))
    days = left.delta(s.admission_date, unit="day").cast("int64")
    return s.group_by("nhs_number").aggregate(
        emergency_admissions=s.count(), bed_days=days.sum().cast("int64")
    )


def _people(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, spells: ir.Table | None
) -> ir.Table:
    """Record-level: the population with register counts, risk score, tier and segment, and
    (with ``spells``) emergency admissions and bed days. Keep it on the node."""
    day = check_date(as_of, "as_of")
    people = population(patients, day)
    counts = _register_counts(registers, day)
    t = people.left_join(counts, "nhs_number").select(
        *people.columns,
        n_registers=ibis.coalesce(counts.n_registers, 0),
        risk_points=ibis.coalesce(counts.risk_points, 0),
        dementia=ibis.coalesce(counts.dementia, False),
        organ_failure=ibis.coalesce(counts.organ_failure, False),
        recent_cancer=ibis.coalesce(counts.recent_cancer, False),
        learning_disability=ibis.coalesce(counts.learning_disability, False),
    )
    if spells is not None:
        used = _admissions(spells, day)
        t = t.left_join(used, "nhs_number").select(
            *t.columns,
            emergency_admissions=ibis.coalesce(used.emergency_admissions, 0),
            bed_days=ibis.coalesce(used.bed_days, 0),
        )
    dob = t.date_of_birth
    age_points = ibis.cases(
        *((dob <= date_literal(born_by(day, age)), points) for age, points in RISK_AGE_POINTS),
        else_=0,
    )
    t = t.mutate(risk_score=(t.risk_points + age_points).cast("int64"))
    rank = ibis.percent_rank().over(order_by=[ibis.desc(t.risk_score), t.date_of_birth])
    tier = ibis.cases(
        *((rank < share, label) for label, share in RISK_TIERS[:-1]), else_=RISK_TIERS[-1][0]
    )
    acute = (t.emergency_admissions > 0) if spells is not None else ibis.literal(False)
    segment = ibis.cases(
        (
            t.dementia | ((dob <= date_literal(born_by(day, 85))) & (t.n_registers >= 2)),
            SEGMENTS[7],
        ),
        (t.organ_failure, SEGMENTS[6]),
        (t.recent_cancer, SEGMENTS[5]),
        (t.learning_disability, SEGMENTS[4]),
        (t.n_registers > 0, SEGMENTS[3]),
        (acute, SEGMENTS[2]),
        (dob > date_literal(born_by(day, 1)), SEGMENTS[1]),
        else_=SEGMENTS[0],
    )
    return t.mutate(risk_tier=tier, segment=segment)


def multimorbidity(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, by: Sequence[str] = ("age_band",)
) -> ir.Table:
    """People by number of registers (``conditions``: "0", "1", "2", "3", "4+") per ``by``.

    Columns: ``*by``, ``conditions``, ``people``. Only combinations present appear.
    """
    t = _people(patients, registers, as_of, None)
    n = t.n_registers
    group = ibis.cases((n >= 4, "4+"), else_=n.cast("string"))
    t = t.mutate(conditions=group)
    return t.group_by([*by, "conditions"]).aggregate(people=t.count())


def _activity(t: ir.Table, linked: bool) -> dict[str, ir.Value]:
    """People, and with linked spells emergency admissions and bed days with helpers."""
    out: dict[str, ir.Value] = {"people": t.count()}
    if linked:
        ranked = t.bed_days
        out.update(
            people_admitted=t.count(where=t.emergency_admissions > 0),
            emergency_admissions=t.emergency_admissions.sum().cast("int64"),
            bed_days=ranked.sum().cast("float64"),
            bed_days_contributors=t.count(where=ranked > 0),
            bed_days_top1=ranked.max().cast("float64"),
            bed_days_top2=t.second_bed_days.max().cast("float64"),
        )
    return out


def _with_second(t: ir.Table, key: str) -> ir.Table:
    """Add ``second_bed_days``: a person's bed days if they have the second-largest in their
    ``key`` group (row_number 1 in ibis is the second row), else 0."""
    position = ibis.row_number().over(group_by=t[key], order_by=ibis.desc(t.bed_days))
    return t.mutate(second_bed_days=ibis.ifelse(position == 1, t.bed_days, 0))


def risk_tiers(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, spells: ir.Table | None = None
) -> ir.Table:
    """People per risk tier (see the module docstring) and, with linked ``spells``, their
    emergency admissions and bed days in the 365 days to ``as_of``.

    Columns: ``risk_tier``, ``people``; with spells also ``people_admitted``,
    ``emergency_admissions``, ``bed_days`` (float64, a magnitude) and its helpers
    ``bed_days_contributors``, ``bed_days_top1``, ``bed_days_top2`` (release with
    ``magnitudes={"bed_days": Magnitude(*BED_DAYS_HELPERS)}``). Emergency admissions per
    1,000 = emergency_admissions / people x 1000, from released figures.
    """
    return _by_group(patients, registers, as_of, spells, "risk_tier")


def segments(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, spells: ir.Table | None = None
) -> ir.Table:
    """People per segment (``SEGMENTS``) with, given linked ``spells``, activity as in
    :func:`risk_tiers`. Columns: ``segment``, ``people`` (and the activity columns)."""
    return _by_group(patients, registers, as_of, spells, "segment")


def _by_group(patients, registers, as_of, spells, key: str) -> ir.Table:
    t = _people(patients, registers, as_of, spells)
    if spells is not None:
        t = _with_second(t, key)
    return t.group_by(key).aggregate(**_activity(t, spells is not None))


def core20plus5(
    patients: ir.Table, registers: ir.Table, as_of: dt.date, spells: ir.Table | None = None
) -> ir.Table:
    """Core20 (IMD deciles 1-2) against the rest of the population on ``as_of``.

    Columns: ``core20`` (``CORE20``, ``REST``, ``IMD_NOT_KNOWN`` when present), ``people``
    (the list: the denominator of all three registers, which cover all ages), ``hypertension``,
    ``copd``, ``smi`` (people on the HYP, COPD and MH registers) and, with linked ``spells``,
    ``people_admitted`` and ``emergency_admissions`` in the 365 days to ``as_of``.
    """
    day = check_date(as_of, "as_of")
    t = _people(patients, registers, day, spells)
    entries = _on_register(registers, day)
    flags = entries.group_by("nhs_number").aggregate(
        **{name: (entries.condition == code).any() for name, code in CORE20PLUS5_REGISTERS.items()}
    )
    t = t.left_join(flags, "nhs_number").select(
        *t.columns, **{n: ibis.coalesce(flags[n], False) for n in CORE20PLUS5_REGISTERS}
    )
    metrics: dict[str, ir.Value] = {"people": t.count()}
    metrics.update({n: t.count(where=t[n]) for n in CORE20PLUS5_REGISTERS})
    if spells is not None:
        metrics["people_admitted"] = t.count(where=t.emergency_admissions > 0)
        metrics["emergency_admissions"] = t.emergency_admissions.sum().cast("int64")
    return t.group_by("core20").aggregate(**metrics)
