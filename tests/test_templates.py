"""Every template and notebook runs for real (papermill) against a small federation, and nbval
re-runs the executed notebook and compares the outputs marked ``# NBVAL_CHECK_OUTPUT``."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from fdp_kernel.config import load_federation
from fdp_kernel.reports.params import load_template
from tests.conftest import OPERATOR
from tests.notebooks import ROOT, errors, execute, nbval

TEMPLATES = sorted((ROOT / "templates").glob("*.ipynb"))
CASES = [
    (path, org_type)
    for path in TEMPLATES
    for org_type in nbformat.read(path, as_version=4).metadata["fdp"]["org_types"]
]


NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _org_of_type(org_type: str, federation: Path) -> str:
    fed = load_federation(federation)
    return next(o.code for o in fed.organisations.values() if o.org_type == org_type)


@pytest.mark.parametrize("template, org_type", CASES, ids=[f"{p.stem}-{t}" for p, t in CASES])
def test_template_runs_and_nbval_reproduces_its_checked_outputs(
    template, org_type, federation, tmp_path
):
    env = {**os.environ, "FDP_FEDERATION": str(federation), "JUPYTERHUB_USER": OPERATOR}
    declared = load_template(template).params
    assert all(p.description for p in declared.values()), "every parameter is described"
    executed = tmp_path / template.name
    nb = execute(template, executed, env, {"org": _org_of_type(org_type, federation)})
    assert not errors(nb)
    checked = [c for c in nb.cells if "NBVAL_CHECK_OUTPUT" in c.source]
    assert checked and all(c.outputs for c in checked), "stable outputs are marked and present"
    result = nbval(executed, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_nbval_reproduces_its_checked_outputs(notebook, federation, tmp_path):
    env = {**os.environ, "FDP_FEDERATION": str(federation), "JUPYTERHUB_USER": OPERATOR}
    executed = tmp_path / notebook.name
    execute(notebook, executed, env)
    result = nbval(executed, env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
