"""PostgreSQL enforcement: a node's policy compiled to schemas, roles, grants and views.

(The node's engine adapter, which reads these views for a workspace, is ``engines.postgres``.)

``load_store`` copies a node's tables into schema ``raw``. ``apply_policy`` compiles the
federation file so that an analyst's own database login cannot read past their purposes, even
with plain SQL and no fdp code (docs/postgres.md lists the objects): ``raw`` and
``fdp_private`` (keys, pseudonym functions) are owner-only; each purpose with data at the node
gets schema ``p_<purpose>`` of materialized views built from the same ``ViewPlan`` as the
DuckDB workspace (columns, own rows, opt-out, pseudonyms) and a NOLOGIN role
``fdp_<org>_<purpose>`` with SELECT on them alone; each row-level agreement in force under
which the node shares data gets schema ``a_<agreement>`` (the agreed columns, the agreement's
linkage pseudonyms) and role ``fdp_<org>_a_<agreement>``, held by the users of the recipient
organisations who hold the agreement's purpose there; each user gets a LOGIN role, member of
exactly those roles.

Why materialized views owned by the applier, not plain views (PostgreSQL 15):

1. Tables referenced by a view are checked against the view owner, but *functions* called in
   a view run with the privileges of the user querying it (CREATE VIEW, Notes). A plain view
   calling the pseudonym function needs EXECUTE granted to analysts, who could then hash any
   value: all ~10^9 NHS numbers, re-identifying every pseudonym. SECURITY DEFINER: the same.
2. Everyone can read view definitions (``pg_views``, ``pg_matviews``, ``pg_get_viewdef``) and
   function bodies (``pg_proc.prosrc``), so a key inlined there leaks. Keys live only in the
   owner-only table ``fdp_private.keys``, loaded by COPY (so never in SQL text or statement
   logs); definitions name a key by its label (``purpose:<id>``).
3. A materialized view is computed by its owner (REFRESH runs as the owner, a
   security-restricted operation); reading it needs SELECT on it alone.

Pseudonyms follow ``keys.py`` (first 20 hex of sha256(outer || hex(sha256(inner || value))) over
UTF-8) with PostgreSQL's ``sha256``: byte-identical to ``PseudonymKey.pseudonym`` and DuckDB.
Applying is idempotent and converges on the file, in one transaction verified before commit.
Identifiers are quoted; strings are literal-quoted (``psycopg.sql``) or bound, never spliced.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow.csv as pacsv
from psycopg import sql as pgsql

from fdp_kernel.catalog import DATASETS, Dataset
from fdp_kernel.config import Federation
from fdp_kernel.engines.postgres import (
    PG_TYPES,
    agreement_role,
    agreement_schema,
    purpose_role,
    purpose_schema,
)
from fdp_kernel.engines.sql import POSTGRES, pseudonym, where_clause
from fdp_kernel.errors import ConfigError, GovernanceError, StoreError, UsageError
from fdp_kernel.governance.keys import derive, read_key
from fdp_kernel.governance.policy import (
    ViewPlan,
    agreement_plans,
    agreement_users,
    is_public_reference,
    plan_table,
)
from fdp_kernel.stores import quote, read_meta

RAW, PRIVATE = "raw", "fdp_private"
PURPOSE_MARKER = "fdp purpose schema"  # comment on the schemas apply_policy owns and rebuilds
MAX_IDENTIFIER = 63  # PostgreSQL silently truncates longer names: refuse them instead

Admin = str | psycopg.Connection[Any]  # a libpq DSN, or an open connection, of the node owner


def ident(name: str) -> str:
    """A quoted identifier; refuses a name PostgreSQL would truncate (two could then meet)."""
    if "\0" in name or not 0 < len(name.encode()) <= MAX_IDENTIFIER:
        raise ConfigError(f"{name!r} is no PostgreSQL name (1-{MAX_IDENTIFIER} bytes, no NUL)")
    return quote(name)


def lit(value: str) -> str:
    """A string literal, safe whatever ``standard_conforming_strings`` (a NUL would cut SQL)."""
    if "\0" in value:
        raise ConfigError(f"{value!r} contains a NUL character")
    return pgsql.Literal(value).as_string()


def _do(body: str) -> str:
    """A PL/pgSQL block whose body is literal-quoted: no text inside can end it early."""
    return f"DO {lit(body)}"


def create_table_sql(ds: Dataset, schema: str = RAW) -> str:
    """The catalogue DDL of ``ds`` with PostgreSQL types (NOT NULL and PRIMARY KEY kept)."""
    cols = [f"{quote(c.name)} {PG_TYPES[c.dtype]}{'' if c.nullable else ' NOT NULL'}"
            for c in ds.columns]  # fmt: skip
    cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in ds.primary_key)})")
    body = ",\n  ".join(cols)
    return f"CREATE TABLE IF NOT EXISTS {quote(schema)}.{quote(ds.name)} (\n  {body}\n)"


def node_plans(fed: Federation, org: str, today: dt.date) -> dict[str, list[ViewPlan]]:
    """Purpose id -> its governed tables at ``org``: the datasets it allows that the node
    holds, then the public reference datasets. Purposes with no data here are left out."""
    held = [d for d in DATASETS if fed.org(org).org_type in d.held_by]
    reference = [d.name for d in held if is_public_reference(d)]
    plans = {}
    for purpose in fed.purposes.values():
        names = [d.name for d in held if purpose.allows(d.name) and not is_public_reference(d)]
        if names:
            plans[purpose.id] = [
                plan_table(fed, purpose, org, name, today=today) for name in names + reference
            ]
    return plans


def matview_sql(plan: ViewPlan, schema: str) -> str:
    """The materialized view of a plan: rows filtered on raw columns (``where_clause``, as in
    DuckDB), identifiers pseudonymised with the key that ``fdp_private.key`` finds by label."""
    items = []
    for col in plan.columns:
        ref = f"src.{quote(col.name)}"
        if col.pseudonymise:
            ref = f"{PRIVATE}.pseudonym(k.inner_key, k.outer_key, CAST({ref} AS text))"
        items.append(f"{ref} AS {quote(col.name)}")
    sources = f"{quote(RAW)}.{quote(plan.dataset)} AS src"
    if plan.key_label:
        sources += f"\nCROSS JOIN {PRIVATE}.key({lit(plan.key_label)}) AS k"
    table = lambda name: f"{quote(RAW)}.{quote(name)}"  # noqa: E731
    return (
        f"CREATE MATERIALIZED VIEW {ident(schema)}.{quote(plan.dataset)} AS\nSELECT\n  "
        + ",\n  ".join(items)
        + f"\nFROM {sources}\nWHERE {where_clause(plan, POSTGRES, table)}\nWITH DATA"
    )


# -- fixed SQL: every name schema-qualified, so no search_path can redirect it -------------
_PSEUDONYM = pseudonym(POSTGRES, "value", "inner_key", "outer_key")
_PRIVATE_DDL = [
    f"CREATE SCHEMA IF NOT EXISTS {PRIVATE}",
    f"CREATE TABLE IF NOT EXISTS {PRIVATE}.keys "
    "(label text PRIMARY KEY, inner_key text NOT NULL, outer_key text NOT NULL)",
    # A plain SQL expression (STABLE: convert_to is), so PostgreSQL inlines it: ~2 s/1M rows.
    f"CREATE OR REPLACE FUNCTION {PRIVATE}.pseudonym(inner_key text, outer_key text, "
    "value text) RETURNS text LANGUAGE sql STABLE STRICT PARALLEL SAFE\n"
    f"AS $fn$ SELECT {_PSEUDONYM} $fn$",
    # Fail closed: a view whose key is missing refuses to build rather than show anything.
    f"CREATE OR REPLACE FUNCTION {PRIVATE}.key(key_label text) RETURNS SETOF {PRIVATE}.keys "
    "LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $fn$\nBEGIN\n"
    f"  RETURN QUERY SELECT * FROM {PRIVATE}.keys WHERE label = key_label;\n"
    "  IF NOT FOUND THEN\n    RAISE EXCEPTION 'no pseudonymisation key % in the database: "
    "run apply_policy with the node key', key_label;\n  END IF;\nEND $fn$",
]
# raw and fdp_private are their owner's alone: every other grant is revoked, PUBLIC's default
# EXECUTE on the new functions included.
_OWNER_ONLY = _do(
    """DECLARE r record;
