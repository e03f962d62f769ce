"""Check a batch, route each row, write it: the loader inside one store transaction.

For each batch the loader runs the checks of ``validate.py`` into a temporary table, marks
duplicate keys within the file (the first occurrence wins; a later one is quarantined), and
then routes every row exactly once:

- **load**: every check passed. ``INSERT ... ON CONFLICT DO UPDATE``: a key already in the
  store (from an earlier file or run) is replaced by the new row, so a corrected row
  reloaded from the quarantine takes its place and reloading never duplicates;
- **pending**: the only problem is a reference to a dataset this run may still load (a FHIR
  Immunization before its Patient; an organisation before its parent ICB). Checked again
  when every file has been read (``finish``); loaded then, or quarantined;
- **quarantine**: with every reason, the source file and line, and the row as read.

The caller owns the transaction (``run.py``): nothing is visible until it commits.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from fdp_kernel.catalog import CATALOG, Dataset
from fdp_kernel.ingest.csvfile import Malformed, SourceBatch
from fdp_kernel.ingest.ledger import QUARANTINE_TABLE
from fdp_kernel.ingest.mapping import QUARANTINE_ID, Plan
from fdp_kernel.ingest.validate import (
    Context,
    lit,
    reference_checks_sql,
    references,
    row_checks_sql,
)
from fdp_kernel.stores import quote, sql_type

LOAD = "__row_reasons IS NULL AND __ref_reasons IS NULL"
PENDING = "__row_reasons IS NULL AND __ref_reasons IS NOT NULL AND __defer"
CANDIDATE = "__row_reasons IS NULL AND (__ref_reasons IS NULL OR __defer)"
SCAN_CHUNK_ROWS = 65_536


@dataclass
class Counts:
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "loaded": self.loaded, "quarantined": self.quarantined}


@dataclass
class FileState:
    """What the loader knows of one file while it is read."""

    number: int
    name: str
    counts: dict[str | None, Counts] = field(default_factory=lambda: defaultdict(Counts))
    blank: int = 0
    batches: int = 0
    keyed: set[str] = field(default_factory=set)  # datasets with rows in __keys_<dataset>
    fresh: dict[str, bool] = field(default_factory=dict)  # dataset empty when the file began


def _json_object(header: list[str]) -> str:
    """SQL for the row as read: a JSON object of source column name -> value."""
    pairs = ", ".join(f"{lit(name)}, s.c{k}" for k, name in enumerate(header))
    return f"json_object({pairs})" if pairs else "'{}'"


def _key_match(ds: Dataset, left: str, right: str, keys=None) -> str:
    keys = ds.primary_key if keys is None else keys
    return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in keys)


def _file_key(ds: Dataset) -> tuple[str, ...]:
    """The key columns worth remembering across a file's batches: not ``org_code`` where every
    row that passes has the node's own (kept per row, it would only take memory)."""
    if ds.org_column and ds.column("org_code").references and len(ds.primary_key) > 1:
        return tuple(k for k in ds.primary_key if k != "org_code")
    return ds.primary_key


def _key_text(ds: Dataset, alias: str) -> str:
    parts = [
        f"{lit(k + ' ')} || '''' || CAST({alias}.{quote(k)} AS VARCHAR) || ''''"
        for k in ds.primary_key
    ]
    return " || ', ' || ".join(parts)


