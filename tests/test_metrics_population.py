"""Spec tests for fdp_kernel.metrics.population: small hand-made tables, answers worked out by
hand.

Reference date AS_OF = 2026-10-31. Ages are whole years on that date. Emergency admissions:
admission methods 21, 22, 28 admitted from 2025-11-01 to 2026-10-31 (365 days).
"""

from __future__ import annotations

import datetime as dt
import inspect

import ibis
import ibis.expr.types as ir
import pytest

import fdp_kernel
from fdp_kernel.catalog import DATASETS
from fdp_kernel.errors import UsageError
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.metrics import population as m
from tests.conftest import OPERATOR
from tests.fixtures import engines as engine_fixtures
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.helpers import memtable, records

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

AS_OF = dt.date(2026, 10, 31)
D = dt.date
PATIENT_SCHEMA = {
    "nhs_number": "string",
    "date_of_birth": "date",
    "date_of_death": "date",
    "imd_decile": "int8",
}
REGISTER_SCHEMA = {"nhs_number": "string", "condition": "string", "diagnosis_date": "date"}
SPELL_SCHEMA = {
    "nhs_number": "string",
    "admission_date": "date",
    "discharge_date": "date",
    "admission_method": "string",
}

# nhs_number, date of birth, date of death, IMD decile  -> age band on AS_OF
PATIENTS = [
    ("a", D(1940, 1, 1), None, 1),  # 86: 85+, Core20
    ("b", D(1955, 6, 1), None, 2),  # 71: 65-74, Core20
    ("c", D(2000, 1, 1), None, 5),  # 26: 18-34
    ("d", D(2010, 1, 1), None, 6),  # 16: 0-17
    ("e", D(2022, 1, 1), None, 8),  # 4: 0-17, on the asthma register below its age (6+)
    ("f", D(1960, 1, 1), D(2026, 5, 1), 5),  # died before AS_OF: not in the population
    ("g", D(2026, 3, 1), None, None),  # infant, no IMD decile
    ("h", D(1980, 1, 1), None, 10),  # 46: 35-49, learning disability
    ("i", D(1970, 1, 1), None, 3),  # 56: 50-64, cancer diagnosed this year
    ("j", D(1990, 6, 15), None, 4),  # 36: 35-49, no register, one emergency admission
    ("k", D(1975, 1, 1), None, 7),  # 51: 50-64, five registers
]
REGISTERS = [
    ("a", "DEM", D(2020, 1, 1)),
    ("a", "HF", D(2018, 1, 1)),
    ("a", "HYP", D(2000, 1, 1)),
    ("b", "COPD", D(2015, 1, 1)),
    ("b", "HYP", None),  # no diagnosis date: counts
    ("c", "DEP", D(2020, 1, 1)),
    ("c", "OB", D(2026, 12, 1)),  # recorded after AS_OF: not counted
    ("d", "AST", D(2024, 1, 1)),
    ("e", "AST", D(2025, 1, 1)),
    ("f", "HYP", D(2010, 1, 1)),  # dead: not counted
    ("h", "LD", D(1990, 1, 1)),
    ("i", "CAN", D(2026, 6, 1)),  # within the last year: "short decline" segment
    ("k", "HYP", D(2010, 1, 1)),
    ("k", "DM", D(2012, 1, 1)),
    ("k", "CKD", D(2020, 1, 1)),
    ("k", "CHD", D(2019, 1, 1)),
    ("k", "AF", D(2021, 1, 1)),
]
SPELLS = [
    ("j", D(2026, 9, 1), D(2026, 9, 5), "21"),  # 4 bed days
    ("a", D(2026, 10, 25), None, "22"),  # still in: 6 bed days to AS_OF
    ("a", D(2025, 10, 31), D(2025, 11, 10), "21"),  # admitted a day before the window
    ("a", D(2025, 11, 1), D(2025, 11, 3), "28"),  # first day of the window: 2 bed days
    ("b", D(2026, 7, 1), D(2026, 7, 3), "11"),  # elective: not an emergency
    ("f", D(2026, 4, 1), D(2026, 4, 20), "21"),  # not in the population on AS_OF
    ("k", D(2026, 10, 31), D(2026, 10, 31), "21"),  # same day: 0 bed days
]


