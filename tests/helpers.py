"""Small helpers shared by tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
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
