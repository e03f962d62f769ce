"""The gate: an Ibis backend that runs nothing unless governance opens it.

Analysts receive Ibis expressions whose backend is gated. Building expressions needs no
engine; running one does (``execute``, ``to_pandas``, ``to_pyarrow``, ``to_csv``...), and so
does reaching raw tables (``table``, ``sql``, ``raw_sql``, ``con``). All of these are refused
with a message pointing at ``ws.release(...)``, the only path to a person, and each refusal is
reported to the workspace (``on_refuse``), which audits it. Engines open the gate only for
the workspace's own checked work.

This holds inside the package's public API. It is in-process: code that goes round the
package (opening the DuckDB file itself) is not stopped by it. That is what the node service
is for (docs/governance.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fdp_kernel.errors import GovernanceError

# Public backend members that only describe or compile, never read data.
_ALLOWED = frozenset(
    {
        "name", "dialect", "compile", "compiler", "has_operation", "supports_temporary_tables",
        "supports_python_udfs", "db_identity", "version", "supports_in_memory_tables",
        "current_catalog", "current_database", "tables", "connect", "reconnect",
    }
)  # fmt: skip
REFUSED = (
    "running or reading data directly (.{name}) is not allowed in a governed workspace: pass "
    "the expression to ws.release(...), which applies disclosure control and records the access"
)


class Gated:
    """Mixin for an Ibis backend whose data-reading members require ``_open_gate()``."""

    def __getattribute__(self, name: str):
        if name.startswith("_") or name in _ALLOWED:
            return super().__getattribute__(name)
        state = super().__getattribute__("__dict__")
        gate = state.get("_fdp_gate")
        if gate is not None and not getattr(gate, "open", False):
            on_refuse = state.get("_fdp_on_refuse")
            if on_refuse is not None:
                on_refuse(f".{name}")
            raise GovernanceError(REFUSED.format(name=name), rule="engine:direct-access")
        return super().__getattribute__(name)

    def _arm(self, on_refuse: Callable[[str], None] | None = None) -> None:
        """Close the gate from now on (once the engine has built what it needs); every
        refused access is reported to ``on_refuse`` (the workspace audits it)."""
        self.__dict__["_fdp_gate"] = threading.local()
        self.__dict__["_fdp_on_refuse"] = on_refuse

    @contextmanager
    def _open_gate(self) -> Iterator[Gated]:
        gate = self.__dict__["_fdp_gate"]
        previous = getattr(gate, "open", False)
        gate.open = True
        try:
            yield self
        finally:
            gate.open = previous
