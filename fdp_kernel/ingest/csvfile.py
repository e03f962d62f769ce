"""Streaming CSV with exact line numbers and errors that name the file and the line.

The file is read in chunks cut at line breaks (about ``batch_rows`` rows each); each chunk is
parsed by pyarrow single-threaded, which numbers the rows it cannot split into the header's
fields. Every column is read as text: conversion and checks happen later, in SQL, so a bad
value quarantines one row and never stops a load.

Line numbers are physical lines, as an editor shows them: a record whose quoted values
contain line breaks spans several lines, and its line is the first. When a chunk has no
line breaks inside values (the usual case) the rows are simply consecutive; otherwise each
record's span is counted from its values.

What stops a load (nothing is loaded, the error names the file and line):

- bytes that are not valid in the encoding (line and byte offset; re-save as UTF-8 or pass
  ``--encoding``), a UTF-16/32 file, classic-Mac (CR only) line endings;
- a header with one column that another delimiter would split (``is the delimiter ';'?``),
  empty or repeated column names, an empty file;
- a truncated file: the last line has too few fields and no line break, or a quoted field
  is still open at the end of the file.

Rows with the wrong number of fields are quarantined with their line and text; lines with
no values at all (blank, or only delimiters) are not rows and are counted as blank.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from fdp_kernel.errors import UsageError

BOM = b"\xef\xbb\xbf"
SAMPLE_BYTES = 1 << 20
MAX_OPEN_QUOTE = 16 << 20  # a quoted value longer than this is taken as an unbalanced quote
_OTHER_DELIMITERS = (";", "\t", "|", ",")


@dataclass
class Malformed:
    """A record that could not be read as a row: its line, why, and its text."""

    line: int
    reason: str
    raw: str


@dataclass
class SourceBatch:
    """Rows of a source file as read, with their source line numbers."""

    table: pa.Table
    lines: np.ndarray  # int64, one per row
    malformed: list[Malformed] = field(default_factory=list)
    blank: int = 0  # blank lines skipped
    position: int = 0  # bytes (CSV) or rows (Parquet) of the file consumed so far


def _encoding_error(
    path: Path, data: bytes, exc: UnicodeDecodeError, first_line: int, offset: int, encoding: str
) -> UsageError:
    line = first_line + data.count(b"\n", 0, exc.start)
    bad = data[exc.start : exc.end]
    return UsageError(
        f"{path} line {line} (byte offset {offset + exc.start}): {bad!r} is not valid {encoding} "
        f"({exc.reason}). Fix: re-save the file as UTF-8, or give its encoding with "
        "--encoding (e.g. --encoding cp1252 for a Windows export, or latin-1)"
    )


def _display(delimiter: str) -> str:
    return "\\t" if delimiter == "\t" else delimiter


class CsvFile:
    """A CSV file opened for streaming: ``header`` now, ``batches()`` to read the rows."""

    def __init__(
        self,
        path: Path,
        *,
        delimiter: str = ",",
        encoding: str = "utf-8",
        batch_rows: int = 1_000_000,
    ) -> None:
        self.path = Path(path)
        self.delimiter = delimiter
        self.encoding = encoding
        try:
            self.size = self.path.stat().st_size
            with open(self.path, "rb") as f:
                sample = f.read(SAMPLE_BYTES)
        except OSError as exc:
            raise UsageError(f"cannot read {self.path}: {exc.strerror}") from None
        if not sample.strip():
            raise UsageError(
                f"{self.path} is empty: expected a header line naming the columns, then rows"
            )
        if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise UsageError(
                f"{self.path} is UTF-16 (it starts with a UTF-16 byte order mark). Fix: "
                "re-save the file as UTF-8 (CSV UTF-8 in Excel)"
            )
        self.start = len(BOM) if sample.startswith(BOM) else 0
        if b"\r" in sample and b"\n" not in sample and len(sample) > sample.index(b"\r") + 1:
            raise UsageError(
                f"{self.path} line 1: lines end with CR only (classic Mac). Fix: re-save the "
                "file with Windows (CRLF) or Unix (LF) line endings"
            )
        self.header, self.data_start, self.header_lines = self._read_header(sample)
        rows_in_sample = max(1, sample.count(b"\n", self.data_start))
        per_row = max(16, (len(sample) - self.data_start) // rows_in_sample)
        self.chunk_bytes = max(64, min(batch_rows * per_row, 256 << 20))

    def _decode(self, data: bytes, first_line: int, offset: int) -> str:
        try:
            return data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise _encoding_error(self.path, data, exc, first_line, offset, self.encoding) from None

    def _read_header(self, sample: bytes) -> tuple[list[str], int, int]:
        """(column names, byte offset of the first row, lines the header takes)."""
        end, lines = self.start, 0
        while True:  # the header ends at the first line break outside quotes
            cut = sample.find(b"\n", end)
            lines += 1
            if cut < 0:
                if len(sample) == self.size:  # a header and nothing else, no line break
                    end = len(sample)
                    break
                raise UsageError(
                    f"{self.path} line 1: no line break in the first {SAMPLE_BYTES} bytes; "
                    "is this a CSV file?"
                )
            end = cut + 1
            if sample.count(b'"', self.start, end) % 2 == 0:
                break
        text = self._decode(sample[self.start : end], 1, self.start)
        try:
            names = next(csv.reader(io.StringIO(text), delimiter=self.delimiter), [])
        except csv.Error as exc:
            raise UsageError(f"{self.path} line 1: cannot read the header: {exc}") from None
        names = [n.strip() for n in names]
        where = f"{self.path} line 1"
        if not any(names):
            raise UsageError(f"{where} is empty. Fix: the first line must name the columns")
        if len(names) == 1:
            for other in _OTHER_DELIMITERS:
                if other != self.delimiter and other in names[0]:
                    shown = _display(other)
                    raise UsageError(
                        f"{where}: found 1 column ({names[0][:60]!r}); is the delimiter "
                        f"'{shown}'? Fix: pass --delimiter '{shown}' or set `delimiter: "
                        f"'{shown}'` in the mapping file"
                    )
        for k, name in enumerate(names, start=1):
            if not name:
                raise UsageError(f"{where}: column {k} has no name. Fix: name every column")
        seen = set()
        for name in names:
            if name in seen:
                raise UsageError(f"{where}: column {name!r} appears twice. Fix: rename one")
            seen.add(name)
        return names, end, lines

    # -- rows ---------------------------------------------------------------------------
    def batches(self) -> Iterator[SourceBatch]:
        """Batches of rows (all columns text) with their line numbers, in file order."""
        line = 1 + self.header_lines
        offset = self.data_start
        carry = b""
        first = True
        with open(self.path, "rb") as f:
            f.seek(self.data_start)
            eof = False
            while not eof:
                chunk = f.read(self.chunk_bytes)
                eof = len(chunk) < self.chunk_bytes
                data = carry + chunk
                if eof:
                    body, carry = data, b""
                else:
                    cut = data.rfind(b"\n")
                    if cut < 0:
                        carry = data
                        self._check_carry(carry, line)
                        continue
                    body, carry = data[: cut + 1], data[cut + 1 :]
                if not body:
                    continue
                batch, used = self._parse(body, line, offset, eof)
                carry = body[used:] + carry
                line += body.count(b"\n", 0, used)
                offset += used
                batch.position = offset
                if first:
                    self._check_delimiter(batch)
                    first = False
                if batch.table.num_rows or batch.malformed or batch.blank:
                    yield batch
                del batch  # not held while the next chunk is parsed
                self._check_carry(carry, line)

    def _check_carry(self, carry: bytes, line: int) -> None:
        if len(carry) > max(MAX_OPEN_QUOTE, 2 * self.chunk_bytes):
            raise UsageError(
                f"{self.path} line {line}: the record starting on this line is longer than "
                f"{MAX_OPEN_QUOTE >> 20} MiB: a quote is unbalanced (or this is not a CSV "
                "file). Fix: correct the quotes on that line"
            )

    def _check_delimiter(self, batch: SourceBatch) -> None:
        """Every row of the first batch malformed, and another delimiter would split them
        into the header's columns: the rows use another delimiter than the header."""
        if batch.table.num_rows or not batch.malformed or len(self.header) < 2:
            return
        sample = batch.malformed[0]
        for other in _OTHER_DELIMITERS:
            if other == self.delimiter:
                continue
            try:
                fields = next(csv.reader(io.StringIO(sample.raw), delimiter=other), [])
            except csv.Error:
                continue
            if len(fields) == len(self.header):
                shown = _display(other)
                raise UsageError(
                    f"{self.path} line {sample.line}: no row has the header's "
                    f"{len(self.header)} columns, but this line splits into "
                    f"{len(self.header)} at '{shown}'; is the delimiter '{shown}'? Fix: use "
                    "one delimiter throughout the file, or pass --delimiter"
                )

    def _parse(self, raw: bytes, line: int, offset: int, eof: bool) -> tuple[SourceBatch, int]:
        """Parse ``raw`` (whole lines, starting at ``line``): the batch and the bytes used.

        A last record cut inside quotes is left unused, to be read with the next chunk.
        """
        ended = raw.endswith(b"\n")
        body = raw if ended else raw + b"\n"  # the file's last line has no line break
        if self.encoding not in ("utf-8", "utf_8"):
            body = self._decode(body, line, offset).encode("utf-8")
        elif not body.isascii():  # pyarrow would drop, not report, a bad row with bad bytes
            self._decode(body, line, offset)
        table, bad = self._read(body, line, offset)
        n_rows = table.num_rows
        records = n_rows + len(bad)
        newlines = body.count(b"\n")
        bad_at = np.array([b[0] - 1 for b in bad], dtype=np.int64)  # 0-based record index
        is_bad = np.zeros(records, dtype=bool)
        is_bad[bad_at] = True
        extra = np.zeros(records, dtype=np.int64)  # line breaks inside each record's values
        extra[bad_at] = [b[2].count("\n") for b in bad]
        # Without a bare CR (which pyarrow also takes as a line end) records <= line breaks,
        # equal only when no value holds a line break: then no need to count them.
        bare_cr = body.count(b"\r") != body.count(b"\r\n")
        if n_rows and (bare_cr or records != newlines or _last_value_breaks(table)):
            counts = [pc.count_substring(col, "\n") for col in table.columns]
            extra[~is_bad] = np.sum([c.to_numpy(zero_copy_only=False) for c in counts], 0)
        spans = 1 + extra
        used = len(raw)
        total = int(spans.sum())
        # A value that runs on past the end (a chunk cut inside quotes) holds the last line
        # break: one line fewer than records say. Anything else is a bare CR outside quotes.
        open_row = (
            total == newlines + 1
            and n_rows > 0
            and not is_bad[-1]
            and (table.column(table.num_columns - 1)[-1].as_py() or "").endswith("\n")
        )
        if total != newlines and not open_row:
            bare = re.search(rb"\r(?!\n)", raw)
            where = line + raw.count(b"\n", 0, bare.start()) if bare else line
            raise UsageError(
                f"{self.path} line {where}: a carriage return (CR) that is not part of a line "
                "ending, outside quotes: the records cannot be told apart. Fix: re-save the "
                "file with LF or CRLF line endings, or quote the value"
            )
        last_bad = bool(records) and bool(is_bad[-1])
        starts = line + np.concatenate(([0], np.cumsum(spans)[:-1])).astype(np.int64)
        if eof and (open_row or (last_bad and _ends_in_quotes(bad[-1][2], self.delimiter))):
            raise UsageError(
                f"{self.path} line {int(starts[-1])}: a quoted field in the record starting on "
                "this line is never closed: the file is truncated or a quote is unbalanced. "
                "Fix: export the file again, or correct the quote (nothing was loaded)"
            )
        if not eof and (open_row or last_bad):
            # The chunk may end inside a quoted value (pyarrow then sees a record cut short):
            # read the last record again with the next chunk.
            if last_bad:
                breaks = bad.pop()[2].count("\n") + 1  # its text stops before its last break
            else:
                breaks = int(extra[-1])
                table = table.slice(0, n_rows - 1)
            used = _start_of_tail(raw, breaks)
            is_bad, starts = is_bad[:-1], starts[:-1]
        width = len(self.header)
        if eof and not ended and bad and is_bad[-1] and bad[-1][1] < width:
            raise UsageError(
                f"{self.path} line {int(starts[-1])}: the last line has {bad[-1][1]} of "
                f"{width} fields and the file does not end with a line break: the file looks "
                "truncated. Fix: export it again (nothing was loaded)"
            )
        shown = _display(self.delimiter)
        malformed = [
            Malformed(
                int(starts[number - 1]),
                f"{got} fields where the header has {width} (delimiter '{shown}')",
                text[:2000],
            )
            for number, got, text in bad
        ]
        table, lines, blank = _drop_blank(table, starts[~is_bad])
        return SourceBatch(table, lines, malformed, blank), used

    def _read(self, body: bytes, line: int, offset: int) -> tuple[pa.Table, list]:
        """pyarrow's parse of ``body``: text columns c0.., and (record number, fields, text)
        of each record that does not have the header's number of fields."""
        bad: list[tuple[int, int, str]] = []

        def invalid(row: pacsv.InvalidRow) -> str:
            bad.append((row.number, row.actual_columns, row.text))
            return "skip"

        names = [f"c{k}" for k in range(len(self.header))]
        try:
            table = pacsv.read_csv(
                io.BytesIO(body),
                read_options=pacsv.ReadOptions(
                    column_names=names, use_threads=False, block_size=len(body) + 1
                ),
                parse_options=pacsv.ParseOptions(
                    delimiter=self.delimiter,
                    newlines_in_values=True,
                    ignore_empty_lines=False,
                    invalid_row_handler=invalid,
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
                ),
            )
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc):
                self._decode(body, line, offset)  # raises with the line and byte offset
            raise UsageError(f"{self.path} near line {line}: cannot read as CSV: {exc}") from None
        return table, bad