class Loader:
    """Loads batches into the store open on ``con`` (inside the caller's transaction)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, ingest_id: str, ctx: Context, now: dt.datetime
    ) -> None:
        self.con = con
        self.ingest_id = ingest_id
        self.ctx = ctx
        self.now = now
        self.pending: dict[str, dict[int, FileState]] = defaultdict(dict)  # dataset -> files

    # -- one batch ----------------------------------------------------------------------
    def load(
        self,
        state: FileState,
        dataset: str | None,
        plan: Plan | None,
        header: list[str],
        batch: SourceBatch,
        null_values: tuple[str, ...] = ("",),
    ) -> None:
        state.batches += 1
        state.blank += batch.blank
        counts = state.counts[dataset]
        if batch.malformed:
            self._quarantine_malformed(state, dataset, batch.malformed)
            counts.read += len(batch.malformed)
            counts.quarantined += len(batch.malformed)
        n = batch.table.num_rows
        if n == 0:
            return
        if plan is None or dataset is None:
            raise AssertionError("rows to load need a dataset and a plan")
        ds = plan.dataset
        table = batch.table.append_column("__i", pa.array(np.arange(n, dtype=np.int64)))
        table = table.append_column("__line", pa.array(batch.lines, type=pa.int64()))
        # several record batches: DuckDB scans them on all its threads
        table = pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_CHUNK_ROWS))
        con = self.con
        con.register("__src", table)
        try:
            sources = {name: (f"c{k}", table.schema.field(k).type) for k, name in enumerate(header)}
            checked = row_checks_sql(plan, sources, self.ctx, null_values)
            keys = ", ".join(quote(k) for k in ds.primary_key)
            # pass 1: every check; keep what routing needs (not the typed rows: writing
            # them to a temporary table would cost as much as writing them to the store)
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE __checked AS SELECT __i, __line, {keys}, "
                f"hash({keys}) AS __h, __row_reasons, __ref_reasons, __defer FROM ("
                + reference_checks_sql(ds, f"({checked})", self.ctx, final=False)
                + ")"
            )
            typed = f"({row_checks_sql(plan, sources, self.ctx, null_values, with_reasons=False)})"
            self._mark_duplicates(state, ds)
            loaded, pending = con.execute(
                f"SELECT count(*) FILTER (WHERE {LOAD}), count(*) FILTER (WHERE {PENDING}) "
                "FROM __checked"
            ).fetchone()
            quarantined = n - loaded - pending
            raw = _json_object(header)
            if quarantined:
                self._quarantine_checked(state, dataset, table, raw)
            if pending:
                self._hold(state, ds, raw, typed)
            if loaded:  # pass 2: convert again and write, leaving out the rows routed above
                routed = f"(SELECT __i FROM __checked WHERE NOT ({LOAD}))"
                rows = f"{typed} t ANTI JOIN {routed} r ON r.__i = t.__i" if loaded < n else typed
                if ds.name not in state.fresh:
                    state.fresh[ds.name] = self._empty(ds)
                self._upsert(ds, rows, "true", replace=not state.fresh[ds.name])
            self._remember_keys(state, ds)
            if QUARANTINE_ID in header:
                ref = sources[QUARANTINE_ID][0]
                con.execute(
                    f"UPDATE {QUARANTINE_TABLE} SET resolved_by = ?, resolved_at = ? "
                    f"WHERE resolved_by IS NULL AND quarantine_id IN "
                    f"(SELECT TRY_CAST({ref} AS BIGINT) FROM __src)",
                    [self.ingest_id, self.now],
                )
        finally:
            con.unregister("__src")
        counts.read += n
        counts.loaded += loaded
        counts.pending += pending
        counts.quarantined += quarantined

    def _quarantine_checked(
        self, state: FileState, dataset: str, table: pa.Table, raw: str
    ) -> None:
        """Quarantine the rows that failed a check, with their source values. The failing
        rows are taken from the batch by position (``__i``), so the cost follows the
        quarantined rows, not the batch (a join would scan every source value)."""
        failed = self.con.execute(
            "SELECT __i, __line, concat_ws('; ', __row_reasons, __ref_reasons) AS __reasons "
            f"FROM __checked WHERE NOT ({LOAD}) AND NOT ({PENDING}) ORDER BY __i"
        ).fetch_arrow_table()
        rows = table.take(failed.column("__i"))
        rows = rows.append_column("__reasons", failed.column("__reasons"))
        self.con.register("__failed", rows)
        try:
            self.con.execute(
                f"INSERT INTO {QUARANTINE_TABLE} (ingest_id, dataset, source_file, "
                "source_line, reasons, raw, raw_format, quarantined_at) "
                f"SELECT ?, ?, ?, s.__line, s.__reasons, {raw}, 'fields', ? FROM __failed s "
                "ORDER BY s.__line",
                [self.ingest_id, dataset, state.name, self.now],
            )
        finally:
            self.con.unregister("__failed")

    def _quarantine_malformed(
        self, state: FileState, dataset: str | None, rows: list[Malformed]
    ) -> None:
        self.con.executemany(
            f"INSERT INTO {QUARANTINE_TABLE} (ingest_id, dataset, source_file, source_line, "
            "reasons, raw, raw_format, quarantined_at) VALUES (?, ?, ?, ?, ?, ?, 'text', ?)",
            [
                [self.ingest_id, dataset, state.name, m.line, m.reason, m.raw, self.now]
                for m in rows
            ],
        )

    def _mark_duplicates(self, state: FileState, ds: Dataset) -> None:
        """A key seen earlier in the file: quarantine the later row, naming the first line.

        Keys are compared by hash first (integers: cheap), then exactly where hashes meet.
        """
        keys = ", ".join(quote(k) for k in ds.primary_key)
        repeated = self.con.execute(
            f"SELECT count(*) FROM (SELECT __h FROM __checked WHERE {CANDIDATE} GROUP BY __h "
            "HAVING count(*) > 1)"
        ).fetchone()[0]
        if repeated:
            self.con.execute(
                "UPDATE __checked SET __row_reasons = 'duplicate key (' || "
                f"{_key_text(ds, '__checked')} || '): also on line ' || d.first || "
                f"' of this file' FROM (SELECT {keys}, min(__line) AS first FROM __checked "
                f"WHERE {CANDIDATE} GROUP BY ALL HAVING count(*) > 1) d "
                f"WHERE {_key_match(ds, '__checked', 'd')} AND __checked.__line > d.first "
                f"AND {CANDIDATE}"
            )
        if ds.name in state.keyed and self._hash_meets(ds):
            self.con.execute(
                "UPDATE __checked SET __row_reasons = 'duplicate key (' || "
                f"{_key_text(ds, '__checked')} || '): also on line ' || k.__line || "
                f"' of this file' FROM {self._keys_table(ds)} k WHERE k.__h = __checked.__h "
                f"AND {_key_match(ds, '__checked', 'k', _file_key(ds))} AND {CANDIDATE}"
            )

    def _hash_meets(self, ds: Dataset) -> bool:
        """Whether a key hash of this batch was seen earlier in the file (integers only)."""
        return bool(
            self.con.execute(
                f"SELECT count(*) FROM __checked c SEMI JOIN {self._keys_table(ds)} k "
                "ON k.__h = c.__h"
            ).fetchone()[0]
        )

    def _keys_table(self, ds: Dataset) -> str:
        return quote(f"__keys_{ds.name}")

    def _remember_keys(self, state: FileState, ds: Dataset) -> None:
        """Keys of this file's rows so far (loaded or pending), to find later duplicates."""
        keys = ", ".join(quote(k) for k in _file_key(ds))
        table = self._keys_table(ds)
        select = f"SELECT __h, {keys}, __line FROM __checked WHERE {CANDIDATE}"
        if ds.name not in state.keyed:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}")
            state.keyed.add(ds.name)
        else:
            self.con.execute(f"INSERT INTO {table} {select}")

    def end_file(self, state: FileState) -> None:
        for name in state.keyed:
            self.con.execute(f"DROP TABLE IF EXISTS {self._keys_table(CATALOG[name])}")
        state.keyed.clear()

    def _empty(self, ds: Dataset) -> bool:
        return self.con.execute(f"SELECT count(*) FROM {quote(ds.name)}").fetchone()[0] == 0

    def _upsert(self, ds: Dataset, relation: str, where: str, *, replace: bool = True) -> None:
        """Insert, replacing rows whose key exists. Into a table that was empty when the file
        began a plain insert is the same (the file's own repeated keys never get this far)
        and holds less in memory until the commit."""
        cols = ", ".join(quote(c) for c in ds.column_names)
        if not replace:
            self.con.execute(
                f"INSERT INTO {quote(ds.name)} ({cols}) SELECT {cols} FROM {relation} WHERE {where}"
            )
            return
        others = [c for c in ds.column_names if c not in ds.primary_key]
        action = (
            "DO UPDATE SET " + ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in others)
            if others
            else "DO NOTHING"
        )
        keys = ", ".join(quote(k) for k in ds.primary_key)
        self.con.execute(
            f"INSERT INTO {quote(ds.name)} ({cols}) SELECT {cols} FROM {relation} WHERE {where} "
            f"ON CONFLICT ({keys}) {action}"
        )

    # -- pending references -------------------------------------------------------------
    def _pending_table(self, ds: Dataset) -> str:
        return quote(f"__pending_{ds.name}")

    def _hold(self, state: FileState, ds: Dataset, raw: str, typed: str) -> None:
        table = self._pending_table(ds)
        if ds.name not in self.pending:
            cols = ", ".join(f"{quote(c.name)} {sql_type(c.dtype)}" for c in ds.columns)
            self.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} ({cols}, __line BIGINT, __file INTEGER, "
                "__raw VARCHAR)"
            )
        self.pending[ds.name][state.number] = state
        names = ", ".join(f"t.{quote(c)}" for c in ds.column_names)
        self.con.execute(
            f"INSERT INTO {table} SELECT {names}, t.__line, {state.number}, {raw} FROM {typed} t "
            f"JOIN __src s ON s.__i = t.__i WHERE t.__i IN (SELECT __i FROM __checked WHERE "
            f"{PENDING})"
        )

    def finish(self) -> None:
        """Check held rows again now that every file is read: load those whose references
        now resolve (repeating while any do), quarantine the rest with their reasons."""
        progress = True
        while progress:
            progress = False
            for name in _dependency_order(self.pending):
                ds = CATALOG[name]
                table = self._pending_table(ds)
                self.con.execute(
                    "CREATE OR REPLACE TEMP TABLE __recheck AS "
                    + reference_checks_sql(ds, table, self.ctx, final=True)
                )
                done = self.con.execute(
                    "SELECT __file, count(*) FROM __recheck WHERE __ref_reasons IS NULL "
                    "GROUP BY __file"
                ).fetchall()
                if not done:
                    continue
                progress = True
                self._upsert(ds, "__recheck", "__ref_reasons IS NULL")
                self.con.execute(
                    f"DELETE FROM {table} WHERE (__file, __line) IN (SELECT __file, __line "
                    "FROM __recheck WHERE __ref_reasons IS NULL)"
                )
                for number, n in done:
                    counts = self.pending[name][number].counts[name]
                    counts.pending -= n
                    counts.loaded += n
        for name, files in self.pending.items():
            ds = CATALOG[name]
            table = self._pending_table(ds)
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE __recheck AS "
                + reference_checks_sql(ds, table, self.ctx, final=True)
            )
            for number, state in files.items():
                n = self.con.execute(
                    f"INSERT INTO {QUARANTINE_TABLE} (ingest_id, dataset, source_file, "
                    "source_line, reasons, raw, raw_format, quarantined_at) SELECT ?, ?, ?, "
                    "__line, __ref_reasons, __raw, 'fields', ? FROM __recheck WHERE __file = ?",
                    [self.ingest_id, name, state.name, self.now, number],
                ).fetchone()[0]
                counts = state.counts[name]
                counts.pending -= n
                counts.quarantined += n
            self.con.execute(f"DROP TABLE {table}")
        self.pending.clear()


def _dependency_order(names) -> list[str]:
    """Datasets that others reference first (patients before vaccinations)."""
    order: list[str] = []

    def visit(name: str, seen: tuple[str, ...] = ()) -> None:
        if name in order or name in seen:
            return
        for ref in references(CATALOG[name]):
            if ref.dataset in names:
                visit(ref.dataset, (*seen, name))
        order.append(name)

    for name in sorted(names):
        visit(name)
    return order
