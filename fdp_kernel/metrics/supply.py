"""Supply chain metrics as backend-agnostic Ibis expressions.

Every function takes Ibis tables shaped like the catalogue datasets ``products``,
``purchase_orders``, ``receipts``, ``stock_levels`` and ``consumption`` (a subset of columns is
enough) and returns an unexecuted Ibis expression, so the same code compiles for DuckDB,
PostgreSQL and PySpark and runs on each trust's node. There is no single national target
(DOMAIN.md section 5), so each metric is defined here:

* **SKU-location-day**: one ``stock_levels`` row (end-of-day stock of one product at one
  location on one day). ``consumption`` has rows only for days with demand; a day without a
  row had no demand.
* **Days of stock on hand** at ``day``: on-hand units at the end of ``day`` / average daily
  usage, usage = ``units_issued`` over the trailing ``window_days`` (default 28) ending on
  ``day``, divided by ``window_days``. Null when nothing was issued.
* **Stock-out rate**: SKU-location-days whose demand went unmet (``units_unmet > 0``: the
  stock ran out and there was demand) / all SKU-location-days.
* **Lead time** of a purchase order line: first ``receipt_date`` - ``order_date`` (days);
  lines not yet received are left out.
* **Reorder point** of a SKU-location at ``day``: mean daily demand x L + safety stock;
  safety stock = 1.65 x sd(daily demand) x sqrt(L) (a 95% service level). Daily demand =
  ``units_issued + units_unmet`` on each SKU-location-day of the trailing ``demand_days``
  (default 90; 0 on days without a consumption row); sd is the sample standard deviation. L =
  the mean lead time of the product at the trust over lines ordered in the trailing
  ``lead_days`` (default 365) and received by ``day``. A breach: on-hand units < reorder
  point. SKU-locations without a received order (no L) are not assessed.
* **Unit price**: ``net_value / (quantity x pack_size)``, so different pack sizes compare
  per unit. A trust's unit price for a product group = its spend / its units.
* **Price variation**: benchmark = median of the trusts' unit prices for the product group;
  savings opportunity = (unit price - benchmark) x units where positive.
* **Consumption per activity**: units issued / occupied G&A bed days (``bed_occupancy``, see
  ``fdp_kernel.metrics.discharge.bed_days``); compute the ratio from released figures.

``by`` arguments take columns of the input or of ``products`` (``product_group``,
``category``, ``supply_route``, ...) and ``"month"`` (the first day of the calendar month).
Floats are cast to float64 before means and standard deviations (PostgreSQL numeric).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from fdp_kernel.errors import UsageError
from fdp_kernel.metrics.dates import check_date, date_literal, date_range

SERVICE_LEVEL_Z = 1.65  # z for a 95% cycle service level
USAGE_WINDOW_DAYS = 28  # days of stock: average daily usage over the trailing 28 days
DEMAND_WINDOW_DAYS = 90  # reorder points: daily demand statistics over the trailing 90 days
LEAD_TIME_WINDOW_DAYS = 365  # reorder points: lead times of lines ordered in the last year
MONTH = "month"
SKU_LOCATION = ("org_code", "location_code", "npc")
GLOVES_CATEGORY = "Gloves"  # consumption per occupied bed day is shown for this category


def _window(day: dt.date, days: int, name: str) -> tuple[ir.DateScalar, ir.DateScalar]:
    if days < 1:
        raise UsageError(f"{name} must be at least 1 day, got {days}")
    return date_literal(day - dt.timedelta(days=days - 1)), date_literal(day)


def _with_products(t: ir.Table, products: ir.Table, by: Sequence[str]) -> ir.Table:
    """``t`` with the product columns that ``by`` names (joined on ``npc``)."""
    wanted = [c for c in by if c not in t.columns and c != MONTH]
    if not wanted:
        return t
    unknown = [c for c in wanted if c not in products.columns]
    if unknown:
        raise UsageError(f"cannot group by {unknown}: not a column of the table or of products")
    chosen = products.select(*wanted, _product_npc=products.npc)
    return t.left_join(chosen, t.npc == chosen._product_npc).drop("_product_npc")


def _with_month(t: ir.Table, column: str, by: Sequence[str]) -> ir.Table:
    if MONTH not in by:
        return t
    date = t[column]
    return t.mutate(month=ibis.date(date.year(), date.month(), 1))


def _group(t: ir.Table, by: Sequence[str], metrics: dict) -> ir.Table:
    if not by:
        return t.aggregate(**metrics)
    return t.group_by(list(by)).aggregate(**metrics).order_by(list(by))


def _sku_days(stock: ir.Table, consumption: ir.Table, lo, hi) -> ir.Table:
    """Every SKU-location-day in [lo, hi] with its issued, unmet units (0 without a row)."""
    days = stock.filter(stock.date.between(lo, hi))
    used = consumption.filter(consumption.date.between(lo, hi)).select(
        *SKU_LOCATION, "date", "units_issued", "units_unmet"
    )
    joined = days.left_join(used, [*SKU_LOCATION, "date"])
    return joined.select(
        *SKU_LOCATION,
        "date",
        "on_hand_units",
        units_issued=ibis.coalesce(joined.units_issued, 0).cast("int64"),
        units_unmet=ibis.coalesce(joined.units_unmet, 0).cast("int64"),
    )


def days_of_stock(
    stock: ir.Table,
    consumption: ir.Table,
    products: ir.Table,
    day: dt.date,
    by: Sequence[str] = ("location_code", "npc"),
    window_days: int = USAGE_WINDOW_DAYS,
) -> ir.Table:
    """Stock on hand at the end of ``day`` against usage over the trailing ``window_days``.

    Columns: ``*by``, ``sku_locations`` (SKU-locations with a stock row on ``day``),
    ``on_hand_units``, ``units_issued`` (in the window, ending on ``day``) and
    ``days_of_stock`` (float64 = on_hand_units x window_days / units_issued; null when
    nothing was issued). Summed over the SKU-locations of each group.
    """
    d = check_date(day, "day")
    lo, hi = _window(d, window_days, "window_days")
    today = stock.filter(stock.date == date_literal(d)).select(*SKU_LOCATION, "on_hand_units")
    used = consumption.filter(consumption.date.between(lo, hi))
    used = used.group_by(list(SKU_LOCATION)).aggregate(used=used.units_issued.sum())
    t = today.left_join(used, list(SKU_LOCATION))
    t = _with_products(t.mutate(used=ibis.coalesce(t.used, 0).cast("int64")), products, by)
    on_hand = t.on_hand_units.cast("int64").sum()
    issued = t.used.sum()
    days = on_hand.cast("float64") * float(window_days) / issued.cast("float64").nullif(0.0)
    metrics = {
        "sku_locations": t.count(),
        "on_hand_units": ibis.coalesce(on_hand, 0).cast("int64"),
        "units_issued": ibis.coalesce(issued, 0).cast("int64"),
        "days_of_stock": days.cast("float64"),
    }
    return _group(t, by, metrics)


def stockout_rate(
    stock: ir.Table,
    consumption: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = (),
) -> ir.Table:
    """SKU-location-days in [``start``, ``end``] and those with unmet demand.

    Columns: ``*by``, ``sku_location_days`` (``stock_levels`` rows) and ``stockout_days``
    (of them, ``units_unmet > 0``). Stock-out rate = stockout_days / sku_location_days. With
    no ``by``, an empty input gives one row of zeros.
    """
    lo, hi = date_range(start, end)
    t = _sku_days(stock, consumption, date_literal(lo), date_literal(hi))
    t = _with_month(_with_products(t, products, by), "date", by)
    metrics = {
        "sku_location_days": t.count(),
        "stockout_days": t.count(where=t.units_unmet > 0),
    }
    return _group(t, by, metrics)


def order_lead_times(orders: ir.Table, receipts: ir.Table) -> ir.Table:
    """Purchase order lines with a receipt: ``first_receipt_date`` and ``lead_time_days``
    (int64, first receipt - order date). Lines not yet received are left out."""
    first = receipts.group_by(["org_code", "po_number", "po_line"]).aggregate(
        first_receipt_date=receipts.receipt_date.min()
    )
    t = orders.inner_join(first, ["org_code", "po_number", "po_line"])
    return t.mutate(
        lead_time_days=t.first_receipt_date.delta(t.order_date, unit="day").cast("int64")
    )


def lead_times(
    orders: ir.Table,
    receipts: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = ("supply_route",),
) -> ir.Table:
    """Lead times of lines ordered in [``start``, ``end``] and received (by then or later).

    Columns: ``*by``, ``lines``, ``median_days`` and ``p90_days`` (float64, exact quantiles
    with linear interpolation, as in ``rtt.wait_percentiles``) and ``mean_days`` (float64).
    """
    lo, hi = date_range(start, end)
    t = order_lead_times(orders, receipts)
    t = t.filter(t.order_date.between(date_literal(lo), date_literal(hi)))
    t = _with_month(_with_products(t, products, by), "order_date", by)
    days = t.lead_time_days.cast("float64")
    metrics = {
        "lines": t.count(),
        "median_days": days.quantile(0.5).cast("float64"),
        "p90_days": days.quantile(0.9).cast("float64"),
        "mean_days": days.mean().cast("float64"),
    }
    return _group(t, by, metrics)


def lead_time_distribution(
    orders: ir.Table,
    receipts: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = ("supply_route",),
) -> ir.Table:
    """Lines ordered in [``start``, ``end``] and received, per ``*by`` and ``lead_time_days``
    (int64): columns ``*by``, ``lead_time_days``, ``lines``. Only non-empty cells appear."""
    lo, hi = date_range(start, end)
    t = order_lead_times(orders, receipts)
    t = t.filter(t.order_date.between(date_literal(lo), date_literal(hi)))
    t = _with_products(t, products, by)
    keys = [*by, "lead_time_days"]
    return t.group_by(keys).aggregate(lines=t.count()).order_by(keys)


def reorder_points(
    stock: ir.Table,
    consumption: ir.Table,
    orders: ir.Table,
    receipts: ir.Table,
    day: dt.date,
    demand_days: int = DEMAND_WINDOW_DAYS,
    lead_days: int = LEAD_TIME_WINDOW_DAYS,
) -> ir.Table:
    """Reorder point and breach of every SKU-location with a stock row on ``day``.

    Columns: ``org_code``, ``location_code``, ``npc``, ``on_hand_units`` (end of ``day``),
    ``demand_days`` (SKU-location-days in the demand window), ``mean_daily_demand`` and
    ``sd_daily_demand`` (float64; sample sd, null for one day), ``lead_time_days`` (float64
    mean), ``safety_stock`` = 1.65 x sd x sqrt(lead time), ``reorder_point`` = mean x lead
    time + safety stock (float64; null without a lead time) and ``below_reorder_point``
    (boolean: on hand < reorder point; null when not assessed).
    """
    d = check_date(day, "day")
    lo, hi = _window(d, demand_days, "demand_days")
    t = _sku_days(stock, consumption, lo, hi)
    demand = (t.units_issued + t.units_unmet).cast("float64")
    stats = t.group_by(list(SKU_LOCATION)).aggregate(
        demand_days=t.count(),
        mean_daily_demand=demand.mean().cast("float64"),
        sd_daily_demand=demand.std().cast("float64"),
    )
    lead_lo, lead_hi = _window(d, lead_days, "lead_days")
    lines = order_lead_times(orders, receipts)
    lines = lines.filter(
        lines.order_date.between(lead_lo, lead_hi), lines.first_receipt_date <= lead_hi
    )
    lead = lines.group_by(["org_code", "npc"]).aggregate(
        lead_time_days=lines.lead_time_days.cast("float64").mean().cast("float64")
    )
    today = stock.filter(stock.date == date_literal(d)).select(*SKU_LOCATION, "on_hand_units")
    joined = today.inner_join(stats, list(SKU_LOCATION)).left_join(lead, ["org_code", "npc"])
    safety = (
        SERVICE_LEVEL_Z
        * ibis.coalesce(joined.sd_daily_demand, 0.0)
        * (joined.lead_time_days.sqrt())
    )
    joined = joined.mutate(safety_stock=safety.cast("float64"))
    rop = joined.mean_daily_demand * joined.lead_time_days + joined.safety_stock
    joined = joined.mutate(reorder_point=rop.cast("float64"))
    return joined.select(
        *SKU_LOCATION,
        on_hand_units=joined.on_hand_units.cast("int64"),
        demand_days=joined.demand_days,
        mean_daily_demand=joined.mean_daily_demand,
        sd_daily_demand=joined.sd_daily_demand,
        lead_time_days=joined.lead_time_days,
        safety_stock=joined.safety_stock,
        reorder_point=joined.reorder_point,
        below_reorder_point=joined.on_hand_units.cast("float64") < joined.reorder_point,
    ).order_by(list(SKU_LOCATION))


def reorder_point_breaches(
    stock: ir.Table,
    consumption: ir.Table,
    orders: ir.Table,
    receipts: ir.Table,
    products: ir.Table,
    day: dt.date,
    by: Sequence[str] = (),
    demand_days: int = DEMAND_WINDOW_DAYS,
    lead_days: int = LEAD_TIME_WINDOW_DAYS,
) -> ir.Table:
    """Counts of :func:`reorder_points`: ``*by``, ``sku_locations``, ``assessed`` (with a
    reorder point) and ``below_reorder_point`` (breaches). With no ``by``, an empty input
    gives one row of zeros."""
    t = reorder_points(stock, consumption, orders, receipts, day, demand_days, lead_days)
    t = _with_products(t, products, by)
    metrics = {
        "sku_locations": t.count(),
        "assessed": t.count(where=t.reorder_point.notnull()),
        "below_reorder_point": t.count(where=ibis.coalesce(t.below_reorder_point, False)),
    }
    return _group(t, by, metrics)


def _priced_lines(orders: ir.Table, products: ir.Table, lo, hi) -> ir.Table:
    t = orders.filter(
        orders.order_date.between(date_literal(lo), date_literal(hi)), orders.net_value.notnull()
    )
    t = t.inner_join(products.select("npc", "pack_size"), "npc")
    return t.mutate(units=(t.quantity.cast("int64") * t.pack_size.cast("int64")))


def spend(
    orders: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = ("product_group",),
) -> ir.Table:
    """Order lines in [``start``, ``end``] with a net value: what was bought and paid.

    Columns: ``*by``, ``order_lines``, ``units`` (int64: quantity x pack size, the unit of
    comparison), ``spend`` (float64 sum of ``net_value``, GBP; a magnitude) and its helpers
    ``spend_lines``, ``spend_top1`` and ``spend_top2`` (the two largest line values). Unit
    price = spend / units: compute it from the released figures.
    """
    lo, hi = date_range(start, end)
    t = _priced_lines(orders, products, lo, hi)
    t = _with_month(_with_products(t, products, by), "order_date", by)
    value = t.net_value.cast("float64")
    rank = ibis.row_number().over(group_by=list(by), order_by=ibis.desc(value))
    t = t.mutate(_value=value, _rank=rank)
    metrics = {
        "order_lines": t.count(),
        "units": ibis.coalesce(t.units.sum(), 0).cast("int64"),
        "spend": ibis.coalesce(t._value.sum(), 0.0).cast("float64"),
        "spend_lines": t.count(),
        "spend_top1": ibis.coalesce(t._value.max(), 0.0).cast("float64"),
        "spend_top2": ibis.coalesce(t._value.max(where=t._rank == 1), 0.0).cast("float64"),
    }
    return _group(t, by, metrics)


def price_variation(
    orders: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = ("product_group",),
) -> ir.Table:
    """Unit prices across the trusts in ``orders`` (a table holding several ``org_code``s),
    their benchmark and the savings opportunity, for lines ordered in [``start``, ``end``].

    Columns: ``org_code``, ``*by``, ``units``, ``spend``, ``unit_price`` (spend / units),
    ``benchmark_unit_price`` (median of the trusts' unit prices in the group, linear
    interpolation between the middle two for an even number) and ``savings`` (float64:
    (unit_price - benchmark) x units where positive, else 0). In a federation rows never
    leave the trusts: the ICB computes the same from each trust's released ``spend``
    (``fdp_kernel.figures.supply``); this expression is for a pooled table and the tests.
    """
    lo, hi = date_range(start, end)
    t = _priced_lines(orders, products, lo, hi)
    t = _with_products(t, products, by)
    per_org = t.group_by(["org_code", *by]).aggregate(
        units=t.units.sum().cast("int64"), spend=t.net_value.cast("float64").sum()
    )
    per_org = per_org.mutate(
        unit_price=(per_org.spend / per_org.units.cast("float64").nullif(0.0)).cast("float64")
    )
    benchmark = per_org.group_by(list(by)).aggregate(
        benchmark_unit_price=per_org.unit_price.quantile(0.5).cast("float64")
    )
    joined = per_org.inner_join(benchmark, list(by))
    gap = (joined.unit_price - joined.benchmark_unit_price) * joined.units.cast("float64")
    return joined.mutate(
        savings=ibis.greatest(ibis.coalesce(gap, 0.0), 0.0).cast("float64")
    ).order_by([*by, "org_code"])


def consumption_units(
    consumption: ir.Table,
    products: ir.Table,
    start: dt.date,
    end: dt.date,
    by: Sequence[str] = ("category", "month"),
) -> ir.Table:
    """Units issued and unmet in [``start``, ``end``]: columns ``*by``, ``units_issued``,
    ``units_unmet`` (int64). Divide by occupied bed days (released) for consumption per
    activity."""
    lo, hi = date_range(start, end)
    t = consumption.filter(consumption.date.between(date_literal(lo), date_literal(hi)))
    t = _with_month(_with_products(t, products, by), "date", by)
    metrics = {
        "units_issued": ibis.coalesce(t.units_issued.sum(), 0).cast("int64"),
        "units_unmet": ibis.coalesce(t.units_unmet.sum(), 0).cast("int64"),
    }
    return _group(t, by, metrics)
