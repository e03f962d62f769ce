"""One ``fdp ingest`` run: files in, one transaction, every row accounted for, audited.

The run opens the node's DuckDB store read-write, begins one transaction, reads each file
in batches (the next batch is parsed while the current one is checked and written), checks
and routes every row (``load.py``), checks held references once every file is read, checks
the accounting (rows read = rows loaded + rows quarantined, per file and dataset), records
each file in ``_fdp_ingest``, appends an ``ingest`` entry per file to the node's audit log,
and commits. Any error rolls back: the store is as it was. A crash (power cut, SIGKILL)
leaves an uncommitted transaction, which DuckDB discards on the next open.

A file whose bytes and recipe (dataset, mapping, delimiter, encoding) were loaded before is
skipped and reported as such; ``force`` loads it again (rows are replaced, not duplicated).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import duckdb

from fdp_kernel.catalog import CATALOG
from fdp_kernel.catalog import dataset as catalogue_dataset
from fdp_kernel.config import Federation, Organisation
from fdp_kernel.errors import FdpError, StoreError, UsageError
from fdp_kernel.ingest import ledger
from fdp_kernel.ingest.auditing import AuditFailed, audit_failure, audit_run
from fdp_kernel.ingest.csvfile import CsvFile, Malformed, SourceBatch
from fdp_kernel.ingest.load import FileState, Loader
from fdp_kernel.ingest.mapping import IDENTITY, SourceMapping, check_encoding, load_mapping, resolve
from fdp_kernel.ingest.quarantine import reason_counts
from fdp_kernel.ingest.readers import ParquetFile, fhir_batches, file_format, read_ahead
from fdp_kernel.ingest.report import FileReport, IngestReport
from fdp_kernel.ingest.validate import Context
from fdp_kernel.progress import Progress, Silent
from fdp_kernel.stores import META_TABLE, arrow_schema, create_table_sql, quote, write_store
from fdp_kernel.version import __version__

DEFAULT_BATCH_ROWS = 1_000_000


def _fhir_datasets() -> set[str]:
    """Datasets FHIR resources map onto: any of them may still arrive during a FHIR run."""
    from fdp_kernel.ingest.fhir_map import MAPPERS

    return {name for name, _ in MAPPERS.values()}


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _recipe(fmt: str, dataset: str | None, mapping: SourceMapping, delimiter: str, encoding: str):
    doc = {"format": fmt, "dataset": dataset, "mapping": mapping.fingerprint()}
    if fmt == "csv":
        doc |= {"delimiter": delimiter, "encoding": encoding}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def store_of(org: Organisation) -> Path:
    """The DuckDB file of a node; ingest refuses PostgreSQL and Spark nodes, saying why."""
    if org.engine != "duckdb":
        raise StoreError(
            f"{org.code}'s store is {org.store}: `fdp ingest` writes DuckDB node stores. Fix: "
            "ingest into a DuckDB store, then copy it into PostgreSQL with "
            "fdp_kernel.engines.postgres_policy.load_store (see docs/postgres.md)"
        )
    return Path(org.store)


def _create_store(path: Path, org: Organisation) -> None:
    """An empty store with the catalogue tables the organisation's type holds."""
    held = [ds for ds in CATALOG.values() if org.org_type in ds.held_by]
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "org_code": org.code,
        "org_type": org.org_type,
        "generator": f"fdp {__version__} ingest",
        "synthetic": "false",
    }
    write_store(path, {ds: arrow_schema(ds).empty_table() for ds in held}, meta)


