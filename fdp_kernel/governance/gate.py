"""The gated engine: a DuckDB backend that runs nothing unless governance opens the gate.

Analysts receive Ibis expressions whose backend is a ``GatedDuckDB``. Building expressions
needs no engine; running one does (``execute``, ``to_pandas``, ``to_pyarrow``, ``to_csv``...),
and so does reaching raw tables (``table``, ``sql``, ``raw_sql``, ``con``). All of these are
refused with a message pointing at ``ws.release(...)``, the only path to a person. The
workspace opens the gate only for its own checked work.

This holds inside the package's public API. It is in-process: Python code that goes round
the package (opening the DuckDB file itself) is not stopped by it; docs/governance.md says so.
PostgreSQL nodes enforce rows, columns and pseudonyms in the server (docs/postgres.md); release
and disclosure control remain the package's job there too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ibis.backends.duckdb import Backend as DuckDBBackend

from fdp_kernel.errors import ConfigError, GovernanceError

# Public backend members that only describe or compile, never read data.
_ALLOWED = frozenset(
    {
        "name", "dialect", "compile", "compiler", "has_operation", "supports_temporary_tables",
        "supports_python_udfs", "db_identity", "version", "supports_in_memory_tables",
        "current_catalog", "current_database", "tables", "connect", "reconnect",
    }
)  # fmt: skip


class Gated:
    """Mixin for an Ibis backend whose data-reading members require ``_open_gate()``."""

    def __getattribute__(self, name: str):
        if name.startswith("_") or name in _ALLOWED:
            return super().__getattribute__(name)
        gate = super().__getattribute__("__dict__").get("_fdp_gate")
        if gate is not None and not getattr(gate, "open", False):
            raise GovernanceError(
                f"running or reading data directly (.{name}) is not allowed in a governed "
                "workspace: pass the expression to ws.release(...), which applies disclosure "
                "control and records the access"
            )
        return super().__getattribute__(name)

    def _arm(self) -> None:
        """Close the gate from now on (called once the workspace has built its views)."""
        self.__dict__["_fdp_gate"] = threading.local()

    @contextmanager
    def _open_gate(self) -> Iterator[Gated]:
        gate = self.__dict__["_fdp_gate"]
        previous = getattr(gate, "open", False)
        gate.open = True
        try:
            yield self
        finally:
            gate.open = previous


class GatedDuckDB(Gated, DuckDBBackend):
    """The workspace's own engine: governed views over attached node stores."""


def gated_postgres():
    """A gated Ibis PostgreSQL backend (needs the ``postgres`` extra)."""
    try:
        from ibis.backends.postgres import Backend as PostgresBackend
    except ImportError as exc:
        raise ConfigError(
            "this node is stored in PostgreSQL and its driver is not installed: "
            "pip install 'fdp[postgres]'"
        ) from exc

    class GatedPostgres(Gated, PostgresBackend):
        """A node stored in PostgreSQL, read through its per-purpose views."""

    return GatedPostgres()
