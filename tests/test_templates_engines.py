"""Every report template runs unchanged for a node on Spark and on PostgreSQL, and gives the
outputs it gives on DuckDB.

Each template runs (papermill) for an organisation whose node was moved to the engine; then
nbval re-runs the executed notebook against the all-DuckDB federation and compares the outputs
marked ``# NBVAL_CHECK_OUTPUT``: the engine's figures must equal DuckDB's.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

from tests.conftest import OPERATOR
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.fixtures.engines import ENGINES, place_nodes

postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PRACTICE = "Y90001"
CASES = [
    ("elective_recovery", "RSA"),
    ("vaccination", PRACTICE),
    ("population_health", PRACTICE),
    ("care_coordination", "RSA"),
    ("supply_chain", "RSA"),
]


@pytest.fixture(scope="module", params=ENGINES)
def placed(request, federation, tmp_path_factory) -> tuple[str, Path]:
    target = tmp_path_factory.mktemp(f"templates-{request.param}") / "fed"
    orgs = ("RSA", PRACTICE)
    return request.param, place_nodes(request, federation, target, request.param, orgs)


def _run(notebook: Path, executed: Path, env: dict[str, str], org: str) -> None:
    old = dict(os.environ)
    os.environ.update(env)
    try:
        papermill.execute_notebook(
            str(notebook),
            str(executed),
            kernel_name="python3",
            cwd=str(ROOT),
            parameters={"org": org},
            progress_bar=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(old)


@pytest.mark.parametrize("template, org", CASES, ids=[t for t, _ in CASES])
def test_template_on_the_engine_gives_duckdbs_outputs(placed, federation, template, org, tmp_path):
    engine, fed = placed
    executed = tmp_path / f"{template}.ipynb"
    env = {**os.environ, "JUPYTERHUB_USER": OPERATOR}
    _run(
        ROOT / "templates" / f"{template}.ipynb", executed, {**env, "FDP_FEDERATION": str(fed)}, org
    )
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[:1]
    text = "".join(
        str(o.get("data", {}).get("text/html", "")) for c in nb.cells for o in c.get("outputs", [])
    )
    assert "is stored on" not in text and "refused" not in text.lower(), f"{engine}: {template}"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--nbval-lax",
            "-p",
            "no:cacheprovider",
            "-q",
            str(executed),
        ],
        cwd=ROOT,
        env={**env, "FDP_FEDERATION": str(federation)},  # the reference: every node on DuckDB
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
