"""Each priority's headline metrics: the project's Ibis metrics on DuckDB against pandas.

For each of the five priorities, the metric set its report leads with, at N rows of the
priority's main table (``datasets.SPECS``), computed twice from the same data:

* **Ibis/DuckDB**: the real ``fdp_kernel.metrics`` functions over the dataset's DuckDB file
  (``ibis.duckdb.connect``, read-only), fetched to pandas at the end;
* **pandas**: ``benchmarks.pandas_metrics``, an idiomatic pandas implementation reading the
  same tables from Parquet.

Each side runs in its own fresh process, so its peak resident memory (VmHWM) covers its
imports, the data load and the computation; its time is the median of ``--repeats`` runs of
open-the-data-and-compute inside that process. The two results must be equal (numbers
compared after sorting; floats to 1e-9 relative) or the benchmark fails. Targets (issue 9):
Ibis >= 5x faster than pandas and <= 1/3 of its peak memory.

    python -m benchmarks.bench_pandas [--rows 1000000,10000000] [--only elective,supply]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import pickle
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from benchmarks import datasets
from benchmarks.common import Comparison, run_measured, write_markdown
from benchmarks.pandas_metrics import normalise, rss_kib

AS_OF = dt.date(2026, 10, 31)  # the generator's default as-of date
YEAR = (AS_OF - dt.timedelta(days=364), AS_OF)  # the 12-month report window
PRIORITIES = tuple(datasets.SPECS)
TIME_TARGET, MEMORY_TARGET = 5.0, 1 / 3


# -- the Ibis metric sets: what each report leads with ------------------------------------------
def ibis_metrics(priority: str, t: dict) -> dict:
    """Unexecuted Ibis expressions of ``priority``'s metric set over tables ``t``."""
    import ibis

    from fdp_kernel.figures.common import month_ends
    from fdp_kernel.metrics import discharge, population, rtt, supply, vaccination

    if priority == "elective":
        pathways = t["rtt_pathways"]
        trend = [
            rtt.waiting_list_summary(pathways, day).mutate(month_end=ibis.literal(day))
            for day in month_ends(AS_OF, 12)
        ]
        return {
            "trend": ibis.union(*trend, distinct=False),
            "long_waiters": rtt.long_waiters_by_treatment_function(pathways, AS_OF),
        }
    if priority == "vaccination":
        tables = (t["patients"], t["ltc_registers"], t["vaccinations"])
        points = vaccination_points(AS_OF)
        return {"uptake": vaccination.uptake_table(*tables, points, vaccination.BREAKDOWNS)}
    if priority == "population":
        by = ("imd_decile", "age_band")
        return {"prevalence": population.prevalence(t["patients"], t["ltc_registers"], AS_OF, by)}
    if priority == "discharge":
        spells, key = t["inpatient_spells"], ("discharge_pathway",)
        return {
            "pathways": discharge.discharges_by_pathway(spells, *YEAR),
            "reasons": discharge.delay_reasons(spells, *YEAR, by=key),
            "bed_days_lost": discharge.bed_days_lost(spells, *YEAR, by=key),
        }
    if priority == "supply":
        stock, used, products = t["stock_levels"], t["consumption"], t["products"]
        orders, by = t["purchase_orders"], ("product_group",)
        return {
            "stockouts": supply.stockout_rate(stock, used, products, *YEAR, by=by),
            "price_variation": supply.price_variation(orders, products, *YEAR, by=by),
        }
    raise ValueError(f"unknown priority {priority!r}")


def vaccination_points(as_of: dt.date) -> list[tuple[str, str, dt.date]]:
    """The vaccination report's (cohort, point, date) triples: now, a year earlier (the same
    point of last season) and last season's final figure (``VaccinationFigures.points``)."""
    from fdp_kernel.figures.vaccination import LAST_SEASON, NOW, PREVIOUS
    from fdp_kernel.metrics import vaccination as m

    last = m.Season.of(as_of).previous
    out = []
    for cohort, c in m.COHORTS.items():
        seasonal = c.programme != "childhood"
        before = last.same_point(as_of) if seasonal else m.add_years(as_of, -1)
        out += [(cohort, NOW, as_of), (cohort, PREVIOUS, before)]
        if seasonal:
            out.append((cohort, LAST_SEASON, last.campaign_end(c.programme)))
    return out


