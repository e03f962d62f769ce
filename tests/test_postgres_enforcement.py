"""PostgreSQL enforcement: policy compiled to schemas, materialized views, roles and grants.

A real PostgreSQL 15 (started by the suite) holds node RSA. Each test connects over TCP as the
federation's own login roles, with plain SQL or Ibis and no fdp code in between, and checks
that the server itself keeps them to their purposes: the same rows, columns and pseudonyms as
the DuckDB workspace, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import errors, sql

import fdp_kernel
from fdp_kernel.catalog import dataset
from fdp_kernel.config import Federation, load_federation
from fdp_kernel.engines import postgres_policy as pg
from fdp_kernel.engines import sql as engine_sql
from fdp_kernel.errors import GovernanceError, StoreError, UsageError
from fdp_kernel.governance.keys import derive, read_key
from fdp_kernel.governance.policy import plan_table
from fdp_kernel.stores import quote
from tests.conftest import OPERATOR
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures.postgres import PostgresServer
from tests.helpers import query, variant

postgres_server = postgres_fixtures.postgres_server
pytestmark = pytest.mark.postgres

ORG = "RSA"
ANALYST = "rsa.analyst"  # holds elective_planning at RSA, nothing else
EVIL_USER = 'x"; DROP TABLE raw.patients; --'
EVIL_PURPOSE = "x'); DROP SCHEMA raw CASCADE; --"


@dataclass
class Node:
    server: PostgresServer
    database: str
    fed: Federation
    admin: str  # DSN of the node owner (the test server's superuser)

    def sql(self, user: str | None, statement: str, params: Any = None) -> list[tuple]:
        """Run one statement over TCP as ``user`` (None: the owner) and return its rows."""
        with psycopg.connect(self.server.dsn(user, self.database), autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description is not None else []

    def count(self, user: str | None, table: str) -> int:
        return self.sql(user, f"SELECT count(*) FROM {table}")[0][0]

    def column(self, user: str | None, table: str, column: str) -> set:
        return {r[0] for r in self.sql(user, f"SELECT {column} FROM {table}")}


@pytest.fixture(scope="module")
def node(postgres_server: PostgresServer, federation: Path) -> Node:
    database = postgres_server.create_database("node_rsa")
    fed = load_federation(federation)
    admin = postgres_server.dsn(database=database)
    pg.load_store(admin, fed.org(ORG).store, ORG)
    pg.apply_policy(admin, fed, ORG)
    return Node(postgres_server, database, fed, admin)


def exact_count(purpose: str, name: str) -> int:
    """The DuckDB workspace's governed count, read under the gate (test-only peek)."""
    with fdp_kernel.connect(purpose=purpose, org=ORG) as ws:
        table = ws.table(name)
        with table.get_backend()._open_gate():
            return int(table.count().to_pandas())


def duckdb_column(purpose: str, name: str, column: str) -> set:
    with fdp_kernel.connect(purpose=purpose, org=ORG) as ws:
        table = ws.table(name)
        with table.get_backend()._open_gate():
            return set(table[column].to_pandas())


DENIED = [
    "SELECT * FROM raw.patients",
    "SELECT count(*) FROM raw.rtt_pathways",
    "SELECT * FROM fdp_private.keys",
    "SELECT fdp_private.pseudonym('a', 'b', '9434765919')",
    "SELECT * FROM fdp_private.key('purpose:elective_planning')",
]


@pytest.mark.parametrize("user", [ANALYST, OPERATOR])
@pytest.mark.parametrize("statement", DENIED)
def test_raw_tables_keys_and_pseudonym_functions_are_denied_to_plain_sql(node, user, statement):
    assert node.sql(user, "SELECT inet_server_addr() IS NOT NULL") == [(True,)], "over TCP"
    with pytest.raises(errors.InsufficientPrivilege, match="permission denied"):
        node.sql(user, statement)


