"""Run every benchmark and write one summary table: ``make bench``.

Each bench module's ``main(argv)`` writes its own detailed table to ``benchmarks/results/``
and returns ``common.Comparison`` rows; this collects them into
``benchmarks/results/summary.md`` (and ``summary.json``): one row per comparison, with its
baseline measured in the same run, the ratio, the target and whether it is met.

Optional modules are run when they exist: ``bench_ingest`` and ``bench_spark`` (DuckDB
against local Spark at 10M rows). A module may define ``QUICK_ARGS`` (a list of arguments for
a smoke run); a module that is missing or fails gets a row that says so, and the command
exits with status 1 when any failed.

    python -m benchmarks.run [--only pandas,governance] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.util
import os
import sys
import time
import traceback

from benchmarks.common import RESULTS, Comparison, summary_table, write_summary

# name -> (module, arguments of a --quick smoke run); the order they run in.
BENCHES: dict[str, tuple[str, list[str] | None]] = {
    "synth": ("benchmarks.bench_synth", ["--patients", "100000"]),
    "governance": (
        "benchmarks.bench_governance",
        ["--rows", "1000000", "--patients", "100000", "--repeats", "3"],
    ),
    "federation": ("benchmarks.bench_federation", ["--rows-per-node", "50000", "--repeats", "3"]),
    "service": ("benchmarks.bench_service", None),
    "reports": ("benchmarks.bench_reports", ["--patients", "20000", "--jobs", "4"]),
    "ingest": ("benchmarks.bench_ingest", None),
    "pandas": (
        "benchmarks.bench_pandas",
        ["--rows", "100000", "--base", "100000", "--repeats", "1"],
    ),
    "scaling": (
        "benchmarks.bench_scaling",
        ["--rows", "100000,300000", "--base", "100000", "--repeats", "1"],
    ),
    "spark": ("benchmarks.bench_spark", None),
}
OPTIONAL = {
    "ingest": "ingest throughput (benchmarks/bench_ingest.py)",
    "spark": "DuckDB against local Spark at 10M rows (benchmarks/bench_spark.py)",
}


def run_one(name: str, quick: bool) -> tuple[list[Comparison], bool]:
    """Run bench ``name``; its rows, and whether it succeeded."""
    module_name, quick_args = BENCHES[name]
    if importlib.util.find_spec(module_name) is None:
        note = f"not run: {module_name.replace('.', '/')}.py does not exist yet"
        return [Comparison(name, OPTIONAL.get(name, name), None, "", note=note)], True
    module = importlib.import_module(module_name)
    if quick_args is None:
        quick_args = list(getattr(module, "QUICK_ARGS", []))
    argv = quick_args if quick else []
    print(f"\n== {name}: python -m {module_name} {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    try:
        rows = module.main(argv)
    except Exception as exc:  # one failing bench must not hide the others' results
        traceback.print_exc()
        note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
        return [Comparison(name, module_name, None, "", note=note)], False
    print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if not rows:  # a module that writes only its own table
        note = f"see benchmarks/results/{name}.md"
        return [Comparison(name, module_name, None, "", note=note)], True
    return list(rows), True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of: {', '.join(BENCHES)}"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    args = parser.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHES)
    unknown = [n for n in chosen if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHES)}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    started, start = dt.datetime.now().isoformat(timespec="seconds"), time.perf_counter()
    rows, ok = [], True
    for name in BENCHES:
        if name in chosen:
            got, succeeded = run_one(name, args.quick)
            rows += got
            ok &= succeeded
    command = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    command += f" --only {','.join(chosen)}" if args.only else ""
    notes = (
        f"`{command}`, started {started}, {time.perf_counter() - start:.0f} s in all; load "
        f"average {load:.1f} on {os.cpu_count()} cores at the start. Each benchmark's detailed "
        "table is in benchmarks/results/<name>.md."
        + (" Quick run: small sizes, not comparable with the targets." if args.quick else "")
    )
    path = write_summary(rows, RESULTS / "summary.md", notes)
    print("\n" + "\n".join(summary_table(rows)))
    print(f"\nwritten: {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
