"""Every report template runs unchanged for a node on Spark and on PostgreSQL, and gives the
outputs it gives on DuckDB.

Each template runs (papermill) for an organisation whose node was moved to the engine; then
nbval re-runs the executed notebook against the all-DuckDB federation and compares the outputs
marked ``# NBVAL_CHECK_OUTPUT``: the engine's figures must equal DuckDB's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import OPERATOR
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.fixtures.engines import ENGINES, place_nodes
from tests.notebooks import ROOT, errors, execute, nbval

postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session
pytestmark = [pytest.mark.postgres, pytest.mark.slow]

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


@pytest.mark.parametrize("template, org", CASES, ids=[t for t, _ in CASES])
def test_template_on_the_engine_gives_duckdbs_outputs(placed, federation, template, org, tmp_path):
    engine, fed = placed
    executed = tmp_path / f"{template}.ipynb"
    env = {**os.environ, "JUPYTERHUB_USER": OPERATOR}
    template_path = ROOT / "templates" / f"{template}.ipynb"
    nb = execute(template_path, executed, {**env, "FDP_FEDERATION": str(fed)}, {"org": org})
    assert not errors(nb), errors(nb)[:1]
    text = "".join(
        str(o.get("data", {}).get("text/html", "")) for c in nb.cells for o in c.get("outputs", [])
    )
    assert "is stored on" not in text and "refused" not in text.lower(), f"{engine}: {template}"
    # The reference: nbval re-runs it with every node on DuckDB.
    result = nbval(executed, {**env, "FDP_FEDERATION": str(federation)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