def test_denied_at_every_layer_and_through_ibis(node):
    for user in (ANALYST, OPERATOR):  # not only the schema: the objects themselves
        assert node.sql(
            None,
            "SELECT has_table_privilege(%(u)s, 'raw.patients', 'SELECT'), "
            "has_table_privilege(%(u)s, 'fdp_private.keys', 'SELECT'), "
            "has_function_privilege(%(u)s, 'fdp_private.pseudonym(text,text,text)', 'EXECUTE'),"
            "has_function_privilege(%(u)s, 'fdp_private.key(text)', 'EXECUTE')",
            {"u": user},
        ) == [(False, False, False, False)]
    with (
        psycopg.connect(node.server.dsn(ANALYST, node.database)) as conn,
        pytest.raises(errors.InsufficientPrivilege),
        conn.cursor().copy("COPY raw.patients TO STDOUT"),
    ):
        pass
    con = node.server.connect_ibis(user=ANALYST, database=node.database)
    try:
        rtt = con.table("rtt_pathways", database="p_elective_planning")
        assert rtt.count().execute() == node.count(ANALYST, "p_elective_planning.rtt_pathways")
        raw = con.table("patients", database="raw")  # the catalogue is readable, rows are not
        with pytest.raises(errors.InsufficientPrivilege):
            raw.count().execute()
    finally:
        con.disconnect()


def test_purpose_views_have_own_rows_without_opted_out_patients_as_in_duckdb(node, act_as):
    act_as(OPERATOR)
    for name in ("rtt_pathways", "patients", "outpatient_appointments"):
        planning = node.count(ANALYST, f"p_elective_planning.{name}")
        assert planning == exact_count("elective_planning", name)
        assert node.count(OPERATOR, f"p_elective_planning.{name}") == planning
        care = node.count(OPERATOR, f"p_direct_care.{name}")
        assert care == exact_count("direct_care", name) == node.count(None, f"raw.{name}")
        assert planning < care, "opted-out patients are removed for planning only"


def test_pseudonyms_equal_duckdb_and_python_and_differ_between_purposes(node, act_as):
    act_as(OPERATOR)
    key = derive(read_key(node.fed.org(ORG).key, owner=ORG), "purpose:elective_planning")
    raw = node.sql(None, "SELECT nhs_number FROM raw.patients WHERE NOT national_opt_out")
    elective = node.column(ANALYST, "p_elective_planning.patients", "nhs_number")
    assert elective == duckdb_column("elective_planning", "patients", "nhs_number")
    assert elective == {key.pseudonym(r[0]) for r in raw}
    population = node.column(OPERATOR, "p_population_health_planning.patients", "nhs_number")
    assert population == duckdb_column("population_health_planning", "patients", "nhs_number")
    assert not elective & population, "pseudonyms must not link across purposes"
    care = node.column(OPERATOR, "p_direct_care.patients", "nhs_number")
    assert care == node.column(None, "raw.patients", "nhs_number"), "direct care is identifiable"
    assert {len(p) for p in elective} == {20}
    rtt = node.column(ANALYST, "p_elective_planning.rtt_pathways", "nhs_number")
    assert rtt <= elective, "one key per purpose: tables of a purpose link to each other"


@pytest.mark.parametrize("value", ["", "9434765919", "Zoë Ø’Brien", "a\\b'c\"d", "😀"])
def test_the_sql_pseudonym_is_byte_identical_to_python_and_duckdb(node, value):
    key = derive(b"\x01" * 32, "purpose:test")
    got = node.sql(None, "SELECT fdp_private.pseudonym(%s, %s, %s)", [key.inner, key.outer, value])
    duck = (
        duckdb.connect()
        .execute(f"SELECT {engine_sql.inline_pseudonym(engine_sql.DUCKDB, key)('?')}", [value])
        .fetchone()
    )
    assert got[0][0] == key.pseudonym(value) == duck[0]
    assert node.sql(None, "SELECT fdp_private.pseudonym('a', 'b', NULL)") == [(None,)]