BEGIN
  FOR r IN SELECT 'PUBLIC' AS who UNION SELECT pg_catalog.quote_ident(pg_get_userbyid(a.grantee))
    FROM (SELECT nspacl FROM pg_catalog.pg_namespace WHERE nspname IN ('raw', 'fdp_private')
          UNION ALL SELECT relacl FROM pg_catalog.pg_class WHERE relnamespace::regnamespace::text
            IN ('raw', 'fdp_private')
          UNION ALL SELECT proacl FROM pg_catalog.pg_proc WHERE pronamespace::regnamespace::text
            IN ('raw', 'fdp_private')) AS o(acl), pg_catalog.aclexplode(o.acl) AS a
    WHERE a.grantee NOT IN (0, current_user::regrole) LOOP
    EXECUTE 'REVOKE ALL ON SCHEMA raw, fdp_private FROM ' || r.who || ' CASCADE';
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA raw, fdp_private FROM ' || r.who || ' CASCADE';
    EXECUTE 'REVOKE ALL ON ALL ROUTINES IN SCHEMA raw, fdp_private FROM ' || r.who
      || ' CASCADE';
  END LOOP;
END"""
)
# Rebuilt on every apply: the purpose schemas go, the node's purpose roles lose members and
# database access; build then grants exactly what the file says.
_RESET = """DECLARE r record; m record;
BEGIN
  FOR r IN SELECT nspname FROM pg_catalog.pg_namespace WHERE nspowner = current_user::regrole
           AND pg_catalog.obj_description(oid, 'pg_namespace') LIKE {marker} LOOP
    EXECUTE pg_catalog.format('DROP SCHEMA %I CASCADE', r.nspname);
  END LOOP;
  FOR r IN SELECT oid, rolname::text AS name FROM pg_catalog.pg_roles
           WHERE pg_catalog.left(rolname, {n}) = {prefix} LOOP
    EXECUTE pg_catalog.format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r.name);
    FOR m IN SELECT pg_catalog.pg_get_userbyid(member) AS name FROM pg_catalog.pg_auth_members
             WHERE roleid = r.oid LOOP
      EXECUTE pg_catalog.format('REVOKE %I FROM %I', r.name, m.name);
    END LOOP;
  END LOOP;
