"""Supply chain figures for templates/supply_chain.ipynb.

The organisation's type decides the view (``SupplyFigures.open``):

* **acute trust** (``supply_chain_planning``): its own stock, stock-outs, reorder points, lead
  times, prices paid per unit and consumption. A trust sees only its own prices: the prices of
  other trusts are theirs, and price benchmarking happens at the ICB.
* **ICB** (``supply_chain_planning``): each trust runs the same metrics on its own data under
  DSA-SUPPLY-ICB and releases them; the ICB compares the trusts' unit prices for each product
  group, takes the median as the benchmark and works out the savings opportunity.

Supply data is not about people, so the purpose releases it without small-number suppression;
every figure still goes through ``ws.release`` (lineage checks, audit). Consumption per
activity divides units issued by occupied G&A bed days, which are released under
``care_coordination_planning`` (a second workspace, when the user holds that purpose too).
"""

from __future__ import annotations

import datetime as dt

import ibis
import pandas as pd

from fdp_kernel.errors import UsageError
from fdp_kernel.figures.base import Figures, Sections
from fdp_kernel.figures.common import headline, month_start, plain, ratio
from fdp_kernel.governance import policy
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import discharge as dm
from fdp_kernel.metrics import supply as m

PLANNING = "supply_chain_planning"
ACTIVITY = "care_coordination_planning"  # occupied bed days, the activity denominator
VIEWS = {"acute_trust": "trust", "icb": "icb"}
SPEND = {"spend": Magnitude("spend_lines", "spend_top1", "spend_top2")}
PERIODS = ("this month", "previous month")
ROUTE_LABELS = {"stocked": "Stocked", "edirect": "eDirect", "blue_diamond": "Blue Diamond"}

SECTIONS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "stock": (
        "Stock on hand and reorder points",
        "Days of stock on hand at the end of the report date (units on hand / average daily "
        "usage over the last 28 days), and stock below its reorder point (mean daily demand x "
        "lead time + 1.65 x sd of daily demand x square root of the lead time).",
        ("trust", "icb"),
    ),
    "stockouts": (
        "Stock-outs",
        "Share of product-location-days on which demand went unmet because the stock had run "
        "out, by month.",
        ("trust", "icb"),
    ),
    "lead_times": (
        "Lead times by supply route",
        "Days from purchase order to first goods receipt for lines ordered in the last 12 "
        "months: NHS Supply Chain stocked (warehouse), eDirect (supplier to trust) and Blue "
        "Diamond (cross-docked).",
        ("trust", "icb"),
    ),
    "prices": (
        "Prices paid per unit",
        "Net value per unit (pack sizes normalised) by product group over the last 12 months.",
        ("trust",),
    ),
    "price_variation": (
        "Price variation across trusts and the savings opportunity",
        "Each trust's price per unit (pack sizes normalised) against the benchmark, the median "
        "of the trusts' prices for the same product group, over the last 12 months. Savings "
        "opportunity: (price paid - benchmark) x units bought, where the trust paid more.",
        ("icb",),
    ),
    "consumption": (
        "Consumption per activity",
        "Examination gloves issued per occupied G&A bed day, by month.",
        ("trust", "icb"),
    ),
}


def price_benchmark(frame: pd.DataFrame, by: str = "product_group") -> pd.DataFrame:
    """Unit price, benchmark and savings per organisation and ``by`` group, from released
    ``spend`` and ``units`` (one row per ``org`` and group; see ``metrics.supply.spend``).

    ``unit_price`` = spend / units; ``benchmark_unit_price`` = median of the organisations'
    unit prices in the group; ``savings`` = (unit_price - benchmark) x units where positive;
    ``price_index`` = unit_price / benchmark x 100. The same definition as
    ``metrics.supply.price_variation``, here over released figures.
    """
    data = frame.copy()
    units = data["units"].astype("Float64")
    data["unit_price"] = data["spend"].astype("Float64") / units.where(units != 0)
    data["benchmark_unit_price"] = data.groupby(by)["unit_price"].transform("median")
    gap = (data["unit_price"] - data["benchmark_unit_price"]) * units
    data["savings"] = gap.clip(lower=0).round(2)
    data["price_index"] = (data["unit_price"] * 100 / data["benchmark_unit_price"]).round(1)
    return data