def test_an_analyst_reaches_no_other_purpose_no_create_no_key_material(node):
    policy = pg.compile_node(node.fed, ORG)
    for schema, names in policy.views.items():
        if schema != "p_elective_planning":
            with pytest.raises(errors.InsufficientPrivilege, match=f"schema {schema}"):
                node.sql(ANALYST, f"SELECT count(*) FROM {schema}.{names[0]}")
    for statement in (
        "CREATE TABLE public.leak (x int)",
        "CREATE SCHEMA leak",
        "REFRESH MATERIALIZED VIEW p_elective_planning.patients",
        "SET ROLE fdp_rsa_direct_care",
        'GRANT fdp_rsa_direct_care TO "rsa.analyst"',
    ):
        with pytest.raises(errors.InsufficientPrivilege):
            node.sql(ANALYST, statement)
    definitions = node.sql(
        ANALYST,
        "SELECT string_agg(definition, ' ') FROM pg_matviews UNION ALL "
        "SELECT string_agg(pg_get_viewdef(oid), ' ') FROM pg_class WHERE relkind IN ('v', 'm') "
        "UNION ALL SELECT string_agg(prosrc, ' ') FROM pg_proc",
    )
    text = " ".join(r[0] for r in definitions)
    assert "fdp_private.pseudonym(k.inner_key, k.outer_key" in text, "definitions are readable"
    secret = read_key(node.fed.org(ORG).key, owner=ORG)
    for label in policy.labels:
        key = derive(secret, label)
        for material in (key.inner, key.outer, secret.hex()):
            assert material not in text
            assert not any(material in s for s in pg.compile_policy(node.fed, ORG))


def test_why_materialized_a_plain_view_would_need_execute_granted_to_analysts(node):
    """The design's premise, checked on this server: a function in a plain view runs with the
    querying user's privileges, so it would have to be executable by analysts."""
    node.sql(None, "CREATE SCHEMA scratch")
    try:
        node.sql(
            None,
            "CREATE VIEW scratch.plain AS SELECT fdp_private.pseudonym(k.inner_key, "
            "k.outer_key, p.nhs_number) AS nhs_number FROM raw.patients p "
            "CROSS JOIN fdp_private.key('purpose:elective_planning') k",
        )
        node.sql(None, 'GRANT USAGE ON SCHEMA scratch TO "rsa.analyst"')
        node.sql(None, 'GRANT SELECT ON scratch.plain TO "rsa.analyst"')
        with pytest.raises(errors.InsufficientPrivilege, match="permission denied for function"):
            node.sql(ANALYST, "SELECT nhs_number FROM scratch.plain LIMIT 1")
    finally:
        node.sql(None, "DROP SCHEMA scratch CASCADE")


def test_columns_the_purpose_does_not_allow_are_absent(node):
    purpose = node.fed.purposes["elective_planning"]
    plan = plan_table(node.fed, purpose, ORG, "patients", today=node.fed.as_of)
    with psycopg.connect(node.server.dsn(ANALYST, node.database)) as conn:
        cur = conn.execute("SELECT * FROM p_elective_planning.patients LIMIT 0")
        assert [d.name for d in cur.description] == [c.name for c in plan.columns]
    assert "given_name" not in [c.name for c in plan.columns]
    with pytest.raises(errors.UndefinedColumn):
        node.sql(ANALYST, "SELECT given_name FROM p_elective_planning.patients")
    assert node.sql(OPERATOR, "SELECT count(given_name) FROM p_direct_care.patients")[0][0] > 0


def _add_evil_entries(doc: dict) -> None:
    doc["purposes"].append(
        {
            "id": EVIL_PURPOSE,
            "name": "Injection attempt",
            "kind": "planning",
            "level": "aggregate",
            "legal_basis": "none",
            "datasets": {"rtt_pathways": ["org_code", "pathway_id"]},
        }
    )
    roles = [{"org": ORG, "purposes": ["elective_planning", EVIL_PURPOSE]}]
    doc["users"].append({"id": EVIL_USER, "roles": roles})


