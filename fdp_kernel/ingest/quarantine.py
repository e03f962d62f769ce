"""Quarantined rows: what is open, why, and an export to fix and reload.

An export is a CSV with the row's source columns as read, so the same mapping loads it
again, plus ``_fdp_quarantine_id``, ``_fdp_source_file``, ``_fdp_source_line`` and
``_fdp_reasons`` (and ``_fdp_raw``: the text of a line that could not be split into
fields). Fix the values, then ``fdp ingest`` the file: each row carrying a
``_fdp_quarantine_id`` marks its quarantine entry resolved by that ingest, whether it now
loads or is quarantined again under a new entry.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import duckdb

from fdp_kernel.errors import StoreError, UsageError
from fdp_kernel.ingest.ledger import INGEST_TABLE, QUARANTINE_TABLE
from fdp_kernel.ingest.mapping import QUARANTINE_ID

EXPORT_COLUMNS = (QUARANTINE_ID, "_fdp_source_file", "_fdp_source_line", "_fdp_reasons")


def reason_counts(
    con: duckdb.DuckDBPyConnection,
    *,
    ingest_id: str | None = None,
    open_only: bool = True,
    limit: int = 10,
) -> list[tuple[str | None, str, int]]:
    """(dataset, reason with its values elided, rows) for the most frequent reasons."""
    where, params = ["true"], []
    if ingest_id:
        where.append("ingest_id = ?")
        params.append(ingest_id)
    if open_only:
        where.append("resolved_by IS NULL")
    rows = con.execute(
        "SELECT dataset, regexp_replace(reason, '''[^'']*''', '…', 'g') AS reason, count(*) AS n "
        f"FROM (SELECT dataset, unnest(string_split(reasons, '; ')) AS reason FROM "
        f"{QUARANTINE_TABLE} WHERE {' AND '.join(where)}) GROUP BY ALL "
        "ORDER BY n DESC, dataset, reason LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [(d, r, int(n)) for d, r, n in rows]


def _open(store: Path) -> duckdb.DuckDBPyConnection:
    if not Path(store).exists():
        raise StoreError(f"store {store} does not exist")
    try:
        con = duckdb.connect(str(store), read_only=True)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open {store}: {exc}") from None
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if QUARANTINE_TABLE not in tables:
        con.close()
        raise UsageError(f"nothing has been ingested into {store} yet: no quarantine")
    return con


def summary(store: Path, org: str) -> str:
    """Open quarantined rows per ingest and dataset, the main reasons, and the next step."""
    con = _open(store)
    try:
        groups = con.execute(
            f"SELECT q.ingest_id, coalesce(q.dataset, '(no dataset)'), count(*), "
            f"min(i.finished_at), string_agg(DISTINCT q.source_file, ', ') FROM "
            f"{QUARANTINE_TABLE} q LEFT JOIN (SELECT DISTINCT ingest_id, finished_at FROM "
            f"{INGEST_TABLE}) i USING (ingest_id) WHERE q.resolved_by IS NULL "
            "GROUP BY ALL ORDER BY 4, 2"
        ).fetchall()
        resolved = con.execute(
            f"SELECT count(*) FROM {QUARANTINE_TABLE} WHERE resolved_by IS NOT NULL"
        ).fetchone()[0]
        reasons = reason_counts(con, limit=15)
    finally:
        con.close()
    total = sum(g[2] for g in groups)
    lines = [f"{org}: {total:,} quarantined rows open, {resolved:,} resolved by a reload"]
    for ingest_id, name, n, _when, files in groups:
        lines.append(f"  {ingest_id}  {name}: {n:,} rows from {files}")
    if reasons:
        lines.append("reasons (most frequent first):")
        lines += [f"  {n:>8,}  {d or '(no dataset)'}: {r}" for d, r, n in reasons]
    if groups:
        name = groups[0][1]
        lines.append(
            f"export to fix: fdp ingest --org {org} --quarantine --dataset {name} --export "
            f"fix.csv; then: fdp ingest --org {org} --dataset {name} [--mapping ...] fix.csv"
        )
    return "\n".join(lines)


def export(
    store: Path, out: Path, *, dataset: str | None = None, ingest_id: str | None = None
) -> int:
    """Write the open quarantined rows of one dataset to CSV; the number of rows written."""
    con = _open(store)
    try:
        where, params = ["resolved_by IS NULL"], []
        if ingest_id:
            where.append("ingest_id = ?")
            params.append(ingest_id)
        names = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT dataset FROM {QUARANTINE_TABLE} WHERE {' AND '.join(where)}",
                params,
            ).fetchall()
        ]
        if dataset is None:
            if len(names) > 1:
                listed = ", ".join(str(n) for n in names)
                raise UsageError(
                    f"open quarantined rows are of several datasets ({listed}): "
                    "give one with --dataset"
                )
            dataset = names[0] if names else None
        if dataset is None:
            where.append("dataset IS NULL")
        else:
            where.append("dataset = ?")
            params.append(dataset)
        rows = con.execute(
            f"SELECT quarantine_id, source_file, source_line, reasons, raw, raw_format FROM "
            f"{QUARANTINE_TABLE} WHERE {' AND '.join(where)} ORDER BY quarantine_id",
            params,
        ).fetchall()
    finally:
        con.close()
    records, columns = [], {}
    for qid, source, line, reasons, raw, fmt in rows:
        values = json.loads(raw) if fmt == "fields" else {}
        for key in values:
            columns.setdefault(key, None)
        records.append((qid, source, line, reasons, values, raw if fmt == "text" else ""))
    header = [*EXPORT_COLUMNS, *columns, "_fdp_raw"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for qid, source, line, reasons, values, text in records:
            cells = [_cell(values.get(c)) for c in columns]
            writer.writerow([qid, source, line, reasons, *cells, text])
    return len(records)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
