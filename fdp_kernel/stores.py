"""Node stores on disk: catalogue tables in a DuckDB file, written atomically.

A store is created under a temporary name and renamed into place only when every table is
written, so a crash never leaves a half-written store where a finished one is expected.
Each store carries a ``_fdp_meta`` table (org, type, how it was made) for provenance.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from fdp_kernel.catalog import Dataset
from fdp_kernel.errors import StoreError

META_TABLE = "_fdp_meta"

_SQL_TYPES = {
    "string": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "boolean": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "float64": "DOUBLE",
}


def sql_type(dtype: str) -> str:
    try:
        return _SQL_TYPES[dtype]
    except KeyError:
        raise ValueError(f"no SQL type for catalogue dtype {dtype!r}") from None


def quote(name: str) -> str:
    """Quote an identifier for SQL (doubling any embedded quote)."""
    return '"' + name.replace('"', '""') + '"'


def create_table_sql(ds: Dataset) -> str:
    cols = [
        f"{quote(c.name)} {sql_type(c.dtype)}{'' if c.nullable else ' NOT NULL'}"
        for c in ds.columns
    ]
    cols.append(f"PRIMARY KEY ({', '.join(quote(k) for k in ds.primary_key)})")
    return f"CREATE TABLE {quote(ds.name)} (\n  " + ",\n  ".join(cols) + "\n)"


def arrow_schema(ds: Dataset) -> pa.Schema:
    return ds.schema().to_pyarrow()


def write_store(
    path: Path,
    tables: Mapping[Dataset, pa.Table],
    meta: Mapping[str, str],
    *,
    force: bool = False,
) -> None:
    """Write a whole store: create every dataset's table, insert its rows, then rename."""
    path = Path(path)
    if path.exists() and not force:
        raise StoreError(f"{path} already exists; pass --force to replace it")
    tmp = path.with_name(path.name + ".partial")
    for leftover in (tmp, Path(str(tmp) + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
    except (duckdb.Error, OSError) as exc:
        raise StoreError(f"cannot create store {path}: {exc}") from exc
    try:
        con.execute(f"CREATE TABLE {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
        con.executemany(f"INSERT INTO {META_TABLE} VALUES (?, ?)", sorted(meta.items()))
        for ds, table in tables.items():
            con.execute(create_table_sql(ds))
            con.register("_incoming", table.select(list(ds.column_names)))
            con.execute(f"INSERT INTO {quote(ds.name)} SELECT * FROM _incoming")
            con.unregister("_incoming")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)


def read_meta(path: Path) -> dict[str, str]:
    """The ``_fdp_meta`` key/values of a store, opened read-only."""
    if not Path(path).exists():
        raise StoreError(
            f"store {path} does not exist; run `fdp synth` or check the federation file"
        )
    con = duckdb.connect(str(path), read_only=True)
    try:
        return dict(con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    finally:
        con.close()