def test_sql_injection_through_the_federation_file_is_neutralised(node, federation):
    fed = load_federation(variant(federation, "evil", _add_evil_entries))
    patients = node.count(None, "raw.patients")
    evil_schema = sql.Identifier(pg.purpose_schema(EVIL_PURPOSE)).as_string()
    try:
        policy = pg.apply_policy(node.admin, fed, ORG)
        evil_role = pg.purpose_role(ORG, EVIL_PURPOSE)
        assert policy.members[evil_role] == (EVIL_USER,)
        assert node.sql(None, "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", [EVIL_USER])
        assert node.count(None, "raw.patients") == patients, "nothing was dropped"
        assert node.count(EVIL_USER, "p_elective_planning.patients") > 0
        assert node.count(EVIL_USER, f"{evil_schema}.rtt_pathways") > 0
        assert pg.refresh_views(node.admin) == sum(len(v) for v in policy.views.values())
    finally:
        pg.apply_policy(node.admin, node.fed, ORG)
    # Back on the real file: the removed user and purpose lose every grant (the role stays,
    # without even CONNECT on the node's database).
    with pytest.raises(psycopg.OperationalError, match="CONNECT privilege"):
        node.count(EVIL_USER, "p_elective_planning.patients")
    gone = pg.purpose_schema(EVIL_PURPOSE)
    assert not node.sql(None, "SELECT 1 FROM pg_namespace WHERE nspname = %s", [gone])
    assert node.count(None, "raw.patients") == patients


def test_applying_twice_is_idempotent(node):
    before = {
        "pseudonyms": node.column(ANALYST, "p_elective_planning.patients", "nhs_number"),
        "rtt": node.count(ANALYST, "p_elective_planning.rtt_pathways"),
    }
    assert pg.compile_policy(node.fed, ORG) == pg.compile_policy(node.fed, ORG)
    first = pg.apply_policy(node.admin, node.fed, ORG)
    second = pg.apply_policy(node.admin, node.fed, ORG)
    assert first == second
    assert (
        node.column(ANALYST, "p_elective_planning.patients", "nhs_number") == (before["pseudonyms"])
    )
    assert node.count(ANALYST, "p_elective_planning.rtt_pathways") == before["rtt"]
    members = node.sql(
        None,
        "SELECT pg_get_userbyid(member) FROM pg_auth_members "
        "WHERE roleid = 'fdp_rsa_elective_planning'::regrole ORDER BY 1",
    )
    assert [m[0] for m in members] == sorted(first.members["fdp_rsa_elective_planning"])


def test_new_data_shows_after_a_refresh_and_foreign_rows_never(node):
    before = node.count(ANALYST, "p_elective_planning.rtt_pathways")
    node.sql(
        None,
        "CREATE TABLE public.extra AS SELECT r.* FROM raw.rtt_pathways r JOIN raw.patients p "
        "USING (nhs_number) WHERE p.national_opt_out = %s ORDER BY r.pathway_id LIMIT 2",
        [False],
    )
    node.sql(None, "INSERT INTO public.extra SELECT r.* FROM raw.rtt_pathways r JOIN "
             "raw.patients p USING (nhs_number) WHERE p.national_opt_out LIMIT 1")  # fmt: skip
    node.sql(None, "UPDATE public.extra SET pathway_id = pathway_id || '-new'")
    node.sql(None, "UPDATE public.extra SET org_code = 'RSB' WHERE pathway_id = "
             "(SELECT min(pathway_id) FROM public.extra)")  # fmt: skip
    node.sql(None, "INSERT INTO raw.rtt_pathways SELECT * FROM public.extra")
    node.sql(None, "DROP TABLE public.extra")
    assert node.count(ANALYST, "p_elective_planning.rtt_pathways") == before, "until refreshed"
    views = pg.compile_node(node.fed, ORG).views
    assert pg.refresh_views(node.admin) == sum(len(names) for names in views.values())
    assert node.count(ANALYST, "p_elective_planning.rtt_pathways") == before + 1, (
        "one new own row; the RSB row and the opted-out patient's row stay out"
    )
    pg.load_store(node.admin, node.fed.org(ORG).store, ORG)  # reload: back to the store
    pg.refresh_views(node.admin)
    assert node.count(ANALYST, "p_elective_planning.rtt_pathways") == before


