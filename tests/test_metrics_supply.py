"""Spec tests for fdp_kernel.metrics.supply: small hand-made tables, answers worked out by hand.

Reference day D = 2025-03-31; "D-k" is k days before it. Products: P1 and P2 are one product
group G ("Gloves" category) in packs of 10 and 20; P3 is group H, each. One trust RSA with
locations W1 (P1, P3) and W2 (P1, stocked only on D).
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.catalog import DATASETS
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.figures.supply import SPEND, price_benchmark
from fdp_kernel.metrics import supply as m
from tests.conftest import OPERATOR
from tests.fixtures import engines as engine_fixtures
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.helpers import memtable, records

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

D = dt.date(2025, 3, 31)


def day(k: int) -> dt.date:
    return D - dt.timedelta(days=k)


SCHEMAS = {
    d.name: {c.name: c.dtype for c in d.columns}
    for d in DATASETS
    if d.name in ("products", "purchase_orders", "receipts", "stock_levels", "consumption")
}


con = engine_fixtures.spec_con  # every spec test runs on DuckDB, PostgreSQL and Spark
postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session


def table(name: str, rows: list[dict[str, Any]]) -> ir.Table:
    return memtable(rows, SCHEMAS[name])


def product(npc, group, category, pack, route):
    return {
        "npc": npc,
        "description": f"{group} (pack of {pack})",
        "product_group": group,
        "category": category,
        "pack_size": pack,
        "supply_route": route,
        "status": "available",
    }


PRODUCTS = [
    product("P1", "G", "Gloves", 10, "stocked"),
    product("P2", "G", "Gloves", 20, "edirect"),
    product("P3", "H", "Other", 1, "stocked"),
]


def stock(loc, npc, k, units, org="RSA"):
    return {
        "org_code": org,
        "location_code": loc,
        "npc": npc,
        "date": day(k),
        "on_hand_units": units,
    }


def used(loc, npc, k, issued, unmet=0, org="RSA"):
    return {
        "org_code": org,
        "location_code": loc,
        "npc": npc,
        "date": day(k),
        "units_issued": issued,
        "units_unmet": unmet,
    }


STOCK = [
    stock("W1", "P1", 3, 50),
    stock("W1", "P1", 2, 30),
    stock("W1", "P1", 1, 0),  # ran out: 5 units of demand unmet
    stock("W1", "P1", 0, 40),
    *(stock("W1", "P3", k, 5) for k in (3, 2, 1, 0)),
    stock("W2", "P1", 0, 20),  # a new SKU-location: nothing issued yet
]
CONSUMPTION = [  # rows only on days with demand
    used("W1", "P1", 10, 100),  # outside every window below but the 28-day one
    used("W1", "P1", 3, 10),
    used("W1", "P1", 2, 20),
    used("W1", "P1", 1, 30, 5),
    used("W1", "P1", 0, 10),
    used("W1", "P3", 2, 2),
]


def order(po, line, k, npc, qty, net, org="RSA"):
    return {
        "org_code": org,
        "po_number": po,
        "po_line": line,
        "order_date": day(k),
        "npc": npc,
        "location_code": "W1",
        "quantity": qty,
        "unit_price": None if net is None else net / qty,
        "net_value": net,
    }


def receipt(po, line, k, qty, org="RSA"):
    return {
        "org_code": org,
        "po_number": po,
        "po_line": line,
        "receipt_date": day(k),
        "quantity_received": qty,
    }


ORDERS = [
    order("PO1", 1, 20, "P1", 5, 50.0),  # 50 units, GBP 1.00 a unit
    order("PO1", 2, 20, "P2", 2, 60.0),  # 40 units, GBP 1.50 a unit
    order("PO2", 1, 10, "P1", 10, 90.0),  # 100 units, GBP 0.90 a unit
    order("PO3", 1, 2, "P3", 4, 8.0),  # 4 units, GBP 2.00 a unit; not received yet
    order("PO4", 1, 40, "P1", 1, None),  # no net value; ordered before the windows below
]
RECEIPTS = [
    receipt("PO1", 1, 18, 3),  # first receipt: lead time 2 days
    receipt("PO1", 1, 15, 2),  # the rest later: does not change the lead time
    receipt("PO1", 2, 14, 2),  # 6 days
    receipt("PO2", 1, 7, 10),  # 3 days
    receipt("PO4", 1, 37, 1),  # 3 days
]


@pytest.fixture(scope="module")
def t() -> dict[str, ir.Table]:
    return {
        "products": table("products", PRODUCTS),
        "stock": table("stock_levels", STOCK),
        "used": table("consumption", CONSUMPTION),
        "orders": table("purchase_orders", ORDERS),
        "receipts": table("receipts", RECEIPTS),
    }


def test_days_of_stock(con, t):
    # 4-day window D-3..D: W1/P1 issued 10+20+30+10 = 70, on hand 40 -> 40 x 4 / 70.
    # W1/P3 issued 2, on hand 5 -> 10 days. W2/P1 issued nothing -> null.
    got = records(con, m.days_of_stock(t["stock"], t["used"], t["products"], D, window_days=4))
    assert [(r["location_code"], r["npc"]) for r in got] == [
        ("W1", "P1"),
        ("W1", "P3"),
        ("W2", "P1"),
    ]
    assert [r["on_hand_units"] for r in got] == [40, 5, 20]
    assert [r["units_issued"] for r in got] == [70, 2, 0]
    assert got[0]["days_of_stock"] == pytest.approx(40 * 4 / 70)
    assert got[1]["days_of_stock"] == pytest.approx(10.0)
    assert got[2]["days_of_stock"] is None
    by_group = records(
        con,
        m.days_of_stock(
            t["stock"], t["used"], t["products"], D, by=("product_group",), window_days=4
        ),
    )
    assert [(r["product_group"], r["sku_locations"], r["on_hand_units"]) for r in by_group] == [
        ("G", 2, 60),
        ("H", 1, 5),
    ]
    assert by_group[0]["days_of_stock"] == pytest.approx(60 * 4 / 70)
    # The default 28-day window also takes in D-10's 100 units.
    [w1p1, *_] = records(con, m.days_of_stock(t["stock"], t["used"], t["products"], D))
    assert w1p1["units_issued"] == 170
    assert w1p1["days_of_stock"] == pytest.approx(40 * 28 / 170)
    with pytest.raises(UsageError):
        m.days_of_stock(t["stock"], t["used"], t["products"], D, window_days=0)


def test_stockout_rate(con, t):
    # SKU-location-days D-3..D: W1/P1 4, W1/P3 4, W2/P1 1 = 9; unmet demand on W1/P1 D-1.
    args = (t["stock"], t["used"], t["products"], day(3), D)
    assert records(con, m.stockout_rate(*args)) == [{"sku_location_days": 9, "stockout_days": 1}]
    assert records(con, m.stockout_rate(*args, by=("product_group",))) == [
        {"product_group": "G", "sku_location_days": 5, "stockout_days": 1},
        {"product_group": "H", "sku_location_days": 4, "stockout_days": 0},
    ]
    assert records(con, m.stockout_rate(*args, by=("month",))) == [
        {"month": dt.date(2025, 3, 1), "sku_location_days": 9, "stockout_days": 1}
    ]
    empty = (table("stock_levels", []), table("consumption", []), t["products"], day(3), D)
    assert records(con, m.stockout_rate(*empty)) == [{"sku_location_days": 0, "stockout_days": 0}]
    with pytest.raises(UsageError):
        m.stockout_rate(*args, by=("colour",))


def test_lead_times_by_route(con, t):
    # Ordered in [D-30, D] and received: stocked PO1/1 (2 days), PO2/1 (3); edirect PO1/2 (6).
    # PO3 is not received; PO4 was ordered before the range. Median of 2, 3 = 2.5;
    # p90 = 2 + 0.9 x (3 - 2) = 2.9 (linear interpolation).
    got = records(con, m.lead_times(t["orders"], t["receipts"], t["products"], day(30), D))
    assert [r["supply_route"] for r in got] == ["edirect", "stocked"]
    edirect, stocked = got
    assert (edirect["lines"], edirect["median_days"], edirect["p90_days"]) == (1, 6.0, 6.0)
    assert stocked["lines"] == 2
    assert stocked["median_days"] == pytest.approx(2.5)
    assert stocked["p90_days"] == pytest.approx(2.9)
    assert stocked["mean_days"] == pytest.approx(2.5)
    dist = records(
        con, m.lead_time_distribution(t["orders"], t["receipts"], t["products"], day(30), D)
    )
    assert [tuple(r.values()) for r in dist] == [
        ("edirect", 6, 1),
        ("stocked", 2, 1),
        ("stocked", 3, 1),
    ]


def test_reorder_points(con, t):
    # Demand window D-3..D (4 days), lead times of lines ordered in the last 60 days.
    got = records(
        con,
        m.reorder_points(
            t["stock"], t["used"], t["orders"], t["receipts"], D, demand_days=4, lead_days=60
        ),
    )
    w1p1, w1p3, w2p1 = got
    # W1/P1 daily demand 10, 20, 35 (30 + 5 unmet), 10: mean 18.75; sample sd
    # sqrt((8.75^2 + 1.25^2 + 16.25^2 + 8.75^2) / 3) = sqrt(418.75 / 3).
    # P1 lead time: PO1/1 2, PO2/1 3, PO4/1 3 days -> 8 / 3.
    sd = math.sqrt(418.75 / 3)
    lead = 8 / 3
    safety = 1.65 * sd * math.sqrt(lead)
    assert w1p1["demand_days"] == 4
    assert w1p1["mean_daily_demand"] == pytest.approx(18.75)
    assert w1p1["sd_daily_demand"] == pytest.approx(sd)
    assert w1p1["lead_time_days"] == pytest.approx(lead)
    assert w1p1["safety_stock"] == pytest.approx(safety)
    assert w1p1["reorder_point"] == pytest.approx(18.75 * lead + safety)  # about 81.8
    assert w1p1["below_reorder_point"] is True  # 40 on hand
    # W1/P3: demand 0, 2, 0, 0 (mean 0.5, sd 1) but no received order: not assessed.
    assert w1p3["mean_daily_demand"] == pytest.approx(0.5)
    assert w1p3["sd_daily_demand"] == pytest.approx(1.0)
    assert w1p3["reorder_point"] is None and w1p3["below_reorder_point"] is None
    # W2/P1: one day of no demand: sd null (one day) counts as 0, reorder point 0.
    assert (w2p1["demand_days"], w2p1["sd_daily_demand"]) == (1, None)
    assert w2p1["reorder_point"] == pytest.approx(0.0)
    assert w2p1["below_reorder_point"] is False
    summary = m.reorder_point_breaches(
        t["stock"],
        t["used"],
        t["orders"],
        t["receipts"],
        t["products"],
        D,
        demand_days=4,
        lead_days=60,
    )
    assert records(con, summary) == [{"sku_locations": 3, "assessed": 2, "below_reorder_point": 1}]
    empty = m.reorder_point_breaches(
        table("stock_levels", []),
        table("consumption", []),
        table("purchase_orders", []),
        table("receipts", []),
        t["products"],
        D,
    )
    assert records(con, empty) == [{"sku_locations": 0, "assessed": 0, "below_reorder_point": 0}]


def test_spend_normalises_pack_sizes(con, t):
    # Ordered in [D-30, D] with a net value: G: 50 + 40 + 100 = 190 units, GBP 200 (lines
    # 50, 60, 90); H: 4 units, GBP 8. PO4 is outside the range (and has no net value).
    got = records(con, m.spend(t["orders"], t["products"], day(30), D))
    assert got == [
        {
            "product_group": "G",
            "order_lines": 3,
            "units": 190,
            "spend": 200.0,
            "spend_lines": 3,
            "spend_top1": 90.0,
            "spend_top2": 60.0,
        },
        {
            "product_group": "H",
            "order_lines": 1,
            "units": 4,
            "spend": 8.0,
            "spend_lines": 1,
            "spend_top1": 8.0,
            "spend_top2": 0.0,
        },
    ]


POOLED_ORDERS = [
    *ORDERS,
    order("PB1", 1, 5, "P1", 10, 120.0, org="RSB"),  # G: 100 units, GBP 1.20 a unit
    order("PB2", 1, 5, "P3", 2, 3.0, org="RSB"),  # H: 2 units, GBP 1.50 a unit
    order("PC1", 1, 5, "P2", 5, 80.0, org="RSC"),  # G: 100 units, GBP 0.80 a unit
]
# G: RSA 200 / 190 = 1.0526, RSB 1.20, RSC 0.80 -> benchmark (median) 1.0526;
#    RSB saves (1.20 - 1.0526) x 100 = 14.74. H: RSA 2.00, RSB 1.50 -> median 1.75;
#    RSA saves (2.00 - 1.75) x 4 = 1.00.
EXPECTED_PRICES = [
    ("G", "RSA", 200 / 190, 200 / 190, 0.0),
    ("G", "RSB", 1.2, 200 / 190, (1.2 - 200 / 190) * 100),
    ("G", "RSC", 0.8, 200 / 190, 0.0),
    ("H", "RSA", 2.0, 1.75, 1.0),
    ("H", "RSB", 1.5, 1.75, 0.0),
]


def test_price_variation_and_savings(con, t):
    orders = table("purchase_orders", POOLED_ORDERS)
    got = records(con, m.price_variation(orders, t["products"], day(30), D))
    assert [(r["product_group"], r["org_code"]) for r in got] == [e[:2] for e in EXPECTED_PRICES]
    for row, (_, _, price, benchmark, savings) in zip(got, EXPECTED_PRICES, strict=True):
        assert row["unit_price"] == pytest.approx(price)
        assert row["benchmark_unit_price"] == pytest.approx(benchmark)
        assert row["savings"] == pytest.approx(savings)


def test_the_icb_benchmark_from_released_spend_agrees_with_the_metric(con, t):
    orders = table("purchase_orders", POOLED_ORDERS)
    frames = []
    for org in ("RSA", "RSB", "RSC"):
        mine = orders.filter(orders.org_code == org)
        part = con.execute(m.spend(mine, t["products"], day(30), D))
        frames.append(part.assign(org=org))
    table_ = price_benchmark(pd.concat(frames, ignore_index=True))
    table_ = table_.sort_values(["product_group", "org"]).reset_index(drop=True)
    for (_, row), (_, _, price, benchmark, savings) in zip(
        table_.iterrows(), EXPECTED_PRICES, strict=True
    ):
        assert row["unit_price"] == pytest.approx(price)
        assert row["benchmark_unit_price"] == pytest.approx(benchmark)
        assert row["savings"] == pytest.approx(savings, abs=0.005)


def test_consumption_units(con, t):
    got = records(con, m.consumption_units(t["used"], t["products"], day(3), D))
    assert got == [
        {"category": "Gloves", "month": dt.date(2025, 3, 1), "units_issued": 70, "units_unmet": 5},
        {"category": "Other", "month": dt.date(2025, 3, 1), "units_issued": 2, "units_unmet": 0},
    ]
    empty = m.consumption_units(table("consumption", []), t["products"], day(3), D, by=())
    assert records(con, empty) == [{"units_issued": 0, "units_unmet": 0}]


def test_release_without_suppression_but_with_declared_figures(con, t, act_as):
    # Supply data is not about people: small counts are released as they are, but floats still
    # have to be declared (a statistic with its base, or a magnitude with its helpers).
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="supply_chain_planning", org="RSA")
    spend = con.execute(m.spend(t["orders"], t["products"], day(30), D))
    released = ws.release(spend, magnitudes=SPEND)
    assert released.data["units"].tolist() == [190, 4]
    assert released.data["order_lines"].tolist() == [3, 1]  # 1-7, yet shown
    assert released.data["spend"].tolist() == [200.0, 8.0]
    assert "spend_top1" not in released.data.columns
    dos = con.execute(m.days_of_stock(t["stock"], t["used"], t["products"], D, window_days=4))
    with pytest.raises(GovernanceError):
        ws.release(dos)  # days_of_stock is a float nobody declared
    ws.close()


def test_module_returns_expressions_without_pandas():
    source = inspect.getsource(m)
    assert "import pandas" not in source
    assert not any(call in source for call in (".execute(", ".to_pandas(", ".to_pyarrow("))


def test_every_metric_compiles(sql_dialect):
    dialect = sql_dialect
    c = {d.name: ibis.table(d.schema(), name=d.name) for d in DATASETS}
    p, o, r = c["products"], c["purchase_orders"], c["receipts"]
    s, u = c["stock_levels"], c["consumption"]
    exprs = [
        m.days_of_stock(s, u, p, D, by=("product_group",)),
        m.stockout_rate(s, u, p, day(365), D, by=("month", "supply_route")),
        m.order_lead_times(o, r),
        m.lead_times(o, r, p, day(365), D),
        m.lead_time_distribution(o, r, p, day(365), D),
        m.reorder_points(s, u, o, r, D),
        m.reorder_point_breaches(s, u, o, r, p, D, by=("location_code",)),
        m.spend(o, p, day(365), D, by=("product_group", "month")),
        m.price_variation(o, p, day(365), D),
        m.consumption_units(u, p, day(365), D),
    ]
    for expr in exprs:
        assert isinstance(expr, ir.Table)
        assert "SELECT" in ibis.to_sql(expr, dialect=dialect)