class SupplyFigures(Sections, Figures):
    """The figures of one supply chain report, for a trust or (federated) an ICB.

    ``ws`` is a ``supply_chain_planning`` workspace; ``activity`` an optional
    ``care_coordination_planning`` workspace at the same organisation for occupied bed days.
    """

    SECTIONS = SECTIONS
    VIEWS = VIEWS
    REPORT = "supply chain"
    PURPOSE = PLANNING
    SECOND = ACTIVITY
    EXACT_MAGNITUDES = True  # money: summed as it is, unknown if any trust's is hidden

    def __init__(self, ws, as_of: dt.date, months: int = 12, activity=None) -> None:
        super().__init__(ws, as_of, activity)
        if months < 2:
            raise UsageError(f"months must be at least 2, got {months}")
        self.months = months
        self.start = month_start(as_of, months - 1)
        self.year = (as_of - dt.timedelta(days=364), as_of)
        previous_end = month_start(as_of) - dt.timedelta(days=1)
        self.periods = {
            PERIODS[0]: (month_start(as_of), as_of),
            PERIODS[1]: (previous_end.replace(day=1), previous_end),
        }
        self.trusts = [
            o
            for o in (
                policy.providers(ws.federation, ws.purpose.id, ws.org) if self.view == "icb" else []
            )
            if ws.federation.org(o).org_type == "acute_trust"
        ]
        self.nodes = self.trusts

    @classmethod
    def open(cls, org: str, as_of: dt.date, months: int = 12) -> SupplyFigures:
        """Connect for ``supply_chain_planning`` (and, for bed days, ``care_coordination_
        planning`` if the user holds it) and return the organisation's figures."""
        ws, activity = cls._connect(org)
        return cls(ws, as_of, months, activity)

    @property
    def activity(self):
        """The ``care_coordination_planning`` workspace, or the refusal saying why not."""
        return self.second

    @property
    def by_trust(self) -> dict:
        """ICB: each trust's released figures (a ``FederatedResult``) by title."""
        return self.by_node

    # -- layout helpers ---------------------------------------------------------------------
    def describe(self) -> str:
        name = self.ws.federation.org(self.ws.org).name
        if self.view == "trust":
            how = f"from its own orders, receipts, stock and consumption ({PLANNING})"
        else:
            how = (
                f"across {', '.join(self.trusts)}: each trust ran the analysis on its own data "
                "under DSA-SUPPLY-ICB and released the figures compared here"
            )
        return f"**{name} ({self.ws.org})**, {self.months} months to {self.as_of:%d %B %Y}, {how}."

    # -- stock --------------------------------------------------------------------------------
    def days_of_stock(self, by: tuple[str, ...] = ("product_group",)):
        """Days of stock on hand at ``as_of`` by ``by`` (a trust; the ICB: per trust)."""

        def make(node):
            stock, used, products = self._tables(node, "stock_levels", "consumption", "products")
            return m.days_of_stock(stock, used, products, self.as_of, by=by)

        released = self._figure(
            make,
            title="Days of stock on hand",
            by=None,
            statistics={"days_of_stock": "sku_locations"},
        )
        released.data["days_of_stock"] = released.data["days_of_stock"].astype("Float64").round(1)
        return released

    def reorder_points(self):
        """Every SKU-location's reorder point at ``as_of`` (trust view)."""
        if self.view != "trust":
            raise UsageError("SKU-level reorder points are shown at the trust")
        stats = ("mean_daily_demand", "sd_daily_demand", "lead_time_days", "safety_stock")
        stock, used, orders, receipts, products = self._tables(
            self.ws, "stock_levels", "consumption", "purchase_orders", "receipts", "products"
        )
        expr = m.reorder_points(stock, used, orders, receipts, self.as_of)
        names = products.select("product_group", _product_npc=products.npc)
        expr = expr.left_join(names, expr.npc == names._product_npc).drop("_product_npc")
        released = self.ws.release(
            expr.order_by(["location_code", "product_group", "npc"]),
            title="Reorder points",
            statistics={c: "demand_days" for c in (*stats, "reorder_point")},
        )
        for column in (*stats, "reorder_point"):
            released.data[column] = released.data[column].astype("Float64").round(1)
        return released

    def breaches(self, reorder: Released) -> pd.DataFrame:
        """The SKU-locations below their reorder point, from the released reorder points."""
        data = reorder.data
        below = data["below_reorder_point"].fillna(False).astype(bool)
        columns = [
            "location_code",
            "product_group",
            "on_hand_units",
            "reorder_point",
            "mean_daily_demand",
            "lead_time_days",
        ]
        return data.loc[below, columns].set_index(["location_code", "product_group"])

    def breaches_by_trust(self):
        """ICB: SKU-locations below their reorder point at each trust at ``as_of``."""

        def make(node):
            tables = self._tables(
                node, "stock_levels", "consumption", "purchase_orders", "receipts", "products"
            )
            return m.reorder_point_breaches(*tables, self.as_of)

        return self._figure(make, title="Reorder point breaches by trust", by=None)

    # -- stock-outs ---------------------------------------------------------------------------
    def stockouts(self):
        """Stock-out rate by month over the report (ICB: per trust, and summed)."""

        def make(node):
            stock, used, products = self._tables(node, "stock_levels", "consumption", "products")
            return m.stockout_rate(stock, used, products, self.start, self.as_of, by=("month",))

        released = self._figure(make, title="Stock-outs by month", by=("month",))
        data = released.data
        data["month"] = pd.to_datetime(data["month"]).dt.date
        data["stockout_rate"] = data["stockout_days"].astype("Float64") / data[
            "sku_location_days"
        ].astype("Float64")
        if self.view == "icb":
            per = self.by_trust["Stock-outs by month"].data
            per["month"] = pd.to_datetime(per["month"]).dt.date
            per["stockout_rate"] = per["stockout_days"].astype("Float64") / per[
                "sku_location_days"
            ].astype("Float64")
        return released

    def stockouts_by_group(self):
        """Stock-out days by product group over the last 12 months."""

        def make(node):
            stock, used, products = self._tables(node, "stock_levels", "consumption", "products")
            return m.stockout_rate(stock, used, products, *self.year, by=("product_group",))

        released = self._figure(
            make, title="Stock-outs by product group, last 12 months", by=("product_group",)
        )
        data = released.data
        data["stockout_pct"] = (
            data["stockout_days"].astype("Float64")
            * 100
            / data["sku_location_days"].astype("Float64")
        ).round(2)
        return released

    # -- lead times ---------------------------------------------------------------------------
    def lead_time_distribution(self) -> Released:
        """Lines by lead time and supply route, last 12 months (ICB: summed over trusts)."""

        def make(node):
            orders, receipts, products = self._tables(
                node, "purchase_orders", "receipts", "products"
            )
            return m.lead_time_distribution(orders, receipts, products, *self.year)

        released = self._figure(
            make,
            title="Lead time distribution by supply route",
            by=("supply_route", "lead_time_days"),
        )
        released.data["route"] = released.data["supply_route"].map(ROUTE_LABELS)
        return released

    def lead_times(self):
        """Median, 90th percentile and mean lead time by route, last 12 months."""

        def make(node):
            orders, receipts, products = self._tables(
                node, "purchase_orders", "receipts", "products"
            )
            return m.lead_times(orders, receipts, products, *self.year)

        released = self._figure(
            make,
            title="Lead times by supply route (days)",
            statistics={c: "lines" for c in ("median_days", "p90_days", "mean_days")},
        )
        released.data["mean_days"] = released.data["mean_days"].astype("Float64").round(1)
        return released

    # -- prices -------------------------------------------------------------------------------
    def _spend(self, start: dt.date, end: dt.date, title: str):
        def make(node):
            orders, products = self._tables(node, "purchase_orders", "products")
            return m.spend(orders, products, start, end)

        return self._figure(make, title=title, by=None, magnitudes=SPEND)

    def prices(self) -> Released:
        """Trust: its own spend, units and price per unit by product group, last 12 months."""
        if self.view != "trust":
            raise UsageError("a trust's own prices; the ICB view is price_variation()")
        released = self._spend(*self.year, "Price per unit by product group, last 12 months")
        data = released.data
        units = data["units"].astype("Float64")
        data["unit_price"] = (data["spend"].astype("Float64") / units.where(units != 0)).round(4)
        data["spend"] = data["spend"].astype("Float64").round(2)
        return released

    def price_variation(self) -> pd.DataFrame:
        """ICB: each trust's unit price against the median across trusts, and the savings."""
        if self.view != "icb":
            raise UsageError("price benchmarking across trusts is done by the ICB")
        result = self._spend(*self.year, "Spend by trust and product group, last 12 months")
        table = price_benchmark(result.data)
        table["unit_price"] = table["unit_price"].round(4)
        table["benchmark_unit_price"] = table["benchmark_unit_price"].round(4)
        table["spend"] = table["spend"].astype("Float64").round(2)
        columns = [
            "product_group",
            "org",
            "units",
            "spend",
            "unit_price",
            "benchmark_unit_price",
            "price_index",
            "savings",
        ]
        return table[columns].sort_values(["product_group", "org"]).reset_index(drop=True)

    @staticmethod
    def savings_by(table: pd.DataFrame, column: str) -> pd.DataFrame:
        """Savings opportunity summed by ``column`` (``product_group`` or ``org``), largest
        first."""
        out = table.groupby(column, as_index=False)["savings"].sum()
        return out.sort_values("savings", ascending=False, kind="stable").reset_index(drop=True)

    def consumption_source(self) -> str:
        """Where consumption per bed day comes from, for a chart caption."""
        where = self.ws.org if self.view == "trust" else "each trust's released figures"
        return f"{where}: consumption ({PLANNING}), bed_occupancy ({ACTIVITY})"

    # -- consumption per activity -------------------------------------------------------------
    def consumption_per_bed_day(self, category: str = m.GLOVES_CATEGORY):
        """Units of ``category`` issued per occupied G&A bed day, by month (per trust at the
        ICB), or a sentence saying why it is not shown."""
        activity = self._second_ws()
        if activity is None:
            return f"Not shown: occupied bed days need the {ACTIVITY} purpose ({self.activity})"

        def used(node):
            consumption, products = self._tables(node, "consumption", "products")
            expr = m.consumption_units(
                consumption, products, self.start, self.as_of, by=("category", "month")
            )
            return expr.filter(expr.category == category).drop("category")

        def beds(node):
            return dm.bed_days(node.table("bed_occupancy"), self.start, self.as_of)

        units = self._figure(used, title=f"{category}: units issued by month", by=None)
        days = self._figure(beds, title="Occupied G&A bed days by month", by=None, ws=activity)
        keys = ["org", "month"] if self.view == "icb" else ["month"]
        left, right = units.data.copy(), days.data.copy()
        for frame in (left, right):
            frame["month"] = pd.to_datetime(frame["month"]).dt.date
        data = left.merge(right, on=keys, how="outer").sort_values(keys).reset_index(drop=True)
        bed_days = data["occupied_bed_days"].astype("Float64")
        data["units_per_bed_day"] = (
            data["units_issued"].astype("Float64") / bed_days.where(bed_days != 0)
        ).round(2)
        return data[[*keys, "units_issued", "occupied_bed_days", "units_per_bed_day"]]

    # -- the one-screen summary -----------------------------------------------------------------
    def summary(self) -> pd.DataFrame:
        """The headline: this month against the previous month (and, for the ICB, the price
        benchmarking savings)."""
        lo_prev = self.periods[PERIODS[1]][1]
        days = {PERIODS[0]: self.as_of, PERIODS[1]: lo_prev}

        def stockouts(node):
            stock, used, products = self._tables(node, "stock_levels", "consumption", "products")
            return self._periods(lambda lo, hi: m.stockout_rate(stock, used, products, lo, hi))

        def breaches(node):
            tables = self._tables(
                node, "stock_levels", "consumption", "purchase_orders", "receipts", "products"
            )
            return ibis.union(
                *(
                    m.reorder_point_breaches(*tables, day).mutate(period=ibis.literal(name))
                    for name, day in days.items()
                )
            )

        def lead(node):
            orders, receipts, products = self._tables(
                node, "purchase_orders", "receipts", "products"
            )
            return self._periods(
                lambda lo, hi: m.lead_times(orders, receipts, products, lo, hi).drop(
                    "p90_days", "mean_days"
                )
            )

        def spent(node):
            orders, products = self._tables(node, "purchase_orders", "products")
            return self._periods(lambda lo, hi: m.spend(orders, products, lo, hi, by=()))

        out = self._figure(stockouts, title="Stock-outs, monthly", by=("period",)).data
        out = out.set_index("period")
        rate = [
            ratio(out["stockout_days"].get(p), out["sku_location_days"].get(p), 100.0, 2)
            for p in PERIODS
        ]
        br = self._figure(breaches, title="Reorder point breaches", by=("period",)).data
        br = br.set_index("period")
        money = self._figure(spent, title="Spend, monthly", by=("period",), magnitudes=SPEND)
        money = money.data.set_index("period")
        rows = [
            ("Stock-out rate (% of product-location-days)", *rate, "as low as possible"),
            (
                "Product-locations below reorder point (month end)",
                *(plain(br["below_reorder_point"].get(p)) for p in PERIODS),
                "",
            ),
            (
                "Product-locations stocked (month end)",
                *(plain(br["sku_locations"].get(p)) for p in PERIODS),
                "",
            ),
            (
                "Spend (GBP, orders placed)",
                *(_whole(money["spend"].get(p)) for p in PERIODS),
                "",
            ),
        ]
        if self.view == "trust":
            lt = self._figure(
                lead, title="Lead times, monthly", statistics={"median_days": "lines"}
            ).data
            for route in ("stocked", "edirect"):
                part = lt[lt["supply_route"] == route].set_index("period")["median_days"]
                rows.append(
                    (
                        f"Median lead time, {ROUTE_LABELS[route]} (days)",
                        *(_round(part.get(p), 1) for p in PERIODS),
                        "",
                    )
                )
        gloves = self.consumption_per_bed_day()
        if isinstance(gloves, pd.DataFrame):
            per = _per_month(gloves, self.view == "icb")
            rows.append(
                (
                    "Glove units issued per occupied bed day",
                    *(per.get(self.periods[p][0]) for p in PERIODS),
                    "peer comparison",
                )
            )
        if self.view == "icb":
            total = self.price_variation()["savings"].sum()
            rows.append(
                ("Savings opportunity, last 12 months (GBP)", round(float(total)), None, "")
            )
        table = headline(rows)
        if self.view == "icb":
            table.loc[table.index[-1], ["previous", "change"]] = "n/a"
        return table


