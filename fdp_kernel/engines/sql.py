"""The SQL of governed views and pseudonyms, for every dialect, from one ``ViewPlan``.

A governed view selects the plan's columns from the node's raw table, keeps the node's own
rows and removes people with a national data opt-out (on the raw columns, before any
pseudonym), and replaces identifiers with keyed pseudonyms. The pseudonym of a value ``v`` is
``substr(sha256hex(outer || sha256hex(inner || v)), 1, 20)`` (``fdp_kernel.governance.keys``),
written here once with each dialect's own SHA-256 so that every engine gives the same
pseudonym: DuckDB and Spark views inline the derived keys (the views live only in the
workspace's private connection); PostgreSQL's materialized views call a function over keys
held in an owner-only table (``postgres_policy``), because view definitions are readable there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

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


def backquote(name: str) -> str:
    """A Spark SQL identifier (back-quoted; Spark reads double quotes as strings)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Dialect:
    name: str
    quote: Callable[[str], str]
    sha256_hex: str  # lower-case hex SHA-256 of a text expression: {}
    concat: str  # two text expressions: {} {}
    text: str  # a value as text: {}
    substr: str = "substr"


DUCKDB = Dialect("duckdb", quote, "sha256({})", "{} || {}", "CAST({} AS VARCHAR)")
SPARK = Dialect("spark", backquote, "sha2({}, 256)", "concat({}, {})", "CAST({} AS STRING)")
POSTGRES = Dialect(  # every name schema-qualified, so no search_path can redirect it
    "postgres",
    quote,
    "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({}, 'UTF8')), 'hex')",
    "{} OPERATOR(pg_catalog.||) {}",
    "CAST({} AS text)",
    "pg_catalog.substr",
)


def pseudonym(d: Dialect, value: str, inner: str, outer: str) -> str:
    """The pseudonym of SQL expression ``value`` given the inner and outer keys as SQL."""
    first = d.sha256_hex.format(d.concat.format(inner, d.text.format(value)))
    return (
        f"{d.substr}({d.sha256_hex.format(d.concat.format(outer, first))}, 1, {PSEUDONYM_LENGTH})"
    )


def inline_pseudonym(d: Dialect, key: PseudonymKey) -> Callable[[str], str]:
    """Pseudonyms with the derived keys inlined as literals (private connections only)."""
    return lambda value: pseudonym(d, value, literal(key.inner), literal(key.outer))


def where_clause(plan: ViewPlan, d: Dialect, table: Callable[[str], str]) -> str:
    """Own rows and the national data opt-out, on the raw columns (before pseudonyms);
    ``table`` names the raw table of a dataset in this engine."""
    q = d.quote
    conditions = []
    if plan.own_rows:
        conditions.append(f"src.{q('org_code')} = {literal(plan.provider)}")
    if plan.opt_out:
        if plan.dataset == "patients":
            conditions.append(f"NOT src.{q('national_opt_out')}")
        else:
            patient = q(dataset(plan.dataset).patient_column or "")
            conditions.append(
                f"src.{patient} NOT IN (SELECT {q('nhs_number')} FROM {table('patients')} "
                f"WHERE {q('national_opt_out')} AND {q('org_code')} = {literal(plan.provider)})"
            )
    return " AND ".join(conditions) or "TRUE"


def select_list(plan: ViewPlan, d: Dialect, pseudonym_of: Callable[[str], str] | None) -> str:
    items = []
    for col in plan.columns:
        ref = f"src.{d.quote(col.name)}"
        if col.pseudonymise:
            if pseudonym_of is None:
                raise ValueError("a pseudonymised column needs a key")
            ref = pseudonym_of(ref)
        items.append(f"{ref} AS {d.quote(col.name)}")
    return ",\n  ".join(items)


def view_sql(
    plan: ViewPlan,
    view: str,
    d: Dialect,
    table: Callable[[str], str],
    key: PseudonymKey | None,
    *,
    temporary: bool = False,
) -> str:
    """``CREATE OR REPLACE [TEMPORARY] VIEW view`` of the plan over the raw tables."""
    pseudonym_of = inline_pseudonym(d, key) if key is not None else None
    kind = "TEMPORARY VIEW" if temporary else "VIEW"
    return (
        f"CREATE OR REPLACE {kind} {d.quote(view)} AS\nSELECT\n  "
        f"{select_list(plan, d, pseudonym_of)}\n"
        f"FROM {table(plan.dataset)} AS src\nWHERE {where_clause(plan, d, table)}"
    )
