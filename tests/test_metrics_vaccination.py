"""Spec tests for fdp_kernel.metrics.vaccination: small hand-made tables, answers worked out by
hand.

Reference date AS_OF = 2026-10-31: the 2026/27 flu season (1 Sep 2026 - 28 Feb 2027), census
31 Oct 2026. Ages: flu 65+ on 31 Mar 2027 (born on or before 1962-03-31), 2-3 year olds on
31 Aug 2026 (born 2022-09-01 .. 2024-08-31), COVID-19 75+ on 31 Jan 2027 (born on or before
1952-01-31). Childhood: birthdays in (2025-10-31, 2026-10-31].
"""

from __future__ import annotations

import datetime as dt
import inspect

import ibis
import ibis.expr.types as ir
import pytest

import fdp_kernel
from fdp_kernel.catalog import DATASETS
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.metrics import vaccination as m
from tests.conftest import OPERATOR
from tests.fixtures import engines as engine_fixtures
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.helpers import memtable, records

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

AS_OF = dt.date(2026, 10, 31)
D = dt.date
FLU, COVID = m.FLU_PROCEDURES[0], m.COVID_PROCEDURES[2]
SIX, MMR = m.SIX_IN_ONE, m.MMR

PATIENT_SCHEMA = {
    "nhs_number": "string",
    "given_name": "string",
    "date_of_birth": "date",
    "date_of_death": "date",
    "imd_decile": "int8",
    "ethnicity": "string",
}
REGISTER_SCHEMA = {"nhs_number": "string", "condition": "string", "diagnosis_date": "date"}
VACCINATION_SCHEMA = {
    "nhs_number": "string",
    "vaccination_date": "date",
    "procedure_code": "string",
}

# nhs_number, date of birth, date of death, IMD decile, ethnicity
PATIENTS = [
    ("a", D(1962, 3, 31), None, 1, "A"),  # 65 on 31 Mar 2027 exactly: flu 65+ (boundary)
    ("b", D(1962, 4, 1), None, 2, "A"),  # 64 on 31 Mar 2027, no register: in no cohort
    ("c", D(1950, 1, 1), D(2026, 10, 1), 9, "H"),  # died before the census: not eligible now
    ("d", D(1940, 6, 1), None, 10, "M"),  # flu 65+ (dose before 1 Sep: not counted), COVID 75+
    ("e", D(1980, 5, 5), None, 3, "A"),  # asthma register: at risk, vaccinated on census day
    ("f", D(2026, 3, 1), None, None, "Z"),  # LD (no diagnosis date): at risk, 6 months by March
    ("g", D(1990, 1, 1), None, 5, "A"),  # hypertension only: not a risk group
    ("h", D(1985, 1, 1), None, 5, "A"),  # diabetes diagnosed after the census: not yet at risk
    ("i", D(2023, 8, 31), None, 1, "N"),  # 3 on 31 Aug 2026: flu 2-3, vaccinated
    ("j", D(2022, 8, 31), None, 1, "N"),  # 4 on 31 Aug 2026: not 2-3 (boundary)
    ("k", D(2024, 8, 31), None, 2, "A"),  # 2 on 31 Aug 2026: flu 2-3; MMR1 cohort, no MMR
    ("l", D(2024, 9, 1), None, 2, "A"),  # 1 on 31 Aug 2026: not 2-3; MMR1 cohort, no MMR
    ("m", D(2025, 6, 1), None, 3, "A"),  # 6-in-1: 3 doses, the third on the first birthday
    ("n", D(2025, 3, 1), None, 4, "A"),  # 6-in-1: 2 distinct days by the birthday, 3rd late
    ("o", D(2024, 10, 31), None, 4, "A"),  # 2nd birthday on AS_OF: MMR1 cohort, vaccinated
    ("q", D(2021, 1, 10), None, 5, "A"),  # MMR2 at 5: two doses
    ("r", D(2020, 10, 31), None, 5, "A"),  # 5th birthday on the window's open start: outside
]
REGISTERS = [
    ("e", "AST", D(2010, 1, 1)),
    ("f", "LD", None),
    ("g", "HYP", D(2015, 1, 1)),
    ("h", "DM", D(2026, 11, 15)),
    ("a", "COPD", D(2020, 1, 1)),  # 65+: in the 65+ cohort, not the under-65 at-risk one
]
VACCINATIONS = [
    ("a", D(2026, 10, 10), FLU),
    ("d", D(2026, 8, 31), FLU),  # the day before the season starts
    ("d", D(2026, 10, 20), COVID),
    ("e", D(2026, 10, 31), FLU),  # on the census day: counts
    ("c", D(2025, 9, 7), FLU),  # last season, week 1
    ("i", D(2026, 9, 15), FLU),
    ("m", D(2025, 8, 1), SIX),
    ("m", D(2025, 9, 1), SIX),
    ("m", D(2026, 6, 1), SIX),  # on the first birthday: counts
    ("n", D(2025, 5, 1), SIX),
    ("n", D(2025, 6, 1), SIX),
    ("n", D(2025, 6, 1), SIX),  # the same day twice: one dose
    ("n", D(2026, 3, 2), SIX),  # the day after the first birthday: too late
    ("o", D(2025, 11, 15), MMR),
    ("q", D(2022, 1, 20), MMR),
    ("q", D(2024, 5, 10), MMR),
    ("k", D(2026, 10, 1), "38598009-not-a-code"),  # an unknown code is never a dose
]