con = engine_fixtures.spec_con  # every spec test runs on DuckDB, PostgreSQL and Spark
postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session


def table(rows: list[tuple], schema: dict[str, str]) -> ir.Table:
    return memtable(rows, schema)


@pytest.fixture(scope="module")
def tables():
    return table(PATIENTS, PATIENT_SCHEMA), table(REGISTERS, REGISTER_SCHEMA)


@pytest.fixture(scope="module")
def spells():
    return table(SPELLS, SPELL_SCHEMA)


def by_key(rows, key):
    return {r.pop(key): r for r in rows}


def test_population_and_age_bands(con, tables):
    got = by_key(records(con, m.population(tables[0], AS_OF)), "nhs_number")
    assert set(got) == set("abcdeghijk"), "f died before AS_OF"
    assert {k: v["age_band"] for k, v in got.items()} == {
        "a": "85+",
        "b": "65-74",
        "c": "18-34",
        "d": "0-17",
        "e": "0-17",
        "g": "0-17",
        "h": "35-49",
        "i": "50-64",
        "j": "35-49",
        "k": "50-64",
    }
    assert got["a"]["core20"] == m.CORE20 and got["c"]["core20"] == m.REST
    assert got["g"]["core20"] == m.IMD_NOT_KNOWN and got["g"]["imd_quintile"] is None
    # Age band edges: 17 on AS_OF is 0-17; 18 on AS_OF is 18-34; 85 on AS_OF is 85+.
    edge = table(
        [
            ("x", D(2009, 11, 1), None, 1),
            ("y", D(2008, 10, 31), None, 1),
            ("z", D(1941, 10, 31), None, 1),
        ],
        PATIENT_SCHEMA,
    )
    got = by_key(records(con, m.population(edge, AS_OF)), "nhs_number")
    assert [got[k]["age_band"] for k in "xyz"] == ["0-17", "18-34", "85+"]


def test_prevalence_uses_age_restricted_denominators(con, tables):
    got = by_key(records(con, m.prevalence(*tables, AS_OF)), "condition")
    assert len(got) == len(m.REGISTERS)
    # 10 people; 18+: a b c h i j k = 7; 17+: the same 7; 6+: those 7 and d = 8.
    assert got["HYP"] == {"register": 3, "list_size": 10}  # a, b, k (f has died)
    assert got["DEP"] == {"register": 1, "list_size": 7}
    assert got["OB"] == {"register": 0, "list_size": 7}  # c's entry is after AS_OF
    assert got["DM"] == {"register": 1, "list_size": 7}
    assert got["AST"] == {"register": 1, "list_size": 8}  # d; e is 4, below the register's 6
    assert got["DEM"] == {"register": 1, "list_size": 10}
    assert got["MH"] == {"register": 0, "list_size": 10}


def test_prevalence_by_age_band(con, tables):
    rows = records(con, m.prevalence(*tables, AS_OF, by=("age_band",)))
    got = {(r["age_band"], r["condition"]): (r["register"], r["list_size"]) for r in rows}
    assert got["0-17", "AST"] == (1, 1)  # d only: e (4) and g (0) are below 6
    assert got["0-17", "HYP"] == (0, 3)
    assert got["0-17", "DEP"] == (0, 0)  # nobody under 18 is in a depression denominator
    assert got["50-64", "HYP"] == (1, 2)
    assert len(rows) == 6 * len(m.REGISTERS), "a row for every register in every band present"


