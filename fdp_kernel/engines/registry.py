"""Store URL -> engine adapter: the one registry of engines (as papermill's engine registry).

A node's ``store`` in the federation file names its engine: a file path is DuckDB; a URL's
scheme names the engine registered for it (``postgresql://`` PostgreSQL, ``spark://`` Spark).
Each entry names its adapter class as ``"module:Class"``, imported on first use, so reading a
federation file never loads a driver it does not need.

Adding an engine is one adapter module (a subclass of ``fdp_kernel.engines.base.Engine``) and
one ``register(...)`` line here (or in a plugin's code: ``register`` is public); see
docs/engines.md.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fdp_kernel.errors import ConfigError

if TYPE_CHECKING:
    from fdp_kernel.engines.base import Engine

FILE = "file"  # the pseudo-scheme of a store given as a path


@dataclass(frozen=True)
class EngineEntry:
    name: str  # what the federation and the docs call it: "duckdb", "postgres", "spark"
    schemes: tuple[str, ...]  # URL schemes it serves ("file" for a store given as a path)
    adapter: str  # "package.module:Class"


_ENTRIES: dict[str, EngineEntry] = {}


def register(name: str, schemes: tuple[str, ...], adapter: str) -> None:
    """Register (or replace) the engine ``name`` for store URL ``schemes``."""
    for other in list(_ENTRIES.values()):
        if other.name != name and set(other.schemes) & set(schemes):
            raise ConfigError(f"store scheme(s) {schemes} already belong to engine {other.name}")
    _ENTRIES[name] = EngineEntry(name, tuple(schemes), adapter)


def unregister(name: str) -> None:
    _ENTRIES.pop(name, None)


def entries() -> list[EngineEntry]:
    return list(_ENTRIES.values())


def scheme_of(store: Path | str) -> str:
    if isinstance(store, Path) or "://" not in store:
        return FILE
    return store.split("://", 1)[0].lower()


def engine_name(store: Path | str) -> str:
    """The engine that serves ``store``; ConfigError naming the known store kinds if none."""
    scheme = scheme_of(store)
    for entry in _ENTRIES.values():
        if scheme in entry.schemes:
            return entry.name
    known = ", ".join(f"{s}://" for e in _ENTRIES.values() for s in e.schemes if s != FILE)
    raise ConfigError(
        f"unsupported store {str(store)!r}: use a DuckDB file path or a URL of a registered "
        f"engine ({known}); see docs/engines.md"
    )


def adapter(name: str) -> type[Engine]:
    """The adapter class of engine ``name`` (its module imported now)."""
    entry = _ENTRIES.get(name)
    if entry is None:
        raise ConfigError(f"no engine {name!r} is registered; known: {', '.join(_ENTRIES)}")
    module, _, attr = entry.adapter.partition(":")
    return getattr(importlib.import_module(module), attr)


def adapter_for(store: Path | str) -> type[Engine]:
    return adapter(engine_name(store))


register("duckdb", (FILE,), "fdp_kernel.engines.duckdb:DuckDBEngine")
register("postgres", ("postgresql", "postgres"), "fdp_kernel.engines.postgres:PostgresEngine")
register("spark", ("spark",), "fdp_kernel.engines.spark:SparkEngine")