def params(priority: str) -> dict:
    """What the pandas implementation is told (JSON): cut-offs and rules computed by the
    project's own code, so both sides apply the same definitions."""
    from fdp_kernel import codes
    from fdp_kernel.figures.common import month_ends
    from fdp_kernel.metrics import discharge, population, rtt
    from fdp_kernel.metrics import vaccination as vm

    iso = dt.date.isoformat
    if priority == "elective":
        return {
            "as_of": iso(AS_OF),
            "month_ends": [iso(d) for d in month_ends(AS_OF, 12)],
            "within_18_weeks_days": rtt.WITHIN_18_WEEKS_DAYS,
            "over_weeks_days": rtt.OVER_WEEKS_DAYS,
            "nullified": codes.RTT_NULLIFIED_STATUS,
        }
    if priority == "vaccination":
        rules = [
            {k: iso(v) if isinstance(v, dt.date) else v for k, v in asdict(rule).items()}
            for rule in (vm.Rule.of(c, on, point) for c, point, on in vaccination_points(AS_OF))
        ]
        return {
            "rules": rules,
            "dose_kinds": vm.DOSE_KINDS,
            "risk_registers": vm.FLU_RISK_REGISTERS,
            "earliest": iso(vm.EARLIEST),
            "ethnic_group": codes.ETHNIC_GROUP,
            "unknown": vm.UNKNOWN_ETHNIC_GROUP,
            "not_known": vm.NOT_KNOWN,
            "all": vm.ALL,
            "breakdowns": vm.BREAKDOWNS,
        }
    if priority == "population":
        ages = population.REGISTER_MIN_AGE
        return {
            "as_of": iso(AS_OF),
            "age_bands": [
                (label, iso(vm.born_by(AS_OF, low)))
                for label, low, _ in reversed(population.AGE_BANDS)
            ],
            "register_born_by": {
                r: iso(vm.born_by(AS_OF, ages.get(r, 0))) for r in population.REGISTERS
            },
        }
    if priority == "discharge":
        return {
            "start": iso(YEAR[0]),
            "end": iso(YEAR[1]),
            "pathways": list(discharge.PATHWAYS),
            "not_recorded": discharge.NOT_RECORDED,
        }
    return {"start": iso(YEAR[0]), "end": iso(YEAR[1])}


# -- one side, in its own process ---------------------------------------------------------------
def run_ibis(priority: str, folder: Path) -> dict[str, pd.DataFrame]:
    """Open the dataset's DuckDB file with Ibis, run the metric set, fetch to pandas."""
    import ibis

    con = ibis.duckdb.connect(str(folder / "data.duckdb"), read_only=True)
    try:
        tables = {name: con.table(name) for name in datasets.SPECS[priority].tables}
        return {k: con.to_pandas(e) for k, e in ibis_metrics(priority, tables).items()}
    finally:
        con.disconnect()


def child_ibis(priority: str, folder: str, repeats: str, out: str) -> None:
    """The Ibis side's process: imports first (part of the peak, not of the time), then timed
    runs."""
    import ibis  # noqa: F401

    import fdp_kernel.figures.common
    import fdp_kernel.figures.vaccination
    import fdp_kernel.metrics.discharge
    import fdp_kernel.metrics.population
    import fdp_kernel.metrics.rtt
    import fdp_kernel.metrics.supply
    import fdp_kernel.metrics.vaccination  # noqa: F401

    _timed(lambda: run_ibis(priority, Path(folder)), int(repeats), Path(out))


def _timed(run, repeats: int, out: Path) -> None:
    imports_kib = rss_kib()
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    out.write_bytes(pickle.dumps(result))
    print(json.dumps({"seconds": statistics.median(times), "runs": times, "imports": imports_kib}))


IBIS_CHILD = """
import sys
from benchmarks.bench_pandas import child_ibis
child_ibis(*sys.argv[1:])
"""
PANDAS_CHILD = """
import sys
from benchmarks.pandas_metrics import child
child(*sys.argv[1:])
"""


