"""Report throughput: every template x every demo organisation it suits, on the available cores.

Also the per-report overhead above a bare kernel start, measured in the same run: one report
run alone (papermill, HTML export, checks, publishing) against papermill running a one-cell
notebook (kernel start, one cell, shutdown).

    python -m benchmarks.bench_reports [--patients 100000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import nbformat

from benchmarks.common import Comparison, write_markdown


def bare_kernel(folder: Path, repeats: int = 3) -> float:
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    path = folder / "bare.ipynb"
    nbformat.write(nb, path)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        papermill.execute_notebook(
            str(path), str(folder / "bare-out.ipynb"), kernel_name="python3", progress_bar=False
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=0, help="run only the first N (smoke run)")
    args = parser.parse_args(argv)
    from fdp_kernel.config import load_federation
    from fdp_kernel.reports.params import load_template
    from fdp_kernel.reports.runner import run_report
    from fdp_kernel.reports.schedule import REPO_ROOT, Planner, run_jobs
    from fdp_kernel.synth import generate_federation

    os.environ.pop("JUPYTERHUB_USER", None)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        summary = generate_federation(tmp / "fed", patients=args.patients, seed=42)
        fed = load_federation(summary.path)
        planner = Planner(
            templates=REPO_ROOT / "templates",
            out=tmp / "reports",
            run="bench",
            federation=summary.path.resolve(),
        )
        jobs = []
        for name, path in planner.templates.items():
            types = load_template(path).org_types
            jobs += [
                planner.job(name, o.code, {})
                for o in fed.organisations.values()
                if o.org_type in types
            ]
        jobs = jobs[: args.jobs] if args.jobs else jobs
        start = time.perf_counter()
        results = run_jobs(jobs)
        wall = time.perf_counter() - start
        failed = [r for r in results if r.status != "ok"]
        bare = bare_kernel(tmp)
        single = planner.job("elective_recovery", "RSA", {})
        one = statistics.median([run_report(single).seconds for _ in range(3)])
    per_minute = len(results) / wall * 60
    write_markdown(
        "reports",
        f"Report throughput: {len(results)} reports ({args.patients:,}-patient demo)",
        ["what", "seconds", "reports per minute"],
        [
            [
                f"schedule of every template x suitable org on {os.cpu_count()} cores",
                f"{wall:.1f}",
                f"{per_minute:.1f}",
            ],
            ["one elective_recovery report (RSA), alone", f"{one:.2f}", f"{60 / one:.1f}"],
            ["bare kernel: papermill of a one-cell notebook", f"{bare:.2f}", f"{60 / bare:.1f}"],
        ],
        notes=f"Per-report overhead above a bare kernel start: {one - bare:.2f} s (imports, "
        f"governed queries, charts, HTML export, secret scan, publishing). {len(failed)} failed.",
    )
    return [
        Comparison(
            "reports", f"report throughput: {len(results)} reports on {os.cpu_count()} cores",
            per_minute, "reports/min", note=f"{len(failed)} failed",
        ),
        Comparison(
            "reports", "one elective_recovery report, alone", one, "s", bare,
            "papermill of a one-cell notebook", one / bare,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
