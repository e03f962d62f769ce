"""Run a notebook as the suite does: papermill in-process with an environment, then nbval
re-running the executed notebook to compare the outputs marked ``# NBVAL_CHECK_OUTPUT``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
import papermill

ROOT = Path(__file__).resolve().parents[1]
NBVAL = [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider"]


def execute(
    notebook: Path,
    executed: Path,
    env: Mapping[str, str],
    parameters: Mapping[str, Any] | None = None,
) -> nbformat.NotebookNode:
    """papermill ``notebook`` into ``executed`` with ``env`` set (restored after); the
    executed notebook."""
    old = dict(os.environ)
    os.environ.update(env)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            kernel_name="python3",
            cwd=str(ROOT),
            parameters=dict(parameters or {}),
            progress_bar=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nbformat.read(executed, as_version=4)


def errors(nb: nbformat.NotebookNode) -> list:
    """The error outputs of an executed notebook."""
    return [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]


def nbval(executed: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Re-run ``executed`` with nbval (--nbval-lax) under ``env``."""
    return subprocess.run(
        [*NBVAL, str(executed)],
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
