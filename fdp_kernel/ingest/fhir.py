"""Read FHIR R4 NDJSON and Bundles into catalogue-shaped Arrow batches.

``read_fhir`` streams NDJSON line by line (bounded memory) and reads a Bundle (collection,
transaction, batch or searchset) whole. Each resource becomes either a row of a batch for
its dataset or an entry of ``rejected`` with the reason, so the ingest core can account for
every resource read: rows read = rows loaded + rows quarantined. Structure and types only:
the core validates values (check digits, code lists, ranges, keys) on the tables.

``_source_line`` is the 1-based line of the NDJSON file, or the 1-based entry of a Bundle;
0 stands for the document as a whole (a Bundle whose entries cannot be read at all).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from fdp_kernel.catalog import CATALOG
from fdp_kernel.errors import UsageError
from fdp_kernel.ingest.fhir_map import MAPPERS, map_resource
from fdp_kernel.ingest.fhir_read import Context, Unmappable

SOURCE_LINE = "_source_line"
RAW_LIMIT = 2000
BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset")
_SUFFIXES = (".ndjson", ".jsonl", ".json")
_SNIFF_BYTES = 1 << 20
_SNIFF_LINES = 20


@dataclass(frozen=True)
class FhirBatch:
    """Rows mapped onto one catalogue dataset, and the resources that could not be mapped."""

    dataset: str
    table: pa.Table
    rejected: list[tuple[int, str, str]]


# --- files --------------------------------------------------------------------------------


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _has_fhir_suffix(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(_SUFFIXES)


def _is_ndjson_name(path: Path) -> bool:
    return path.name.lower().removesuffix(".gz").endswith((".ndjson", ".jsonl"))


def is_fhir(path: Path) -> bool:
    """True for an .ndjson/.jsonl/.json file (optionally .gz) whose first resource has a
    resourceType: NDJSON by one of its first lines, JSON by its opening megabyte."""
    path = Path(path)
    if not _has_fhir_suffix(path) or not path.is_file():
        return False
    try:
        with _open(path) as f:
            if _is_ndjson_name(path):
                seen = 0
                for raw in f:
                    if not raw.strip():
                        continue
                    try:
                        doc = json.loads(raw.decode("utf-8-sig"))
                    except (ValueError, RecursionError):
                        doc = None
                    if isinstance(doc, dict) and isinstance(doc.get("resourceType"), str):
                        return True
                    seen += 1
                    if seen >= _SNIFF_LINES:
                        return False
                return False
            head = f.read(_SNIFF_BYTES).decode("utf-8-sig", errors="replace").lstrip()
    except (OSError, EOFError):
        return False
    return head.startswith("{") and '"resourceType"' in head


# --- documents -> (source_line, resource | None, raw text, reason | None) --------------------

Item = tuple[int, Any, str, str | None]


def _raw(text: str) -> str:
    return text[:RAW_LIMIT]


def _dump(value: Any) -> str:
    try:
        return _raw(json.dumps(value, ensure_ascii=False))
    except (TypeError, ValueError, RecursionError):
        return _raw(repr(value))


def _ndjson_items(lines: Iterable[bytes]) -> Iterator[Item]:
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        except UnicodeDecodeError as exc:
            yield number, None, _raw(raw.decode("utf-8", "replace")), f"not UTF-8: {exc.reason}"
            continue
        try:
            doc = json.loads(text)
        except RecursionError:
            yield number, None, _raw(text), "bad JSON: nested too deeply"
            continue
        except ValueError as exc:
            yield number, None, _raw(text), f"bad JSON: {exc}"
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
            yield number, None, _raw(text), "not a FHIR resource: no resourceType"
        elif doc["resourceType"] == "Bundle":
            yield number, None, _raw(text), "a Bundle inside NDJSON: write its entries one per line"
        else:
            yield number, doc, _raw(text), None


def _bundle_items(bundle: dict[str, Any], ctx: Context) -> Iterator[Item]:
    """Entries of a Bundle; fills ``ctx`` with every entry first so references resolve."""
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        yield 0, None, _dump(entries), "Bundle.entry is not an array: no entries can be read"
        return
    btype = bundle.get("type")
    if btype not in BUNDLE_TYPES:
        reason = f"Bundle.type {btype!r} is not read; fdp reads {', '.join(BUNDLE_TYPES)} bundles"
        for number, entry in enumerate(entries, start=1):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            yield number, resource if isinstance(resource, dict) else None, _dump(entry), reason
        return
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            full_url = entry.get("fullUrl")
            ctx.add(full_url if isinstance(full_url, str) else None, entry["resource"])
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            yield number, None, _dump(entry), f"Bundle.entry[{number}] is not an object"
            continue
        resource = entry.get("resource")
        if not isinstance(resource, dict):
            request = entry.get("request")
            method = request.get("method") if isinstance(request, dict) else None
            what = f" (request {method})" if isinstance(method, str) else ""
            yield number, None, _dump(entry), f"Bundle.entry[{number}] has no resource{what}"
        elif resource.get("resourceType") == "Bundle":
            yield number, None, _dump(resource), "a Bundle inside a Bundle is not read"
        else:
            yield number, resource, "", None


def _json_document(path: Path, f: IO[bytes], ctx: Context) -> Iterator[Item]:
    data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield 0, None, _raw(data.decode("utf-8", "replace")), f"not UTF-8: {exc.reason}"
        return
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # one resource per line in a .json file: NDJSON
            yield from _ndjson_items(data.split(b"\n"))
            return
        yield 0, None, _raw(text), f"bad JSON: {exc}"
        return
    except RecursionError:
        yield 0, None, _raw(text), "bad JSON: nested too deeply"
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        raise UsageError(
            f"{path} is not a FHIR resource or Bundle (no resourceType at the top level); "
            "give FHIR R4 JSON or NDJSON"
        )
    if doc["resourceType"] == "Bundle":
        ctx.in_bundle = True
        yield from _bundle_items(doc, ctx)
    else:
        yield 1, doc, "", None


# --- batching -----------------------------------------------------------------------------


def _table(dataset: str, rows: list[dict[str, Any]], lines: list[int]) -> pa.Table:
    schema = CATALOG[dataset].schema().to_pyarrow()
    arrays = [pa.array([row[f.name] for row in rows], type=f.type) for f in schema]
    fields = [f.with_nullable(True) for f in schema]
    arrays.append(pa.array(lines, type=pa.int64()))
    fields.append(pa.field(SOURCE_LINE, pa.int64()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class _Batcher:
    """Rows per dataset and rejections (by dataset where the resource type is known) until a
    batch is full; each batch takes its dataset's rejections and any unattributed ones."""

    def __init__(self, batch_rows: int) -> None:
        self.batch_rows = batch_rows
        self.rows: dict[str, list[dict[str, Any]]] = {}
        self.lines: dict[str, list[int]] = {}
        self.rejected: dict[str | None, list[tuple[int, str, str]]] = {}
        self.last_dataset = ""

    def add_row(self, dataset: str, line: int, row: dict[str, Any]) -> Iterator[FhirBatch]:
        self.rows.setdefault(dataset, []).append(row)
        self.lines.setdefault(dataset, []).append(line)
        if len(self.rows[dataset]) >= self.batch_rows:
            yield self.emit(dataset)

    def add_rejected(self, dataset: str | None, item: tuple[int, str, str]) -> Iterator[FhirBatch]:
        bucket = self.rejected.setdefault(dataset, [])
        bucket.append(item)
        if len(bucket) >= self.batch_rows:
            yield self.emit(dataset if dataset is not None else self.last_dataset)

    def emit(self, dataset: str) -> FhirBatch:
        rows, lines = self.rows.pop(dataset, []), self.lines.pop(dataset, [])
        rejected = self.rejected.pop(dataset, []) + self.rejected.pop(None, [])
        self.last_dataset = dataset
        if dataset:
            table = _table(dataset, rows, lines)
        else:  # only rejections and no supported resource seen yet: no dataset to name
            table = pa.table({SOURCE_LINE: pa.array([], type=pa.int64())})
        return FhirBatch(dataset, table, sorted(rejected))

    def finish(self) -> Iterator[FhirBatch]:
        for dataset in sorted(set(self.rows) | {d for d in self.rejected if d is not None}):
            yield self.emit(dataset)
        if self.rejected.get(None):
            yield self.emit(self.last_dataset)


