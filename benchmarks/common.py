"""Measuring helpers: wall time and peak memory of a child process, and markdown output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Comparison:
    """One row of ``benchmarks/results/summary.md``: every bench module's ``main(argv)``
    returns a list of these (and may write its own detailed table too).

    * ``benchmark``: the module's short name (``"pandas"`` for ``bench_pandas``, ``"spark"``).
    * ``name``: what is measured, with its size, e.g. ``"elective metrics, 10,000,000 rows:
      wall time"``.
    * ``measured``: the value of the thing under test, in ``unit`` (``"s"``, ``"GiB"``,
      ``"rows/s"``, ``"reports/min"``); None when it was not measured (say why in ``note``).
    * ``baseline``: the baseline's value in the same unit, measured in the same run; None
      when the target is absolute (e.g. generation in <= 60 s). ``baseline_name`` says what
      the baseline is (``"pandas"``, ``"raw DuckDB SQL"``, ``"union at one node"``).
    * ``ratio``: the ratio the target is about, computed by the bench; its direction is in
      ``target`` (e.g. ``"pandas / Ibis >= 5"``); None when there is none.
    * ``target``: the target as text (``""`` when there is none); ``met``: True, False, or
      None when there is no target.
    * ``note``: one short clause of context (optional).
    """

    benchmark: str
    name: str
    measured: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""


def _number(value: float | None, unit: str = "") -> str:
    if value is None or value != value:  # None or NaN
        return "—"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.3f}"
    return f"{text} {unit}".strip()


def summary_table(rows: list[Comparison]) -> list[str]:
    """The markdown table of ``rows``: one line per comparison."""
    lines = [
        "| benchmark | comparison | measured | baseline (same run) | ratio | target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = _number(r.baseline, r.unit) if r.baseline is not None else "—"
        if r.baseline is not None and r.baseline_name:
            baseline = f"{baseline} ({r.baseline_name})"
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "—"}[r.met]
        name = f"{r.name} ({r.note})" if r.note else r.name
        lines.append(
            f"| {r.benchmark} | {name} | {_number(r.measured, r.unit)} | {baseline} | {ratio} "
            f"| {r.target or '—'} | {met} |"
        )
    return lines


def write_summary(rows: list[Comparison], path: Path | None = None, notes: str = "") -> Path:
    """Write ``rows`` as the summary table (and ``summary.json``); return the path."""
    path = path or RESULTS / "summary.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Benchmark summary", "", f"Machine: {machine()}.", "", *summary_table(rows)]
    if notes:
        lines += ["", notes]
    path.write_text("\n".join(lines) + "\n")
    path.with_suffix(".json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return path


# The child's own peak: VmHWM, the high-water mark of its memory map. Not getrusage's
# ru_maxrss, which Linux carries over from the parent through fork and exec (a child of a
# 2 GiB parent would report at least 2 GiB).
_EPILOGUE = """
import json as _json, resource as _resource
try:
    _peak = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
except (OSError, IndexError):
    _peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
print(_json.dumps({"_peak_kib": _peak}))
"""


def run_measured(code: str, *args: str) -> tuple[float, float, dict]:
    """Run ``python -c code args`` in a fresh process; return (seconds, peak GiB, its JSON).

    The child prints one JSON object as the last line of its own output; its peak resident
    memory (its own VmHWM) is reported on a line after it.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + _EPILOGUE, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    peak_kib = json.loads(lines[-1])["_peak_kib"]
    return seconds, peak_kib / 1024 / 1024, json.loads(lines[-2])


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_markdown(
    name: str, title: str, header: list[str], rows: list[list], notes: str = ""
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    lines = [f"## {title}", "", f"Machine: {machine()}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path