con = engine_fixtures.spec_con  # every spec test runs on DuckDB, PostgreSQL and Spark
postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session


def table(rows: list[tuple], schema: dict[str, str]) -> ir.Table:
    return memtable(rows, schema)


def patients_table(rows=PATIENTS) -> ir.Table:
    named = [(n, f"Name {n}", dob, dod, imd, eth) for n, dob, dod, imd, eth in rows]
    return table(named, PATIENT_SCHEMA)


@pytest.fixture(scope="module")
def tables() -> tuple[ir.Table, ir.Table, ir.Table]:
    return (
        patients_table(),
        table(REGISTERS, REGISTER_SCHEMA),
        table(VACCINATIONS, VACCINATION_SCHEMA),
    )


# -- dates -------------------------------------------------------------------------------------
def test_adding_years_and_months_like_sql_engines():
    assert m.add_years(D(2024, 2, 29), 1) == D(2025, 2, 28)
    assert m.add_years(D(2024, 2, 29), 4) == D(2028, 2, 29)
    assert m.add_months(D(2026, 8, 31), -6) == D(2026, 2, 28)
    assert m.add_months(D(2027, 3, 31), -6) == D(2026, 9, 30)
    assert m.add_months(D(2026, 1, 15), -13) == D(2024, 12, 15)


def test_born_by_is_the_latest_birth_date_reaching_an_age():
    assert m.born_by(D(2027, 3, 31), 65) == D(1962, 3, 31)
    # Born 29 Feb 2024: 1 on 28 Feb 2025 (as date + 1 year gives), so 28 Feb -> 29 Feb 2024.
    assert m.born_by(D(2025, 2, 28), 1) == D(2024, 2, 29)
    assert m.born_by(D(2025, 2, 27), 1) == D(2024, 2, 27)
    assert m.born_by(D(2028, 2, 29), 4) == D(2024, 2, 29)


def test_seasons_and_weeks():
    season = m.Season.of(AS_OF)
    assert (season.start, season.end, season.label) == (D(2026, 9, 1), D(2027, 2, 28), "2026/27")
    assert m.Season.of(D(2027, 3, 1)).label == "2026/27", "March to August: the season just ended"
    assert m.Season.of(D(2026, 8, 31)).label == "2025/26"
    assert season.previous.end == D(2026, 2, 28)
    assert season.campaign_end("covid") == D(2027, 1, 31)
    assert season.previous.same_point(AS_OF) == D(2025, 10, 31)
    assert season.same_point(D(2027, 6, 1)) == D(2027, 2, 28), "clipped to the season's end"
    ends = m.week_ends(season, "flu", AS_OF)
    assert ends[0] == D(2026, 9, 7) and ends[-1] == D(2026, 10, 26) and len(ends) == 8
    whole = m.week_ends(season.previous, "flu")
    assert len(whole) == 26 and whole[-2:] == [D(2026, 2, 22), D(2026, 2, 28)]
    assert m.week_ends(season, "flu", D(2026, 9, 6)) == []


