"""The vaccination and population health figures against a generated federation (3,000
patients, 3 practices): practice and ICB views, the federated and linked ICB paths, the call
list's purpose rule, and the pure helpers (gaps, slope index) on hand-made frames."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.config import load_federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.figures import vaccination as fv
from fdp_kernel.figures.population import PopulationFigures
from fdp_kernel.figures.vaccination import VaccinationFigures, call_list
from fdp_kernel.metrics import population as mp
from fdp_kernel.metrics import vaccination as mv
from tests.conftest import OPERATOR

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

AS_OF = dt.date(2026, 10, 31)


def practices(federation) -> list[str]:
    fed = load_federation(federation)
    return [o.code for o in fed.organisations.values() if o.org_type == "gp_practice"]


@pytest.fixture
def icb_vaccination(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="vaccination_planning", org="QSY")
    figures = VaccinationFigures(ws, AS_OF)
    figures.uptake()
    return figures


# -- vaccination ---------------------------------------------------------------------------------
def test_practice_figures_come_from_its_own_release(act_as, federation):
    act_as(OPERATOR)
    code = practices(federation)[0]
    ws = fdp_kernel.connect(purpose="vaccination_planning", org=code)
    figures = VaccinationFigures(ws, AS_OF)
    uptake = figures.uptake()
    assert uptake.source.startswith(code)
    whole = uptake.data[uptake.data["breakdown"] == mv.ALL]
    assert len(whole) == len(figures.points()) == 7 * 2 + 4
    # Percentages from the released counts; a suppressed count leaves the percentage blank.
    shown = whole.dropna(subset=["eligible", "vaccinated"])
    shown = shown[shown["eligible"] > 0]
    expected = (shown["vaccinated"] * 100 / shown["eligible"]).astype(float).round(1)
    assert shown["uptake_pct"].astype(float).tolist() == expected.tolist()
    summary = figures.summary()
    assert summary["measure"].tolist() == [f"{c.label} (%)" for c in mv.COHORTS.values()]
    assert list(summary.columns) == [
        "measure",
        "now",
        "a year earlier",
        "change (pp)",
        "last season final",
        "standard or target",
    ]
    assert summary["last season final"].tolist()[-3:] == ["-", "-", "-"], "not for childhood"
    assert all(v == "*" or "." in v for v in summary["now"]), "percentages to 1 dp"
    assert "75% (WHO)" in summary.loc[0, "standard or target"]
    with pytest.raises(GovernanceError):
        figures.league("flu_65_plus")


def test_practice_compares_with_the_icb_when_the_user_may(act_as, federation):
    code = practices(federation)[0]
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="vaccination_planning", org=code)
    comparison = VaccinationFigures(ws, AS_OF).icb_comparison()
    assert isinstance(comparison, pd.DataFrame)
    assert list(comparison.columns) == [
        "cohort",
        "point",
        f"{code} (%)",
        "QSY (%)",
        "difference (pp)",
    ]
    assert comparison["QSY (%)"].notna().sum() >= 8
    act_as("gp.clinician")  # vaccination planning at this practice only
    ws = fdp_kernel.connect(purpose="vaccination_planning", org=code)
    message = VaccinationFigures(ws, AS_OF).icb_comparison()
    assert isinstance(message, str) and "QSY" in message


def test_icb_sums_the_practices_released_figures(icb_vaccination, federation):
    figures = icb_vaccination
    assert figures.practices() == practices(federation), "not the school-aged service (RSD)"
    by_practice = fv.melt(
        figures.by_node[fv.UPTAKE].data, figures.points(), ["org", "breakdown", "group"]
    )
    assert set(by_practice["org"]) == set(practices(federation))
    combined = figures.uptake().data
    for _, row in combined[combined["breakdown"] == mv.ALL].iterrows():
        part = by_practice[
            (by_practice["cohort"] == row["cohort"])
            & (by_practice["point"] == row["point"])
            & (by_practice["breakdown"] == mv.ALL)
        ]
        both = part["eligible"].notna() & part["vaccinated"].notna()
        assert row["practices"] == both.sum()
        assert row["practices"] + row["practices_suppressed"] == len(part)
        if both.any():
            assert row["eligible"] == part.loc[both, "eligible"].sum()
            assert row["vaccinated"] == part.loc[both, "vaccinated"].sum()
    flu = combined[(combined["cohort"] == "flu_65_plus") & (combined["breakdown"] == mv.ALL)]
    assert flu["practices_suppressed"].eq(0).all() and flu["uptake_pct"].notna().all()


def test_icb_league_weekly_and_gaps(icb_vaccination):
    figures = icb_vaccination
    league = figures.league("flu_65_plus", fv.LAST_SEASON)
    assert len(league) == 3 and set(league["meets target"]) <= {"yes", "no", ""}
    ranked = league["uptake_pct"].dropna().tolist()
    assert ranked == sorted(ranked, reverse=True)
    weekly = figures.weekly()
    seasons = set(weekly["season"])
    assert seasons == {"2026/27", "2025/26"}
    this = weekly[(weekly["cohort"] == "flu_65_plus") & (weekly["season"] == "2026/27")]
    assert this["week"].tolist() == list(range(1, 9)) and this["week_end"].max() <= AS_OF
    last = weekly[(weekly["cohort"] == "flu_65_plus") & (weekly["season"] == "2025/26")]
    assert len(last) == 26
    assert last["uptake"].dropna().is_monotonic_increasing, "cumulative"
    gaps = figures.gaps(fv.LAST_SEASON)
    assert gaps["cohort"].tolist() == [mv.COHORTS[c].label for c in mv.SEASONAL]
    table = figures.ethnic_gaps(fv.LAST_SEASON)
    assert table.columns[0] == "White"


def test_call_list_only_under_direct_care(act_as, federation):
    code = practices(federation)[0]
    act_as("gp.clinician")
    planning = fdp_kernel.connect(purpose="vaccination_planning", org=code)
    with pytest.raises(GovernanceError, match="direct care"):
        call_list(planning, AS_OF)
    care = fdp_kernel.connect(purpose="direct_care", org=code)
    listing = call_list(care, AS_OF, ["flu_65_plus"])
    assert listing.listing and len(listing) > 0
    assert list(listing.data.columns) == ["cohort", *fv.CALL_LIST_COLUMNS]
    assert set(listing.data["cohort"]) == {mv.COHORTS["flu_65_plus"].label}


def test_combining_nothing_gives_an_empty_table():
    empty = pd.DataFrame(columns=["org", "cohort", "point", "eligible", "vaccinated"])
    combined = fv.combine_practices(empty, ["cohort", "point"])
    assert combined.data.empty and combined.n_suppressed == 0
    part = pd.DataFrame(
        {
            "org": ["A", "B", "C"],
            "cohort": "flu_65_plus",
            "point": "now",
            "eligible": pd.array([100, 20, pd.NA], dtype="Int64"),
            "vaccinated": pd.array([75, pd.NA, pd.NA], dtype="Int64"),
        }
    )
    row = fv.combine_practices(part, ["cohort", "point"]).data.iloc[0]
    # Only A released both figures: 75 / 100; B and C are left out.
    assert (row["eligible"], row["vaccinated"], row["practices"]) == (100, 75, 1)
    assert row["practices_suppressed"] == 2 and row["uptake_pct"] == 75.0


def test_inequality_gap_and_slope_index_by_hand():
    frame = pd.DataFrame(
        {
            "group": ["1", "2", "3", "4", "5", "Not known"],
            "eligible": [100, 100, 100, 100, 100, 10],
            "uptake_pct": [60.0, 65.0, 70.0, 75.0, 80.0, 50.0],
        }
    )
    assert fv.inequality_gap(frame) == 20.0
    # Equal quintiles sit at ranks 0.1, 0.3, .., 0.9; uptake rises 5 pp per 0.2 of rank, so
    # the fitted line rises 25 pp from rank 0 (most deprived) to rank 1 (least deprived).
    assert fv.slope_index(frame) == 25.0
    hidden = frame.assign(uptake_pct=[pd.NA, 65.0, 70.0, 75.0, 80.0, 50.0])
    assert pd.isna(fv.inequality_gap(hidden)) and pd.isna(fv.slope_index(hidden))


# -- population health -------------------------------------------------------------------------
def _rounded(n: int) -> int:
    return (2 * n + 5) // 10 * 5


def _alive_not_opted_out(federation, codes: list[str]) -> int:
    fed = load_federation(federation)
    total = 0
    for code in codes:
        con = duckdb.connect(str(fed.org(code).store), read_only=True)
        total += con.execute(
            "SELECT count(*) FROM patients WHERE org_code = ? AND NOT national_opt_out "
            "AND (date_of_death IS NULL OR date_of_death > ?) AND date_of_birth <= ?",
            [code, AS_OF, AS_OF],
        ).fetchone()[0]
        con.close()
    return total


def test_a_practice_sees_only_its_own_list(act_as, federation):
    code = practices(federation)[1]
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="population_health_planning", org=code)
    figures = PopulationFigures(ws, AS_OF)
    assert not figures.linked and figures.practices == [code]
    assert figures.list_sizes()["now"] == _rounded(_alive_not_opted_out(federation, [code]))
    tiers = figures.risk_tiers().data
    assert "emergency_admissions" not in tiers.columns
    assert tiers["risk_tier"].tolist() == [t for t, _ in mp.RISK_TIERS]
    summary = figures.summary()
    assert summary["measure"].iloc[0] == "People on the list"
    assert not summary["measure"].str.contains("Emergency").any()


def test_the_icb_links_practices_and_trusts(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="population_health_planning", org="QSY")
    figures = PopulationFigures(ws, AS_OF)
    assert figures.linked and figures.practices == practices(federation)
    assert figures.trusts == ["RSA", "RSB", "RSC"]
    assert ws.provenance()["agreements"] == ["DSA-PHM-ICB"]
    everyone = _alive_not_opted_out(federation, practices(federation))
    assert figures.list_sizes()["now"] == _rounded(everyone)
    tiers = figures.risk_tiers().data.set_index("risk_tier")
    rate = tiers["admissions_per_1000"]  # small top tiers at 3,000 people may be suppressed
    assert rate["2-5%"] > rate["Rest (95%)"] > 0
    card = figures.scorecard().set_index("measure")
    assert "Emergency admissions per 1,000 (12 months)" in card.index
    assert pd.isna(card.loc["Share of the population (%)", "gap"])
    by_decile = figures.prevalence_table("imd_decile")
    deciles = [int(c) for c in by_decile.columns]  # the demo's few areas cover some deciles
    assert deciles == sorted(deciles) and set(deciles) <= set(range(1, 11))
    multimorbidity = figures.multimorbidity("age_band").data
    assert set(multimorbidity["group"]) == {b[0] for b in mp.AGE_BANDS}
