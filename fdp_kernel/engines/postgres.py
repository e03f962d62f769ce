"""PostgreSQL nodes: the node's data is in a PostgreSQL database whose server enforces the
policy (``postgres_policy``: per-purpose and per-agreement materialized views, roles and
grants). A workspace reads it with the person's own login role, so the server shows that
role only what the policy compiled for it; rows handed over from another engine become
temporary tables of the same session (the purpose roles hold TEMPORARY on the database).
"""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import urlparse

import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.csv as pacsv

from fdp_kernel.config import Organisation
from fdp_kernel.engines.base import Engine, EngineContext, KeySource, column_ddl
from fdp_kernel.engines.gate import Gated
from fdp_kernel.errors import ConfigError, StoreError
from fdp_kernel.governance.policy import ViewPlan
from fdp_kernel.stores import quote

PG_TYPES = {
    "string": "text", "date": "date", "timestamp": "timestamp", "boolean": "boolean",
    "int8": "smallint", "int16": "smallint", "int32": "integer", "int64": "bigint",
    "float64": "double precision",
}  # fmt: skip


def purpose_schema(purpose_id: str) -> str:
    return f"p_{purpose_id}"


def purpose_role(org: str, purpose_id: str) -> str:
    return f"fdp_{org}_{purpose_id}".lower()


def agreement_schema(agreement_id: str) -> str:
    return "a_" + re.sub(r"[^a-z0-9]+", "_", agreement_id.lower()).strip("_")


def agreement_role(org: str, agreement_id: str) -> str:
    return purpose_role(org, agreement_schema(agreement_id))


def schema_of(plan: ViewPlan) -> str:
    """The schema holding a plan's view in the node's database: its agreement's, else its
    purpose's (``postgres_policy`` creates them)."""
    return agreement_schema(plan.agreement) if plan.agreement else purpose_schema(plan.purpose)


def gated_postgres():
    """A gated Ibis PostgreSQL backend (needs the ``postgres`` extra)."""
    try:
        from ibis.backends.postgres import Backend as PostgresBackend
    except ImportError as exc:
        raise ConfigError(
            "this node is stored in PostgreSQL and its driver is not installed: "
            "pip install 'fdp[postgres]'"
        ) from exc

    class GatedPostgres(Gated, PostgresBackend):
        """A node stored in PostgreSQL, read through its per-purpose views."""

    return GatedPostgres()


class PostgresEngine(Engine):
    name = "postgres"

    @classmethod
    def check_url(cls, store: str) -> None:
        if re.search(r"//[^/@]*:[^/@]*@", store):
            raise ConfigError(
                "the store URL contains a password; remove it and set PGPASSWORD or ~/.pgpass "
                "for the node's users instead"
            )
        url = urlparse(store)
        if not url.hostname or not url.path.lstrip("/"):
            raise ConfigError(f"{store!r}: write postgresql://HOST:PORT/DATABASE")

    @classmethod
    def instance_key(cls, org: Organisation) -> str:
        return f"postgres:{org.store}"  # one connection per database

    def __init__(self, ctx: EngineContext, org: Organisation) -> None:
        super().__init__(ctx)
        url = urlparse(str(org.store))
        con = gated_postgres()
        try:
            con = con.connect(
                host=url.hostname,
                port=url.port or 5432,
                user=ctx.user,
                database=url.path.lstrip("/"),
            )
        except Exception as exc:
            raise StoreError(
                f"cannot connect to {org.code}'s PostgreSQL store as {ctx.user} "
                f"({type(exc).__name__}: {str(exc).strip()[:200]}); the node's "
                "administrator must apply the policy (fdp_kernel.engines.postgres_policy)"
            ) from None
        con._arm(ctx.on_refuse)
        self._backend = con

    @classmethod
    def open(cls, ctx: EngineContext, org: Organisation) -> PostgresEngine:
        return cls(ctx, org)

    @property
    def backend(self) -> Any:
        return self._backend

    def governed_table(
        self, org: Organisation, plan: ViewPlan, view: str, key: KeySource
    ) -> ir.Table:
        """The server's view of the plan (its purpose's or agreement's schema), read as this
        person's login role; the key stays in the server."""
        with self._backend._open_gate() as con:
            table = con.table(plan.dataset, database=schema_of(plan))
        self.plans[plan.dataset] = plan
        wanted = [c.name for c in plan.columns]
        if list(table.columns) != wanted:  # the purpose may cover fewer columns
            table = table.select(*wanted)
        return table

    def import_rows(self, view: str, rows: pa.Table, plan: ViewPlan) -> ir.Table:
        if view not in self.plans:
            ddl = column_ddl(plan, lambda t: PG_TYPES[t], quote)
            options = pacsv.WriteOptions(include_header=False, quoting_style="needed")
            with self._backend._open_gate() as con:
                with con.con.cursor() as cur:
                    cur.execute(f"CREATE TEMPORARY TABLE {quote(view)} ({ddl})")
                    names = ", ".join(quote(c.name) for c in plan.columns)
                    with cur.copy(f"COPY {quote(view)} ({names}) FROM STDIN (FORMAT csv)") as cp:
                        for batch in rows.to_batches(100_000):
                            buf = io.BytesIO()
                            pacsv.write_csv(batch, buf, write_options=options)
                            cp.write(buf.getbuffer())
                con.con.commit()
            self.plans[view] = plan
        with self._backend._open_gate() as con:
            return con.table(view)

    def fingerprint(self, org: Organisation) -> object:
        return (str(org.store),)