def test_rule_cut_offs():
    r = m.Rule.of("flu_children_2_3", AS_OF)
    assert (r.born_after, r.born_by, r.census) == (D(2022, 8, 31), D(2024, 8, 31), AS_OF)
    r = m.Rule.of("flu_at_risk_under_65", AS_OF)
    assert (r.born_after, r.born_by, r.at_risk) == (D(1962, 3, 31), D(2026, 9, 30), True)
    r = m.Rule.of("covid_75_plus", D(2027, 2, 15))
    assert (r.born_by, r.census, r.dose_to) == (D(1952, 1, 31), D(2027, 1, 31), D(2027, 1, 31))
    r = m.Rule.of("mmr2_5y", AS_OF)
    assert (r.born_after, r.born_by, r.birthday, r.doses) == (
        D(2020, 10, 31),
        D(2021, 10, 31),
        5,
        2,
    )
    with pytest.raises(UsageError):
        m.Rule.of("flu_everyone", AS_OF)
    with pytest.raises(UsageError):
        m.Rule.of("flu_65_plus", dt.datetime(2026, 10, 31))  # type: ignore[arg-type]


# -- cohorts and uptake --------------------------------------------------------------------------
EXPECTED = {  # cohort: (eligible, vaccinated, who)
    "flu_65_plus": (2, 1, {"a": True, "d": False}),
    "flu_at_risk_under_65": (2, 1, {"e": True, "f": False}),
    "flu_children_2_3": (2, 1, {"i": True, "k": False}),
    "covid_75_plus": (1, 1, {"d": True}),
    "six_in_one_12m": (2, 1, {"m": True, "n": False}),
    "mmr1_24m": (3, 1, {"k": False, "l": False, "o": True}),
    "mmr2_5y": (1, 1, {"q": True}),
}


@pytest.mark.parametrize("cohort", list(EXPECTED))
def test_cohorts_on_the_reference_date(con, tables, cohort):
    eligible, vaccinated, who = EXPECTED[cohort]
    status = records(con, m.cohort_status(*tables, [(cohort, "now", AS_OF)]))
    assert {r["nhs_number"]: r["vaccinated"] for r in status} == who
    assert records(con, m.uptake(*tables, cohort, AS_OF)) == [
        {"eligible": eligible, "vaccinated": vaccinated}
    ]


def test_first_dose_is_the_counted_dose(con, tables):
    got = records(con, m.cohort_status(*tables, [("six_in_one_12m", "x", AS_OF)]))
    assert {r["nhs_number"]: r["first_dose"] for r in got} == {"m": D(2025, 8, 1), "n": None}


def test_last_season_final(con, tables):
    # Census 28 Feb 2026; 65+ on 31 Mar 2026 = born by 1961-03-31: c (alive then) and d.
    assert records(con, m.uptake(*tables, "flu_65_plus", D(2026, 2, 28))) == [
        {"eligible": 2, "vaccinated": 1}
    ]


def test_uptake_by_quintile_and_ethnic_group(con, tables):
    # flu 65+: a (decile 1 -> quintile 1, White, vaccinated), d (decile 10 -> 5, Black).
    by = records(con, m.uptake(*tables, "flu_65_plus", AS_OF, by=("imd_quintile",)))
    assert sorted((r["imd_quintile"], r["eligible"], r["vaccinated"]) for r in by) == [
        (1, 1, 1),
        (5, 1, 0),
    ]
    # at risk: e (White, vaccinated), f (code Z: "Not stated or not known", decile null).
    by = records(con, m.uptake(*tables, "flu_at_risk_under_65", AS_OF, by=("ethnic_group",)))
    assert sorted((r["ethnic_group"], r["eligible"], r["vaccinated"]) for r in by) == [
        ("Not stated or not known", 1, 0),
        ("White", 1, 1),
    ]


