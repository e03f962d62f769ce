"""The engine protocol: what every engine adapter does for a workspace.

An ``Engine`` is one connection of a workspace to an engine that holds node data. Nodes whose
``instance_key`` is the same share one instance (every DuckDB store is attached to one
in-memory DuckDB; every Spark node of a master is read in one Spark session; a PostgreSQL
database is one connection), so their governed tables can meet in one expression.

The protocol is small:

- ``governed_table(org, plan, view, key)``: the governed table of a ``ViewPlan`` (own rows,
  allowed columns, opt-outs, pseudonyms with ``key()``) as an Ibis table of this engine;
- ``compile(expr)`` and ``run(expr, sql)``: the SQL an expression compiles to, and its rows
  (through the gate: nothing else runs);
- ``export_rows(table)`` / ``import_rows(view, rows, plan)``: rows shared under a row-level
  agreement leave one engine as Arrow and become a governed table of another
  (``fdp_kernel.engines.handover``);
- ``fingerprint(org)``: what identifies the node's data, for provenance;
- ``close()``.

Every adapter wraps an Ibis backend made ``Gated`` (``fdp_kernel.engines.gate``): running or
reading data directly through it is refused, and the refusal is reported to the workspace
(``on_refuse``) so that it is audited.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from fdp_kernel.catalog import dataset

if TYPE_CHECKING:
    import ibis.expr.operations as ops
    import ibis.expr.types as ir
    import pandas as pd

    from fdp_kernel.config import Federation, Organisation
    from fdp_kernel.governance.keys import PseudonymKey
    from fdp_kernel.governance.policy import ViewPlan

KeySource = Callable[[], "PseudonymKey"]  # read and derive the plan's key only when needed
_COMPILED: dict[tuple, str] = {}  # (engine, the query over named tables) -> its SQL
_COMPILED_MAX = 512


@dataclass(frozen=True)
class EngineContext:
    """What an engine needs to know about the workspace that opens it."""

    federation: Federation
    user: str  # the person (a PostgreSQL node is read with their login role)
    on_refuse: Callable[[str], None]  # told of every refused direct access, to audit it
    # In the node service: engines that can reach files lock themselves down once they have
    # opened the stores of ``readable`` (the nodes this workspace may read), so that nothing
    # a query says can read or write any other file.
    sandbox: bool = False
    readable: tuple[str, ...] = ()


class Engine(ABC):
    name: ClassVar[str]
    needs_data: ClassVar[bool] = False  # the node entry needs ``data:`` (Spark's Parquet)

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.plans: dict[str, ViewPlan] = {}  # governed table name in this engine -> its plan

    # -- the store URL and which nodes share an instance -------------------------------------
    @classmethod
    def check_url(cls, store: str) -> None:
        """Raise ConfigError (saying what to write) if ``store`` is no URL of this engine."""
        return None  # most engines' URLs need no check of their own

    @classmethod
    def instance_key(cls, org: Organisation) -> str:
        """Nodes with the same key are read through one instance (default: one per engine)."""
        return cls.name

    @classmethod
    def open(cls, ctx: EngineContext, org: Organisation) -> Engine:
        """The instance for ``org``'s node (and every node with the same ``instance_key``)."""
        return cls(ctx)

    # -- the protocol ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def backend(self) -> Any:
        """The gated Ibis backend whose tables this engine's governed tables are."""

    @abstractmethod
    def governed_table(
        self, org: Organisation, plan: ViewPlan, view: str, key: KeySource
    ) -> ir.Table:
        """The governed table of ``plan`` (a node this engine holds) named ``view``."""

    @abstractmethod
    def import_rows(self, view: str, rows: pa.Table, plan: ViewPlan) -> ir.Table:
        """Rows another engine computed for ``plan`` as governed table ``view`` here."""

    def export_rows(self, table: ir.Table) -> pa.Table:
        """The rows of one of this engine's governed tables, as Arrow."""
        with self.backend._open_gate():
            return table.to_pyarrow()

    def compile(self, expr: ir.Table) -> str:
        """The SQL of ``expr``. The same query over tables of the same names compiles to the
        same SQL (a federated query at each node, a release repeated): compiled once."""
        import ibis.expr.operations as ops

        leaves = {leaf: ops.UnboundTable(leaf.name, leaf.schema)
                  for leaf in expr.op().find(ops.DatabaseTable)}  # fmt: skip
        key = (type(self).__name__, expr.op().replace(leaves) if leaves else expr.op())
        sql = _COMPILED.get(key)
        if sql is None:
            sql = self.backend.compile(expr)
            if len(_COMPILED) >= _COMPILED_MAX:
                _COMPILED.pop(next(iter(_COMPILED)))
            _COMPILED[key] = sql
        return sql

    def run(self, expr: ir.Table, sql: str | None = None) -> pd.DataFrame:
        """The rows of ``expr`` (whose SQL is ``sql`` when the caller compiled it already)."""
        with self.backend._open_gate():
            return expr.to_pandas()

    @abstractmethod
    def fingerprint(self, org: Organisation) -> object:
        """What identifies the node's data now (no secrets), for provenance."""

    def close(self) -> None:
        with self.backend._open_gate():
            self.backend.disconnect()

    # -- shared bookkeeping ------------------------------------------------------------------
    def table(self, view: str) -> ir.Table:
        """A governed table this engine made before, by name."""
        with self.backend._open_gate() as con:
            return con.table(view)

    def plan_of(self, leaf: ops.Relation) -> ViewPlan | None:
        """The plan of a leaf of an expression, when it is one of this engine's governed
        tables (the same backend object and a table this engine made)."""
        if getattr(leaf, "source", None) is not self.backend:
            return None
        return self.plans.get(getattr(leaf, "name", None))

    def forget(self, view: str) -> None:
        """Stop serving ``view`` (its rows now live in another engine)."""
        self.plans.pop(view, None)


def conform(rows: pa.Table, plan: ViewPlan) -> pa.Table:
    """Rows cast to the catalogue's Arrow types of the plan's columns, in plan order."""
    schema = dataset(plan.dataset).schema().to_pyarrow()
    names = [c.name for c in plan.columns]
    rows = rows.select(names)
    return rows.cast(pa.schema([schema.field(n) for n in names]))


def column_ddl(plan: ViewPlan, sql_type: Callable[[str], str], quote: Callable[[str], str]):
    """``name type [NOT NULL]`` per column: the types and NOT NULLs a node's own view has."""
    ds = dataset(plan.dataset)
    return ", ".join(
        f"{quote(c.name)} {sql_type(ds.column(c.name).dtype)}"
        + ("" if ds.column(c.name).nullable or c.pseudonymise else " NOT NULL")
        for c in plan.columns
    )
