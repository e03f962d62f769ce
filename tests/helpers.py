"""Small helpers shared by tests."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import yaml


def query(store, sql: str, params=None):
    """Run ``sql`` against a store opened read-only and return all rows."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def variant(federation: Path, name: str, change) -> Path:
    """A copy of the federation file beside the original (same stores), edited by ``change``."""
    doc = yaml.safe_load((federation / "federation.yaml").read_text())
    change(doc)
    path = federation / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def copy_federation(federation: Path, target: Path) -> Path:
    shutil.copytree(federation, target)
    return target


def records(con, expr) -> list[dict[str, Any]]:
    """Execute an expression on ``con`` and return plain records (dates as datetime.date,
    NaN/NA as None), so that expected results can be written as literal data."""
    df = con.execute(expr)
    out = []
    for row in df.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                value = value.date()
            elif value is None or (not isinstance(value, str) and pd.isna(value)):
                value = None
            clean[key] = value
        out.append(clean)
    return out


def memtable(rows, schema: dict[str, str], defaults=None):
    """An in-memory Ibis table of ``schema`` from rows given as dicts (over ``defaults``) or
    tuples (in schema order); empty rows give an empty typed table."""
    import ibis

    if not rows:
        return ibis.memtable(ibis.schema(schema).to_pyarrow().empty_table())
    if isinstance(rows[0], dict):
        full = [{**(defaults or {}), **row} for row in rows]
    else:
        full = [dict(zip(schema, row, strict=False)) for row in rows]
    frame = pd.DataFrame(full, columns=list(schema))
    for col, kind in schema.items():  # keep nullable integers as integers
        if kind.startswith("int"):
            frame[col] = frame[col].astype("Int64")
    # As Arrow in the schema's types, so that every engine (Spark included) gets the same
    # values and types whatever pandas' dtypes.
    arrow = ibis.schema(schema).to_pyarrow()
    return ibis.memtable(pa.Table.from_pandas(frame, schema=arrow, preserve_index=False))


@contextmanager
def peeking(ws, table):
    """``table`` as its engine sees it, with the gate open: to compare exact figures with what
    was released (test-only). For a thin client, the node service's own table."""
    from fdp_kernel.service.client import ServiceWorkspace

    if isinstance(ws, ServiceWorkspace):
        from tests.fixtures.service import server_table

        table = server_table(ws, table)
    with table.get_backend()._open_gate():
        yield table


def verified(federation: Path, org: str) -> bool:
    """Whether ``org``'s audit log verifies with the federation's audit key."""
    from fdp_kernel.config import load_federation
    from fdp_kernel.governance.audit import AuditLog
    from fdp_kernel.governance.keys import audit_key

    fed = load_federation(federation)
    return AuditLog(fed.audit_path(org), audit_key(fed)).verify().ok
