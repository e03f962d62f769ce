"""The care coordination and supply chain figures against a generated federation: each view
(trust, ICB, local authority), the governance of the discharge list, and a trust with no data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import ibis
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.figures import discharge as cc
from fdp_kernel.figures import supply as sc
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import discharge as dm
from fdp_kernel.metrics import supply as sm
from fdp_kernel.synth.policy import DISCHARGE_SHARE
from tests.conftest import OPERATOR
from tests.helpers import copy_federation, query, variant

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

AS_OF = dt.date(2026, 10, 31)  # the generator's default reference date
TRUSTS = ("RSA", "RSB", "RSC")
LA = "701"


def _rounded(values) -> bool:
    """Released people counts: 0 or a multiple of 5 (>= 10), or suppressed."""
    return all(v == 0 or (v % 5 == 0 and v >= 10) for v in pd.Series(values).dropna())


# -- care coordination --------------------------------------------------------------------


def test_trust_view(act_as):
    act_as(OPERATOR)
    f = cc.CareCoordinationFigures.open("RSA", AS_OF, weeks=4)
    assert f.view == "trust" and f.direct is None and f.ws.purpose.id == cc.PLANNING
    daily = f.daily()
    assert isinstance(daily, Released) and len(daily) == 28
    assert daily.data["date"].tolist() == [AS_OF - dt.timedelta(days=27 - i) for i in range(28)]
    assert _rounded(daily.data["nctr_patients"]) and _rounded(daily.data["inpatients"])
    pathways = f.pathways()
    assert pathways.data["discharge_pathway"].tolist() == [0, 1, 2, 3]
    assert pathways.data["model_pct"].tolist() == [50.0, 45.0, 4.0, 1.0]
    summary = f.summary()
    assert summary["measure"].iloc[0] == "NCTR patients per day (7-day average)"
    assert (
        "<= 92%" in summary.set_index("measure").loc["G&A bed occupancy (%)", "standard or target"]
    )
    assert f.shows("flow") and not f.shows("social_care") and not f.shows("discharge_list")
    with pytest.raises(UsageError):
        f.care_package_months()
    with pytest.raises(UsageError):
        f.discharge_list()


def test_trust_figures_match_the_metric_on_the_store(act_as, federation):
    """The governed daily count equals the metric run on the store, rounded, bar opt-outs."""
    act_as(OPERATOR)
    f = cc.CareCoordinationFigures(
        fdp_kernel.connect(purpose=cc.PLANNING, org="RSA"), AS_OF, weeks=2
    )
    released = f.daily().data.set_index("date")
    con = ibis.duckdb.connect(str(federation / "stores" / "RSA.duckdb"), read_only=True)
    spells = con.table("inpatient_spells")
    people = con.table("patients").filter(lambda p: ~p.national_opt_out).select("nhs_number")
    kept = spells.semi_join(people, "nhs_number")
    raw = con.execute(
        dm.daily_flow(kept, con.table("bed_occupancy"), AS_OF - dt.timedelta(days=13), AS_OF)
    ).set_index("date")
    raw.index = [d.date() for d in pd.to_datetime(raw.index)]
    for day, row in raw.iterrows():
        for col in ("inpatients", "ga_beds_occupied"):
            shown, exact = released.loc[day, col], row[col]
            assert pd.isna(shown) or abs(shown - exact) <= 2.5 or (exact >= 8 and shown == 10)
    con.disconnect()


def test_icb_view_adds_up_the_trusts(act_as):
    act_as(OPERATOR)
    f = cc.CareCoordinationFigures.open("QSY", AS_OF, weeks=4)
    assert f.view == "icb"
    assert f.trusts == list(TRUSTS) and f.councils == [LA]
    pathways = f.pathways()
    per_trust = f.by_trust["Discharges by pathway"]
    assert sorted(per_trust.data["org"].unique()) == list(TRUSTS)
    expected = per_trust.data.groupby("discharge_pathway")["discharges"].sum(min_count=1)
    assert pathways.data["discharges"].tolist() == expected.astype("Int64").tolist()
    assert "federated" in pathways.source
    months = f.care_package_months()
    assert len(months) == 12 and "federated: 701" in months.source
    performance = f.ready_date_performance()  # means: per trust
    assert sorted(performance.data["org"]) == list(TRUSTS)
    assert "pct_on_ready_date" in performance.data.columns
    summary = f.summary()
    assert len(summary) == 10
    assert "DSA-DISCHARGE-ICB" in f.provenance()["agreements"]


def test_local_authority_view_and_discharge_list(act_as, federation):
    act_as("la.discharge")
    f = cc.CareCoordinationFigures.open(LA, AS_OF)
    assert f.view == "local_authority"
    assert f.ws.purpose.id == cc.PLANNING and f.direct.purpose.id == cc.DIRECT_CARE
    listing = f.discharge_list()
    assert isinstance(listing, Released) and listing.listing
    assert tuple(listing.data.columns) == dm.DISCHARGE_LIST_COLUMNS
    agreed = {*DISCHARGE_SHARE["inpatient_spells"], *DISCHARGE_SHARE["patients"]}
    assert set(listing.data.columns) - {"days_since_ready"} <= agreed
    assert "discharge_date" not in listing.data.columns
    # Every trust's patients currently discharge-ready on pathways 1-3, read from the stores.
    expected = set()
    for trust in TRUSTS:
        rows = query(
            federation / "stores" / f"{trust}.duckdb",
            "SELECT spell_id FROM inpatient_spells WHERE discharge_pathway IN (1, 2, 3) "
            "AND discharge_ready_date <= ? AND (discharge_date IS NULL OR discharge_date > ?)",
            [AS_OF, AS_OF],
        )
        expected |= {r[0] for r in rows}
    assert set(listing.data["spell_id"]) == expected
    days = listing.data["days_since_ready"]
    assert days.is_monotonic_decreasing and (days >= 0).all()
    assert listing.data["nhs_number"].str.fullmatch(r"\d{10}").all()  # identifiable, exact
    summary = f.summary().set_index("measure")
    assert summary.iloc[0]["now"] == str(len(listing))
    assert summary.iloc[0]["previous"] == "n/a"
    prov = f.provenance()
    assert prov["purpose"] == f"{cc.PLANNING}, {cc.DIRECT_CARE}"
    assert "DSA-DISCHARGE-DIRECT" in prov["agreements"]
    assert not f.shows("flow")
    with pytest.raises(UsageError):
        f.daily()


def test_the_discharge_list_needs_direct_care_and_the_agreement(act_as, federation):
    act_as("la.discharge")
    planning = fdp_kernel.connect(purpose=cc.PLANNING, org=LA)
    with pytest.raises(GovernanceError, match="direct_care"):
        cc.discharge_list(planning, AS_OF)
    with pytest.raises(GovernanceError, match="no data sharing agreement"):
        planning.table("inpatient_spells", source="RSA")
    direct = fdp_kernel.connect(purpose=cc.DIRECT_CARE, org=LA)
    with pytest.raises(GovernanceError, match="does not allow"):
        direct.table("inpatient_spells", source="RSA", columns=["spell_id", "died_in_hospital"])
    with pytest.raises(GovernanceError, match="does not allow"):
        direct.table("patients", source="RSA", columns=["nhs_number", "lsoa_code", "ethnicity"])
    # A trust has no agreement sharing other trusts' patients with it.
    act_as(OPERATOR)
    at_trust = fdp_kernel.connect(purpose=cc.DIRECT_CARE, org="RSA")
    with pytest.raises(GovernanceError, match="no direct-care agreement"):
        cc.discharge_list(at_trust, AS_OF)


def test_the_discharge_list_stops_when_the_agreement_lapses(act_as, federation):
    def lapse(doc):
        for a in doc["agreements"]:
            if a["id"] == "DSA-DISCHARGE-DIRECT":
                a["valid_from"], a["valid_to"] = dt.date(2020, 4, 1), dt.date(2021, 3, 31)

    act_as("la.discharge", variant(federation, "lapsed", lapse))
    direct = fdp_kernel.connect(purpose=cc.DIRECT_CARE, org=LA)
    with pytest.raises(GovernanceError, match="not in force"):
        cc.discharge_list(direct, AS_OF)


def test_without_the_direct_care_role_the_list_says_why(act_as, federation):
    def planning_only(doc):
        for user in doc["users"]:
            if user["id"] == "la.discharge":
                user["roles"] = [{"org": LA, "purposes": [cc.PLANNING]}]

    act_as("la.discharge", variant(federation, "planning_only", planning_only))
    f = cc.CareCoordinationFigures.open(LA, AS_OF)
    listing = f.discharge_list()
    assert isinstance(listing, str) and "direct_care" in listing
    summary = f.summary()
    assert summary.iloc[0]["now"] == "n/a" and len(summary) == 6
    assert f.provenance()["purpose"] == cc.PLANNING


def test_figures_refuse_other_organisations_and_purposes(act_as):
    act_as(OPERATOR)
    with pytest.raises(UsageError, match="community_trust"):
        cc.CareCoordinationFigures(
            fdp_kernel.connect(purpose="vaccination_planning", org="RSD"), AS_OF
        )
    with pytest.raises(GovernanceError):  # nobody holds the purpose at a community trust
        cc.CareCoordinationFigures.open("RSD", AS_OF)
    with pytest.raises(UsageError, match="care_coordination_planning"):
        cc.CareCoordinationFigures(fdp_kernel.connect(purpose="direct_care", org="RSA"), AS_OF)
    with pytest.raises(UsageError, match="at least 2"):
        cc.CareCoordinationFigures.open("RSA", AS_OF, weeks=1)


# -- a trust with no data --------------------------------------------------------------------

EMPTIED = (
    "inpatient_spells",
    "bed_occupancy",
    "purchase_orders",
    "receipts",
    "stock_levels",
    "consumption",
)


@pytest.fixture(scope="module")
def empty_trust(federation, tmp_path_factory) -> Path:
    """A copy of the federation in which RSC has no activity at all."""
    fed = copy_federation(federation, tmp_path_factory.mktemp("empty") / "fed")
    con = duckdb.connect(str(fed / "stores" / "RSC.duckdb"))
    for name in EMPTIED:
        con.execute(f'DELETE FROM "{name}"')
    con.close()
    return fed


def test_a_trust_with_no_data(act_as, empty_trust):
    act_as(OPERATOR, empty_trust)
    f = cc.CareCoordinationFigures.open("RSC", AS_OF, weeks=2)
    daily = f.daily().data
    assert len(daily) == 14 and (daily.drop(columns="date").fillna(0) == 0).all().all()
    summary = f.summary().set_index("measure")
    assert summary.loc["Discharges (7 days)", "now"] == "0"
    assert summary.loc["G&A bed occupancy (%)", "now"] == "*"  # 0 / 0: no figure
    assert f.reasons().data.empty
    s = sc.SupplyFigures.open("RSC", AS_OF)
    assert s.prices().data.empty
    assert (
        s.summary().set_index("measure").loc["Product-locations stocked (month end)", "now"] == "0"
    )
    # The ICB's totals still come from every trust: RSC adds zeros.
    icb = cc.CareCoordinationFigures.open("QSY", AS_OF, weeks=2)
    icb.pathways()
    rsc = icb.by_trust["Discharges by pathway"].data.query("org == 'RSC'")
    assert (rsc["discharges"] == 0).all()


# -- supply chain ----------------------------------------------------------------------------


def test_supply_trust_view(act_as):
    act_as(OPERATOR)
    f = sc.SupplyFigures.open("RSA", AS_OF)
    assert f.view == "trust" and f.activity.purpose.id == sc.ACTIVITY
    prices = f.prices()
    assert (prices.data["unit_price"] > 0).all() and prices.data["product_group"].is_unique
    with pytest.raises(UsageError, match="ICB"):
        f.price_variation()  # other trusts' prices are not the trust's to see
    reorder = f.reorder_points()
    breaches = f.breaches(reorder)
    assert len(breaches) == int(reorder.data["below_reorder_point"].fillna(False).sum())
    assert (breaches["on_hand_units"] < breaches["reorder_point"]).all()
    stockouts = f.stockouts()
    assert len(stockouts) == 12 and stockouts.data["stockout_rate"].between(0, 1).all()
    gloves = f.consumption_per_bed_day()
    assert len(gloves) == 12 and (gloves["units_per_bed_day"] > 0).all()
    measures = f.summary()["measure"].tolist()
    assert "Median lead time, Stocked (days)" in measures
    assert "Glove units issued per occupied bed day" in measures
    assert "No small-number suppression" in prices.note


def test_supply_icb_benchmark_matches_the_pooled_metric(act_as, federation):
    act_as(OPERATOR)
    f = sc.SupplyFigures.open("QSY", AS_OF)
    assert f.view == "icb" and f.trusts == list(TRUSTS)
    table = f.price_variation()
    assert (table["savings"] >= 0).all()
    medians = table.groupby("product_group")["unit_price"].median()
    assert table["benchmark_unit_price"].tolist() == pytest.approx(
        table["product_group"].map(medians).round(4).tolist(), abs=1e-4
    )
    # The same definition on the trusts' raw orders pooled (possible here, in a test, only).
    orders, products = [], None
    cons = []
    for trust in TRUSTS:
        con = ibis.duckdb.connect(str(federation / "stores" / f"{trust}.duckdb"), read_only=True)
        cons.append(con)
        orders.append(con.table("purchase_orders").to_pyarrow())
        products = con.table("products").to_pyarrow()
    pooled = ibis.memtable(pd.concat([o.to_pandas() for o in orders], ignore_index=True))
    expr = sm.price_variation(pooled, ibis.memtable(products), *f.year)
    raw = ibis.duckdb.connect().execute(expr).sort_values(["product_group", "org_code"])
    # (the ICB table rounds each saving to the penny)
    assert table["savings"].sum() == pytest.approx(raw["savings"].sum(), abs=0.01 * len(raw))
    assert table["unit_price"].tolist() == pytest.approx(raw["unit_price"].tolist(), abs=1e-4)
    for con in cons:
        con.disconnect()
    summary = f.summary().set_index("measure")
    assert summary.loc["Savings opportunity, last 12 months (GBP)", "previous"] == "n/a"
    assert sorted(f.breaches_by_trust().data["org"]) == list(TRUSTS)
    assert "DSA-SUPPLY-ICB" in f.provenance()["agreements"]
    with pytest.raises(UsageError):
        f.prices()


def test_supply_without_the_activity_purpose(act_as, federation):
    def supply_only(doc):
        for user in doc["users"]:
            if user["id"] == OPERATOR:
                user["roles"] = [{"org": "RSA", "purposes": [sc.PLANNING]}]

    act_as(OPERATOR, variant(federation, "supply_only", supply_only))
    f = sc.SupplyFigures.open("RSA", AS_OF)
    gloves = f.consumption_per_bed_day()
    assert isinstance(gloves, str) and sc.ACTIVITY in gloves
    assert "Glove units issued per occupied bed day" not in f.summary()["measure"].tolist()


def test_headline_shows_rates_and_averages_with_their_fraction():
    from fdp_kernel.figures.common import headline

    table = headline(
        [
            ("Glove units issued per occupied bed day", 2.35, 1.6, ""),
            ("Pathways", 1200, 1150, ""),
            ("Within 18 weeks (%)", 64.0, 63.5, ">= 92%"),
            ("Suppressed", None, 3, ""),
        ]
    ).set_index("measure")
    assert table.loc[
        "Glove units issued per occupied bed day", ["now", "previous", "change"]
    ].tolist() == ["2.4", "1.6", "+0.8"]
    assert table.loc["Pathways", ["now", "previous", "change"]].tolist() == [
        "1,200",
        "1,150",
        "+50",
    ]
    assert table.loc["Within 18 weeks (%)", "now"] == "64.0"
    assert table.loc["Suppressed", ["now", "change"]].tolist() == ["*", "*"]
