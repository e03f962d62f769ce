"""Which reader a file needs, Parquet batches, FHIR batches, and reading ahead.

Every reader yields :class:`SourceBatch` objects (rows as read, with their source line), so
validation and loading do not care where rows came from:

- CSV (``csvfile.py``): text columns, physical line numbers;
- Parquet: typed columns in row groups, the row number (1-based) as the line;
- FHIR R4 NDJSON or Bundle (``fhir.py``): catalogue columns per dataset, the NDJSON line or
  the Bundle entry as the line; resources that cannot be mapped at all come as malformed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fdp_kernel.errors import UsageError
from fdp_kernel.ingest.csvfile import Malformed, SourceBatch

PARQUET_MAGIC = b"PAR1"
FHIR_SOURCE_LINE = "_source_line"


def file_format(path: Path) -> str:
    """``csv``, ``parquet`` or ``fhir``, from the file's first bytes and name."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == PARQUET_MAGIC:
        return "parquet"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".ndjson", ".jsonl", ".json")):
        from fdp_kernel.ingest.fhir import is_fhir

        if is_fhir(path):
            return "fhir"
        raise UsageError(
            f"{path} is JSON but not FHIR R4 (no resourceType); fdp ingests FHIR R4 "
            "resources as NDJSON or a Bundle, and other extracts as CSV or Parquet"
        )
    if name.endswith((".parquet", ".pq")):
        raise UsageError(f"{path} is named Parquet but is not a Parquet file (no PAR1 header)")
    if path.name.lower().endswith(".gz"):
        raise UsageError(f"{path} is compressed; decompress it first (gunzip) to ingest a CSV")
    return "csv"


@dataclass
class ParquetFile:
    """A Parquet file read in batches of ``batch_rows`` rows."""

    path: Path
    batch_rows: int = 1_000_000

    def __post_init__(self) -> None:
        try:
            self._file = pq.ParquetFile(self.path)
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(
                f"{self.path} is not a readable Parquet file ({exc}); is it truncated? "
                "Fix: export it again"
            ) from None
        self.header = list(self._file.schema_arrow.names)
        self.size = self._file.metadata.num_rows
        seen = set()
        for name in self.header:
            if name in seen:
                raise UsageError(f"{self.path}: column {name!r} appears twice; rename one")
            seen.add(name)

    def batches(self) -> Iterator[SourceBatch]:
        done = 0
        try:
            for batch in self._file.iter_batches(batch_size=self.batch_rows):
                table = pa.Table.from_batches([batch])
                names = [f"c{k}" for k in range(table.num_columns)]
                lines = np.arange(done + 1, done + 1 + table.num_rows, dtype=np.int64)
                done += table.num_rows
                yield SourceBatch(table.rename_columns(names), lines, position=done)
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(
                f"{self.path} row {done + 1}: cannot read the Parquet data ({exc}); is the "
                "file damaged or truncated? Fix: export it again (nothing was loaded)"
            ) from None


@dataclass
class FhirSourceBatch:
    """One dataset's rows from a FHIR file (``batch.table`` columns are catalogue names)."""

    dataset: str | None  # None: only resources that could not be mapped to any dataset
    header: list[str]
    batch: SourceBatch


def fhir_batches(path: Path, org: str, batch_rows: int) -> Iterator[FhirSourceBatch]:
    """The FHIR reader's batches as source batches of catalogue columns."""
    from fdp_kernel.ingest.fhir import read_fhir

    for fb in read_fhir(path, org, batch_rows=batch_rows):
        table = fb.table
        header = [n for n in table.column_names if n != FHIR_SOURCE_LINE]
        if FHIR_SOURCE_LINE in table.column_names:
            lines = table.column(FHIR_SOURCE_LINE).to_numpy(zero_copy_only=False)
            table = table.select(header)
        else:
            lines = np.zeros(0, dtype=np.int64)
        table = table.rename_columns([f"c{k}" for k in range(len(header))])
        malformed = [Malformed(line, reason, raw) for line, reason, raw in fb.rejected]
        dataset = fb.dataset or None
        if dataset is None and table.num_rows:
            raise UsageError(f"{path}: the FHIR reader gave rows without a dataset")
        batch = SourceBatch(table, np.asarray(lines, dtype=np.int64), malformed)
        yield FhirSourceBatch(dataset, header, batch)


_DONE = object()


def read_ahead(batches: Iterator) -> Iterator:
    """Iterate ``batches`` in a thread one item ahead: the next batch is parsed while the
    current one is checked and loaded (pyarrow and DuckDB release the GIL). At most two
    batches are in memory: the one being loaded and the one read next."""
    items: queue.SimpleQueue = queue.SimpleQueue()
    turn = threading.Semaphore(1)  # released when the consumer takes an item
    stop = threading.Event()

    def work() -> None:
        try:
            iterator = iter(batches)
            while True:
                while not turn.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = next(iterator, _DONE)
                items.put((item, None))
                if item is _DONE:
                    return
                del item  # the consumer's now: not held while the next one is read
        except BaseException as exc:  # handed to the consumer, raised there
            items.put((None, exc))

    thread = threading.Thread(target=work, name="fdp-ingest-read", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = items.get()
            turn.release()
            if exc is not None:
                raise exc
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join()
