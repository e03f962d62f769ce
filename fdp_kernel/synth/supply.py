"""Supply chain: product catalogue, orders, receipts, stock and consumption at the trusts.

Products come in like-for-like groups (the same item from several suppliers in different pack
sizes), so price variation must be compared per unit. Each trust location runs a reorder-point
policy day by day: demand is Poisson, orders go out when stock falls to the reorder point,
and arrive after a lead time that depends on the delivery route. Supplier disruptions stretch
lead times for a while, and one trust keeps thin safety stock, so stock-outs happen where they
would. Prices vary across trusts for the same product.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fdp_kernel.identifiers import gtin_check_digits_array
from fdp_kernel.synth.orgs import ACUTE_TRUSTS

DAYS = 365
# group, category, unit of issue, price per unit (GBP), units a day per 100 beds, route,
# pack sizes of the variants, where used ("all" or "theatres")
GROUPS = (
    (
        "Nitrile examination gloves, medium",
        "Gloves",
        "each",
        0.035,
        900,
        "stocked",
        (100, 200, 250),
        "all",
    ),
    (
        "Nitrile examination gloves, large",
        "Gloves",
        "each",
        0.035,
        500,
        "stocked",
        (100, 200),
        "all",
    ),
    (
        "Disposable apron, polythene",
        "Protective clothing",
        "each",
        0.03,
        500,
        "stocked",
        (100, 200),
        "all",
    ),
    (
        "Surgical face mask, type IIR",
        "Protective clothing",
        "each",
        0.06,
        300,
        "stocked",
        (50,),
        "all",
    ),
    (
        "Syringe 10ml luer lock",
        "Syringes and needles",
        "each",
        0.07,
        400,
        "stocked",
        (100, 120),
        "all",
    ),
    ("Syringe 5ml luer slip", "Syringes and needles", "each", 0.05, 350, "stocked", (100,), "all"),
    ("Hypodermic needle 21G", "Syringes and needles", "each", 0.02, 400, "stocked", (100,), "all"),
    ("IV cannula 20G with port", "Infusion", "each", 0.90, 60, "edirect", (50,), "all"),
    ("Sodium chloride 0.9% 10ml flush", "Infusion", "each", 0.25, 200, "stocked", (30, 50), "all"),
    ("Foam dressing 10cm x 10cm", "Wound care", "each", 1.20, 40, "stocked", (10, 20), "all"),
    ("Gauze swab 10cm x 10cm", "Wound care", "each", 0.02, 300, "stocked", (100,), "all"),
    ("Foley catheter 14Ch", "Urology", "each", 2.50, 15, "edirect", (10,), "all"),
    ("Alcohol hand rub 500ml", "Infection control", "each", 2.80, 10, "stocked", (1, 6), "all"),
    ("Detergent wipes", "Infection control", "each", 0.02, 500, "blue_diamond", (200,), "all"),
    ("Oxygen mask, adult", "Respiratory", "each", 0.60, 30, "stocked", (50,), "all"),
    ("Incontinence pad", "Continence", "each", 0.15, 200, "blue_diamond", (28, 30), "all"),
    (
        "Absorbable suture 3-0",
        "Theatre consumables",
        "each",
        3.50,
        20,
        "stocked",
        (12, 36),
        "theatres",
    ),
    (
        "Cemented femoral stem",
        "Orthopaedic implants",
        "each",
        450.0,
        0.5,
        "edirect",
        (1,),
        "theatres",
    ),
    (
        "Total knee replacement system",
        "Orthopaedic implants",
        "each",
        1100.0,
        0.4,
        "edirect",
        (1,),
        "theatres",
    ),
    (
        "Intraocular lens, monofocal",
        "Ophthalmic implants",
        "each",
        45.0,
        2.0,
        "edirect",
        (1,),
        "theatres",
    ),
)
SUPPLIERS = ("Synthetic Medical Ltd", "Demo Healthcare plc", "Example Surgical Co")
LEAD_BASE = {"stocked": 1, "edirect": 3, "blue_diamond": 2}
LEAD_EXTRA = {"stocked": 1.0, "edirect": 3.0, "blue_diamond": 2.0}


def products(rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {
        k: []
        for k in (
            "npc",
            "mpc",
            "description",
            "product_group",
            "category",
            "unit_of_issue",
            "pack_size",
            "supplier",
            "supply_route",
            "status",
            "unit_price",
            "group_idx",
            "where",
        )
    }
    for g, (name, category, unit, price, _, route, packs, where) in enumerate(GROUPS):
        for v, pack in enumerate(packs):
            rows["npc"].append(f"{'ABCDEFGHJKLMNPRSTVWX'[g]}{'QRS'[v]}Y{g * 10 + v + 101:03d}")
            rows["mpc"].append(f"MPC-{g + 1:02d}{v + 1:02d}-{pack}")
            rows["description"].append(f"{name} (pack of {pack})")
            rows["product_group"].append(name)
            rows["category"].append(category)
            rows["unit_of_issue"].append(unit)
            rows["pack_size"].append(pack)
            rows["supplier"].append(SUPPLIERS[v % len(SUPPLIERS)])
            rows["supply_route"].append(route)
            rows["unit_price"].append(price * rng.uniform(0.9, 1.2))
            rows["group_idx"].append(g)
            rows["where"].append(where)
    out = {k: np.asarray(v) for k, v in rows.items()}
    n = out["npc"].size
    bodies = 500_000_000_000 + rng.choice(9_999_999_999, n, replace=False)  # GS1 UK prefix 50
    out["gtin"] = np.char.add(bodies.astype(str), gtin_check_digits_array(bodies, 13).astype(str))
    out["eclass_code"] = np.array([f"SYN{g + 1:02d}" for g in out["group_idx"]])
    out["status"] = np.where(rng.random(n) < 0.05, "awsl", "available").astype(object)
    return out


def simulate(prod, beds: np.ndarray, as_of: dt.date, rng: np.random.Generator):
    """Day-by-day stock simulation per trust x location x product; returns all supply tables."""
    first = np.datetime64(as_of, "D") - np.timedelta64(DAYS - 1, "D")
    combos = []  # (trust, location name, product index, mean daily units)
    for t in range(len(ACUTE_TRUSTS)):
        n_wards = 3 + int(beds[t] > 150) + int(beds[t] > 300)
        locations = ["MAIN", "THEATRES", "ED"] + [f"WARD{i + 1:02d}" for i in range(n_wards)]
        for g, group in enumerate(GROUPS):
            variants = np.flatnonzero(prod["group_idx"] == g)
            chosen = rng.choice(
                variants, size=min(len(variants), 1 + int(rng.random() < 0.3)), replace=False
            )
            for loc in locations:
                if group[7] == "theatres" and loc != "THEATRES":
                    continue
                share = (
                    1.0
                    if group[7] == "theatres"
                    else (0.2 if loc in ("MAIN", "THEATRES") else 1.0 / len(locations))
                )
                for p in chosen:
                    combos.append((t, loc, p, group[4] * beds[t] / 100 * share / len(chosen)))
    c = len(combos)
    trust = np.array([x[0] for x in combos])
    loc = np.array([x[1] for x in combos])
    prod_i = np.array([x[2] for x in combos])
    lam = np.maximum(np.array([x[3] for x in combos]), 0.02)
    pack = prod["pack_size"][prod_i]
    route = prod["supply_route"][prod_i]
    lead_base = np.vectorize(LEAD_BASE.get)(route)
    lead_extra = np.vectorize(LEAD_EXTRA.get)(route)
    safety = np.where(trust == 1, 0.3, 1.65)  # trust RSB runs thin safety stock
    lead_mean = lead_base + lead_extra
    reorder_point = lam * lead_mean + safety * np.sqrt(lam * lead_mean)
    order_up_to = reorder_point + lam * 14
    # Supplier disruptions: a product group is disrupted for a month, stretching lead times.
    disrupted_group = rng.random(len(GROUPS)) < 0.2
    disruption_start = rng.integers(0, DAYS - 30, len(GROUPS))
    g_of = prod["group_idx"][prod_i]

    on_hand = np.ceil(order_up_to).astype(np.int64)
    pipeline = np.zeros(c, dtype=np.int64)
    arrivals = np.zeros((DAYS + 60, c), dtype=np.int64)
    stock, issued, unmet, orders = [], [], [], []
    weekday = (np.arange(DAYS) + int((first - np.datetime64("1970-01-05")).astype(int))) % 7
    for d in range(DAYS):
        on_hand += arrivals[d]
        pipeline -= arrivals[d]
        demand = rng.poisson(lam * (0.7 if weekday[d] >= 5 else 1.08))
        out = np.minimum(on_hand, demand)
        on_hand -= out
        issued.append(out)
        unmet.append(demand - out)
        stock.append(on_hand.copy())
        position = on_hand + pipeline
        need = np.flatnonzero(position <= reorder_point)
        if need.size:
            packs = np.ceil((order_up_to[need] - position[need]) / pack[need]).astype(np.int64)
            packs = np.maximum(packs, 1)
            lead = lead_base[need] + rng.poisson(lead_extra[need])
            in_disruption = disrupted_group[g_of[need]] & (
                np.abs(d - disruption_start[g_of[need]] - 15) <= 15
            )
            lead = lead + in_disruption * rng.integers(7, 21, need.size)
            partial = rng.random(need.size) < 0.05
            first_qty = np.where(partial, np.maximum((packs * 0.7).astype(np.int64), 0), packs)
            np.add.at(arrivals, (np.minimum(d + lead, DAYS + 59), need), first_qty * pack[need])
            later = np.minimum(d + lead + 7, DAYS + 59)
            np.add.at(arrivals, (later, need), (packs - first_qty) * pack[need])
            pipeline[need] += packs * pack[need]
            orders.append((d, need, packs, lead, partial, first_qty))

    dates = first + np.arange(DAYS).astype("timedelta64[D]")
    stock_a = np.stack(stock)  # days x combos
    issued_a, unmet_a = np.stack(issued), np.stack(unmet)
    day_i, combo_i = np.meshgrid(np.arange(DAYS), np.arange(c), indexing="ij")
    levels = {
        "trust": trust[combo_i.ravel()],
        "location_code": loc[combo_i.ravel()],
        "npc": prod["npc"][prod_i[combo_i.ravel()]],
        "date": dates[day_i.ravel()],
        "on_hand_units": stock_a.ravel().astype(np.int32),
    }
    used = (issued_a + unmet_a).ravel() > 0
    consumption = {
        k: v[used]
        for k, v in {
            **{k: levels[k] for k in ("trust", "location_code", "npc", "date")},
            "units_issued": issued_a.ravel().astype(np.int32),
            "units_unmet": unmet_a.ravel().astype(np.int32),
        }.items()
    }
    price_factor = np.array([t[4] for t in ACUTE_TRUSTS])
    po, receipts = _orders(orders, trust, loc, prod_i, prod, pack, price_factor, dates, rng)
    return levels, consumption, po, receipts


def _orders(orders, trust, loc, prod_i, prod, pack, price_factor, dates, rng):
    day = np.concatenate([np.full(o[1].size, o[0]) for o in orders])
    combo = np.concatenate([o[1] for o in orders])
    packs = np.concatenate([o[2] for o in orders])
    lead = np.concatenate([o[3] for o in orders])
    partial = np.concatenate([o[4] for o in orders])
    first_qty = np.concatenate([o[5] for o in orders])
    # One purchase order per trust, location and day; lines numbered within it.
    order = np.lexsort((combo, day, trust[combo]))
    day, combo, packs, lead, partial, first_qty = (
        a[order] for a in (day, combo, packs, lead, partial, first_qty)
    )
    key = (
        trust[combo].astype(np.int64) * 10_000_000
        + day * 1000
        + np.unique(loc, return_inverse=True)[1][combo]
    )
    new_po = np.r_[True, key[1:] != key[:-1]]
    po_seq = np.cumsum(new_po)
    starts = np.flatnonzero(new_po)
    line = np.arange(key.size) - starts[po_seq - 1] + 1
    per_unit = prod["unit_price"][prod_i[combo]] * price_factor[trust[combo]]
    unit_price = np.round(per_unit * pack[combo] * rng.normal(1.0, 0.02, combo.size), 2)
    po_number = np.char.add("PO", (1_000_000 + po_seq).astype(str))
    po = {
        "trust": trust[combo],
        "po_number": po_number,
        "po_line": line.astype(np.int32),
        "order_date": dates[day],
        "npc": prod["npc"][prod_i[combo]],
        "location_code": loc[combo],
        "quantity": packs.astype(np.int32),
        "unit_price": unit_price,
        "net_value": np.round(unit_price * packs, 2),
    }
    last_day = dates[-1]
    r_date = np.concatenate(
        [
            dates[day] + lead.astype("timedelta64[D]"),
            dates[day] + (lead + 7).astype("timedelta64[D]"),
        ]
    )
    r_qty = np.concatenate([first_qty, packs - first_qty])
    r_idx = np.concatenate([np.arange(combo.size), np.arange(combo.size)])
    keep = (r_qty > 0) & (r_date <= last_day)
    receipts = {
        "trust": po["trust"][r_idx[keep]],
        "po_number": po_number[r_idx[keep]],
        "po_line": po["po_line"][r_idx[keep]],
        "receipt_date": r_date[keep],
        "quantity_received": r_qty[keep].astype(np.int32),
    }
    return po, receipts
