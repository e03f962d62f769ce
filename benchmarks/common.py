"""Measuring helpers: wall time and peak memory of a child process, and markdown output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


_EPILOGUE = """
import json as _json, resource as _resource
print(_json.dumps({"_peak_kib": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_measured(code: str, *args: str) -> tuple[float, float, dict]:
    """Run ``python -c code args`` in a fresh process; return (seconds, peak GiB, its JSON).

    The child prints one JSON object as the last line of its own output; its peak resident
    memory (getrusage of the child itself) is reported on a line after it.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + _EPILOGUE, *args], capture_output=True, text=True, check=False
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
