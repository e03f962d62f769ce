"""Differencing protection: two overlapping releases must not reveal a small group.

Rounding blurs differences, but an analyst could still release a count over some records and
then the same count over all but a few of them. The ledger remembers every released cell of a
workspace (its exact counts and how to list its records). When a new cell's exact count is
within 1-7 of an earlier cell's, the ledger lists both cells' records (a multiset of row hashes
over the aggregated relation's columns) and, if one contains the other, hides the new cell.

Scope (docs/governance.md): cells of aggregates whose input rows can be listed with the same
columns; within one workspace session, or, with a ``journal`` (the node service keeps one per
person, organisation and purpose), across every session. Where records cannot be compared,
rounding and suppression remain the protection.
"""

from __future__ import annotations

import datetime as dt
import numbers
from dataclasses import dataclass, field
from typing import Any, Protocol

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from ibis.common.exceptions import UnsupportedOperationError

_THROUGH = (ops.Project, ops.Filter, ops.Sort, ops.Limit)


def top_aggregate(expr: ir.Table) -> ops.Aggregate | None:
    """The aggregation a released table is computed by (through projections, filters, sorts)."""
    rel = expr.op()
    while not isinstance(rel, ops.Aggregate):
        if not isinstance(rel, _THROUGH):
            return None
        rel = rel.parent
    return rel


def carried(expr: ir.Table, aggregate: ops.Aggregate, names) -> bool:
    """True when columns ``names`` of ``aggregate`` reach ``expr``'s output unchanged (so the
    released rows can stand for the aggregate's own; filters only drop rows)."""
    for name in names:
        rel = expr.op()
        while rel is not aggregate:
            if isinstance(rel, ops.Project):
                value = rel.values.get(name)
                if not (isinstance(value, ops.Field) and value.name == name):
                    return False
            elif not isinstance(rel, _THROUGH):
                return False
            rel = rel.parent
    return True


@dataclass
class _Cell:
    key: tuple
    counts: tuple[int, ...]
    release: int


class Journal(Protocol):
    """Where a ledger keeps its releases between sessions: ``records()`` of earlier ones,
    ``append(record)``, and ``encode``/``decode`` of a release's relation as text."""

    def records(self) -> list[dict[str, Any]]: ...

    def append(self, record: dict[str, Any]) -> None: ...

    def encode(self, expr: ir.Table) -> str: ...

    def decode(self, text: str) -> ir.Table: ...


@dataclass
class _Stored:
    """The relation of a release of an earlier session, decoded only when needed."""

    text: str


def plain_key(key: tuple) -> tuple:
    """A cell's key in plain, JSON-safe values, equal whatever engine or session produced it."""
    out = []
    for value in key:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            out.append(None)
        elif isinstance(value, dt.datetime | pd.Timestamp):
            out.append(pd.Timestamp(value).isoformat())
        elif isinstance(value, dt.date):
            out.append(value.isoformat())
        elif isinstance(value, bool | np.bool_):
            out.append(bool(value))
        elif isinstance(value, numbers.Integral):
            out.append(int(value))
        elif isinstance(value, numbers.Real):
            out.append(float(value))
        else:
            out.append(str(value))
    return tuple(out)


