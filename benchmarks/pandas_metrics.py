"""Idiomatic pandas implementations of each priority's headline metrics: the baseline that
``bench_pandas`` measures the project's Ibis metrics (``fdp_kernel.metrics``) against.

Written as a competent analyst would: read only the columns needed from Parquet (dates as
``datetime64``, strings as pandas' Arrow-backed ``str``), filter with boolean masks,
``merge`` and ``groupby``; no row loops, and the obvious shortcuts taken (e.g. only
consumption rows with unmet demand are joined to stock). Each function returns the same
tables, with the same numbers, as its Ibis counterpart; ``bench_pandas`` checks that they
agree. Rules and cut-off dates that come from configuration (vaccination cohort rules,
register ages, month ends) are computed by the project's own code in the parent process and
passed in as ``params`` (JSON), so this module does not import Ibis: the pandas process's
memory is pandas' alone.
"""

from __future__ import annotations

import json
import pickle
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

DataFrames = dict[str, pd.DataFrame]

COLUMNS: dict[str, dict[str, list[str]]] = {
    "elective": {
        "rtt_pathways": [
            "rtt_start_date",
            "rtt_end_date",
            "rtt_period_status",
            "treatment_function_code",
        ]
    },
    "vaccination": {
        "patients": ["nhs_number", "date_of_birth", "date_of_death", "imd_decile", "ethnicity"],
        "ltc_registers": ["nhs_number", "condition", "diagnosis_date"],
        "vaccinations": ["nhs_number", "vaccination_date", "procedure_code"],
    },
    "population": {
        "patients": ["nhs_number", "date_of_birth", "date_of_death", "imd_decile"],
        "ltc_registers": ["nhs_number", "condition", "diagnosis_date"],
    },
    "discharge": {
        "inpatient_spells": [
            "nhs_number",
            "admission_date",
            "discharge_date",
            "discharge_ready_date",
            "discharge_pathway",
            "nctr_reason",
            "died_in_hospital",
        ]
    },
    "supply": {
        "stock_levels": ["org_code", "location_code", "npc", "date"],
        "consumption": ["org_code", "location_code", "npc", "date", "units_unmet"],
        "products": ["npc", "product_group", "pack_size"],
        "purchase_orders": ["org_code", "order_date", "npc", "quantity", "net_value"],
    },
}


def load(priority: str, folder: Path) -> DataFrames:
    """The priority's tables from ``folder/<table>.parquet``: only the columns used."""
    return {
        table: pd.read_parquet(
            folder / f"{table}.parquet",
            columns=columns,
            to_pandas_kwargs={"date_as_object": False},
        )
        for table, columns in COLUMNS[priority].items()
    }


def _day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


# -- elective recovery (RTT) --------------------------------------------------------------------
def elective(data: DataFrames, p: dict) -> DataFrames:
    """Waiting list, within 18 weeks and long waits at each month end; long waiters by
    treatment function at ``as_of`` (``rtt.waiting_list_summary``,
    ``rtt.long_waiters_by_treatment_function``)."""
    rtt = data["rtt_pathways"]
    valid = rtt["rtt_period_status"] != p["nullified"]
    over = {f"over_{w}_weeks": d for w, d in p["over_weeks_days"].items()}

    def waits(day: pd.Timestamp) -> pd.DataFrame:
        still_open = rtt["rtt_end_date"].isna() | (rtt["rtt_end_date"] > day)
        chosen = rtt.loc[valid & (rtt["rtt_start_date"] <= day) & still_open]
        return chosen.assign(days=(day - chosen["rtt_start_date"]).dt.days)

    rows = []
    for text in p["month_ends"]:
        days = waits(_day(text))["days"]
        row = {"month_end": text, "waiting_list": len(days)}
        row["within_18_weeks"] = int((days <= p["within_18_weeks_days"]).sum())
        row.update({name: int((days > d).sum()) for name, d in over.items()})
        rows.append(row)
    trend = pd.DataFrame(rows)
    t = waits(_day(p["as_of"]))
    flags = pd.DataFrame({name: t["days"] > d for name, d in over.items()})
    flags["treatment_function_code"] = t["treatment_function_code"]
    grouped = flags.groupby("treatment_function_code")
    long = grouped.sum().astype("int64")
    long.insert(0, "pathways", grouped.size())
    return {"trend": trend, "long_waiters": long.reset_index()}


