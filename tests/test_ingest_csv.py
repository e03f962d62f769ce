"""The CSV reader: streaming in chunks, exact line numbers, and clear errors for files that
cannot be read (encoding, delimiter, truncation). Hypothesis checks rows and line numbers
against the records written, whatever the chunking; a fuzzing run mutates a valid file."""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdp_kernel.errors import FdpError, UsageError
from fdp_kernel.ingest.csvfile import CsvFile


def read(path: Path, chunk: int | None = None, **kw) -> tuple[list, list, int, int]:
    """(rows as (line, values), malformed as (line, raw), blank lines, batches)."""
    f = CsvFile(path, **kw)
    if chunk:
        f.chunk_bytes = chunk
    rows, bad, blank, batches = [], [], 0, 0
    for batch in f.batches():
        batches += 1
        values = batch.table.to_pylist()
        assert len(values) == len(batch.lines)
        rows += [(int(n), list(v.values())) for n, v in zip(batch.lines, values, strict=True)]
        bad += [(m.line, m.raw) for m in batch.malformed]
        blank += batch.blank
    return rows, bad, blank, batches


def file(tmp_path, data: bytes, name: str = "x.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bom_and_crlf(tmp_path):
    f = CsvFile(file(tmp_path, b"\xef\xbb\xbfa,b\r\n1,2\r\n3,4\r\n"))
    assert f.header == ["a", "b"]
    rows, bad, blank, _ = read(f.path)
    assert rows == [(2, ["1", "2"]), (3, ["3", "4"])] and not bad and not blank


def test_quoted_line_breaks_keep_physical_line_numbers(tmp_path):
    data = b'a,b,c\n1,"x\ny",3\n4,5\n6,"""q""",8\n9,10,11,12\n\n13,14,15'
    rows, bad, blank, _ = read(file(tmp_path, data))
    assert rows == [(2, ["1", "x\ny", "3"]), (5, ["6", '"q"', "8"]), (8, ["13", "14", "15"])]
    assert bad == [(4, "4,5"), (6, "9,10,11,12")]
    assert blank == 1


def test_rows_of_only_delimiters_are_blank(tmp_path):
    rows, bad, blank, _ = read(file(tmp_path, b"a,b\n,\n1,2\n\n"))
    assert rows == [(3, ["1", "2"])] and blank == 2 and not bad


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty: expected a header line"),
        (b"  \n", "is empty: expected a header line"),
        (b"\xff\xfea\x00,\x00b\x00", "is UTF-16"),
        (b"a,b\r1,2\r", "lines end with CR only"),
        (b"a;b;c\n1;2;3\n", "line 1: found 1 column ('a;b;c'); is the delimiter ';'?"),
        (b"a\tb\n1\t2\n", "is the delimiter '\\t'?"),
        (b"a,b,c\n1;2;3\n4;5;6\n", "line 2: no row has the header's 3 columns"),
        (b"a,b,a\n1,2,3\n", "line 1: column 'a' appears twice"),
        (b"a,,c\n1,2,3\n", "line 1: column 2 has no name"),
        (b"a,b,c\n1,2,3\n4,5", "line 3: the last line has 2 of 3 fields and the file does not"),
        (b'a,b\n1,2\n3,"4\n5,6\n', "line 3: a quoted field in the record starting on this line"),
        (b"a,b\n1,2\n3,\xe9\n", "line 3 (byte offset 10): b'\\xe9' is not valid utf-8"),
    ],
)
def test_files_that_cannot_be_read_name_the_line(tmp_path, data, message):
    path = file(tmp_path, data)
    with pytest.raises(UsageError, match=None) as err:
        read(path)
    assert str(err.value).startswith(str(path)), err.value
    assert message in str(err.value), err.value


def test_other_encodings_are_read_when_named(tmp_path):
    path = file(tmp_path, "a,b\n1,Zoë\n2,£5\n".encode("cp1252"))
    with pytest.raises(UsageError, match="--encoding cp1252"):
        read(path)
    rows, _, _, _ = read(path, encoding="cp1252")
    assert rows == [(2, ["1", "Zoë"]), (3, ["2", "£5"])]


def test_a_last_line_without_a_line_break_is_read(tmp_path):
    rows, bad, _, _ = read(file(tmp_path, b"a,b\n1,2\n3,4"))
    assert rows == [(2, ["1", "2"]), (3, ["3", "4"])] and not bad


def test_a_header_alone_has_no_rows(tmp_path):
    assert read(file(tmp_path, b"a,b\n"))[:3] == ([], [], 0)
    assert read(file(tmp_path, b"a,b"))[:3] == ([], [], 0)


def test_extra_and_missing_fields_are_malformed_rows_not_errors(tmp_path):
    rows, bad, _, _ = read(file(tmp_path, b"a,b\n1,2,3\n4\n5,6\n"))
    assert rows == [(4, ["5", "6"])]
    assert bad == [(2, "1,2,3"), (3, "4")]