def test_multimorbidity_by_age_band(con, tables):
    rows = records(con, m.multimorbidity(*tables, AS_OF))
    got = {(r["age_band"], r["conditions"]): r["people"] for r in rows}
    assert got == {
        ("85+", "3"): 1,  # a
        ("65-74", "2"): 1,  # b
        ("18-34", "1"): 1,  # c (the future obesity entry does not count)
        ("0-17", "0"): 1,  # g
        ("0-17", "1"): 2,  # d, e (registers as recorded)
        ("35-49", "0"): 1,  # j
        ("35-49", "1"): 1,  # h
        ("50-64", "1"): 1,  # i
        ("50-64", "4+"): 1,  # k: 5 registers
    }
    whole = records(con, m.multimorbidity(*tables, AS_OF, by=()))
    assert {r["conditions"]: r["people"] for r in whole} == {
        "0": 2,
        "1": 5,
        "2": 1,
        "3": 1,
        "4+": 1,
    }


def test_segments_take_the_highest_need_that_applies(con, tables, spells):
    unlinked = {r["segment"]: r["people"] for r in records(con, m.segments(*tables, AS_OF))}
    assert unlinked == {
        m.SEGMENTS[7]: 1,  # a: dementia
        m.SEGMENTS[6]: 2,  # b: COPD; k: CKD
        m.SEGMENTS[5]: 1,  # i: cancer in the last year
        m.SEGMENTS[4]: 1,  # h: learning disability
        m.SEGMENTS[3]: 3,  # c, d, e
        m.SEGMENTS[1]: 1,  # g: under 1
        m.SEGMENTS[0]: 1,  # j: healthy, as nothing links their admission
    }
    linked = by_key(records(con, m.segments(*tables, AS_OF, spells)), "segment")
    assert linked[m.SEGMENTS[2]]["people"] == 1, "j: acutely ill once the spell is linked"
    assert m.SEGMENTS[0] not in linked


def test_risk_tiers_with_linked_activity(con, tables, spells):
    # Scores: a 2+2+1 +3 (85+) = 8, k 1+1+2+1+1 = 6, b 2+1 +1 = 4, i 2, c/d/e/h 1, g/j 0.
    # percent_rank over 10 people: a is 0 (< 0.005, top 0.5%); k is 1/9: the rest.
    got = by_key(records(con, m.risk_tiers(*tables, AS_OF, spells)), "risk_tier")
    assert got == {
        "Top 0.5%": {
            "people": 1,
            "people_admitted": 1,
            "emergency_admissions": 2,  # 1 Nov 2025 and 25 Oct 2026; 31 Oct 2025 is outside
            "bed_days": 8.0,  # 2 + 6 (still in hospital on AS_OF)
            "bed_days_contributors": 1,
            "bed_days_top1": 8.0,
            "bed_days_top2": 0.0,
        },
        "Rest (95%)": {
            "people": 9,
            "people_admitted": 2,  # j and k
            "emergency_admissions": 2,  # b's elective spell and f's do not count
            "bed_days": 4.0,  # j 4, k 0 (same day)
            "bed_days_contributors": 1,
            "bed_days_top1": 4.0,
            "bed_days_top2": 0.0,
        },
    }


def test_risk_tiers_are_top_half_two_and_five_percent(con):
    # 201 people under 65 and on no register: all score 0, so the oldest rank first.
    # percent_rank = rank / 200: rank 0 top 0.5%; ranks 1-3 (< 0.02); ranks 4-9 (< 0.05).
    people = [(f"p{i:03d}", D(1980, 1, 1) + dt.timedelta(days=i), None, 5) for i in range(201)]
    got = records(
        con, m.risk_tiers(table(people, PATIENT_SCHEMA), table([], REGISTER_SCHEMA), AS_OF)
    )
    assert {r["risk_tier"]: r["people"] for r in got} == {
        "Top 0.5%": 1,
        "0.5-2%": 3,
        "2-5%": 6,
        "Rest (95%)": 191,
    }