@dataclass
class Ledger:
    min_count: int
    cells: dict[tuple[str, int], list[_Cell]] = field(default_factory=dict)  # (sig, count)
    parents: list[tuple[Any, tuple[str, ...], str]] = field(default_factory=list)
    journal: Journal | None = None
    _members: dict[int, dict[tuple, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for record in self.journal.records() if self.journal is not None else ():
            release = len(self.parents)
            groups, signature = tuple(record["groups"]), record["signature"]
            self.parents.append((_Stored(record["parent"]), groups, signature))
            for key, count in record["cells"]:
                cell = _Cell(tuple(key), (int(count),), release)
                self.cells.setdefault((signature, int(count)), []).append(cell)

    def _same_partition(self, release: int, parent: ir.Table, groups: tuple[str, ...]) -> bool:
        """Cells of one grouping of one relation are identical or disjoint: never nested."""
        old_parent, old_groups, _ = self.parents[release]
        if old_groups != groups:
            return False
        if isinstance(old_parent, _Stored):
            return self.journal is not None and old_parent.text == self.journal.encode(parent)
        return old_parent.op() == parent.op()

    def members(self, release: int, run) -> dict[tuple, np.ndarray]:
        """The records of each cell of an earlier (or the current) release, listed once."""
        if release not in self._members:
            parent, groups, _ = self.parents[release]
            if isinstance(parent, _Stored):
                parent = self.journal.decode(parent.text)  # type: ignore[union-attr]
            self._members[release] = _members(parent, groups, run)
        return self._members[release]

    def check(self, aggregate: ops.Aggregate, exact: pd.DataFrame, run) -> np.ndarray:
        """Rows of ``exact`` (the aggregate's own output) to hide; then remember them.

        ``run(expr)`` executes an expression through the workspace's open gate.
        """
        return self.check_all(aggregate, exact, run)[None]

    def check_all(
        self, aggregate: ops.Aggregate, exact: pd.DataFrame, run
    ) -> dict[str | None, np.ndarray]:
        """What to hide: ``None`` -> rows whose every count is hidden (their records are
        within 1-7 of an earlier cell's); a filtered count's column -> the rows where that
        count alone is hidden. Each filtered count (``count(where=...)``) is a cell of its own,
        over the records its condition keeps, compared with every earlier cell and with the
        release's other cells, so several filtered counts cannot difference a small group."""
        groups = tuple(aggregate.groups)
        parent = aggregate.parent.to_expr()
        keys = [plain_key(tuple(r)) for r in exact[list(groups)].itertuples(index=False)]
        counts = [int(n) for n in _record_counts(aggregate, exact, parent, groups, keys, run)]
        out = {None: self._cells(parent, groups, keys, counts, run)}
        for name, where in _filtered_counts(aggregate).items():
            if exact[name].isna().all():
                continue
            cut = parent.filter(where.to_expr())
            filtered = [0 if pd.isna(n) else int(n) for n in exact[name]]
            out[name] = self._cells(cut, groups, keys, filtered, run)
        return out

    def _cells(self, parent: ir.Table, groups, keys, numbers, run) -> np.ndarray:
        # Column order does not matter: the same relation read in another session, or through
        # a view listing the columns in another order, has the same records.
        signature = ",".join(f"{n}:{t}" for n, t in sorted(parent.schema().items()))
        counts = [(n,) for n in numbers]
        hide = np.zeros(len(keys), dtype=bool)
        candidates = []
        for i, (n,) in enumerate(counts):
            if n < self.min_count:
                continue  # suppressed anyway: a difference needs two shown figures
            for d in range(1, self.min_count):
                for near in (n - d, n + d):
                    candidates += [
                        (i, cell)
                        for cell in self.cells.get((signature, near), ())
                        if not self._same_partition(cell.release, parent, groups)
                    ]
        release = len(self.parents)
        self.parents.append((parent, groups, signature))
        for i, cell in candidates:
            a = self.members(release, run).get(keys[i], np.empty(0, np.int64))
            b = self.members(cell.release, run).get(cell.key, np.empty(0, np.int64))
            if _nested_small(a, b, self.min_count):
                hide[i] = True
        kept = []
        for key, count, hidden in zip(keys, counts, hide, strict=True):
            if not hidden and count[0] >= self.min_count:
                self.cells.setdefault((signature, count[0]), []).append(_Cell(key, count, release))
                kept.append([list(key), count[0]])
        if self.journal is not None:
            record = {"parent": self.journal.encode(parent), "groups": list(groups)}
            self.journal.append(record | {"signature": signature, "cells": kept})
        return hide


def _filtered_counts(aggregate: ops.Aggregate) -> dict[str, ops.Value]:
    """The release's counts of records under a condition: metric name -> the condition."""
    out = {}
    for name, metric in aggregate.metrics.items():
        core = metric
        while isinstance(core, ops.Alias | ops.Cast):
            core = core.arg
        if isinstance(core, ops.CountStar) and core.where is not None:
            out[name] = core.where
        elif isinstance(core, ops.Count) and core.where is not None:
            out[name] = ops.And(core.where, ops.NotNull(core.arg))
    return out


def _record_counts(aggregate, exact, parent, groups, keys, run) -> list[int]:
    """Records per cell: a count(*) the release already has, else one more grouped count."""
    for name, metric in aggregate.metrics.items():
        if isinstance(metric, ops.CountStar) and metric.where is None:
            return exact[name].astype("int64").tolist()
    counted = run(
        parent.group_by(list(groups)).agg(_fdp_n=parent.count())
        if groups
        else parent.agg(_fdp_n=parent.count())
    )
    by_key = {plain_key(tuple(r[:-1])): r[-1] for r in counted.itertuples(index=False)}
    return [int(by_key.get(k, 0)) for k in keys]


def _members(parent: ir.Table, groups: tuple[str, ...], run) -> dict[tuple, np.ndarray]:
    """Sorted row hashes (a multiset) of each group's records."""
    columns = sorted(parent.columns)  # a record's hash does not depend on the column order
    try:
        row = ibis.struct({c: parent[c] for c in columns}).hash()
        listed = run(parent.select(*groups, _fdp_row=row))
    except UnsupportedOperationError:  # PostgreSQL cannot hash a row: hash its text instead
        text = [parent[c].cast("string").fill_null("\x1e") for c in columns]
        row = ibis.literal("\x1f").join(text).hash()
        listed = run(parent.select(*groups, _fdp_row=row))
    out: dict[tuple, np.ndarray] = {}
    if groups:
        for key, frame in listed.groupby(list(groups), dropna=False, sort=False):
            key = plain_key(key if isinstance(key, tuple) else (key,))
            out[key] = np.sort(frame["_fdp_row"].to_numpy(dtype=np.int64))
    else:
        out[()] = np.sort(listed["_fdp_row"].to_numpy(dtype=np.int64))
    return out


def _nested_small(a: np.ndarray, b: np.ndarray, min_count: int) -> bool:
    """True when one multiset contains the other and they differ by 1..min_count-1 rows."""
    small, large = (a, b) if a.size <= b.size else (b, a)
    difference = large.size - small.size
    if not 0 < difference < min_count:
        return False
    values, counts = np.unique(small, return_counts=True)
    lvalues, lcounts = np.unique(large, return_counts=True)
    idx = np.searchsorted(lvalues, values)
    idx = np.minimum(idx, max(lvalues.size - 1, 0))
    found = (lvalues.size > 0) & (lvalues[idx] == values) & (lcounts[idx] >= counts)
    return bool(np.all(found))