def test_large_files_stream_in_bounded_batches(tmp_path):
    body = "".join(f'{i},"v{i}\nw",x\n' if i % 9 == 0 else f"{i},v{i},x\n" for i in range(5000))
    path = file(tmp_path, ("a,b,c\n" + body).encode())
    whole = read(path)
    rows, bad, blank, batches = read(path, chunk=2048)
    assert batches > 20 and whole[3] == 1
    assert (rows, bad, blank) == whole[:3]
    assert rows[-1] == (2 + 5000 + 556 - 1, ["4999", "v4999", "x"])  # 556 multiples of 9
    assert 1000 < CsvFile(path, batch_rows=100).chunk_bytes < 4096  # sized from the rows


# -- the reader against the records written --------------------------------------------

text = st.text(alphabet=st.sampled_from([*list('ab,"\n\r é'), "☃", "x"]), max_size=12)
record = st.lists(text, min_size=1, max_size=5)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.one_of(record, st.just(None)), max_size=40),
    chunk=st.integers(min_value=1, max_value=400),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    crlf=st.booleans(),
    last_break=st.booleans(),
)
def test_rows_and_lines_match_the_records_written(
    tmp_path_factory, records, chunk, quoting, crlf, last_break
):
    """Every record comes back once, in order, with the line it starts on: as a row when it
    has the header's 3 fields, as a malformed row otherwise; blank lines are counted."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=quoting, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(["a", "b", "c"])
    line = 2
    want_rows, want_bad, want_blank = [], [], 0
    if quoting == csv.QUOTE_MINIMAL:  # the writer leaves a lone CR unquoted: a line break
        records = [r if r is None else [v.replace("\r", "r") for v in r] for r in records]
    for rec in records:
        start = out.tell()
        if rec is None:
            out.write("\r\n" if crlf else "\n")
        else:
            writer.writerow(rec)
        written = out.getvalue()[start:]
        if rec is None or (len(rec) == 3 and not any(rec)):
            want_blank += 1
        elif len(rec) == 3:
            want_rows.append((line, rec))
        elif rec == [""]:
            want_bad.append((line, '""'))
        else:
            want_bad.append(line)
        line += written.count("\n")
    data = out.getvalue()
    if not last_break and data.endswith("\n") and want_rows and records[-1] is not None:
        data = data.rstrip("\n").rstrip("\r") if want_rows[-1][0] == line - 1 else data
    path = tmp_path_factory.mktemp("csv") / "x.csv"
    path.write_bytes(data.encode())
    got_rows, got_bad, got_blank, _ = read(path, chunk=chunk)
    assert [(n, v) for n, v in got_rows] == want_rows
    assert [b[0] for b in got_bad] == [b if isinstance(b, int) else b[0] for b in want_bad]
    assert got_blank == want_blank


def test_fuzzing_the_reader(tmp_path):
    """Random byte mutations of a valid file (quoted line breaks included): either a clean
    error naming the file, or every line read at most once, within the file, and the same
    rows and lines whether the file is read whole or in small chunks."""
    rng = random.Random(20261123)
    lines = ["org_code,vaccination_id,nhs_number,vaccination_date,programme"]
    lines += [
        f'Y90001,V{i},"943476591{i % 10}",2025-10-{i % 28 + 1:02d},"f""l\nu"'
        if i % 5 == 0
        else f"Y90001,V{i},943476591{i % 10},2025-10-{i % 28 + 1:02d},flu"
        for i in range(60)
    ]
    valid = ("\n".join(lines) + "\n").encode()
    alphabet = b',";\n\r\x00\xff\xe9ab1 \t|'
    outcomes = {"read": 0, "error": 0}
    for i in range(500):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[at] = rng.choice(alphabet)
            elif choice < 0.7:
                data.insert(at, rng.choice(alphabet))
            elif choice < 0.95:
                del data[at]
            else:
                del data[at:]  # truncated
            if not data:
                break
        path = tmp_path / f"fuzz{i}.csv"
        path.write_bytes(bytes(data))
        chunk = rng.choice([16, 64, 300])
        try:
            rows, bad, _, _ = read(path, chunk=chunk)
        except FdpError as exc:
            assert str(exc).startswith(str(path))
            outcomes["error"] += 1
            continue
        outcomes["read"] += 1
        seen = sorted([n for n, _ in rows] + [n for n, _ in bad])
        assert len(seen) == len(set(seen)), "a line read twice"
        assert all(2 <= n <= data.count(b"\n") + 1 for n in seen)
        assert read(path)[:2] == (rows, bad), "chunking changed what was read"
    assert outcomes["read"] > 100 and outcomes["error"] > 50  # both paths exercised


def test_read_ahead_keeps_order_passes_errors_and_stops_cleanly():
    from fdp_kernel.ingest.readers import read_ahead

    assert list(read_ahead(iter(range(5)))) == [0, 1, 2, 3, 4]

    def failing():
        yield 1
        raise UsageError("line 7: broken")

    got = []
    with pytest.raises(UsageError, match="line 7: broken"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]
    produced = []

    def counting():
        for i in range(1000):
            produced.append(i)
            yield i

    for item in read_ahead(counting()):
        if item == 2:
            break
    assert len(produced) <= 4  # one ahead at most, and the thread has stopped