def test_uptake_table_columns_and_rows(con, tables):
    points = [("flu_65_plus", "now", AS_OF), ("flu_65_plus", "last_season", D(2026, 2, 28))]
    got = records(con, m.uptake_table(*tables, points, breakdowns=("imd_quintile",)))
    rows = {(r["breakdown"], r["group"]): r for r in got}
    now_e, now_v = m.column("flu_65_plus", "now", "eligible"), "flu_65_plus__now__vaccinated"
    last_e = m.column("flu_65_plus", "last_season", "eligible")
    last_v = m.column("flu_65_plus", "last_season", "vaccinated")
    assert rows["All", "All"] == {
        "breakdown": "All",
        "group": "All",
        now_e: 2,
        now_v: 1,
        last_e: 2,
        last_v: 1,
    }
    # Quintile 1: a (now, vaccinated). Quintile 5: d (now, last season) and c (decile 9, last
    # season, vaccinated in week 1).
    assert (rows["imd_quintile", "1"][now_e], rows["imd_quintile", "1"][last_e]) == (1, 0)
    assert [rows["imd_quintile", "5"][c] for c in (now_e, now_v, last_e, last_v)] == [1, 0, 2, 1]
    assert set(rows) == {("All", "All"), ("imd_quintile", "1"), ("imd_quintile", "5")}


def test_unknown_imd_decile_is_its_own_group(con, tables):
    got = records(
        con,
        m.uptake_table(*tables, [("flu_at_risk_under_65", "now", AS_OF)], ("imd_quintile",)),
    )
    groups = {r["group"]: r["flu_at_risk_under_65__now__eligible"] for r in got}
    assert groups == {"All": 2, "2": 1, m.NOT_KNOWN: 1}  # e: decile 3; f: no decile


def test_empty_cohort_and_empty_organisation(con, tables):
    nobody = patients_table([])
    empty_v = table([], VACCINATION_SCHEMA)
    empty_r = table([], REGISTER_SCHEMA)
    assert records(con, m.uptake(nobody, empty_r, empty_v, "flu_65_plus", AS_OF)) == [
        {"eligible": 0, "vaccinated": 0}
    ]
    got = records(
        con, m.uptake_table(nobody, empty_r, empty_v, [("mmr2_5y", "now", AS_OF)], m.BREAKDOWNS)
    )
    assert got == [
        {"breakdown": "All", "group": "All", "mmr2_5y__now__eligible": 0,
         "mmr2_5y__now__vaccinated": 0}
    ]  # fmt: skip
    # A cohort nobody in the list belongs to: children only, ask for COVID 75+.
    kids = patients_table([p for p in PATIENTS if p[1].year > 2020])
    assert records(con, m.uptake(kids, empty_r, empty_v, "covid_75_plus", AS_OF)) == [
        {"eligible": 0, "vaccinated": 0}
    ]


def test_cumulative_weekly_uptake(con, tables):
    got = records(con, m.cumulative_weekly_uptake(*tables, ["flu_65_plus"], AS_OF))
    this = {r["week"]: (r["eligible"], r["vaccinated"]) for r in got if r["season"] == "2026/27"}
    last = {r["week"]: (r["eligible"], r["vaccinated"]) for r in got if r["season"] == "2025/26"}
    # This season: 8 weeks to 26 Oct; a's dose on 10 Oct is in week 6 (ends 12 Oct).
    assert this == {1: (2, 0), 2: (2, 0), 3: (2, 0), 4: (2, 0), 5: (2, 0), 6: (2, 1), 7: (2, 1),
                    8: (2, 1)}  # fmt: skip
    # Last season (census 28 Feb 2026: c and d): c's dose on 7 Sep is in week 1.
    assert len(last) == 26 and set(last.values()) == {(2, 1)}
    with pytest.raises(UsageError):
        m.cumulative_weekly_uptake(*tables, ["mmr1_24m"], AS_OF)


def test_call_list_has_the_unvaccinated(con, tables):
    got = records(con, m.unvaccinated(*tables, ["flu_65_plus", "mmr1_24m"], AS_OF))
    assert sorted((r["cohort"], r["nhs_number"], r["given_name"]) for r in got) == [
        ("flu_65_plus", "d", "Name d"),
        ("mmr1_24m", "k", "Name k"),
        ("mmr1_24m", "l", "Name l"),
    ]


