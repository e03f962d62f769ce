"""The store's own record of ingests: ``_fdp_ingest`` (files loaded) and ``_fdp_quarantine``.

Both live in the node's store beside the catalogue tables, written in the same transaction
as the rows, so a load and its record are committed together or not at all. Neither is a
catalogue dataset: governed views, PostgreSQL and Spark nodes only ever see catalogue
datasets, so quarantined rows (which hold raw identifiers) never reach an analyst.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import duckdb

INGEST_TABLE = "_fdp_ingest"
QUARANTINE_TABLE = "_fdp_quarantine"
QUARANTINE_SEQ = "_fdp_quarantine_seq"

DDL = (
    f"""CREATE TABLE IF NOT EXISTS {INGEST_TABLE} (
  ingest_id VARCHAR NOT NULL,       -- one per `fdp ingest` run
  file_no INTEGER NOT NULL,         -- position of the file in the run
  file VARCHAR NOT NULL,            -- absolute path as read
  sha256 VARCHAR NOT NULL,          -- of the file's bytes
  bytes BIGINT NOT NULL,
  format VARCHAR NOT NULL,          -- csv, parquet, fhir
  recipe VARCHAR NOT NULL,          -- sha256 of dataset + mapping + delimiter + encoding
  datasets VARCHAR NOT NULL,        -- comma-separated
  status VARCHAR NOT NULL,          -- loaded, or skipped (identical file already loaded)
  rows_read BIGINT NOT NULL,
  rows_loaded BIGINT NOT NULL,
  rows_quarantined BIGINT NOT NULL,
  blank_lines BIGINT NOT NULL,
  user_id VARCHAR NOT NULL,
  started_at TIMESTAMP NOT NULL,
  finished_at TIMESTAMP NOT NULL,
  details VARCHAR NOT NULL,         -- JSON: counts per dataset
  PRIMARY KEY (ingest_id, file_no)
)""",
    f"CREATE SEQUENCE IF NOT EXISTS {QUARANTINE_SEQ}",
    f"""CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
  quarantine_id BIGINT PRIMARY KEY DEFAULT nextval('{QUARANTINE_SEQ}'),
  ingest_id VARCHAR NOT NULL,
  dataset VARCHAR,                  -- null: a FHIR resource no dataset takes
  source_file VARCHAR NOT NULL,
  source_line BIGINT NOT NULL,      -- CSV line, Parquet row, NDJSON line or Bundle entry
  reasons VARCHAR NOT NULL,         -- every check the row failed, '; '-separated
  raw VARCHAR NOT NULL,             -- the row as read (JSON object of source columns) or text
  raw_format VARCHAR NOT NULL,      -- fields (JSON object) or text
  quarantined_at TIMESTAMP NOT NULL,
  resolved_by VARCHAR,              -- ingest id of the load that re-read the fixed row
  resolved_at TIMESTAMP
)""",
)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)


@dataclass(frozen=True)
class Previous:
    """An earlier load of the same bytes with the same recipe."""

    ingest_id: str
    finished_at: dt.datetime
    rows_loaded: int
    rows_quarantined: int


def already_loaded(con: duckdb.DuckDBPyConnection, sha256: str, recipe: str) -> Previous | None:
    row = con.execute(
        f"SELECT ingest_id, finished_at, rows_loaded, rows_quarantined FROM {INGEST_TABLE} "
        "WHERE sha256 = ? AND recipe = ? AND status = 'loaded' ORDER BY finished_at DESC LIMIT 1",
        [sha256, recipe],
    ).fetchone()
    return Previous(*row) if row else None


def record(
    con: duckdb.DuckDBPyConnection,
    *,
    ingest_id: str,
    file_no: int,
    file: str,
    sha256: str,
    size: int,
    fmt: str,
    recipe: str,
    datasets: list[str],
    status: str,
    read: int,
    loaded: int,
    quarantined: int,
    blank: int,
    user: str,
    started: dt.datetime,
    finished: dt.datetime,
    details: dict,
) -> None:
    con.execute(
        f"INSERT INTO {INGEST_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            ingest_id,
            file_no,
            file,
            sha256,
            size,
            fmt,
            recipe,
            ",".join(datasets),
            status,
            read,
            loaded,
            quarantined,
            blank,
            user,
            started,
            finished,
            json.dumps(details, sort_keys=True),
        ],
    )