@pytest.mark.parametrize("name", ["patients", "purchase_orders", "inpatient_spells"])
def test_load_store_copies_every_value_and_null_exactly(node, name):
    store, ds = node.fed.org(ORG).store, dataset(name)
    columns = ", ".join(quote(c) for c in ds.column_names)
    order = ", ".join(quote(c) for c in ds.primary_key)
    assert node.sql(None, f"SELECT {columns} FROM raw.{name} ORDER BY {order}") == query(
        store, f"SELECT {columns} FROM {name} ORDER BY {order}"
    )


def test_load_store_refuses_another_nodes_store(node):
    with pytest.raises(StoreError, match="store of 'RSB', not of RSA"):
        pg.load_store(node.admin, node.fed.org("RSB").store, ORG)


def test_a_missing_key_refuses_before_anything_changes(node, federation):
    def drop_key(doc):
        for o in doc["organisations"]:
            if o["code"] == ORG:
                del o["key"]

    fed = load_federation(variant(federation, "nokey-pg", drop_key))
    before = node.count(ANALYST, "p_elective_planning.patients")
    with pytest.raises(GovernanceError, match="no pseudonymisation key"):
        pg.apply_policy(node.admin, fed, ORG)
    assert node.count(ANALYST, "p_elective_planning.patients") == before


def test_privileged_or_misgranted_users_fail_the_check_and_nothing_is_applied(node, federation):
    def superuser(doc):
        doc["users"].append(
            {"id": "postgres", "roles": [{"org": ORG, "purposes": ["direct_care"]}]}
        )

    with pytest.raises(errors.RaiseException, match="superuser"):
        pg.apply_policy(node.admin, load_federation(variant(federation, "su", superuser)), ORG)
    node.sql(None, 'GRANT pg_read_all_data TO "rsa.analyst"')
    try:
        with pytest.raises(GovernanceError, match=r"policy check failed.*rsa\.analyst"):
            pg.apply_policy(node.admin, node.fed, ORG)
    finally:
        node.sql(None, 'REVOKE pg_read_all_data FROM "rsa.analyst"')
    with pytest.raises(errors.InsufficientPrivilege):
        node.sql(ANALYST, "SELECT * FROM raw.patients")


def test_stray_grants_on_raw_keys_or_purposes_are_revoked_by_the_next_apply(node):
    for grant in (
        'GRANT USAGE ON SCHEMA raw, fdp_private TO "rsa.analyst"',
        "GRANT SELECT ON raw.patients, fdp_private.keys TO PUBLIC",
        "GRANT EXECUTE ON FUNCTION fdp_private.pseudonym(text, text, text) TO PUBLIC",
        'GRANT fdp_rsa_direct_care TO "rsa.analyst"',
    ):
        node.sql(None, grant)
    assert node.count(ANALYST, "raw.patients") > 0, "the holes are real before applying"
    pg.apply_policy(node.admin, node.fed, ORG)
    for statement in [*DENIED, "SELECT count(*) FROM p_direct_care.patients"]:
        with pytest.raises(errors.InsufficientPrivilege):
            node.sql(ANALYST, statement)


def test_passwords_are_stored_as_scram_verifiers(node):
    with pytest.raises(UsageError, match="no role at RSA"):
        pg.apply_policy(node.admin, node.fed, ORG, passwords={"nobody": "x"})
    pg.apply_policy(node.admin, node.fed, ORG, passwords={ANALYST: "correct horse"})
    stored = node.sql(None, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", [ANALYST])
    assert stored[0][0].startswith("SCRAM-SHA-256$") and "correct horse" not in stored[0][0]