def test_core20plus5(con, tables, spells):
    got = by_key(records(con, m.core20plus5(*tables, AS_OF, spells)), "core20")
    assert got == {
        m.CORE20: {  # a, b
            "people": 2,
            "hypertension": 2,
            "copd": 1,
            "smi": 0,
            "people_admitted": 1,
            "emergency_admissions": 2,
        },
        m.REST: {  # c d e h i j k
            "people": 7,
            "hypertension": 1,
            "copd": 0,
            "smi": 0,
            "people_admitted": 2,
            "emergency_admissions": 2,
        },
        m.IMD_NOT_KNOWN: {  # g
            "people": 1,
            "hypertension": 0,
            "copd": 0,
            "smi": 0,
            "people_admitted": 0,
            "emergency_admissions": 0,
        },
    }
    unlinked = by_key(records(con, m.core20plus5(*tables, AS_OF)), "core20")
    assert unlinked[m.CORE20] == {"people": 2, "hypertension": 2, "copd": 1, "smi": 0}


def test_empty_organisation(con):
    nobody, none = table([], PATIENT_SCHEMA), table([], REGISTER_SCHEMA)
    assert records(con, m.list_size(nobody, AS_OF)) == [{"people": 0}]
    assert records(con, m.prevalence(nobody, none, AS_OF)) == []
    assert records(con, m.multimorbidity(nobody, none, AS_OF)) == []
    assert records(con, m.risk_tiers(nobody, none, AS_OF, table([], SPELL_SCHEMA))) == []


def test_as_of_must_be_a_date(tables):
    with pytest.raises(UsageError):
        m.prevalence(*tables, dt.datetime(2026, 10, 31))  # type: ignore[arg-type]


def test_small_numbers_are_all_suppressed_when_released(act_as, tables, spells):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="population_health_planning", org="Y90001")
    released = ws.release(
        m.risk_tiers(*tables, AS_OF, spells),
        magnitudes={"bed_days": Magnitude(*m.BED_DAYS_HELPERS)},
    )
    data = released.data.set_index("risk_tier")
    # 1 person: hidden; then 9 people is the only other cell of the margin: hidden too.
    assert data["people"].isna().all()
    reasons = released.suppressed.set_index(released.data["risk_tier"])["people"]
    assert reasons.to_dict() == {"Top 0.5%": "primary: 1-7", "Rest (95%)": "secondary"}
    # Bed days: fewer than 10 people contributed to either sum.
    assert data["bed_days"].isna().all()
    assert not {*m.BED_DAYS_HELPERS} & set(data.columns), "helper columns are never released"
    prevalence = ws.release(m.prevalence(*tables, AS_OF))
    shown = prevalence.data[["register", "list_size"]]
    assert ((shown.fillna(0) == 0) | (shown.fillna(0) >= 10)).all().all()


def test_module_returns_expressions_without_pandas():
    source = inspect.getsource(m)
    assert "import pandas" not in source
    assert not any(call in source for call in (".execute(", ".to_pandas(", ".to_pyarrow("))


def test_every_metric_compiles(sql_dialect):
    dialect = sql_dialect
    t = {d.name: ibis.table(d.schema(), name=d.name) for d in DATASETS}
    p, r, s = t["patients"], t["ltc_registers"], t["inpatient_spells"]
    exprs = [
        m.population(p, AS_OF),
        m.list_size(p, AS_OF, by=("age_band",)),
        m.prevalence(p, r, AS_OF, by=("imd_decile",)),
        m.multimorbidity(p, r, AS_OF),
        m.risk_tiers(p, r, AS_OF, s),
        m.segments(p, r, AS_OF),
        m.core20plus5(p, r, AS_OF, s),
    ]
    for expr in exprs:
        assert isinstance(expr, ir.Table)
        assert "SELECT" in ibis.to_sql(expr, dialect=dialect)