END"""
# Roles are created if missing; an existing superuser (or the applier) refuses: fail closed.
_ENSURE_ROLES = """DECLARE r record;
BEGIN
  FOR r IN SELECT * FROM unnest(ARRAY[{names}]::text[], ARRAY[{logins}]::boolean[])
           AS t(name, login) LOOP
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name) THEN
      EXECUTE pg_catalog.format('CREATE ROLE %I ' || CASE WHEN r.login THEN 'LOGIN'
        ELSE 'NOLOGIN' END, r.name);
    ELSIF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r.name
                  AND (rolsuper OR rolname = current_user)) THEN
      RAISE EXCEPTION 'role % is a superuser or the node owner: not an fdp role', r.name;
    ELSIF NOT r.login THEN  -- a purpose role is never a way in by itself
      EXECUTE pg_catalog.format('ALTER ROLE %I NOLOGIN', r.name);
    END IF;
  END LOOP;
END"""


def _on_database(template: str, *roles: str) -> str:
    """GRANT/REVOKE on the current database, whose name is not known when compiling."""
    args = "".join(f", {lit(r)}" for r in roles)
    return _do(f"BEGIN EXECUTE pg_catalog.format({lit(template)}, current_database(){args}); END")


@dataclass(frozen=True)
class CompiledPolicy:
    """A node's policy as SQL: ``setup`` runs before the keys are loaded, ``build`` after.
    ``views``: schema -> datasets; ``members``: purpose or agreement role -> login roles;
    ``labels``: the keys the views need. Nothing here is secret."""

    org: str
    setup: list[str]
    build: list[str]
    views: dict[str, tuple[str, ...]]
    members: dict[str, tuple[str, ...]]
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Grant:
    """One schema of views and the NOLOGIN role that may read it."""

    schema: str
    role: str
    plans: list[ViewPlan]
    members: tuple[str, ...]
    comment: str


def _grants(fed: Federation, org: str, today: dt.date) -> list[_Grant]:
    """The purposes' schemas at ``org`` (members: users holding the purpose there), then the
    row-level agreements' (members: users holding the agreement's purpose at a recipient)."""
    out = [
        _Grant(
            purpose_schema(pid),
            purpose_role(org, pid),
            plans,
            tuple(u.id for u in fed.users.values() if pid in u.purposes_at(org)),
            f"{PURPOSE_MARKER}: {pid} at {org}",
        )
        for pid, plans in node_plans(fed, org, today).items()
    ]
    for aid, plans in agreement_plans(fed, org, today).items():
        a = fed.agreements[aid]
        users = agreement_users(fed, a, org)
        comment = f"{PURPOSE_MARKER}: agreement {aid} from {org}"
        out.append(_Grant(agreement_schema(aid), agreement_role(org, aid), plans, users, comment))
    return out


def compile_node(fed: Federation, org: str, *, today: dt.date | None = None) -> CompiledPolicy:
    """Compile node ``org``'s policy (see the module docstring for what it creates)."""
    grants = _grants(fed, org, today or dt.date.today())
    roles = [g.role for g in grants]
    if len(set(roles)) != len(roles) or len({g.schema for g in grants}) != len(grants):
        raise ConfigError(
            f"purpose or agreement ids at {org} collide once lower-cased: {sorted(roles)}"
        )
    prefix = purpose_role(org, "")
    marker, n = lit(PURPOSE_MARKER + ":%"), len(prefix)
    setup = [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
        _on_database("REVOKE ALL ON DATABASE %I FROM PUBLIC"),
        f"CREATE SCHEMA IF NOT EXISTS {RAW}",
        *_PRIVATE_DDL,
        _OWNER_ONLY,
        _do(_RESET.format(marker=marker, n=n, prefix=lit(prefix))),
    ]
    members = {g.role: g.members for g in grants}
    order = list(fed.users).index
    logins = sorted({u for users in members.values() for u in users}, key=order)
    if bad := [u for u in logins if re.match(r"(?i)(public$|pg_|fdp_)", u)]:
        raise ConfigError(f"user ids {bad} are reserved in PostgreSQL or by fdp: rename them")
    names = [ident(r) and lit(r) for r in [*roles, *logins]]
    flags = ["false"] * len(roles) + ["true"] * len(logins)
    build = [_do(_ENSURE_ROLES.format(names=", ".join(names), logins=", ".join(flags)))]
    for g in grants:
        schema, role = ident(g.schema), ident(g.role)
        tables = ", ".join(f"{schema}.{quote(p.dataset)}" for p in g.plans)
        build += [
            f"CREATE SCHEMA {schema}",
            f"COMMENT ON SCHEMA {schema} IS {lit(g.comment)}",
            *(matview_sql(p, g.schema) for p in g.plans),
            _on_database("GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I", g.role),
            f"GRANT USAGE ON SCHEMA {schema} TO {role}",
            f"GRANT SELECT ON {tables} TO {role}",
        ]
        if g.members:
            build.append(f"GRANT {role} TO {', '.join(map(ident, g.members))}")
    views = {g.schema: tuple(p.dataset for p in g.plans) for g in grants}
    labels = tuple(sorted({p.key_label for g in grants for p in g.plans if p.key_label}))
    return CompiledPolicy(org, setup, build, views, members, labels)


