"""How the cost of each priority's Ibis metrics grows with rows: 1M, 10M and 50M.

The same metric sets as ``bench_pandas`` (the project's Ibis metrics on DuckDB, in a fresh
process per run: wall time and peak resident memory), at growing sizes of each priority's
main table. Sizes up to 10M rows are always measured; a larger size is skipped, with the
reason printed and recorded, when the machine does not allow it: projected from the previous
size (linear in rows), the dataset would not fit on the disk, the query's peak memory would
pass 60% of the memory available, or building the data or one run would take more than 10
minutes.

    python -m benchmarks.bench_scaling [--rows 1000000,10000000,50000000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import datasets
from benchmarks.bench_pandas import IBIS_CHILD, PRIORITIES
from benchmarks.common import Comparison, run_measured, write_markdown

ALWAYS = 10_000_000  # sizes up to this are measured whatever the projection
LIMIT_S = 600  # the longest a build or a run may take
MEMORY_SHARE = 0.6  # of MemAvailable


def available_gib() -> float:
    """Memory available to a new process (MemAvailable), GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def too_big(previous: dict | None, rows: int) -> str:
    """Why ``rows`` should be skipped, projected from the ``previous`` size; "" if it fits."""
    if previous is None or rows <= ALWAYS:
        return ""
    scale = rows / previous["rows"]
    disk = previous["disk_bytes"] * scale * 1.5  # the file, plus room to build it
    free = shutil.disk_usage(datasets.DATA.parent).free
    if disk > free:
        return f"needs ~{disk / 2**30:.0f} GiB of disk, {free / 2**30:.0f} GiB free"
    memory, available = previous["gib"] * scale, available_gib()
    if memory > MEMORY_SHARE * available:
        return f"projected peak {memory:.1f} GiB > 60% of {available:.1f} GiB available"
    for what in ("build_s", "seconds"):
        if previous[what] is not None and previous[what] * scale > LIMIT_S:
            verb = "building the data" if what == "build_s" else "one run"
            return f"{verb} projected at {previous[what] * scale / 60:.0f} min (> 10 min)"
    return ""


def measure(priority: str, rows: int, base: int, repeats: int) -> dict:
    start = time.perf_counter()
    existed = datasets.cached(priority, rows, base=base)
    folder = datasets.dataset(priority, rows, base=base, parquet=False)
    build_s = None if existed else time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "ibis.pickle")
        _, gib, got = run_measured(IBIS_CHILD, priority, str(folder), str(repeats), out)
    return {
        "priority": priority,
        "rows": rows,
        "seconds": got["seconds"],
        "gib": gib,
        "build_s": build_s,
        "disk_bytes": (folder / "data.duckdb").stat().st_size,
    }


def comparisons(results: list[dict]) -> list[Comparison]:
    out, first = [], {}
    for r in results:
        if "skipped" in r:
            out.append(
                Comparison(
                    "scaling", f"{r['priority']} metrics, {r['rows']:,} rows", None, "s",
                    note=f"skipped: {r['skipped']}",
                )
            )  # fmt: skip
            continue
        base = first.setdefault(r["priority"], r)
        growth = r["seconds"] / base["seconds"]
        out.append(
            Comparison(
                "scaling", f"{r['priority']} metrics, {r['rows']:,} rows: wall time",
                r["seconds"], "s", base["seconds"], f"{base['rows']:,} rows", growth,
                note=f"{r['rows'] / base['rows']:.0f}x the rows; peak {r['gib']:.2f} GiB",
            )
        )  # fmt: skip
    return out


def write_table(results: list[dict], repeats: int) -> None:
    rows, first = [], {}
    for r in results:
        if "skipped" in r:
            rows.append([r["priority"], f"{r['rows']:,}", "skipped", "", "", "", r["skipped"]])
            continue
        base = first.setdefault(r["priority"], r)
        rows.append(
            [
                r["priority"],
                f"{r['rows']:,}",
                f"{r['seconds']:.2f}",
                f"{r['seconds'] / base['seconds']:.1f}x",
                f"{r['gib']:.2f}",
                f"{r['disk_bytes'] / 2**30:.2f}",
                f"{r['seconds'] / r['rows'] * 1e9:,.0f} ns per row",
            ]
        )
    write_markdown(
        "scaling",
        "Cost growth with rows: each priority's Ibis metrics on DuckDB",
        ["priority", "rows", "wall s", "time vs smallest", "peak GiB", "DuckDB file GiB", "note"],
        rows,
        notes=f"Median of {repeats} runs in a fresh process (one run from 10M rows up); peak = "
        f"the process's maximum resident set. {os.cpu_count()} cores.",
    )


def main(argv: list[str] | None = None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000,50000000")
    parser.add_argument("--only", default=",".join(PRIORITIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base", type=int, default=1_000_000, help="patients generated")
    args = parser.parse_args(argv)
    results = []
    for priority in args.only.split(","):
        previous = None
        for rows in sorted(int(r) for r in args.rows.split(",")):
            reason = too_big(previous, rows)
            if reason:
                print(f"[scaling] skipping {priority} at {rows:,} rows: {reason}", flush=True)
                results.append({"priority": priority, "rows": rows, "skipped": reason})
                continue
            repeats = args.repeats if rows < 10_000_000 else 1
            previous = measure(priority, rows, args.base, repeats)
            print(json.dumps(previous), file=sys.stderr, flush=True)
            results.append(previous)
    write_table(results, args.repeats)
    return comparisons(results)


if __name__ == "__main__":
    main()