def _round(value, digits: int):
    value = plain(value)
    return None if value is None else round(float(value), digits)


def _whole(value):
    value = plain(value)
    return None if value is None else round(float(value))


def _per_month(data: pd.DataFrame, pooled: bool) -> dict:
    """Units per bed day by month; pooled over trusts (sum / sum) at the ICB."""
    if not pooled:
        return {r.month: plain(r.units_per_bed_day) for r in data.itertuples()}
    sums = data.groupby("month")[["units_issued", "occupied_bed_days"]].sum(min_count=1)
    return {
        month: ratio(row.units_issued, row.occupied_bed_days, 1.0, 2)
        for month, row in sums.iterrows()
    }


# -- frames for charts (from released figures) -----------------------------------------------


def lead_time_frame(distribution: Released) -> pd.DataFrame:
    """Lines per lead time (days, as a category) and route, for a grouped bar chart."""
    data = distribution.data.copy()
    data["lead_time_days"] = data["lead_time_days"].astype("int64")
    return data.sort_values(["lead_time_days", "supply_route"]).reset_index(drop=True)


def share(data: pd.DataFrame, column: str) -> pd.DataFrame:
    """``data`` with ``share`` = ``column`` (already a 0-1 fraction) as float."""
    return data.assign(share=data[column].astype("Float64"))


def pivot(data: pd.DataFrame, index: str, columns: str, values: str) -> pd.DataFrame:
    """A wide table of released ``values`` (``index`` down, ``columns`` across)."""
    return data.pivot(index=index, columns=columns, values=values).rename_axis(None, axis=1)
