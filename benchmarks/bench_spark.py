"""The same governed queries on a DuckDB node and on a local Spark node, at 10M rows.

One trust (RSA) with 10,000,000 referral-to-treatment pathways over 1,000,000 patients, first
as a DuckDB store, then the same data written as Parquet for a Spark node
(``fdp_kernel.placement.move_to_spark``; Spark ``local[2]``, this machine's two cores). Each
side runs what an analyst runs, ``ws.release`` of governed Ibis expressions: an aggregate by
treatment function with the 18-week count, and the elective waiting list summary
(``metrics.rtt.waiting_list_summary``). The released figures must be equal. Spark's start-up
and first query are reported apart from the warm medians. No target: the issue asks how the
engines compare; a node moves to Spark when its data outgrows one machine, not for speed here.

    python -m benchmarks.bench_spark [--rows 10000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.bench_governance import build, ibis_date, timed
from benchmarks.common import Comparison, write_markdown

AS_OF = dt.date(2026, 10, 31)


def queries(ws):
    """The governed expressions, built on this workspace's governed table."""
    from fdp_kernel.metrics import rtt as m

    rtt = ws.table("rtt_pathways")
    open_ = rtt.filter(rtt.rtt_end_date.isnull())
    days = ibis_date().delta(open_.rtt_start_date, unit="day")
    by_function = open_.group_by("treatment_function_code").agg(
        pathways=open_.count(), within_18_weeks=(days <= 126).sum()
    )
    return {
        "aggregate by treatment function": by_function,
        "waiting list summary": m.waiting_list_summary(rtt, AS_OF),
    }


def measure(folder: Path, repeats: int) -> dict[str, tuple[float, float, pd.DataFrame]]:
    """(first run s, warm median s, released data) per query, on the federation in folder."""
    os.environ["FDP_FEDERATION"] = str(folder)
    os.environ.pop("JUPYTERHUB_USER", None)
    import fdp_kernel

    out = {}
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    for name, expr in queries(ws).items():
        start = time.perf_counter()
        ws.release(expr)
        first = time.perf_counter() - start
        warm, released = timed(lambda expr=expr: ws.release(expr), repeats)
        data = released.data
        out[name] = (first, warm, data.sort_values(list(data.columns)).reset_index(drop=True))
    ws.close()
    return out


def main(argv=None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from fdp_kernel.engines.spark import session
    from fdp_kernel.placement import move_to_spark

    with tempfile.TemporaryDirectory() as tmp:
        on_duckdb = build(Path(tmp) / "duckdb", args.rows, args.patients)
        on_spark = Path(shutil.copytree(on_duckdb, Path(tmp) / "spark"))
        start = time.perf_counter()
        move_to_spark(on_spark / "federation.yaml", "RSA")
        export_s = time.perf_counter() - start
        duck = measure(on_duckdb, args.repeats)
        start = time.perf_counter()
        session("spark://local")
        startup_s = time.perf_counter() - start
        spark = measure(on_spark, args.repeats)
    rows, comparisons = [], []
    for name, (d_first, d_warm, d_data) in duck.items():
        s_first, s_warm, s_data = spark[name]
        pd.testing.assert_frame_equal(s_data, d_data, check_dtype=False)  # the same figures
        ratio = s_warm / d_warm
        rows.append(
            [name, f"{d_first:.3f}", f"{d_warm:.3f}", f"{s_first:.3f}", f"{s_warm:.3f}",
             f"{ratio:.1f}"]
        )  # fmt: skip
        comparisons.append(
            Comparison(
                "spark", f"{name}, {args.rows:,} rows: Spark local[2] warm", s_warm, "s", d_warm,
                "DuckDB node, same governed query", ratio, "", None,
                f"Spark first run {s_first:.1f} s after a {startup_s:.1f} s session start",
            )
        )  # fmt: skip
    write_markdown(
        "spark",
        f"DuckDB node vs local Spark node: governed queries, {args.rows:,} rows",
        ["query", "DuckDB first s", "DuckDB warm s", "Spark first s", "Spark warm s",
         "Spark / DuckDB (warm)"],
        rows,
        notes=f"Median of {args.repeats} warm runs after one first run, same process. Spark "
        f"session start {startup_s:.1f} s (once per process); writing the node as Parquet "
        f"{export_s:.1f} s. Both sides release equal figures (checked). Spark local[2] uses "
        "the same two cores as DuckDB; its cost is per-job scheduling and JVM/Python "
        "transfer, which a cluster amortises over data one machine cannot hold.",
    )  # fmt: skip
    return comparisons


if __name__ == "__main__":
    main()
