"""DuckDB nodes (the reference engine): a store is a DuckDB file.

Each workspace has one private in-memory DuckDB. Every DuckDB store it reads is attached to it
read-only (many report kernels can read one store at once), and governed tables are views
there over the attached stores, so that several nodes' tables meet in one expression and
filters and projections push down into the files. Rows handed over from another engine
become temporary tables of the same database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
from ibis.backends.duckdb import Backend as DuckDBBackend

from fdp_kernel.config import Organisation
from fdp_kernel.engines import sql
from fdp_kernel.engines.base import Engine, EngineContext, KeySource, column_ddl
from fdp_kernel.engines.gate import Gated
from fdp_kernel.errors import StoreError
from fdp_kernel.governance.policy import ViewPlan
from fdp_kernel.stores import quote, sql_type


class GatedDuckDB(Gated, DuckDBBackend):
    """The workspace's own DuckDB: governed views over attached node stores."""


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(self, ctx: EngineContext) -> None:
        super().__init__(ctx)
        self._backend = GatedDuckDB().connect()
        # No progress bar: a query over 2 s would print one into notebooks and reports.
        self._backend.con.execute("SET enable_progress_bar = false")
        self._backend._arm(ctx.on_refuse)
        self._attached: set[str] = set()
        self._locked = False
        if ctx.sandbox:
            self._lock_down()

    def _lock_down(self) -> None:
        """Attach the stores this workspace may read, then turn off every file and network
        access and lock the configuration: a query cannot read a file (``read_csv``), attach
        a database, copy out, install an extension, or turn the setting back on."""
        for code in self.ctx.readable:
            org = self.ctx.federation.org(code)
            if isinstance(org.store, Path) and org.store.exists():
                self._attach(org)
        with self._backend._open_gate() as con:
            con.con.execute("SET enable_external_access = false")
            con.con.execute("SET lock_configuration = true")
        self._locked = True

    @property
    def backend(self) -> Any:
        return self._backend

    def _attach(self, org: Organisation) -> str:
        alias = quote(f"node_{org.code}")
        if org.code not in self._attached:
            if self._locked and org.store.exists():
                raise StoreError(
                    f"the store of {org.code} is not open in this session; nothing is shown"
                )
            if not org.store.exists():
                raise StoreError(
                    f"the store of {org.code} is missing ({org.store}); nothing is shown"
                )
            with self._backend._open_gate() as con:
                con.raw_sql(f"ATTACH '{org.store}' AS {alias} (READ_ONLY)")
            self._attached.add(org.code)
        return alias

    def governed_table(
        self, org: Organisation, plan: ViewPlan, view: str, key: KeySource
    ) -> ir.Table:
        if view not in self.plans:
            source = self._attach(org)
            secret = key() if plan.key_label else None
            table = lambda name: f"{source}.{quote(name)}"  # noqa: E731
            with self._backend._open_gate() as con:
                con.raw_sql(sql.view_sql(plan, view, sql.DUCKDB, table, secret))
            self.plans[view] = plan
        with self._backend._open_gate() as con:
            return con.table(view)

    def import_rows(self, view: str, rows: pa.Table, plan: ViewPlan) -> ir.Table:
        if view not in self.plans:
            with self._backend._open_gate() as duck:
                duck.con.register("_fdp_handover", rows)
                columns = column_ddl(plan, sql_type, quote)
                duck.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(view)} ({columns})")
                duck.con.execute(f"INSERT INTO {quote(view)} SELECT * FROM _fdp_handover")
                duck.con.unregister("_fdp_handover")
            self.plans[view] = plan
        with self._backend._open_gate() as con:
            return con.table(view)

    def export_rows(self, table: ir.Table) -> pa.Table:
        view = table.op().name
        with self._backend._open_gate() as duck:
            rows = duck.con.sql(f"SELECT * FROM {quote(view)}").to_arrow_table()
        return rows

    def run(self, expr: ir.Table, sql_text: str | None = None) -> pd.DataFrame:
        """Run exactly the SQL that was compiled (and hashed for the audit), converting the
        rows as Ibis would."""
        from ibis.backends.duckdb.converter import DuckDBPandasData

        sql_text = sql_text or self.compile(expr)
        with self._backend._open_gate() as con:
            con._run_pre_execute_hooks(expr)  # registers in-memory tables (e.g. a month spine)
            table = con.con.sql(sql_text).to_arrow_table()
        columns = {}
        for name, col in zip(table.column_names, table.columns, strict=True):
            nested = pa.types.is_nested(col.type) or pa.types.is_dictionary(col.type)
            columns[name] = col.to_pylist() if nested or col.null_count else col.to_pandas()
        return DuckDBPandasData.convert_table(pd.DataFrame(columns), expr.schema())

    def fingerprint(self, org: Organisation) -> object:
        info = org.store.stat()  # the store's identity: its size and time of last change
        return (info.st_size, info.st_mtime_ns)