def compare(ibis_result: dict, pandas_result: dict, where: str) -> None:
    """Fail unless both sides give the same tables (same rows and numbers)."""
    if ibis_result.keys() != pandas_result.keys():
        raise AssertionError(f"{where}: tables {list(ibis_result)} != {list(pandas_result)}")
    for name, frame in ibis_result.items():
        a, b = normalise(frame), normalise(pandas_result[name])
        if list(a.columns) != list(b.columns):
            raise AssertionError(f"{where} {name}: {list(a.columns)} != {list(b.columns)}")
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, obj=f"{where} {name}")


def measure(priority: str, rows: int, base: int, repeats: int) -> dict:
    """Both sides of one priority at ``rows``: seconds, peak GiB, and their agreement."""
    folder = datasets.dataset(priority, rows, base=base)
    with tempfile.TemporaryDirectory() as tmp:
        ibis_out, pandas_out = Path(tmp) / "ibis.pickle", Path(tmp) / "pandas.pickle"
        _, ibis_gib, ibis = run_measured(
            IBIS_CHILD, priority, str(folder), str(repeats), str(ibis_out)
        )
        _, pandas_gib, pandas = run_measured(
            PANDAS_CHILD,
            priority,
            str(folder / "parquet"),
            json.dumps(params(priority)),
            str(repeats),
            str(pandas_out),
        )
        compare(
            pickle.loads(ibis_out.read_bytes()),
            pickle.loads(pandas_out.read_bytes()),
            f"{priority} at {rows:,} rows",
        )
    return {
        "priority": priority,
        "rows": rows,
        "ibis_s": ibis["seconds"],
        "ibis_gib": ibis_gib,
        "ibis_imports_gib": ibis["imports"] / 2**20,
        "pandas_s": pandas["seconds"],
        "pandas_load_s": pandas["load"],
        "pandas_gib": pandas_gib,
        "pandas_imports_gib": pandas["imports"] / 2**20,
    }


def comparisons(results: list[dict]) -> list[Comparison]:
    out = []
    for r in results:
        what = f"{r['priority']} metrics, {r['rows']:,} rows"
        speed = r["pandas_s"] / r["ibis_s"]
        memory = r["ibis_gib"] / r["pandas_gib"]
        out += [
            Comparison(
                "pandas", f"{what}: wall time", r["ibis_s"], "s", r["pandas_s"], "pandas",
                speed, "pandas / Ibis >= 5", speed >= TIME_TARGET,
            ),
            Comparison(
                "pandas", f"{what}: peak memory", r["ibis_gib"], "GiB", r["pandas_gib"], "pandas",
                memory, "Ibis / pandas <= 0.33", memory <= MEMORY_TARGET,
            ),
        ]  # fmt: skip
    return out


def write_table(results: list[dict], repeats: int) -> None:
    rows = [
        [
            r["priority"],
            f"{r['rows']:,}",
            f"{r['ibis_s']:.2f}",
            f"{r['pandas_s']:.2f} ({r['pandas_load_s']:.2f})",
            f"{r['pandas_s'] / r['ibis_s']:.1f}",
            f"{r['ibis_gib']:.2f} ({r['ibis_imports_gib']:.2f})",
            f"{r['pandas_gib']:.2f} ({r['pandas_imports_gib']:.2f})",
            f"{r['ibis_gib'] / r['pandas_gib']:.2f}",
        ]
        for r in results
    ]
    write_markdown(
        "pandas",
        "Ibis/DuckDB vs pandas: each priority's headline metrics",
        [
            "priority",
            "rows",
            "Ibis s",
            "pandas s (of which load)",
            "pandas / Ibis time",
            "Ibis peak GiB (imports)",
            "pandas peak GiB (imports)",
            "Ibis / pandas memory",
        ],
        rows,
        notes=f"Median of {repeats} runs in one fresh process per side; peak = the process's "
        "maximum resident set (imports, data load and computation; the resident size after "
        "imports alone in brackets). Targets: time ratio >= 5, memory ratio <= 0.33. Both "
        "sides' results were checked equal.",
    )


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--only", default=",".join(PRIORITIES), help="comma-separated priorities")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", type=int, default=1_000_000, help="patients generated")
    args = parser.parse_args(argv)
    results = []
    for rows in [int(r) for r in args.rows.split(",")]:
        for priority in args.only.split(","):
            result = measure(priority, rows, args.base, args.repeats)
            print(json.dumps(result), file=sys.stderr, flush=True)
            results.append(result)
    write_table(results, args.repeats)
    return comparisons(results)


if __name__ == "__main__":
    main()
