"""Compile a ``ViewPlan`` into SQL for the engine that holds the node's data.

The same plan gives a DuckDB view (inside a workspace's private in-memory database, over the
node's store attached read-only), a Spark temporary view (``spark_view_sql``, in the
workspace's own Spark session over the node's Parquet tables) and, in ``postgres.py``, a
PostgreSQL materialized view owned by the node's admin role (a plain view would run the
pseudonym function with the caller's privileges and expose its definition).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fdp_kernel.catalog import dataset
from fdp_kernel.governance.keys import PSEUDONYM_LENGTH, PseudonymKey
from fdp_kernel.governance.policy import ViewPlan
from fdp_kernel.stores import quote

_SAFE_LITERAL = re.compile(r"^[A-Za-z0-9_.:\-]*$")


def literal(value: str) -> str:
    """A SQL string literal; values here are ODS codes and hex keys, checked to be plain."""
    if not _SAFE_LITERAL.match(value):
        raise ValueError(f"refusing to inline {value!r} into SQL")
    return "'" + value + "'"


def duckdb_pseudonym(expr: str, key: PseudonymKey) -> str:
    inner = f"sha256({literal(key.inner)} || CAST({expr} AS VARCHAR))"
    return f"substr(sha256({literal(key.outer)} || {inner}), 1, {PSEUDONYM_LENGTH})"


def spark_pseudonym(expr: str, key: PseudonymKey) -> str:
    """The same keyed hash as ``duckdb_pseudonym`` in Spark SQL (``sha2`` gives lower-case hex)."""
    inner = f"sha2(concat({literal(key.inner)}, CAST({expr} AS STRING)), 256)"
    return f"substr(sha2(concat({literal(key.outer)}, {inner}), 256), 1, {PSEUDONYM_LENGTH})"


def spark_quote(name: str) -> str:
    """A Spark SQL identifier (back-quoted; Spark reads double quotes as strings)."""
    return "`" + name.replace("`", "``") + "`"


def where_clause(
    plan: ViewPlan,
    source: str,
    q: Callable[[str], str] = quote,
    table_ref: Callable[[str], str] | None = None,
) -> str:
    """Own rows and the national data opt-out, on the raw columns (before pseudonyms).

    ``source`` is the schema holding the node's raw tables; ``table_ref`` (a dataset name to a
    table reference) replaces ``source.dataset`` where the engine names tables otherwise."""
    ref = table_ref or (lambda name: f"{source}.{q(name)}")
    ds = dataset(plan.dataset)
    conditions = []
    if plan.own_rows:
        conditions.append(f"src.{q('org_code')} = {literal(plan.provider)}")
    if plan.opt_out:
        if plan.dataset == "patients":
            conditions.append(f"NOT src.{q('national_opt_out')}")
        else:
            patient = q(ds.patient_column or "")
            conditions.append(
                f"src.{patient} NOT IN (SELECT {q('nhs_number')} FROM {ref('patients')} "
                f"WHERE {q('national_opt_out')} AND {q('org_code')} = {literal(plan.provider)})"
            )
    return " AND ".join(conditions) or "TRUE"


def select_list(
    plan: ViewPlan, key: PseudonymKey | None, pseudonym, q: Callable[[str], str] = quote
) -> str:
    items = []
    for col in plan.columns:
        ref = f"src.{q(col.name)}"
        if col.pseudonymise:
            if key is None:
                raise ValueError("a pseudonymised column needs a key")
            ref = pseudonym(ref, key)
        items.append(f"{ref} AS {q(col.name)}")
    return ",\n  ".join(items)


def duckdb_view_sql(plan: ViewPlan, view: str, source: str, key: PseudonymKey | None) -> str:
    """``CREATE VIEW`` over ``source`` (an attached store's schema, already quoted)."""
    return (
        f"CREATE OR REPLACE VIEW {quote(view)} AS\nSELECT\n  "
        f"{select_list(plan, key, duckdb_pseudonym)}\n"
        f"FROM {source}.{quote(plan.dataset)} AS src\nWHERE {where_clause(plan, source)}"
    )


def spark_view_sql(
    plan: ViewPlan, view: str, raw: Callable[[str], str], key: PseudonymKey | None
) -> str:
    """``CREATE TEMPORARY VIEW`` in the workspace's Spark session; ``raw`` names the
    temporary view of each of the node's raw datasets."""
    q = spark_quote
    return (
        f"CREATE OR REPLACE TEMPORARY VIEW {q(view)} AS\nSELECT\n  "
        f"{select_list(plan, key, spark_pseudonym, q)}\n"
        f"FROM {raw(plan.dataset)} AS src\nWHERE {where_clause(plan, '', q, raw)}"
    )
