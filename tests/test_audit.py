"""Tests for the hash-chained audit log (fdp_kernel.governance.audit)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import stat
import threading
from collections import Counter
from pathlib import Path

import pytest

from fdp_kernel.errors import StoreError, UsageError
from fdp_kernel.governance import audit
from fdp_kernel.governance.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditLog,
    entry_hash,
    filter_entries,
    format_entries,
    verify_log,
)

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def _event(i: int = 0, **overrides) -> AuditEvent:
    fields = {
        "action": "query",
        "decision": "allow",
        "user": "analyst1",
        "org": "RXX",
        "purpose": "planning_elective",
        "reason": "within purpose",
        "details": {"dataset": "rtt_pathways", "row_count": i, "columns": ["org", "weeks"]},
    }
    fields.update(overrides)
    return AuditEvent(**fields)


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    """A log of 10 entries at <tmp>/audit/RXX.jsonl."""
    log = AuditLog(tmp_path / "audit" / "RXX.jsonl")
    for i in range(10):
        log.append(_event(i))
    return log


def _lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def _write(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def _canonical_line(entry: dict) -> bytes:
    text = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode() + b"\n"


# -- appending and reading ------------------------------------------------------------------


def test_append_and_verify(log: AuditLog) -> None:
    entries = list(log.entries())
    assert [e["seq"] for e in entries] == list(range(1, 11))
    assert entries[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after["prev_hash"] == before["hash"]
    for entry in entries:
        assert entry["hash"] == entry_hash(entry)
        assert TIME_RE.match(entry["time"])
        assert entry["pid"] == os.getpid()
    assert set(entries[0]) == {
        "seq",
        "time",
        "pid",
        "user",
        "org",
        "purpose",
        "agreement_id",
        "action",
        "decision",
        "reason",
        "rule",
        "details",
        "prev_hash",
        "hash",
    }
    # one canonical JSON object per line: keys sorted, compact separators
    assert _lines(log) == [_canonical_line(e) for e in entries]
    assert json.loads(log.head_path.read_text()) == {"seq": 10, "hash": entries[-1]["hash"]}
    result = log.verify()
    assert (result.ok, result.n_entries, result.problem) == (True, 10, None)
    assert verify_log(log.path) == result


def test_append_returns_the_stored_entry(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "RXX.jsonl")
    event = _event(
        action="deny",
        decision="deny",
        purpose=None,
        agreement_id="DSA-7",
        reason="no DSA",
        details={"dataset": "patients", "nodes": ("RXX", "RYY"), "note": "é"},
    )
    stored = log.append(event)
    assert list(log.entries()) == [stored]
    assert stored["details"]["nodes"] == ["RXX", "RYY"]  # tuples stored as JSON lists
    assert (stored["decision"], stored["agreement_id"], stored["purpose"]) == (
        "deny",
        "DSA-7",
        None,
    )


def test_file_modes(log: AuditLog) -> None:
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700
    for path in (log.path, log.head_path, log.lock_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_chain_is_deterministic_apart_from_time(tmp_path: Path, monkeypatch) -> None:
    one, two = AuditLog(tmp_path / "a" / "RXX.jsonl"), AuditLog(tmp_path / "b" / "RXX.jsonl")
    for i in range(5):
        one.append(_event(i))
        two.append(_event(i))
    strip = {"time", "hash", "prev_hash"}
    assert [{k: v for k, v in e.items() if k not in strip} for e in one.entries()] == [
        {k: v for k, v in e.items() if k not in strip} for e in two.entries()
    ]
    # with the clock fixed, the files are byte-identical
    monkeypatch.setattr(audit, "_timestamp", lambda: "2025-04-01T09:30:00.000000Z")
    three, four = AuditLog(tmp_path / "c" / "RXX.jsonl"), AuditLog(tmp_path / "d" / "RXX.jsonl")
    for i in range(5):
        three.append(_event(i))
        four.append(_event(i))
    assert three.path.read_bytes() == four.path.read_bytes()
    assert three.head_path.read_bytes() == four.head_path.read_bytes()


def _append_many(path: str, n: int, barrier) -> None:
    """Worker for the concurrency test: wait for the others, then append n events."""
    log = AuditLog(path)
    barrier.wait()
    for i in range(n):
        log.append(_event(i, user=f"kernel-{os.getpid()}"))


def test_concurrent_processes_make_one_contiguous_chain(tmp_path: Path) -> None:
    path = str(tmp_path / "audit" / "RXX.jsonl")
    ctx = multiprocessing.get_context("spawn")  # as separate as papermill kernels are
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_append_many, args=(path, 150, barrier)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    result = verify_log(path)
    assert result.ok, result.problem
    assert result.n_entries == 600
    entries = list(AuditLog(path).entries())
    assert [e["seq"] for e in entries] == list(range(1, 601))
    assert sorted(Counter(e["pid"] for e in entries).values()) == [150] * 4


def test_concurrent_threads(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "RXX.jsonl")
    threads = [
        threading.Thread(target=lambda: [log.append(_event(i)) for i in range(25)])
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.verify().n_entries == 100 and log.verify().ok


# -- tampering ------------------------------------------------------------------------------


def test_altered_middle_entry_is_named(log: AuditLog) -> None:
    lines = _lines(log)
    entry = json.loads(lines[4])
    entry["user"] = "someone_else"
    lines[4] = _canonical_line(entry)
    _write(log, lines)
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_line, result.first_bad_seq, result.n_entries) == (5, 5, 4)
    assert result.problem == "line 5 (seq 5) was altered: its hash does not match its content"


def test_altered_and_rehashed_entry_breaks_the_link(log: AuditLog) -> None:
    lines = _lines(log)
    entry = json.loads(lines[4])
    entry["decision"] = "deny"
    entry["hash"] = entry_hash(entry)
    lines[4] = _canonical_line(entry)
    _write(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.first_bad_seq) == (False, 6, 6)
    assert "line 6 (seq 6) does not link" in result.problem


def test_deleted_middle_line_names_the_missing_seq(log: AuditLog) -> None:
    lines = _lines(log)
    del lines[4]
    _write(log, lines)
    result = log.verify()
    assert not result.ok
    assert result.problem == "entry seq 5 is missing (line 5 has seq 6)"
    assert (result.first_bad_line, result.first_bad_seq) == (5, 5)


def test_truncated_end_is_detected_via_head(log: AuditLog) -> None:
    _write(log, _lines(log)[:-3])
    result = log.verify()
    assert not result.ok
    assert result.problem == (
        "the log ends at seq 7 but its head records seq 10: entries were removed from the end"
    )
    assert (result.n_entries, result.first_bad_seq) == (7, 8)


def test_garbled_final_line_is_named(log: AuditLog) -> None:
    lines = _lines(log)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]  # a partial write: cut mid-line
    _write(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.n_entries) == (False, 10, 9)
    assert result.problem.startswith("line 10 is incomplete")


def test_garbled_line_with_newline_is_named(log: AuditLog) -> None:
    lines = _lines(log)
    lines[2] = b'{"seq":3,"ti\x00\xff garbage\n'
    _write(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 3)
    assert result.problem == "line 3 is not valid JSON: it is garbled or truncated"
    with pytest.raises(StoreError, match="line 3"):
        list(log.entries())


def test_reordered_lines_are_detected(log: AuditLog) -> None:
    lines = _lines(log)
    lines[3], lines[4] = lines[4], lines[3]
    _write(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line) == (False, 4)
    assert "seq 4 is missing (line 4 has seq 5)" in result.problem


def test_missing_head_is_a_problem(log: AuditLog) -> None:
    log.head_path.unlink()
    result = log.verify()
    assert not result.ok and "head file RXX.jsonl.head is missing" in result.problem


def test_verify_missing_or_empty_log_is_ok(tmp_path: Path) -> None:
    assert verify_log(tmp_path / "nowhere" / "RXX.jsonl") == audit.VerifyResult(True, 0)
    assert not (tmp_path / "nowhere").exists()  # verifying creates nothing
    (tmp_path / "RXX.jsonl").touch()
    assert verify_log(tmp_path / "RXX.jsonl").ok


# -- failing closed -------------------------------------------------------------------------


def test_append_refuses_a_truncated_log(log: AuditLog) -> None:
    _write(log, _lines(log)[:-3])
    before = log.path.read_bytes()
    with pytest.raises(StoreError, match=r"refusing to append.*head records seq 10"):
        log.append(_event())
    assert log.path.read_bytes() == before  # damage is not buried under new entries


def test_append_refuses_a_garbled_tail(log: AuditLog) -> None:
    _write(log, [*_lines(log)[:-1], b'{"seq":10,'])
    with pytest.raises(StoreError, match="incomplete"):
        log.append(_event())


def test_append_recovers_from_an_interrupted_head_update(log: AuditLog) -> None:
    ninth = list(log.entries())[8]
    log.head_path.write_text(json.dumps({"seq": 9, "hash": ninth["hash"]}))
    assert "interrupted append" in log.verify().problem
    log.append(_event(10))
    assert log.verify() == audit.VerifyResult(True, 11)


def test_failed_head_update_leaves_nothing_half_recorded(log: AuditLog, monkeypatch) -> None:
    before = log.path.read_bytes()

    def broken(self, seq, digest):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(AuditLog, "_write_head", broken)
    with pytest.raises(StoreError, match="No space left"):
        log.append(_event())
    assert log.path.read_bytes() == before
    assert log.verify() == audit.VerifyResult(True, 10)


def test_unwritable_directory_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the audit directory should be")
    log = AuditLog(blocker / "RXX.jsonl")
    with pytest.raises(StoreError, match=re.escape(str(log.path))) as info:
        log.append(_event())
    assert "writable" in str(info.value)


def test_event_validation() -> None:
    with pytest.raises(UsageError, match="allow"):
        _event(decision="maybe")
    with pytest.raises(UsageError, match="action"):
        _event(action=" ")
    with pytest.raises(UsageError, match="JSON"):
        _event(details={"when": object()})
    with pytest.raises(UsageError, match="JSON"):
        _event(details={"rate": float("nan")})
    with pytest.raises(UsageError, match="string"):
        _event(user=None)


# -- for people -----------------------------------------------------------------------------


def test_format_entries_shows_the_fields(log: AuditLog) -> None:
    log.append(
        _event(
            action="release",
            decision="deny",
            user="dr_who",
            purpose="direct_care",
            agreement_id="DSA-42",
            reason="count below 8\nsuppressed",
            details={"sql_hash": "ab12"},
        )
    )
    text = format_entries(log.entries())
    header, rule, *rows = text.splitlines()
    assert header.split() == [
        "seq",
        "time",
        "user",
        "org",
        "purpose",
        "action",
        "decision",
        "reason",
        "details",
    ]
    assert set(rule) <= {"-", " "}
    assert len(rows) == 11
    last = rows[-1]
    expected = ["11", "dr_who", "RXX", "direct_care", "release", "deny"]
    expected += ["count below 8 suppressed", "agreement=DSA-42", "sql_hash=ab12"]
    for word in expected:
        assert word in last
    assert "dataset=rtt_pathways" in rows[0] and "columns=org,weeks" in rows[0]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0])
    limited = format_entries(log.entries(), limit=2).splitlines()
    assert len(limited) == 4 and "dr_who" in limited[-1]
    assert format_entries([]) == "(no audit entries)"


def test_filter_entries(log: AuditLog) -> None:
    log.append(_event(action="connect", user="other", decision="deny", purpose="direct_care"))
    entries = list(log.entries())
    assert [e["seq"] for e in filter_entries(entries, user="other")] == [11]
    assert len(list(filter_entries(entries, action="query", decision="allow"))) == 10
    assert [e["seq"] for e in filter_entries(entries, purpose="direct_care")] == [11]
    assert len(list(filter_entries(entries, since=entries[5]["time"]))) == 6
    assert list(filter_entries(entries, since="2999-01-01")) == []


def test_long_entries_are_read_back_from_the_end(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "RXX.jsonl")
    log.append(_event(details={"columns": [f"column_{i}" for i in range(3000)]}))  # > 8 KiB
    log.append(_event(details={"columns": [f"col_{i}" for i in range(5000)]}))
    third = log.append(_event(1))
    assert third["prev_hash"] == list(log.entries())[1]["hash"]
    assert log.verify() == audit.VerifyResult(True, 3)