def compile_policy(fed: Federation, org: str) -> list[str]:
    """The SQL statements that enforce the federation file's policy at node ``org``, in
    order, for review. They hold no key: ``apply_policy`` loads the keys between ``setup``
    and ``build`` (run without them, the views refuse to build: "no pseudonymisation key")."""
    policy = compile_node(fed, org)
    return policy.setup + policy.build


@contextlib.contextmanager
def _connection(admin: Admin) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(admin, psycopg.Connection):
        yield admin
        return
    with psycopg.connect(admin) as conn:
        yield conn


def _verify(conn: psycopg.Connection[Any], policy: CompiledPolicy) -> None:
    """Before commit: the node's purpose roles have exactly the compiled members, and no
    login role can reach raw data, keys or the functions through any other grant or role."""
    prefix = purpose_role(policy.org, "")
    granted = conn.execute(
        "SELECT r.rolname::text, pg_get_userbyid(a.member) FROM pg_auth_members a "
        "JOIN pg_roles r ON r.oid = a.roleid WHERE left(r.rolname, %s) = %s",
        [len(prefix), prefix],
    ).fetchall()
    expected = {(role, user) for role, users in policy.members.items() for user in users}
    leaks = conn.execute(
        "SELECT u FROM unnest(%s::text[]) AS u WHERE has_schema_privilege(u, 'raw', 'USAGE') "
        "OR has_schema_privilege(u, 'fdp_private', 'USAGE') "
        "OR has_table_privilege(u, 'fdp_private.keys', 'SELECT') "
        "OR has_function_privilege(u, 'fdp_private.pseudonym(text,text,text)', 'EXECUTE') "
        "OR has_function_privilege(u, 'fdp_private.key(text)', 'EXECUTE')",
        [sorted({user for _, user in expected})],
    ).fetchall()
    if set(granted) != expected or leaks:
        raise GovernanceError(
            f"policy check failed, nothing applied: memberships {sorted(set(granted))}; login "
            f"roles reaching raw data or keys by other grants: {[r[0] for r in leaks]}",
            rule="engine:policy-check",
        )


