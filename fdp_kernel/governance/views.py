"""Compile a ``ViewPlan`` into SQL for the engine that holds the node's data.

The same plan gives a DuckDB view (inside a workspace's private in-memory database, over the
node's store attached read-only) and, in ``postgres.py``, a PostgreSQL materialized view owned
by the node's admin role (a plain view would run the pseudonym function with the caller's
privileges and expose its definition).
"""

from __future__ import annotations

import re

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


def where_clause(plan: ViewPlan, source: str) -> str:
    """Own rows and the national data opt-out, on the raw columns (before pseudonyms)."""
    ds = dataset(plan.dataset)
    conditions = []
    if plan.own_rows:
        conditions.append(f"src.{quote('org_code')} = {literal(plan.provider)}")
    if plan.opt_out:
        if plan.dataset == "patients":
            conditions.append(f"NOT src.{quote('national_opt_out')}")
        else:
            patient = quote(ds.patient_column or "")
            conditions.append(
                f"src.{patient} NOT IN (SELECT {quote('nhs_number')} FROM {source}."
                f"{quote('patients')} WHERE {quote('national_opt_out')} AND "
                f"{quote('org_code')} = {literal(plan.provider)})"
            )
    return " AND ".join(conditions) or "TRUE"


def select_list(plan: ViewPlan, key: PseudonymKey | None, pseudonym) -> str:
    items = []
    for col in plan.columns:
        ref = f"src.{quote(col.name)}"
        if col.pseudonymise:
            if key is None:
                raise ValueError("a pseudonymised column needs a key")
            ref = pseudonym(ref, key)
        items.append(f"{ref} AS {quote(col.name)}")
    return ",\n  ".join(items)


def duckdb_view_sql(plan: ViewPlan, view: str, source: str, key: PseudonymKey | None) -> str:
    """``CREATE VIEW`` over ``source`` (an attached store's schema, already quoted)."""
    return (
        f"CREATE OR REPLACE VIEW {quote(view)} AS\nSELECT\n  "
        f"{select_list(plan, key, duckdb_pseudonym)}\n"
        f"FROM {source}.{quote(plan.dataset)} AS src\nWHERE {where_clause(plan, source)}"
    )
