"""Nodes on different engines in one federation: a trust stored in a real PostgreSQL server
(reached over loopback TCP) answers federated requests beside DuckDB nodes, with the same
figures its DuckDB store gives."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.config import load_federation
from fdp_kernel.engines import postgres_policy as pg
from fdp_kernel.errors import GovernanceError
from fdp_kernel.metrics import rtt as m
from tests.conftest import OPERATOR
from tests.fixtures import postgres as postgres_fixtures
from tests.helpers import variant

postgres_server = postgres_fixtures.postgres_server
pytestmark = pytest.mark.postgres
AS_OF = dt.date(2026, 10, 31)
PG_NODE = "RSC"


def summary(node):
    return m.waiting_list_summary(node.table("rtt_pathways"), AS_OF)


@pytest.fixture(scope="module")
def mixed(postgres_server, federation):
    """The federation with RSC's store moved into PostgreSQL (policy applied there)."""
    fed = load_federation(federation)
    database = postgres_server.create_database("node_rsc_mixed")
    admin = postgres_server.dsn(database=database)
    pg.load_store(admin, fed.org(PG_NODE).store, PG_NODE)
    pg.apply_policy(admin, fed, PG_NODE)
    url = f"postgresql://{postgres_server.host}:{postgres_server.port}/{database}"

    def move(doc):
        for org in doc["organisations"]:
            if org["code"] == PG_NODE:
                org["store"] = url

    return variant(federation, "mixed-engines", move)


def test_a_postgresql_node_answers_beside_duckdb_nodes_with_the_same_figures(
    act_as, federation, mixed
):
    assert load_federation(mixed).org(PG_NODE).engine == "postgres"
    act_as(OPERATOR, mixed)
    on_mixed = fdp_kernel.connect(purpose="elective_planning", org="QSY").federated(summary)
    assert not on_mixed.partial, on_mixed.failed
    act_as(OPERATOR)
    on_duckdb = fdp_kernel.connect(purpose="elective_planning", org="QSY").federated(summary)
    pd.testing.assert_frame_equal(on_mixed.data, on_duckdb.data, check_dtype=False)


def test_the_postgresql_node_is_reached_as_the_requesting_user(act_as, mixed):
    # icb.analyst holds no elective role at RSC: the server has a login for them only for the
    # rows the population health agreement shares with the ICB, and refuses the rest (the
    # server's own message, which may quote data, stays at the node).
    act_as("icb.analyst", mixed)
    result = fdp_kernel.connect(purpose="elective_planning", org="QSY").federated(summary)
    failed = result.failed.get(PG_NODE, "")
    assert "cannot connect" in failed or "InsufficientPrivilege" in failed
    assert set(result.data["org"]) == {"RSA", "RSB"} and result.partial


def test_governed_tables_on_the_postgresql_node_cannot_be_run_directly(act_as, mixed):
    act_as(OPERATOR, mixed)
    ws = fdp_kernel.connect(purpose="elective_planning", org=PG_NODE)
    rtt = ws.table("rtt_pathways")
    with pytest.raises(GovernanceError, match=r"ws\.release"):
        rtt.execute()
    released = ws.release(rtt.group_by("waiting_list_type").agg(n=rtt.count()))
    assert set(released.data["waiting_list_type"]) == {"IRTT", "ORTT"}