def apply_policy(
    admin: Admin, fed: Federation, org: str, *, passwords: Mapping[str, str] | None = None
) -> CompiledPolicy:
    """Enforce node ``org``'s policy in its database, in one transaction verified before
    commit, and return what it created.

    ``admin`` (a DSN or a connection) must own ``raw`` and be able to create roles. The node
    key is read first: a missing or unprotected key refuses before anything changes. The
    derived keys go in by COPY. ``passwords`` (user id -> password) are sent as
    SCRAM verifiers computed here, never in clear text.
    """
    policy = compile_node(fed, org)
    keys = [_label_key(fed, org, label) for label in policy.labels]
    if unknown := set(passwords or {}) - {u for m in policy.members.values() for u in m}:
        raise UsageError(f"passwords given for users with no role at {org}: {sorted(unknown)}")
    with _connection(admin) as conn, conn.transaction():
        for statement in policy.setup:
            conn.execute(statement)
        with conn.cursor() as cur:
            cur.execute(f"DELETE FROM {PRIVATE}.keys")
            with cur.copy(f"COPY {PRIVATE}.keys (label, inner_key, outer_key) FROM STDIN") as cp:
                for k in keys:  # COPY data is never in statement logs or pg_stat_statements
                    cp.write_row((k.label, k.inner, k.outer))
        for statement in policy.build:
            conn.execute(statement)
        for user, password in sorted((passwords or {}).items()):
            scram = b"scram-sha-256"
            verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), scram)
            conn.execute(f"ALTER ROLE {ident(user)} PASSWORD {lit(verifier.decode())}")
        _verify(conn, policy)
    return policy


def _label_key(fed: Federation, org: str, label: str):
    """The derived key of a label: an agreement's from its shared linkage key, a purpose's
    from the node key (read first: a missing or unprotected key refuses before any change)."""
    kind, _, ident_ = label.partition(":")
    if kind == "agreement":
        path = fed.agreements[ident_].key
        return derive(read_key(Path(path) if path else None, owner=f"agreement {ident_}"), label)
    return derive(read_key(fed.org(org).key, owner=org), label)


def refresh_views(admin: Admin) -> int:
    """Recompute the purpose views from ``raw`` after new data, with the keys already in the
    database (no key file needed). Returns how many views were refreshed."""
    with _connection(admin) as conn, conn.transaction():
        views = conn.execute(
            "SELECT quote_ident(nspname) || '.' || quote_ident(relname) FROM pg_class c JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND "
            "obj_description(n.oid, 'pg_namespace') LIKE %s ORDER BY 1",
            [PURPOSE_MARKER + "%"],
        ).fetchall()
        for (view,) in views:
            conn.execute(f"REFRESH MATERIALIZED VIEW {view}")
    return len(views)


def load_store(admin: Admin, store_path: str | Path, org: str) -> dict[str, int]:
    """Copy node ``org``'s DuckDB store into schema ``raw`` and return rows per dataset.

    Each catalogue dataset in the store gets its catalogue table (created if missing), is
    emptied and refilled by COPY from Arrow batches written as CSV (strings quoted, NULL an
    unquoted empty field, so "" and NULL stay distinct), all in one transaction. Tables are
    owner-only; purpose views keep their contents until ``refresh_views``/``apply_policy``.
    """
    store_path = Path(store_path)
    if (found := read_meta(store_path).get("org_code")) != org:
        raise StoreError(f"{store_path} is the store of {found!r}, not of {org}")
    options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
    counts = {}
    src = duckdb.connect(str(store_path), read_only=True)
    try:
        present = {r[0] for r in src.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        with _connection(admin) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {RAW}")
            cur.execute(f"REVOKE ALL ON SCHEMA {RAW} FROM PUBLIC")
            for ds in (d for d in DATASETS if d.name in present):
                table, columns = f"{RAW}.{quote(ds.name)}", ", ".join(map(quote, ds.column_names))
                cur.execute(create_table_sql(ds))
                cur.execute(f"TRUNCATE {table}")
                rows = src.sql(f"SELECT {columns} FROM {quote(ds.name)}")
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
                    for batch in rows.to_arrow_reader(100_000):
                        buf = io.BytesIO()
                        pacsv.write_csv(batch, buf, write_options=options)
                        copy.write(buf.getbuffer())
                counts[ds.name] = cur.rowcount
                cur.execute(f"ANALYZE {table}")
    finally:
        src.close()
    return counts