def test_bad_arguments():
    p, r, v = patients_table(), table(REGISTERS, REGISTER_SCHEMA), table([], VACCINATION_SCHEMA)
    with pytest.raises(UsageError):
        m.uptake_table(p, r, v, [("flu_65_plus", "now", AS_OF)], breakdowns=("age",))
    with pytest.raises(UsageError):
        m.uptake_table(p, r, v, [("flu_65_plus", "this season", AS_OF)])
    with pytest.raises(UsageError):
        m.uptake_table(p, r, v, [("flu_65_plus", "now", AS_OF), ("flu_65_plus", "now", AS_OF)])
    with pytest.raises(UsageError):
        m.uptake(p, r, v, "six_in_one_12m", AS_OF, months=0)
    with pytest.raises(UsageError):
        m.unvaccinated(p, r, v, [], AS_OF)


def test_targets_are_configuration():
    assert m.TARGETS == {"flu_65_plus": 0.75, "childhood": 0.95}
    assert set(m.SEASONAL) | set(m.CHILDHOOD) == set(m.COHORTS)


# -- through a workspace: disclosure control and purposes -------------------------------------
def test_small_numbers_are_all_suppressed_when_released(act_as, tables):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="vaccination_planning", org="Y90001")
    points = [(c, "now", AS_OF) for c in m.COHORTS]
    released = ws.release(m.uptake_table(*tables, points, m.BREAKDOWNS))
    counts = released.data.drop(columns=["breakdown", "group"])
    # Every count here is 0-3: the zeros are shown, everything else is suppressed.
    assert (counts.fillna(0) == 0).all().all()
    assert released.n_suppressed == int(counts.isna().sum().sum()) > 0


def test_a_planning_workspace_cannot_release_the_call_list(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="vaccination_planning", org="Y90001")
    p, r, v = ws.table("patients"), ws.table("ltc_registers"), ws.table("vaccinations")
    listing = m.unvaccinated(p, r, v, ["flu_65_plus"], AS_OF)
    with pytest.raises(GovernanceError, match=r"direct identifier|record-level"):
        ws.release(listing)
    with pytest.raises(GovernanceError, match="record-level"):
        ws.release(listing.select("cohort", "sex"))


def test_direct_care_releases_the_call_list_exactly(act_as):
    act_as(OPERATOR)
    care = fdp_kernel.connect(purpose="direct_care", org="Y90001")
    p, r, v = care.table("patients"), care.table("ltc_registers"), care.table("vaccinations")
    released = care.release(
        m.unvaccinated(p, r, v, ["flu_65_plus"], AS_OF).select("cohort", "nhs_number")
    )
    assert released.listing and released.n_suppressed == 0
    assert released.data["nhs_number"].str.fullmatch(r"9\d{9}").all(), "real NHS numbers"
    planning = fdp_kernel.connect(purpose="vaccination_planning", org="Y90001")
    eligible = planning.release(
        m.uptake(
            planning.table("patients"),
            planning.table("ltc_registers"),
            planning.table("vaccinations"),
            "flu_65_plus",
            AS_OF,
        )
    ).data.iloc[0]
    unvaccinated = len(released)
    assert abs((eligible["eligible"] - eligible["vaccinated"]) - unvaccinated) <= 25, (
        "the list and the released counts agree (counts rounded, opt-outs removed)"
    )


# -- portability -----------------------------------------------------------------------------
def test_module_returns_expressions_without_pandas():
    source = inspect.getsource(m)
    assert "import pandas" not in source
    assert not any(call in source for call in (".execute(", ".to_pandas(", ".to_pyarrow("))


def test_every_metric_compiles(sql_dialect):
    dialect = sql_dialect
    t = {d.name: ibis.table(d.schema(), name=d.name) for d in DATASETS}
    p, r, v = t["patients"], t["ltc_registers"], t["vaccinations"]
    points = [(c, "now", AS_OF) for c in m.COHORTS]
    exprs = [
        m.cohort_status(p, r, v, points),
        m.uptake(p, r, v, "mmr2_5y", AS_OF, by=("imd_quintile",)),
        m.uptake_table(p, r, v, points, m.BREAKDOWNS),
        m.cumulative_weekly_uptake(p, r, v, m.SEASONAL, AS_OF),
        m.unvaccinated(p, r, v, list(m.COHORTS), AS_OF),
    ]
    for expr in exprs:
        assert isinstance(expr, ir.Table)
        assert "SELECT" in ibis.to_sql(expr, dialect=dialect)