def _last_value_breaks(table: pa.Table) -> bool:
    """Whether the last row has a line break in a value (a record cut inside quotes)."""
    return any("\n" in (col[-1].as_py() or "") for col in table.columns)


def _ends_in_quotes(text: str, delimiter: str) -> bool:
    """Whether a record's text ends inside a quoted value (Python's csv as the judge)."""
    try:
        list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _start_of_tail(body: bytes, breaks: int) -> int:
    """Where the last record starts when its values hold the last ``breaks`` line breaks."""
    pos = len(body)
    for _ in range(breaks + 1):
        pos = body.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


def _drop_blank(table: pa.Table, lines: np.ndarray) -> tuple[pa.Table, np.ndarray, int]:
    """Rows whose every value is empty (blank lines) are not rows: drop and count them."""
    if table.num_rows == 0 or table.num_columns == 0:
        return table, lines, 0
    empty = pc.equal(pc.binary_length(table.column(0)), 0)
    if not pc.any(empty).as_py():
        return table, lines, 0
    for col in table.columns[1:]:
        empty = pc.and_(empty, pc.equal(pc.binary_length(col), 0))
    mask = empty.to_numpy(zero_copy_only=False)
    blank = int(mask.sum())
    if not blank:
        return table, lines, 0
    keep = pa.array(~mask)
    return table.filter(keep), lines[~mask], blank
