"""A fourth engine, added the way docs/engines.md says: this one file (the adapter), one
``registry.register`` line, and a test fixture that writes a node for it
(tests/test_engine_plugin.py).

SQLite through Ibis's SQLite backend: a node's store is ``sqlite:///ABSOLUTE/PATH.sqlite``.
Each workspace gets a private in-memory SQLite connection; a store is attached read-only and
governed tables are temporary views over it, with pseudonyms computed by the shared SQL helper
in a dialect declared here (SQLite has no SHA-256 of its own, so one is registered on the
connection, as the same function DuckDB, PostgreSQL and Spark compute).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

import ibis
from ibis.backends.sqlite import Backend as SQLiteBackend

from fdp_kernel.engines import sql
from fdp_kernel.engines.base import Engine
from fdp_kernel.engines.gate import Gated
from fdp_kernel.errors import ConfigError, StoreError
from fdp_kernel.stores import quote

SQLITE = sql.Dialect("sqlite", quote, "sha256({})", "{} || {}", "CAST({} AS TEXT)")


class GatedSQLite(Gated, SQLiteBackend):
    """A workspace's SQLite connection: governed temporary views over attached stores."""


def store_path(store: str) -> Path:
    return Path(urlparse(store).path)


class SQLiteEngine(Engine):
    name = "sqlite"

    @classmethod
    def check_url(cls, store: str) -> None:
        if not store_path(store).is_absolute():
            raise ConfigError(f"{store!r}: write sqlite:///ABSOLUTE/PATH.sqlite")

    def __init__(self, ctx) -> None:
        super().__init__(ctx)
        self._backend = GatedSQLite().connect()
        raw = self._backend.con
        raw.create_function(
            "sha256", 1, lambda text: hashlib.sha256(text.encode()).hexdigest(), deterministic=True
        )
        self._backend._arm(ctx.on_refuse)

    @property
    def backend(self):
        return self._backend

    def governed_table(self, org, plan, view, key):
        if view not in self.plans:
            path = store_path(str(org.store))
            if not path.exists():
                raise StoreError(f"the store of {org.code} is missing ({path}); nothing is shown")
            alias = f"node_{org.code}"
            with self._backend._open_gate() as con:
                attached = {row[1] for row in con.con.execute("PRAGMA database_list")}
                if alias not in attached:
                    con.con.execute(f"ATTACH DATABASE 'file:{path}?mode=ro' AS {quote(alias)}")
                table = lambda name: f"{quote(alias)}.{quote(name)}"  # noqa: E731
                secret = key() if plan.key_label else None
                statement = sql.view_sql(plan, view, SQLITE, table, secret, temporary=True)
                con.con.execute(statement.replace("CREATE OR REPLACE TEMPORARY", "CREATE TEMP"))
            self.plans[view] = plan
        return self.table(view)

    def table(self, view):
        """Temporary views and tables live in SQLite's ``temp`` schema."""
        with self._backend._open_gate() as con:
            return con.table(view, database="temp")

    def import_rows(self, view, rows, plan):
        if view not in self.plans:
            with self._backend._open_gate() as con:
                con.create_table(view, ibis.memtable(rows), temp=True)
            self.plans[view] = plan
        return self.table(view)

    def fingerprint(self, org) -> object:
        info = store_path(str(org.store)).stat()
        return (info.st_size, info.st_mtime_ns)
