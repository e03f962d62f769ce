"""Small helpers shared by tests."""

from __future__ import annotations

import duckdb


def query(store, sql: str, params=None):
    """Run ``sql`` against a store opened read-only and return all rows."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()