def _connect(path: Path, org: Organisation) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise StoreError(
            f"cannot open {path} for writing: {exc}. If another process (a notebook, a report) "
            "has it open, wait for it to finish and run `fdp ingest` again"
        ) from None
    try:
        found = dict(con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    except duckdb.Error:
        con.close()
        raise StoreError(f"{path} is not an fdp node store (it has no {META_TABLE})") from None
    if found.get("org_code") != org.code:
        con.close()
        raise StoreError(f"{path} is the store of {found.get('org_code')!r}, not of {org.code}")
    return con


def _held(org: Organisation, name: str) -> None:
    ds = catalogue_dataset(name)
    if org.org_type not in ds.held_by:
        raise UsageError(
            f"{org.code} is a {org.org_type} node; its store does not hold {name} (held by "
            f"{', '.join(ds.held_by)} nodes)"
        )


class _Throttle:
    """Progress lines on standard error, at most one a second per file."""

    def __init__(self, progress: Progress, name: str, total: int, unit: str) -> None:
        self.progress, self.name, self.total, self.unit = progress, name, total, unit
        self.last = 0.0

    def __call__(self, rows: int, position: int, *, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < 1.0:
            return
        self.last = now
        share = f" ({100 * position / self.total:.0f}%)" if self.total and position else ""
        self.progress.step(f"{self.name}: {rows:,} rows read{share}")


def ingest(
    fed: Federation,
    org_code: str,
    paths: Sequence[Path],
    *,
    user: str,
    dataset: str | None = None,
    mapping: Path | None = None,
    as_of: dt.date | None = None,
    delimiter: str | None = None,
    encoding: str | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    force: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> IngestReport:
    """Load ``paths`` into ``org_code``'s store; see the module docstring."""
    started = time.perf_counter()
    progress = progress or Silent()
    org = fed.org(org_code)
    store = store_of(org)
    if not paths:
        raise UsageError("give at least one file to ingest")
    if batch_rows < 1:
        raise UsageError(f"--batch-rows must be at least 1 (got {batch_rows})")
    paths = [Path(p) for p in paths]
    formats = [file_format(p) for p in paths]
    source_mapping = load_mapping(mapping, dataset) if mapping else IDENTITY
    dataset = dataset or source_mapping.dataset
    if dataset is None and any(f != "fhir" for f in formats):
        raise UsageError(
            "--dataset is needed for CSV and Parquet files (e.g. --dataset rtt_pathways; "
            "`fdp catalog` lists the datasets); FHIR files route each resource to its dataset"
        )
    if dataset:
        _held(org, dataset)
    delimiter = delimiter or source_mapping.delimiter or ","
    if len(delimiter) != 1:
        raise UsageError(f"--delimiter must be one character, not {delimiter!r}")
    encoding = check_encoding(encoding or source_mapping.encoding or "utf-8")
    as_of = as_of or fed.as_of or dt.date.today()
    progress.step(f"hashing {len(paths)} file(s)")
    hashes = [sha256_of(p) for p in paths]
    if not store.exists():
        progress.step(f"creating an empty store for {org.code}: {store}")
        _create_store(store, org)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    ingest_id = f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    deferrable = (_fhir_datasets() if "fhir" in formats else set()) | {dataset} - {None}
    ctx = Context(org=org.code, as_of=as_of, deferrable=frozenset(deferrable))
    report = IngestReport(ingest_id, org.code, store, as_of, dry_run=dry_run)
    con = _connect(store, org)
    try:
        con.execute("SET preserve_insertion_order = false")  # tables have no row order
        con.execute("BEGIN TRANSACTION")
        ledger.ensure_tables(con)
        held = _ensure_dataset_tables(con, org)
        before = _row_counts(con, held)
        loader = Loader(con, ingest_id, ctx, now)
        seen: dict[tuple[str, str], int] = {}
        for number, (path, fmt, digest) in enumerate(zip(paths, formats, hashes, strict=True)):
            name = str(path.resolve())
            recipe = _recipe(
                fmt, dataset if fmt != "fhir" else None, source_mapping, delimiter, encoding
            )
            file_report = FileReport(path, fmt, digest, path.stat().st_size, recipe)
            file_report.planned = dataset if fmt != "fhir" else None
            report.files.append(file_report)
            previous = ledger.already_loaded(con, digest, recipe)
            twin = seen.get((digest, recipe))
            if not force and (previous or twin is not None):
                file_report.status = "skipped"
                file_report.previous = (
                    previous.ingest_id if previous else f"{report.files[twin].path} in this run"
                )
                continue
            seen[(digest, recipe)] = number
            state = FileState(number, name)
            throttle = _Throttle(progress, path.name, *_total(path, fmt))
            for ds_name, plan, header, batch, nulls in _batches(
                path, fmt, org, dataset, source_mapping, delimiter, encoding, batch_rows
            ):
                loader.load(state, ds_name, plan, header, batch, nulls)
                throttle(sum(c.read for c in state.counts.values()), batch.position)
                if plan is not None:
                    file_report.unused, file_report.empty = plan.unused, plan.empty
            loader.end_file(state)
            file_report.state = state
        if loader.pending:
            progress.step("checking references held until every file was read")
        loader.finish()
        after = _row_counts(con, held)
        report.finish(before, after)
        _check_accounting(con, report, ingest_id)
        report.reasons = reason_counts(con, ingest_id=ingest_id, open_only=False)
        finished = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if not dry_run:
            for number, fr in enumerate(report.files):
                ledger.record(
                    con,
                    ingest_id=ingest_id,
                    file_no=number,
                    file=str(fr.path.resolve()),
                    sha256=fr.sha256,
                    size=fr.size,
                    fmt=fr.format,
                    recipe=fr.recipe,
                    datasets=fr.datasets(),
                    status=fr.status,
                    read=fr.total.read,
                    loaded=fr.total.loaded,
                    quarantined=fr.total.quarantined,
                    blank=fr.blank,
                    user=user,
                    started=now,
                    finished=finished,
                    details={str(k): v.as_dict() for k, v in fr.counts().items()},
                )
            audit_run(fed, org.code, user, report)  # before commit: a load not audited is not kept
            con.execute("COMMIT")
        else:
            con.execute("ROLLBACK")
    except BaseException as exc:
        with contextlib.suppress(duckdb.Error):
            con.execute("ROLLBACK")
        if isinstance(exc, FdpError) and not dry_run and not isinstance(exc, AuditFailed):
            audit_failure(fed, org.code, user, ingest_id, paths, hashes, exc)
        if isinstance(exc, AuditFailed):
            raise exc.__cause__ from None
        if isinstance(exc, duckdb.Error):
            raise StoreError(f"ingest into {store} failed and was rolled back: {exc}") from exc
        raise
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def _total(path: Path, fmt: str) -> tuple[int, str]:
    return (path.stat().st_size, "bytes") if fmt == "csv" else (0, "rows")


def _batches(
    path: Path,
    fmt: str,
    org: Organisation,
    dataset: str | None,
    mapping: SourceMapping,
    delimiter: str,
    encoding: str,
    batch_rows: int,
) -> Iterator[tuple[str | None, object, list[str], SourceBatch, tuple[str, ...]]]:
    """(dataset, plan, source header, batch, null values) for every batch of one file."""
    if fmt in ("csv", "parquet"):
        if fmt == "csv":
            reader = CsvFile(path, delimiter=delimiter, encoding=encoding, batch_rows=batch_rows)
        else:
            reader = ParquetFile(path, batch_rows=batch_rows)
        where = f"{path} line 1" if fmt == "csv" else str(path)
        plan = resolve(mapping, CATALOG[dataset], reader.header, org.code, where)
        for batch in read_ahead(reader.batches()):
            yield dataset, plan, reader.header, batch, mapping.null_values
        return
    plans: dict[tuple[str, tuple[str, ...]], object] = {}
    for fb in read_ahead(fhir_batches(path, org.code, batch_rows)):
        if fb.dataset is not None and org.org_type not in CATALOG[fb.dataset].held_by:
            yield fb.dataset, None, fb.header, _not_held(fb.batch, fb.header, org, fb.dataset), ()
            continue
        plan = None
        if fb.dataset is not None:
            key = (fb.dataset, tuple(fb.header))
            if key not in plans:
                ds = CATALOG[fb.dataset]
                plans[key] = resolve(IDENTITY, ds, fb.header, org.code, str(path), require=False)
            plan = plans[key]
        yield fb.dataset, plan, fb.header, fb.batch, ("",)


def _not_held(batch: SourceBatch, header: list[str], org: Organisation, name: str) -> SourceBatch:
    """Rows for a dataset this node does not hold: all quarantined, with their values."""
    reason = f"{org.code} is a {org.org_type} node and does not hold {name}"
    rows = batch.table.to_pylist()
    malformed = list(batch.malformed) + [
        Malformed(
            int(line),
            reason,
            json.dumps({h: row[f"c{k}"] for k, h in enumerate(header)}, default=str),
        )
        for line, row in zip(batch.lines, rows, strict=True)
    ]
    return SourceBatch(batch.table.slice(0, 0), batch.lines[:0], malformed, batch.blank)


def _ensure_dataset_tables(con: duckdb.DuckDBPyConnection, org: Organisation) -> list[str]:
    """Create any catalogue table the node's type holds that its store lacks."""
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    held = [ds for ds in CATALOG.values() if org.org_type in ds.held_by]
    for ds in held:
        if ds.name not in present:
            con.execute(create_table_sql(ds))
    return [ds.name for ds in held]


def _row_counts(con: duckdb.DuckDBPyConnection, names: list[str]) -> dict[str, int]:
    return {n: con.execute(f"SELECT count(*) FROM {quote(n)}").fetchone()[0] for n in names}


def _check_accounting(con: duckdb.DuckDBPyConnection, report: IngestReport, ingest_id: str):
    """Rows read = loaded + quarantined for every file and dataset, and the store agrees."""
    for fr in report.files:
        for name, c in fr.counts().items():
            if c.pending or c.read != c.loaded + c.quarantined:
                raise AssertionError(
                    f"ingest accounting failed for {fr.path} ({name}): read {c.read}, loaded "
                    f"{c.loaded}, quarantined {c.quarantined}, pending {c.pending}; nothing "
                    "was loaded (please report this as a bug)"
                )
    stored = con.execute(
        f"SELECT count(*) FROM {ledger.QUARANTINE_TABLE} WHERE ingest_id = ?", [ingest_id]
    ).fetchone()[0]
    quarantined = sum(fr.total.quarantined for fr in report.files)
    if stored != quarantined:
        raise AssertionError(f"{quarantined} rows quarantined but {stored} in the quarantine")
    for name, new in report.new.items():
        if new < 0 or report.replaced[name] < 0:
            raise AssertionError(f"{name}: {new} new and {report.replaced[name]} replaced rows")
