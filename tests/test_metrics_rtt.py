"""Spec tests for fdp_kernel.metrics.rtt: small hand-made tables, answers worked out by hand.

Reference date AS_OF = 2025-03-31. A pathway "waiting N days" starts on AS_OF - N days.
Week band: 0 for days 0-7, else (days - 1) // 7. Within 18 weeks: days <= 126. Over 52/65/78/104
weeks: days > 364/455/546/728.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
from typing import Any

import ibis
import ibis.expr.types as ir
import pytest

from fdp_kernel.catalog import DATASETS
from fdp_kernel.errors import UsageError
from fdp_kernel.metrics import rtt as m
from tests.fixtures import engines as engine_fixtures
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.helpers import memtable, records

# Ibis 12's pandas conversion reads a pandas option that pandas 3 deprecates: not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

AS_OF = dt.date(2025, 3, 31)
D = dt.timedelta

RTT_SCHEMA = {
    "pathway_id": "string",
    "nhs_number": "string",
    "rtt_start_date": "date",
    "rtt_end_date": "date",
    "treatment_function_code": "string",
    "rtt_period_status": "string",
    "removed_by_validation": "boolean",
    "tci_date": "date",
    "outpatient_future_appointment_date": "date",
    "date_last_attended": "date",
    "last_pas_validation_date": "date",
}
RTT_DEFAULTS = {
    "nhs_number": "9000000009",
    "rtt_end_date": None,
    "treatment_function_code": "100",
    "rtt_period_status": "20",
    "removed_by_validation": False,
    "tci_date": None,
    "outpatient_future_appointment_date": None,
    "date_last_attended": None,
    "last_pas_validation_date": None,
}


con = engine_fixtures.spec_con  # every spec test runs on DuckDB, PostgreSQL and Spark
postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session


def table(rows: list[dict[str, Any]], schema: dict[str, str], defaults=None) -> ir.Table:
    return memtable(rows, schema, defaults)


def rtt_table(rows: list[dict[str, Any]]) -> ir.Table:
    return table(rows, RTT_SCHEMA, RTT_DEFAULTS)


def waiting(pathway_id: str, days: int, **kw: Any) -> dict[str, Any]:
    """A pathway that has waited `days` days at AS_OF (open unless kw says otherwise)."""
    return {"pathway_id": pathway_id, "rtt_start_date": AS_OF - D(days=days), **kw}


# Open-pathway boundaries. Open set: 14 "pNNN" pathways + e_after = 15.
BOUNDARY_ROWS = [
    waiting("p000", 0),  # band 0
    waiting("p007", 7),  # band 0 (0-1 weeks covers days 0-7)
    waiting("p008", 8),  # band 1
    waiting("p126", 126),  # band 17 (125 // 7), within 18 weeks
    waiting("p127", 127),  # band 18, not within 18 weeks
    waiting("p364", 364, treatment_function_code="110"),  # band 51, not over 52
    waiting("p365", 365, treatment_function_code="110"),  # band 52, over 52
    waiting("p455", 455, treatment_function_code="110"),  # band 64, not over 65
    waiting("p456", 456, treatment_function_code="110"),  # band 65, over 65
    waiting("p546", 546, treatment_function_code="120"),  # band 77, not over 78
    waiting("p547", 547, treatment_function_code="120"),  # band 78, over 78
    waiting("p728", 728, treatment_function_code="120"),  # band 103, not over 104
    waiting("p729", 729, treatment_function_code="120"),  # band 104, over 104
    waiting("p800", 800, treatment_function_code="120"),  # band 114, "104+" in distribution
    # Ended on AS_OF: closed. Ends the day after: open, 50 days, band 49 // 7 = 7.
    waiting("e_on", 50, rtt_end_date=AS_OF, rtt_period_status="30"),
    waiting("e_after", 50, rtt_end_date=AS_OF + D(days=1), rtt_period_status="30"),
    waiting("nullified", 30, rtt_period_status="33"),  # excluded everywhere
    {"pathway_id": "future", "rtt_start_date": AS_OF + D(days=1)},  # not started yet
]


@pytest.fixture(scope="module")
def boundary() -> ir.Table:
    return rtt_table(BOUNDARY_ROWS)


def test_open_pathways_days_and_bands(con, boundary):
    got = {
        r["pathway_id"]: (r["days_waited"], r["weeks_band"])
        for r in records(con, m.open_pathways(boundary, AS_OF))
    }
    assert got == {
        "p000": (0, 0),
        "p007": (7, 0),
        "p008": (8, 1),
        "p126": (126, 17),
        "p127": (127, 18),
        "p364": (364, 51),
        "p365": (365, 52),
        "p455": (455, 64),
        "p456": (456, 65),
        "p546": (546, 77),
        "p547": (547, 78),
        "p728": (728, 103),
        "p729": (729, 104),
        "p800": (800, 114),
        "e_after": (50, 7),
    }


def test_waiting_list_summary(con, boundary):
    # within 18 (<=126): p000 p007 p008 p126 e_after = 5
    # over 52 (>364): p365 p455 p456 p546 p547 p728 p729 p800 = 8; over 65 (>455): 6 of them,
    # over 78 (>546): p547 p728 p729 p800 = 4; over 104 (>728): p729 p800 = 2
    assert records(con, m.waiting_list_summary(boundary, AS_OF)) == [
        {
            "waiting_list": 15,
            "within_18_weeks": 5,
            "over_52_weeks": 8,
            "over_65_weeks": 6,
            "over_78_weeks": 4,
            "over_104_weeks": 2,
        }
    ]


def test_summary_of_empty_table_is_one_row_of_zeros(con):
    got = records(con, m.waiting_list_summary(rtt_table([]), AS_OF))
    assert got == [dict.fromkeys(got[0], 0)] and len(got[0]) == 6


def test_weeks_waited_distribution_caps_at_104(con, boundary):
    # p729 (band 104) and p800 (band 114) share band 104, "104+".
    expected = [
        ("100", 0, 2),
        ("100", 1, 1),
        ("100", 7, 1),
        ("100", 17, 1),
        ("100", 18, 1),
        ("110", 51, 1),
        ("110", 52, 1),
        ("110", 64, 1),
        ("110", 65, 1),
        ("120", 77, 1),
        ("120", 78, 1),
        ("120", 103, 1),
        ("120", 104, 2),
    ]
    got = records(con, m.weeks_waited_distribution(boundary, AS_OF))
    assert [(r["treatment_function_code"], r["weeks_band"], r["pathways"]) for r in got] == expected
    overall = records(con, m.weeks_waited_distribution(boundary, AS_OF, by=()))
    assert sum(r["pathways"] for r in overall) == 15 and overall[0] == {
        "weeks_band": 0,
        "pathways": 2,
    }


def test_long_waiters_by_treatment_function(con, boundary):
    # 100: 6 open, none long. 110: p364 p365 p455 p456 -> over 52: 3, over 65: p456.
    # 120: p546 p547 p728 p729 p800 -> all over 65, over 78: 4, over 104: 2.
    assert records(con, m.long_waiters_by_treatment_function(boundary, AS_OF)) == [
        {
            "treatment_function_code": "100",
            "pathways": 6,
            "over_52_weeks": 0,
            "over_65_weeks": 0,
            "over_78_weeks": 0,
            "over_104_weeks": 0,
        },
        {
            "treatment_function_code": "110",
            "pathways": 4,
            "over_52_weeks": 3,
            "over_65_weeks": 1,
            "over_78_weeks": 0,
            "over_104_weeks": 0,
        },
        {
            "treatment_function_code": "120",
            "pathways": 5,
            "over_52_weeks": 5,
            "over_65_weeks": 5,
            "over_78_weeks": 4,
            "over_104_weeks": 2,
        },
    ]


def test_wait_percentiles_linear_interpolation(con):
    # Weeks 1, 2, 3, 4, 10 (days 7..70). Median = 3. p92: rank 0.92 * (5 - 1) = 3.68, so
    # 4 + 0.68 * (10 - 4) = 8.08. The nullified 700-day pathway is ignored.
    rows = [
        waiting(f"w{d}", d, treatment_function_code="A" if d < 20 else "B")
        for d in (7, 14, 21, 28, 70)
    ]
    t = rtt_table([*rows, waiting("x", 700, rtt_period_status="33")])
    [overall] = records(con, m.wait_percentiles(t, AS_OF))
    assert overall["pathways"] == 5
    assert overall["median_weeks"] == pytest.approx(3.0)
    assert overall["p92_weeks"] == pytest.approx(8.08)
    # A: weeks 1, 2 -> median 1.5, p92 = 1 + 0.92 = 1.92.
    # B: weeks 3, 4, 10 -> median 4, p92 rank 1.84 -> 4 + 0.84 * 6 = 9.04.
    by = records(con, m.wait_percentiles(t, AS_OF, by=("treatment_function_code",)))
    assert [(r["treatment_function_code"], r["pathways"]) for r in by] == [("A", 2), ("B", 3)]
    assert [r["median_weeks"] for r in by] == pytest.approx([1.5, 4.0])
    assert [r["p92_weeks"] for r in by] == pytest.approx([1.92, 9.04])


def test_wait_percentiles_of_empty_table(con):
    [row] = records(con, m.wait_percentiles(rtt_table([]), AS_OF))
    assert row == {"pathways": 0, "median_weeks": None, "p92_weeks": None}


FLOW_ROWS = [
    {"pathway_id": "f1", "rtt_start_date": dt.date(2025, 1, 5)},  # Jan start
    {"pathway_id": "f2", "rtt_start_date": dt.date(2025, 1, 20), "rtt_period_status": "33"},
    {
        "pathway_id": "f3",
        "rtt_start_date": dt.date(2024, 12, 31),  # Jan stop (start earlier)
        "rtt_end_date": dt.date(2025, 1, 10),
        "rtt_period_status": "30",
    },
    {
        "pathway_id": "f4",
        "rtt_start_date": dt.date(2024, 11, 1),  # Jan removal, not a stop
        "rtt_end_date": dt.date(2025, 1, 31),
        "rtt_period_status": "31",
        "removed_by_validation": True,
    },
    {
        "pathway_id": "f5",
        "rtt_start_date": dt.date(2025, 3, 1),  # Mar start and Mar stop
        "rtt_end_date": dt.date(2025, 3, 31),
        "rtt_period_status": "34",
    },
    {
        "pathway_id": "f6",
        "rtt_start_date": dt.date(2024, 10, 1),  # end date, status not a stop
        "rtt_end_date": dt.date(2025, 3, 15),
        "rtt_period_status": "20",
    },
    {"pathway_id": "f7", "rtt_start_date": dt.date(2025, 4, 1)},  # after the range
    {
        "pathway_id": "f8",
        "rtt_start_date": dt.date(2024, 6, 1),  # Mar removal
        "rtt_end_date": dt.date(2025, 3, 10),
        "rtt_period_status": "36",
        "removed_by_validation": True,
    },
]


def test_clock_starts_and_stops_with_empty_month(con):
    got = records(con, m.clock_starts_and_stops(rtt_table(FLOW_ROWS), dt.date(2025, 1, 1), AS_OF))
    assert got == [
        {
            "month": dt.date(2025, 1, 1),
            "clock_starts": 1,
            "clock_stops": 1,
            "validation_removals": 1,
        },  # f1; f3; f4 (f2 nullified)
        {
            "month": dt.date(2025, 2, 1),
            "clock_starts": 0,
            "clock_stops": 0,
            "validation_removals": 0,
        },  # no activity, still listed
        {
            "month": dt.date(2025, 3, 1),
            "clock_starts": 1,
            "clock_stops": 1,
            "validation_removals": 1,
        },  # f5; f5; f8 (f6 has no stop status)
    ]


def test_clock_starts_and_stops_partial_month_and_empty_table(con):
    # From 15 Jan: f1 (5 Jan) and f3 (10 Jan) fall before the range; f4 (31 Jan) is in it.
    got = records(
        con,
        m.clock_starts_and_stops(rtt_table(FLOW_ROWS), dt.date(2025, 1, 15), dt.date(2025, 1, 31)),
    )
    assert got == [
        {
            "month": dt.date(2025, 1, 1),
            "clock_starts": 0,
            "clock_stops": 0,
            "validation_removals": 1,
        }
    ]
    empty = records(con, m.clock_starts_and_stops(rtt_table([]), dt.date(2024, 12, 1), AS_OF))
    assert [r["month"] for r in empty] == [dt.date(2024, 12, 1)] + [
        dt.date(2025, k, 1) for k in (1, 2, 3)
    ]
    assert all(
        r["clock_starts"] == r["clock_stops"] == r["validation_removals"] == 0 for r in empty
    )
    with pytest.raises(UsageError):
        m.clock_starts_and_stops(rtt_table([]), AS_OF, dt.date(2025, 1, 1))


VALIDATION_ROWS = [
    waiting("v84", 84),  # out: not waiting over 12 weeks
    waiting("v85", 85, last_pas_validation_date=AS_OF - D(days=83)),  # in, validated
    waiting("att84", 100, date_last_attended=AS_OF - D(days=84)),  # out: activity in 12 weeks
    waiting(
        "att85",
        100,
        date_last_attended=AS_OF - D(days=85),  # in; validation on day 84
        last_pas_validation_date=AS_OF - D(days=84),
    ),  # is outside (as_of-84, as_of]
    waiting("tci28", 100, tci_date=AS_OF + D(days=28)),  # out: booked within 4 weeks
    waiting("tci29", 100, tci_date=AS_OF + D(days=29), last_pas_validation_date=AS_OF),  # in
    waiting("opa0", 100, outpatient_future_appointment_date=AS_OF),  # out: booked today
    waiting("opa28", 100, outpatient_future_appointment_date=AS_OF + D(days=28)),  # out
    waiting("opa_past", 100, outpatient_future_appointment_date=AS_OF - D(days=1)),  # in
    waiting("closed", 100, rtt_end_date=AS_OF, rtt_period_status="30"),  # out: not open
]


def test_validation_cohort_boundaries(con):
    t = rtt_table(VALIDATION_ROWS)
    got = sorted(r["pathway_id"] for r in records(con, m.validation_cohort(t, AS_OF)))
    assert got == ["att85", "opa_past", "tci29", "v85"]
    # validated within (AS_OF - 84, AS_OF]: v85 (day 83) and tci29 (AS_OF); att85 (day 84) not.
    assert records(con, m.validation_summary(t, AS_OF)) == [
        {"cohort": 4, "validated_last_12_weeks": 2}
    ]
    assert records(con, m.validation_summary(rtt_table([]), AS_OF)) == [
        {"cohort": 0, "validated_last_12_weeks": 0}
    ]


APPOINTMENT_SCHEMA = {
    "appointment_id": "string",
    "appointment_date": "date",
    "treatment_function_code": "string",
    "attendance_status": "string",
}
MARCH = (dt.date(2025, 3, 1), dt.date(2025, 3, 31))


def test_dna_rate_excludes_arrived_too_late(con):
    rows = [
        ("a1", dt.date(2025, 3, 1), "100", "5"),  # attended (first day of the range)
        ("a2", dt.date(2025, 3, 31), "100", "6"),  # attended (last day of the range)
        ("a3", dt.date(2025, 3, 15), "100", "3"),  # DNA
        ("a4", dt.date(2025, 3, 10), "100", "7"),  # arrived too late: in neither
        ("a5", dt.date(2025, 3, 10), "100", "2"),  # cancelled by patient: in neither
        ("a6", dt.date(2025, 3, 20), "110", None),  # future: in neither
        ("a7", dt.date(2025, 2, 28), "100", "3"),  # before the range
        ("a8", dt.date(2025, 4, 1), "100", "5"),  # after the range
        ("a9", dt.date(2025, 3, 5), "110", "4"),  # cancelled by hospital: in neither
        ("a10", dt.date(2025, 3, 5), "110", "3"),  # DNA
    ]
    t = table([dict(zip(APPOINTMENT_SCHEMA, r, strict=True)) for r in rows], APPOINTMENT_SCHEMA)
    assert records(con, m.dna_rate(t, *MARCH)) == [
        {"attended": 2, "dna": 2, "appointments_with_outcome": 4}
    ]
    assert records(con, m.dna_rate(t, *MARCH, by=("treatment_function_code",))) == [
        {"treatment_function_code": "100", "attended": 2, "dna": 1, "appointments_with_outcome": 3},
        {"treatment_function_code": "110", "attended": 0, "dna": 1, "appointments_with_outcome": 1},
    ]


PATIENT_SCHEMA = {"nhs_number": "string", "imd_decile": "int8", "ethnicity": "string"}
EQUITY_PATHWAYS = [
    waiting("q1", 10, nhs_number="A"),  # within 18
    waiting("q2", 400, nhs_number="A"),  # over 52 (same person, second pathway)
    waiting("q3", 200, nhs_number="B"),  # neither
    waiting("q4", 365, nhs_number="C"),  # over 52
    waiting("q5", 5, nhs_number="D"),  # within 18; D is not in patients
    waiting("q6", 126, nhs_number="E"),  # within 18; E has no IMD decile
    waiting("q7", 400, nhs_number="B", rtt_period_status="33"),  # nullified: excluded
    waiting("q8", 0, nhs_number="G"),  # within 18; G has an unrecognised ethnicity code
]
PATIENTS = [
    ("A", 1, "A"),  # quintile (1 + 1) // 2 = 1, White
    ("A", 3, "A"),  # duplicate row: the lowest decile wins, q1/q2 are not counted twice
    ("B", 2, "H"),  # quintile 1, Asian
    ("C", 10, "N"),  # quintile 5, Black
    ("E", None, "99"),  # quintile null, "Not stated or not known"
    ("G", 9, "X"),  # quintile 5, "Unknown"
    ("F", 5, "M"),  # no pathway
]


@pytest.fixture(scope="module")
def equity_tables() -> tuple[ir.Table, ir.Table]:
    people = [dict(zip(PATIENT_SCHEMA, p, strict=True)) for p in PATIENTS]
    return rtt_table(EQUITY_PATHWAYS), table(people, PATIENT_SCHEMA)


def test_equity_by_imd_quintile(con, equity_tables):
    got = records(con, m.equity_by_imd_quintile(*equity_tables, AS_OF))
    assert sorted(got, key=lambda r: (r["imd_quintile"] is None, r["imd_quintile"] or 0)) == [
        {"imd_quintile": 1, "pathways": 3, "over_52_weeks": 1, "within_18_weeks": 1},  # q1-3
        {"imd_quintile": 5, "pathways": 2, "over_52_weeks": 1, "within_18_weeks": 1},  # q4, q8
        {"imd_quintile": None, "pathways": 2, "over_52_weeks": 0, "within_18_weeks": 2},  # q5 q6
    ]


def test_equity_by_ethnic_group(con, equity_tables):
    got = records(con, m.equity_by_ethnic_group(*equity_tables, AS_OF))
    assert sorted(got, key=lambda r: r["ethnic_group"]) == [
        {"ethnic_group": "Asian", "pathways": 1, "over_52_weeks": 0, "within_18_weeks": 0},
        {"ethnic_group": "Black", "pathways": 1, "over_52_weeks": 1, "within_18_weeks": 0},
        {
            "ethnic_group": "Not stated or not known",
            "pathways": 1,
            "over_52_weeks": 0,
            "within_18_weeks": 1,
        },  # q6 (code 99)
        {
            "ethnic_group": "Unknown",
            "pathways": 2,
            "over_52_weeks": 0,
            "within_18_weeks": 2,
        },  # q5 (not found), q8 (code X)
        {"ethnic_group": "White", "pathways": 2, "over_52_weeks": 1, "within_18_weeks": 1},
    ]


def test_targets_are_configuration():
    assert m.TARGETS["within_18_weeks_standard"] == 0.92
    assert m.TARGETS["within_18_weeks_interim_2026_03"] == 0.65
    assert math.isclose(m.TARGETS["over_52_weeks_max_share_2026_03"], 0.01)


def test_as_of_must_be_a_date(boundary):
    with pytest.raises(UsageError):
        m.open_pathways(boundary, dt.datetime(2025, 3, 31))  # type: ignore[arg-type]


def test_module_returns_expressions_without_pandas():
    source = inspect.getsource(m)
    assert "import pandas" not in source
    assert not any(call in source for call in (".execute(", ".to_pandas(", ".to_pyarrow("))


def _catalogue_tables() -> dict[str, ir.Table]:
    return {d.name: ibis.table(d.schema(), name=d.name) for d in DATASETS}


def test_every_metric_compiles(sql_dialect):
    dialect = sql_dialect
    t = _catalogue_tables()
    rtt, appts, patients = t["rtt_pathways"], t["outpatient_appointments"], t["patients"]
    exprs = [
        m.open_pathways(rtt, AS_OF),
        m.waiting_list_summary(rtt, AS_OF),
        m.weeks_waited_distribution(rtt, AS_OF),
        m.long_waiters_by_treatment_function(rtt, AS_OF),
        m.wait_percentiles(rtt, AS_OF, by=("org_code",)),
        m.clock_starts_and_stops(rtt, dt.date(2024, 4, 1), AS_OF),
        m.validation_cohort(rtt, AS_OF),
        m.validation_summary(rtt, AS_OF),
        m.dna_rate(appts, *MARCH, by=("treatment_function_code",)),
        m.equity_by_imd_quintile(rtt, patients, AS_OF),
        m.equity_by_ethnic_group(rtt, patients, AS_OF),
    ]
    for expr in exprs:
        assert isinstance(expr, ir.Table)
        assert "SELECT" in ibis.to_sql(expr, dialect=dialect)
