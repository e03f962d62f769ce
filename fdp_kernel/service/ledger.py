"""The differencing ledger kept by the node service across sessions: one journal per person,
organisation and purpose, so that a small group cannot be had by differencing a release today
against one from last week.

Each release's relation is kept as an encoded expression (``codec``) whose leaves name the
governed tables it read (dataset, provider, columns), with the released cells' keys and exact
record counts. A later session decodes an old relation only when a new cell's count comes
within 1-7 of one of its cells, binding its leaves to that session's own governed tables (the
data of today: still what would be differenced). Journals are written by the service alone,
beside the audit logs.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

import ibis.expr.operations as ops
import ibis.expr.types as ir

from fdp_kernel.errors import StoreError
from fdp_kernel.service import codec

_LOCK = threading.Lock()


class Journal:
    def __init__(self, path: Path, ws) -> None:
        self.path = Path(path)
        self.ws = ws

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        try:
            return [json.loads(line) for line in self.path.read_text().splitlines() if line]
        except (OSError, ValueError) as exc:
            raise StoreError(
                f"the differencing ledger {self.path} cannot be read ({exc}); nothing is "
                "released until the node's administrator restores it"
            ) from None

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with _LOCK:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, line)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write the differencing ledger {self.path}: {exc}") from None

    def _leaf(self, node: ops.DatabaseTable) -> str | None:
        for engine in self.ws._engines._engines.values():
            plan = engine.plan_of(node)
            if plan is not None:
                return json.dumps([plan.dataset, plan.provider, [c.name for c in plan.columns]])
        return None

    def encode(self, expr: ir.Table) -> str:
        return json.dumps(codec.encode(expr, self._leaf), separators=(",", ":"), sort_keys=True)

    def decode(self, text: str) -> ir.Table:
        def bind(name, schema):
            dataset, provider, columns = json.loads(name)
            source = None if provider == self.ws.org else provider
            return self.ws.table(dataset, columns=columns, source=source).op()

        return codec.decode(json.loads(text), bind)


def journal_for(ws, folder: Path) -> Journal:
    """The journal of ``ws``'s person, organisation and purpose under ``folder``."""
    ident = hashlib.sha256(f"{ws.org}\0{ws.user}\0{ws.purpose.id}".encode()).hexdigest()[:32]
    return Journal(Path(folder) / ws.org / f"{ident}.jsonl", ws)
