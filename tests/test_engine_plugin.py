"""Adding a fourth engine needs its adapter, one registry line and its test fixture, nothing
else (docs/engines.md, "Adding an engine"): here SQLite (tests/engine_sqlite.py) holds the
acute trust RSA, and the governed tables, releases, pseudonyms, the gate and the audit work
as on DuckDB, and an ICB federates across both."""

from __future__ import annotations

import shutil
from pathlib import Path

import ibis
import pandas as pd
import pytest
import yaml

import fdp_kernel
from fdp_kernel.catalog import DATASETS
from fdp_kernel.config import load_federation
from fdp_kernel.engines import registry
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.metrics import rtt as m
from tests.conftest import OPERATOR

ORG = "RSA"


@pytest.fixture(scope="module")
def sqlite_federation(federation, tmp_path_factory) -> Path:
    """A copy of the federation whose RSA store is a SQLite file (the fixture of the engine)."""
    registry.register("sqlite", ("sqlite",), "tests.engine_sqlite:SQLiteEngine")  # the line
    fed = shutil.copytree(federation, tmp_path_factory.mktemp("plugin") / "fed")
    duck_path = load_federation(fed).org(ORG).store
    target = duck_path.with_suffix(".sqlite")
    duck, lite = ibis.duckdb.connect(str(duck_path), read_only=True), ibis.sqlite.connect(target)
    for ds in DATASETS:
        if ds.name in duck.list_tables():
            lite.create_table(ds.name, duck.table(ds.name).to_pyarrow())
    duck.disconnect()
    lite.disconnect()
    doc = yaml.safe_load((fed / "federation.yaml").read_text())
    for entry in doc["organisations"]:
        if entry["code"] == ORG:
            entry["store"] = f"sqlite://{target}"
    (fed / "federation.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    duck_path.unlink()
    yield fed
    registry.unregister("sqlite")


def _ws(act_as, fed: Path, purpose: str = "elective_planning", org: str = ORG):
    act_as(OPERATOR, fed / "federation.yaml")
    return fdp_kernel.connect(purpose=purpose, org=org)


def _by_function(ws):
    rtt = ws.table("rtt_pathways")
    expr = m.long_waiters_by_treatment_function(rtt, ws.federation.as_of)
    return ws.release(expr).data.sort_values("treatment_function_code").reset_index(drop=True)


def test_the_node_is_read_by_the_new_engine(act_as, sqlite_federation):
    ws = _ws(act_as, sqlite_federation)
    rtt = ws.table("rtt_pathways")
    assert ws.federation.org(ORG).engine == "sqlite"
    assert type(rtt.get_backend()).__name__ == "GatedSQLite"


def test_releases_equal_duckdb(act_as, sqlite_federation, federation):
    got = _by_function(_ws(act_as, sqlite_federation))
    want = _by_function(_ws(act_as, federation))
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert len(got) > 3


def test_pseudonyms_equal_duckdb(act_as, sqlite_federation, federation):
    seen = []
    for fed in (sqlite_federation, federation):
        ws = _ws(act_as, fed)
        patients = ws.table("patients", columns=["nhs_number", "sex"])
        with patients.get_backend()._open_gate():  # looking under the gate, as a test may
            seen.append(sorted(patients.to_pandas()["nhs_number"]))
    assert seen[0] == seen[1] and len(seen[0]) > 100
    assert all(len(p) == 20 for p in seen[0])


def test_the_gate_holds_and_refusals_are_audited(act_as, sqlite_federation):
    ws = _ws(act_as, sqlite_federation)
    rtt = ws.table("rtt_pathways")
    with pytest.raises(GovernanceError, match=r"ws\.release") as err:
        rtt.execute()
    assert err.value.rule == "engine:direct-access"
    log = AuditLog(load_federation(sqlite_federation).audit_path(ORG))
    last = list(log.entries())[-1]
    assert (last["decision"], last["rule"]) == ("deny", "engine:direct-access")


def test_an_icb_federates_across_the_new_engine_and_duckdb(act_as, sqlite_federation, federation):
    def summary(node):
        return m.waiting_list_summary(node.table("rtt_pathways"), node.federation.as_of)

    got = _ws(act_as, sqlite_federation, org="QSY").federated(summary)
    want = _ws(act_as, federation, org="QSY").federated(summary)
    assert not got.partial, got.failed
    pd.testing.assert_frame_equal(got.data, want.data, check_dtype=False)
