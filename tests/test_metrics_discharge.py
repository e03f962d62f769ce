"""Spec tests for fdp_kernel.metrics.discharge: small hand-made tables, answers worked out by hand.

Reference day D = 2025-03-31; "D-k" is k days before it. A patient is in hospital on day X at
the midnight count: admitted on or before X and not discharged by X. NCTR on X: in hospital
and discharge_ready_date <= X. Length of stay on X = X - admission date.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
from typing import Any

import ibis
import ibis.expr.types as ir
import pytest

import fdp_kernel
from fdp_kernel.catalog import DATASETS
from fdp_kernel.errors import UsageError
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.metrics import discharge as m
from tests.conftest import OPERATOR
from tests.fixtures import engines as engine_fixtures
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.helpers import memtable, records

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

D = dt.date(2025, 3, 31)


def day(k: int) -> dt.date:
    """D - k days (negative k: after D)."""
    return D - dt.timedelta(days=k)


SPELL_SCHEMA = {
    "org_code": "string",
    "spell_id": "string",
    "nhs_number": "string",
    "admission_date": "date",
    "discharge_date": "date",
    "admission_method": "string",
    "treatment_function_code": "string",
    "discharge_ready_date": "date",
    "discharge_pathway": "int8",
    "nctr_reason": "string",
    "died_in_hospital": "boolean",
}
SPELL_DEFAULTS = {
    "org_code": "RSA",
    "discharge_date": None,
    "admission_method": "21",
    "treatment_function_code": "300",
    "discharge_ready_date": None,
    "discharge_pathway": None,
    "nctr_reason": None,
    "died_in_hospital": False,
}
BED_SCHEMA = {
    "org_code": "string",
    "date": "date",
    "ga_beds_available": "int32",
    "ga_beds_occupied": "int32",
}
PACKAGE_SCHEMA = {
    "org_code": "string",
    "package_id": "string",
    "nhs_number": "string",
    "referring_org_code": "string",
    "referral_date": "date",
    "start_date": "date",
    "service_type": "string",
    "discharge_pathway": "int8",
}
PATIENT_SCHEMA = {
    "nhs_number": "string",
    "given_name": "string",
    "family_name": "string",
    "date_of_birth": "date",
    "sex": "string",
}


con = engine_fixtures.spec_con  # every spec test runs on DuckDB, PostgreSQL and Spark
postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session


def table(rows: list[dict[str, Any]], schema: dict[str, str], defaults=None) -> ir.Table:
    return memtable(rows, schema, defaults)


def spells_table(rows) -> ir.Table:
    return table(rows, SPELL_SCHEMA, SPELL_DEFAULTS)


def spell(sid: str, person: str, admitted: int, **kw) -> dict[str, Any]:
    return {"spell_id": sid, "nhs_number": person, "admission_date": day(admitted), **kw}


SPELLS = [
    # In hospital, ready D-3 (NCTR from D-3), P1, LOS 10 at D.
    spell("s1", "A", 10, discharge_ready_date=day(3), discharge_pathway=1, nctr_reason="P1H"),
    # In hospital, not ready, LOS 25 at D. Treatment function 430.
    spell("s2", "B", 25, treatment_function_code="430"),
    # Discharged on D, ready D-2: NCTR on the midnights of D-2 and D-1 (2 bed days lost).
    spell(
        "s3",
        "C",
        7,
        discharge_date=D,
        discharge_ready_date=day(2),
        discharge_pathway=0,
        nctr_reason="MED",
    ),
    # Day case on D, discharged on its ready date: never in hospital at midnight.
    spell("s4", "D", 0, discharge_date=D, discharge_ready_date=D, discharge_pathway=0),
    # In hospital, ready on D: NCTR at D's midnight only. LOS 21 at D (super-stranded).
    spell("s5", "E", 21, discharge_ready_date=D, discharge_pathway=3, nctr_reason="P3C"),
    # In hospital, LOS 6 at D: not stranded. Treatment function 100.
    spell("s6", "F", 6, treatment_function_code="100"),
    # A's earlier spell: ready D-20, discharged D-5, P2. In [D-7, D] NCTR at D-7 and D-6.
    spell(
        "s7",
        "A",
        30,
        discharge_date=day(5),
        discharge_ready_date=day(20),
        discharge_pathway=2,
        nctr_reason="P2B",
    ),
    # Died on D-1: in hospital at D-2's midnight, not a discharge.
    spell("s8", "G8", 4, discharge_date=day(1), died_in_hospital=True),
    # In hospital, ready D-1 with no reason recorded, P1. Treatment function 100.
    spell(
        "s9",
        "G",
        3,
        discharge_ready_date=day(1),
        discharge_pathway=1,
        treatment_function_code="100",
    ),
    # Recorded as discharged (D-4) the day before its ready date (D-3): a data error that
    # counts as discharged on the ready date, with no bed days lost.
    spell("s10", "H", 5, discharge_date=day(4), discharge_ready_date=day(3), discharge_pathway=0),
]
BEDS = [
    {"org_code": "RSA", "date": day(2), "ga_beds_available": 12, "ga_beds_occupied": 10},
    {"org_code": "RSA", "date": D, "ga_beds_available": 12, "ga_beds_occupied": 11},
    {"org_code": "RSA", "date": day(9), "ga_beds_available": 99, "ga_beds_occupied": 99},
]


@pytest.fixture(scope="module")
def spells() -> ir.Table:
    return spells_table(SPELLS)


@pytest.fixture(scope="module")
def beds() -> ir.Table:
    return table(BEDS, BED_SCHEMA)


def test_daily_flow(con, spells, beds):
    # D-2: in s1 s2 s3 s5 s6 s8 s9 (7); NCTR s1 (ready D-3) s3 (ready D-2) = 2;
    #      LOS s1 8, s2 23, s3 5, s5 19, s6 4, s8 2, s9 1: 7+ s1 s2 s5, 14+ s2 s5, 21+ s2.
    # D-1: s8 left on D-1; in 6; NCTR s1 s3 s9 = 3; LOS s1 9, s2 24, s5 20: 3 / 2 / 1.
    # D:   s3 s4 discharged on D (2 discharges); in s1 s2 s5 s6 s9 = 5; NCTR s1 s5 s9 = 3;
    #      LOS s1 10, s2 25, s5 21: 7+ 3, 14+ 2, 21+ s2 s5 = 2. No sitrep row on D-1: zeros.
    got = records(con, m.daily_flow(spells, beds, day(2), D))
    assert got == [
        {
            "date": day(2),
            "inpatients": 7,
            "nctr_patients": 2,
            "los_7_plus": 3,
            "los_14_plus": 2,
            "los_21_plus": 1,
            "discharges": 0,
            "ga_beds_occupied": 10,
            "ga_beds_available": 12,
        },
        {
            "date": day(1),
            "inpatients": 6,
            "nctr_patients": 3,
            "los_7_plus": 3,
            "los_14_plus": 2,
            "los_21_plus": 1,
            "discharges": 0,  # s8 died
            "ga_beds_occupied": 0,
            "ga_beds_available": 0,
        },
        {
            "date": D,
            "inpatients": 5,
            "nctr_patients": 3,
            "los_7_plus": 3,
            "los_14_plus": 2,
            "los_21_plus": 2,
            "discharges": 2,
            "ga_beds_occupied": 11,
            "ga_beds_available": 12,
        },
    ]


def test_bed_days_lost_equals_the_sum_of_daily_nctr(con, spells, beds):
    daily = records(con, m.daily_flow(spells, beds, day(2), D))
    [lost] = records(con, m.bed_days_lost(spells, day(2), D))
    assert lost["bed_days_lost"] == sum(r["nctr_patients"] for r in daily) == 8


def test_daily_flow_of_empty_tables_lists_every_day_with_zeros(con):
    empty_beds = table([], BED_SCHEMA)
    got = records(con, m.daily_flow(spells_table([]), empty_beds, day(6), D))
    assert [r["date"] for r in got] == [day(k) for k in range(6, -1, -1)]
    assert all(v == 0 for r in got for k, v in r.items() if k != "date")
    with pytest.raises(UsageError):
        m.daily_flow(spells_table([]), empty_beds, D, day(1))


def test_length_of_stay(con, spells):
    assert records(con, m.length_of_stay(spells, D)) == [
        {
            "inpatients": 5,
            "nctr_patients": 3,
            "los_7_plus": 3,
            "los_14_plus": 2,
            "los_21_plus": 2,
        }
    ]
    # 100: s6 (LOS 6), s9 (LOS 3, NCTR). 300: s1 (10, NCTR), s5 (21, NCTR). 430: s2 (25).
    by = records(con, m.length_of_stay(spells, D, by=("treatment_function_code",)))
    assert [tuple(r.values()) for r in by] == [
        ("100", 2, 1, 0, 0, 0),
        ("300", 2, 2, 2, 1, 1),
        ("430", 1, 0, 1, 1, 1),
    ]
    [empty] = records(con, m.length_of_stay(spells_table([]), D))
    assert set(empty.values()) == {0}


def test_stranded_thresholds_are_inclusive(con):
    rows = [spell(f"x{k}", f"P{k}", k) for k in (6, 7, 13, 14, 20, 21)]
    [got] = records(con, m.length_of_stay(spells_table(rows), D))
    assert (got["los_7_plus"], got["los_14_plus"], got["los_21_plus"]) == (5, 3, 1)


def test_discharges_by_pathway(con, spells):
    # Alive discharges in [D-7, D]: s3 (P0), s4 (P0), s10 (P0), s7 (P2); s8 died.
    assert records(con, m.discharges_by_pathway(spells, day(7), D)) == [
        {"discharge_pathway": 0, "discharges": 3, "all_discharges": 4},
        {"discharge_pathway": 1, "discharges": 0, "all_discharges": 4},
        {"discharge_pathway": 2, "discharges": 1, "all_discharges": 4},
        {"discharge_pathway": 3, "discharges": 0, "all_discharges": 4},
    ]
    empty = records(con, m.discharges_by_pathway(spells_table([]), day(7), D))
    assert [(r["discharges"], r["all_discharges"]) for r in empty] == [(0, 0)] * 4


def test_delay_reasons(con, spells):
    # NCTR on a midnight in [D-7, D]: s1 (P1H, P1), s3 (MED, P0), s5 (P3C, P3),
    # s7 (P2B, P2: D-7 and D-6), s9 (no reason: "NR", P1). s4 and s10 never waited a night.
    got = records(con, m.delay_reasons(spells, day(7), D))
    assert [(r["nctr_reason"], r["discharge_pathway"], r["delayed_patients"]) for r in got] == [
        ("MED", 0, 1),
        ("NR", 1, 1),
        ("P1H", 1, 1),
        ("P2B", 2, 1),
        ("P3C", 3, 1),
    ]
    overall = records(con, m.delay_reasons(spells, day(7), D, by=()))
    assert [r["nctr_reason"] for r in overall] == ["MED", "NR", "P1H", "P2B", "P3C"]
    # From D-4 on, s7 (discharged D-5) no longer counts.
    later = records(con, m.delay_reasons(spells, day(4), D, by=()))
    assert "P2B" not in [r["nctr_reason"] for r in later]


def test_bed_days_lost_is_a_magnitude_over_people(con, spells):
    # [D-7, D] per spell: s1 D-3..D = 4, s3 D-2..D-1 = 2, s5 D = 1, s7 D-7..D-6 = 2,
    # s9 D-1..D = 2. Per person: A = s1 + s7 = 6, C = 2, E = 1, G = 2. Total 11.
    assert records(con, m.bed_days_lost(spells, day(7), D)) == [
        {
            "bed_days_lost": 11,
            "delayed_patients": 4,
            "bed_days_contributors": 4,
            "bed_days_top1": 6,
            "bed_days_top2": 2,
        }
    ]
    by = records(con, m.bed_days_lost(spells, day(7), D, by=("discharge_pathway",)))
    assert [tuple(r.values()) for r in by] == [
        (0, 2, 1, 1, 2, 0),  # C
        (1, 6, 2, 2, 4, 2),  # A (s1) 4, G 2
        (2, 2, 1, 1, 2, 0),  # A (s7)
        (3, 1, 1, 1, 1, 0),  # E
    ]
    [empty] = records(con, m.bed_days_lost(spells_table([]), day(7), D))
    assert set(empty.values()) == {0}


def test_ready_date_performance(con, spells):
    # Alive discharges in [D-7, D] with a ready date: s3 (2 days late), s4 (on the day),
    # s7 (15 days late), s10 (before its ready date: on time, 0 days).
    [got] = records(con, m.ready_date_performance(spells, day(7), D))
    assert got["discharges_with_ready_date"] == 4
    assert got["discharged_on_ready_date"] == 2
    assert got["mean_days_ready_to_discharge"] == pytest.approx(17 / 4)
    [empty] = records(con, m.ready_date_performance(spells_table([]), day(7), D))
    assert empty == {
        "discharges_with_ready_date": 0,
        "discharged_on_ready_date": 0,
        "mean_days_ready_to_discharge": None,
    }


def test_bed_days_by_month(con, beds):
    got = records(con, m.bed_days(beds, dt.date(2025, 3, 1), D))
    assert got == [
        {"month": dt.date(2025, 3, 1), "occupied_bed_days": 120, "available_bed_days": 123}
    ]


PACKAGES = [
    # Referred D-10, started D-4 (6 days), RSA, P1, for A.
    ("c1", "A", "RSA", day(10), day(4), 1),
    ("c2", "G", "RSA", day(2), None, 1),  # awaited, 2 days
    ("c3", "E", "RSB", day(8), day(-2), 3),  # starts after D: awaited at D, 8 days
    ("c4", "Z", "RSA", day(40), day(35), 2),  # February
    ("c5", "Y", "RSB", day(6), D, 1),  # referred and started in the week (6 days)
]


@pytest.fixture(scope="module")
def packages() -> ir.Table:
    rows = [
        dict(
            zip(
                (
                    "package_id",
                    "nhs_number",
                    "referring_org_code",
                    "referral_date",
                    "start_date",
                    "discharge_pathway",
                ),
                p,
                strict=True,
            ),
            org_code="701",
            service_type="reablement",
        )
        for p in PACKAGES
    ]
    return table(rows, PACKAGE_SCHEMA)


def test_care_package_activity(con, packages):
    # [D-6, D]: referrals c2, c5; starts c1 (D-4), c5 (D): mean (6 + 6) / 2.
    [got] = records(con, m.care_package_activity(packages, day(6), D))
    assert got == {"referrals": 2, "starts": 2, "mean_days_referral_to_start": 6.0}
    [empty] = records(con, m.care_package_activity(table([], PACKAGE_SCHEMA), day(6), D))
    assert empty == {"referrals": 0, "starts": 0, "mean_days_referral_to_start": None}


def test_care_packages_awaited(con, packages):
    assert records(con, m.care_packages_awaited(packages, D)) == [
        {"awaiting": 2, "awaiting_7_plus_days": 1}  # c2 (2 days), c3 (8 days)
    ]
    by = records(con, m.care_packages_awaited(packages, D, by=("referring_org_code",)))
    assert [tuple(r.values()) for r in by] == [("RSA", 1, 0), ("RSB", 1, 1)]


def test_care_package_months_with_an_empty_month(con, packages):
    got = records(con, m.care_package_months(packages, dt.date(2025, 1, 15), D))
    assert got == [
        {"month": dt.date(2025, 1, 1), "referrals": 0, "starts": 0},
        {"month": dt.date(2025, 2, 1), "referrals": 1, "starts": 1},  # c4
        {"month": dt.date(2025, 3, 1), "referrals": 4, "starts": 2},  # c3 starts in April
    ]


# -- the direct-care discharge list ----------------------------------------------------------

LIST_SPELLS = [
    spell("L1", "A", 9, discharge_ready_date=day(3), discharge_pathway=1, nctr_reason="P1H"),
    spell("L2", "E", 4, discharge_ready_date=D, discharge_pathway=3, nctr_reason="P3C"),
    spell("L3", "Q", 2, discharge_ready_date=day(-1), discharge_pathway=2),  # ready tomorrow
    spell("L4", "R", 2, discharge_ready_date=day(1), discharge_pathway=0),  # P0: no support
    # Discharged D-2: the discharge date says so; without it only a started package could.
    spell("L5", "H", 20, discharge_date=day(2), discharge_ready_date=day(10), discharge_pathway=1),
    # A package for K from this trust started D-1, after the ready date: K has gone home.
    spell("L6", "K", 9, discharge_ready_date=day(5), discharge_pathway=1),
    # M's package started D-1 but was referred by another trust: M is still waiting here.
    spell("L7", "M", 9, discharge_ready_date=day(4), discharge_pathway=1),
    # N's package started before the ready date (an earlier episode); N is not in the index.
    spell("L8", "N", 9, discharge_ready_date=day(6), discharge_pathway=2),
]
LIST_PACKAGES = [
    ("p6", "K", "RSA", day(6), day(1), 1),
    ("p7", "M", "RSB", day(6), day(1), 1),
    ("p8", "N", "RSA", day(30), day(8), 2),
]
LIST_PATIENTS = [
    ("A", "Ada", "Able", dt.date(1940, 1, 1), "F"),
    ("E", "Eli", "Ever", dt.date(1935, 5, 5), "M"),
    ("H", "Hal", "Hope", dt.date(1950, 2, 2), "M"),
    ("K", "Kim", "Kay", dt.date(1945, 3, 3), "F"),
    ("M", "Mo", "May", dt.date(1960, 4, 4), "M"),
]


@pytest.fixture(scope="module")
def listing_tables():
    spells = spells_table(LIST_SPELLS)
    names = ("package_id", "nhs_number", "referring_org_code", "referral_date", "start_date")
    packages = table(
        [
            {
                **dict(zip((*names, "discharge_pathway"), p, strict=True)),
                "org_code": "701",
                "service_type": "reablement",
            }
            for p in LIST_PACKAGES
        ],
        PACKAGE_SCHEMA,
    )
    people = table(
        [dict(zip(PATIENT_SCHEMA, p, strict=True)) for p in LIST_PATIENTS], PATIENT_SCHEMA
    )
    return spells, people, packages


def _listed(con, expr) -> list[tuple[str, int]]:
    return [(r["spell_id"], r["days_since_ready"]) for r in records(con, expr)]


def test_discharge_list_with_the_agreed_columns_and_care_packages(con, listing_tables):
    spells, people, packages = listing_tables
    agreed = spells.drop("discharge_date", "treatment_function_code", "died_in_hospital")
    got = records(con, m.discharge_list(agreed, people, D, packages=packages))
    # L5 has left, but nothing the LA can see says so (no discharge date is shared).
    assert [(r["spell_id"], r["days_since_ready"]) for r in got] == [
        ("L5", 10),
        ("L8", 6),
        ("L7", 4),
        ("L1", 3),
        ("L2", 0),
    ]
    assert tuple(got[0]) == m.DISCHARGE_LIST_COLUMNS
    first = got[3]
    assert (first["given_name"], first["family_name"], first["nhs_number"]) == ("Ada", "Able", "A")
    assert (first["discharge_pathway"], first["nctr_reason"]) == (1, "P1H")
    assert got[1]["given_name"] is None  # N is not in the patient index: listed all the same


def test_discharge_list_with_discharge_dates(con, listing_tables):
    spells, people, packages = listing_tables
    assert _listed(con, m.discharge_list(spells, people, D)) == [
        ("L8", 6),
        ("L6", 5),
        ("L7", 4),
        ("L1", 3),
        ("L2", 0),
    ]
    both = m.discharge_list(spells, people, D, packages=packages)
    assert _listed(con, both) == [("L8", 6), ("L7", 4), ("L1", 3), ("L2", 0)]
    with pytest.raises(UsageError):
        m.discharge_list(spells.drop("discharge_date"), people, D)
    assert records(con, m.discharge_list(spells_table([]), people, D)) == []


def test_discharge_list_matches_the_trust_in_a_pooled_patient_index(con, listing_tables):
    spells, people, _ = listing_tables
    pooled = people.mutate(org_code=ibis.literal("RSA"))
    other = people.filter(people.nhs_number == "A").mutate(
        given_name=ibis.literal("Other"), org_code=ibis.literal("RSB")
    )
    got = records(con, m.discharge_list(spells, pooled.union(other), D))
    assert [r["given_name"] for r in got if r["spell_id"] == "L1"] == ["Ada"]


# -- release on small data: everything suppressed -------------------------------------------


def test_small_figures_are_all_suppressed_on_release(con, spells, beds, act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="care_coordination_planning", org="RSA")
    daily = ws.release(con.execute(m.daily_flow(spells, beds, day(2), D)), title="tiny")
    counts = [c for c in daily.data.columns if c != "date"]
    shown = daily.data[counts]
    # Every count is 0 (shown) or 1-11: 1-7 suppressed, 8-11 rounded to 10 unless a margin
    # forces it out; nothing is shown as it was.
    assert shown.isna().to_numpy().sum() > 0
    assert all(v == 0 or v % 5 == 0 for v in shown.stack().dropna())
    lost = ws.release(
        con.execute(m.bed_days_lost(spells, day(7), D)),
        magnitudes={
            "bed_days_lost": Magnitude("bed_days_contributors", "bed_days_top1", "bed_days_top2")
        },
    )
    assert lost.data["bed_days_lost"].isna().all()  # 4 contributors < 10
    assert lost.data["delayed_patients"].isna().all()  # 4 people: 1-7
    assert "bed_days_top1" not in lost.data.columns
    ws.close()


# -- configuration and portability -----------------------------------------------------------


def test_targets_are_configuration():
    assert m.TARGETS["ga_bed_occupancy_max"] == 0.92
    assert m.PATHWAY_MODEL == {0: 0.50, 1: 0.45, 2: 0.04, 3: 0.01}
    assert math.isclose(sum(m.PATHWAY_MODEL.values()), 1.0)


def test_dates_must_be_dates(spells):
    with pytest.raises(UsageError):
        m.length_of_stay(spells, dt.datetime(2025, 3, 31))  # type: ignore[arg-type]


def test_module_returns_expressions_without_pandas():
    source = inspect.getsource(m)
    assert "import pandas" not in source
    assert not any(call in source for call in (".execute(", ".to_pandas(", ".to_pyarrow("))


def test_every_metric_compiles(sql_dialect):
    dialect = sql_dialect
    t = {d.name: ibis.table(d.schema(), name=d.name) for d in DATASETS}
    s, b, p, c = t["inpatient_spells"], t["bed_occupancy"], t["patients"], t["care_packages"]
    exprs = [
        m.in_hospital(s, D),
        m.daily_flow(s, b, day(30), D),
        m.length_of_stay(s, D, by=("treatment_function_code",)),
        m.discharges_by_pathway(s, day(30), D),
        m.delay_reasons(s, day(30), D),
        m.bed_days_lost(s, day(30), D, by=("discharge_pathway",)),
        m.ready_date_performance(s, day(30), D),
        m.bed_days(b, day(90), D),
        m.care_package_activity(c, day(6), D, by=("service_type",)),
        m.care_packages_awaited(c, D, by=("referring_org_code", "discharge_pathway")),
        m.care_package_months(c, day(90), D),
        m.discharge_list(s, p, D, packages=c),
    ]
    for expr in exprs:
        assert isinstance(expr, ir.Table)
        assert "SELECT" in ibis.to_sql(expr, dialect=dialect)