def _dataset_of(resource: Any) -> str | None:
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    return MAPPERS[rtype][0] if isinstance(rtype, str) and rtype in MAPPERS else None


def read_fhir(path: Path, org: str, batch_rows: int = 100_000) -> Iterator[FhirBatch]:
    """Batches of catalogue rows (plus ``_source_line``) and rejected resources from a FHIR
    R4 NDJSON file or Bundle. ``org`` is the node's ODS code: the ``org_code`` of every row
    whose resource names no holding organisation."""
    path = Path(path)
    if batch_rows < 1:
        raise UsageError(f"batch_rows must be at least 1 (got {batch_rows})")
    if not path.is_file():
        raise UsageError(f"{path} does not exist or is not a file")
    if not is_fhir(path):
        raise UsageError(
            f"{path} is not FHIR R4: expected .ndjson/.json (optionally .gz) whose resources "
            "have a resourceType"
        )
    ctx = Context(org=org)
    batcher = _Batcher(batch_rows)
    try:
        with _open(path) as f:
            items = _ndjson_items(f) if _is_ndjson_name(path) else _json_document(path, f, ctx)
            yield from _map_items(items, ctx, batcher)
    except (OSError, EOFError, zlib.error) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    yield from batcher.finish()


def _map_items(items: Iterable[Item], ctx: Context, batcher: _Batcher) -> Iterator[FhirBatch]:
    for line, resource, raw, reason in items:
        dataset = _dataset_of(resource)
        if reason is None:
            try:
                dataset, row = map_resource(resource, ctx)
            except Unmappable as exc:
                reason = str(exc)
            except (RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
                reason = f"internal error mapping {resource.get('resourceType')}: {exc!r}"
            else:
                yield from batcher.add_row(dataset, line, row)
                continue
        yield from batcher.add_rejected(dataset, (line, reason, raw or _dump(resource)))