# -- vaccination ------------------------------------------------------------------------------
def vaccination(data: DataFrames, p: dict) -> DataFrames:
    """Eligible and vaccinated people per (cohort, point) for the whole list and by IMD
    quintile and ethnic group (``vaccination.uptake_table``)."""
    people = data["patients"]
    dob, dod = people["date_of_birth"], people["date_of_death"]
    quintile = ((people["imd_decile"] + 1) // 2).astype("Int64").astype("string")
    ethnic = people["ethnicity"].map(p["ethnic_group"]).fillna(p["unknown"])
    people = people.assign(
        imd_quintile=quintile.fillna(p["not_known"]).astype("category"),
        ethnic_group=ethnic.astype("category"),
    )
    kinds = {code: kind for kind, codes in p["dose_kinds"].items() for code in codes}
    vax = data["vaccinations"]
    vax = vax.assign(kind=vax["procedure_code"].map(kinds)).dropna(subset=["kind"])
    doses = {kind: part[["nhs_number", "vaccination_date"]] for kind, part in vax.groupby("kind")}
    regs = data["ltc_registers"]
    regs = regs.loc[regs["condition"].isin(p["risk_registers"])]
    recorded = regs["diagnosis_date"].fillna(_day(p["earliest"]))
    at_risk_from = recorded.groupby(regs["nhs_number"]).min()
    parts = []
    for rule in p["rules"]:
        census = _day(rule["census"])
        alive = dod.isna() | (dod > census)
        mask = (dob > _day(rule["born_after"])) & (dob <= _day(rule["born_by"])) & alive
        chosen = people.loc[mask, ["nhs_number", "date_of_birth", "imd_quintile", "ethnic_group"]]
        if rule["at_risk"]:
            chosen = chosen.loc[
                chosen["nhs_number"].isin(at_risk_from.index[at_risk_from <= census])
            ]
        if rule["birthday"] is not None:  # childhood: doses count up to the birthday
            dose_to = chosen["date_of_birth"] + pd.DateOffset(years=rule["birthday"])
        else:
            dose_to = _day(rule["dose_to"])
        given = doses.get(rule["dose_kind"], pd.DataFrame(columns=["nhs_number"]))
        window = chosen[["nhs_number"]].assign(dose_to=dose_to).merge(given, on="nhs_number")
        window = window.loc[
            (window["vaccination_date"] >= _day(rule["dose_from"]))
            & (window["vaccination_date"] <= window["dose_to"])
        ]
        n_doses = window.groupby("nhs_number")["vaccination_date"].nunique()
        chosen = chosen.assign(
            vaccinated=chosen["nhs_number"].isin(n_doses.index[n_doses >= rule["doses"]])
        )
        whole = pd.DataFrame({"group": [p["all"]], "eligible": [len(chosen)]})
        rule_parts = [whole.assign(vaccinated=chosen["vaccinated"].sum(), breakdown=p["all"])]
        for breakdown in p["breakdowns"]:
            g = chosen.groupby(breakdown, observed=True)["vaccinated"]
            counts = pd.DataFrame({"eligible": g.size(), "vaccinated": g.sum()})
            counts = counts.rename_axis("group").reset_index().assign(breakdown=breakdown)
            rule_parts.append(counts.assign(group=counts["group"].astype(str)))
        measure = f"{rule['cohort']}__{rule['point']}__"
        parts += [part.assign(measure=measure) for part in rule_parts]
    long = pd.concat(parts, ignore_index=True)
    wide = long.pivot_table(
        index=["breakdown", "group"],
        columns="measure",
        values=["eligible", "vaccinated"],
        aggfunc="sum",
        fill_value=0,
    )
    wide.columns = [f"{measure}{name}" for name, measure in wide.columns]
    return {"uptake": wide.astype("int64").reset_index()}


# -- population health ----------------------------------------------------------------------
NO_DECILE = -1  # stands for a missing IMD decile while grouping


def population(data: DataFrames, p: dict) -> DataFrames:
    """Recorded prevalence per register by IMD decile x age band (``population.prevalence``):
    people on the register of the age it covers, and the list of that age."""
    day = _day(p["as_of"])
    patients = data["patients"]
    alive = patients["date_of_death"].isna() | (patients["date_of_death"] > day)
    people = patients.loc[alive & (patients["date_of_birth"] <= day)]
    dob = people["date_of_birth"]
    bands = [(dob <= _day(cut), label) for label, cut in p["age_bands"]]  # oldest first
    age_band = np.select([c for c, _ in bands], [label for _, label in bands], default="")
    people = people.assign(
        age_band=pd.Categorical(age_band), imd_decile=people["imd_decile"].fillna(NO_DECILE)
    )
    keys = ["imd_decile", "age_band"]
    born_by = pd.Series({r: _day(d) for r, d in p["register_born_by"].items()})
    # Denominators: one groupby per distinct register age, not one per register.
    by_age = {
        cut: people.loc[people["date_of_birth"] <= cut].groupby(keys, observed=True).size()
        for cut in born_by.unique()
    }
    groups = people.groupby(keys, observed=True).size().index
    sizes = pd.DataFrame({r: by_age[cut] for r, cut in born_by.items()}).reindex(groups)
    regs = data["ltc_registers"]
    recorded = regs["diagnosis_date"].isna() | (regs["diagnosis_date"] <= day)
    entries = regs.loc[recorded, ["nhs_number", "condition"]].drop_duplicates()
    entries = entries.merge(people[["nhs_number", "date_of_birth", *keys]], on="nhs_number")
    entries = entries.loc[entries["date_of_birth"] <= entries["condition"].map(born_by)]
    counted = entries.groupby([*keys, "condition"], observed=True).size().unstack(fill_value=0)
    counted = counted.reindex(index=groups, columns=born_by.index)
    result = pd.DataFrame(
        {"register": counted.stack(future_stack=True), "list_size": sizes.stack(future_stack=True)}
    )
    result = result.fillna(0).astype("int64").rename_axis([*keys, "condition"]).reset_index()
    result["imd_decile"] = result["imd_decile"].replace(NO_DECILE, np.nan)
    return {"prevalence": result}


# -- care coordination (discharge) ------------------------------------------------------------
def discharge(data: DataFrames, p: dict) -> DataFrames:
    """Discharges by pathway, delayed patients by reason and pathway, and bed days lost to
    delay by pathway over [start, end] (``discharge.discharges_by_pathway``,
    ``delay_reasons``, ``bed_days_lost``)."""
    s = data["inpatient_spells"]
    lo, hi = _day(p["start"]), _day(p["end"])
    after = hi + pd.Timedelta(days=1)
    gone = s.loc[s["discharge_date"].between(lo, hi) & ~s["died_in_hospital"]]
    gone = gone.loc[gone["discharge_pathway"].isin(p["pathways"])]
    counts = gone["discharge_pathway"].value_counts().reindex(p["pathways"], fill_value=0)
    pathways = pd.DataFrame(
        {"discharge_pathway": p["pathways"], "discharges": counts.to_numpy()}
    ).assign(all_discharges=len(gone))
    t = s.loc[s["discharge_ready_date"].notna()]
    first = np.maximum(t["discharge_ready_date"], t["admission_date"]).clip(lower=lo)
    last = t["discharge_date"].fillna(after).clip(upper=after)
    lost = (last - first).dt.days
    t = t.assign(lost_days=lost).loc[lost > 0]
    reasons = (
        t.assign(nctr_reason=t["nctr_reason"].fillna(p["not_recorded"]))
        .groupby(["nctr_reason", "discharge_pathway"], dropna=False)
        .size()
        .rename("delayed_patients")
        .reset_index()
    )
    person = t.groupby(["discharge_pathway", "nhs_number"], dropna=False)["lost_days"].sum()
    by_pathway = person.groupby(level=0, dropna=False)
    second = person.sort_values(ascending=False).groupby(level=0, dropna=False).nth(1)
    lost_days = pd.DataFrame(
        {
            "bed_days_lost": by_pathway.sum(),
            "delayed_patients": by_pathway.size(),
            "bed_days_contributors": by_pathway.size(),
            "bed_days_top1": by_pathway.max(),
            "bed_days_top2": second.droplevel(1),
        }
    )
    lost_days = lost_days.fillna({"bed_days_top2": 0}).rename_axis("discharge_pathway")
    return {"pathways": pathways, "reasons": reasons, "bed_days_lost": lost_days.reset_index()}


# -- supply chain -------------------------------------------------------------------------------
def supply(data: DataFrames, p: dict) -> DataFrames:
    """Stock-out days by product group and unit price variation across trusts
    (``supply.stockout_rate``, ``supply.price_variation``) over [start, end]."""
    lo, hi = _day(p["start"]), _day(p["end"])
    keys = ["org_code", "location_code", "npc", "date"]
    stock = data["stock_levels"]
    stock = stock.loc[stock["date"].between(lo, hi)]
    used = data["consumption"]
    unmet = used.loc[used["date"].between(lo, hi) & (used["units_unmet"] > 0), keys]
    stock = stock.merge(unmet.assign(stockout=True), on=keys, how="left")
    products = data["products"]
    stock = stock.merge(products[["npc", "product_group"]], on="npc", how="left")
    stockout = stock["stockout"].notna()
    stockouts = (
        stockout.groupby(stock["product_group"], dropna=False)
        .agg(["size", "sum"])
        .set_axis(["sku_location_days", "stockout_days"], axis=1)
        .reset_index()
    )
    orders = data["purchase_orders"]
    orders = orders.loc[orders["order_date"].between(lo, hi) & orders["net_value"].notna()]
    lines = orders.merge(products[["npc", "pack_size", "product_group"]], on="npc")
    lines = lines.assign(units=lines["quantity"].astype("int64") * lines["pack_size"])
    per_org = (
        lines.groupby(["org_code", "product_group"])
        .agg(units=("units", "sum"), spend=("net_value", "sum"))
        .reset_index()
    )
    per_org["unit_price"] = per_org["spend"] / per_org["units"].where(per_org["units"] != 0)
    benchmark = per_org.groupby("product_group")["unit_price"].median()
    per_org["benchmark_unit_price"] = per_org["product_group"].map(benchmark)
    gap = (per_org["unit_price"] - per_org["benchmark_unit_price"]) * per_org["units"]
    per_org["savings"] = gap.fillna(0.0).clip(lower=0.0)
    return {"stockouts": stockouts, "price_variation": per_org}


def rss_kib() -> int:
    """This process's resident set size now (KiB), from /proc (0 where there is none)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def child(priority: str, folder: str, params: str, repeats: str, out: str) -> None:
    """The pandas side's process (``bench_pandas``): median time of load + compute."""
    p = json.loads(params)
    imports_kib = rss_kib()
    times, loads, result = [], [], None
    for _ in range(int(repeats)):
        start = time.perf_counter()
        data = load(priority, Path(folder))
        loaded = time.perf_counter()
        result = PANDAS[priority](data, p)
        del data
        times.append(time.perf_counter() - start)
        loads.append(loaded - start)
    Path(out).write_bytes(pickle.dumps(result))
    print(
        json.dumps(
            {
                "seconds": statistics.median(times),
                "load": statistics.median(loads),
                "runs": times,
                "imports": imports_kib,
            }
        )
    )


PANDAS: dict[str, Callable[[DataFrames, dict], DataFrames]] = {
    "elective": elective,
    "vaccination": vaccination,
    "population": population,
    "discharge": discharge,
    "supply": supply,
}


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame in a form two implementations' results can be compared in: numbers as
    float64, dates as ISO text, other values as text, missing values as ``<missing>``; rows
    sorted by every column, columns by name."""
    out = {}
    for name in sorted(frame.columns):
        column = frame[name]
        if pd.api.types.is_bool_dtype(column) or pd.api.types.is_numeric_dtype(column):
            out[name] = column.astype("float64")
        else:
            if pd.api.types.is_datetime64_any_dtype(column):
                column = column.dt.strftime("%Y-%m-%d")
            text = column.map(lambda v: "<missing>" if pd.isna(v) else str(v)).astype(str)
            out[name] = text.str.slice(0, 10).where(text.str.match(r"\d{4}-\d\d-\d\d"), text)
    result = pd.DataFrame(out)
    return result.sort_values(list(result.columns)).reset_index(drop=True)
