"""Append-only, hash-chained audit log: one JSON Lines file per node.

Each governance decision is one line carrying ``seq`` (1, 2, ...), ``prev_hash`` (the previous
entry's ``hash``; 64 zeros first) and ``hash``: with the federation's audit key (the node
service's), an HMAC-SHA256 of the entry's canonical JSON without ``hash`` (and ``"mac":
"hmac-sha256"`` on the entry), so nobody without the key can rewrite entries and recompute
the chain; without a key, its sha256 (a chain that shows accidents, not tampering by someone
who can write it). ``<log>.head`` records the last seq and hash (with its own HMAC), so removal
from the end is detected. The folder's ``manifest.jsonl`` (itself a keyed chain) records every
log ever created, so a deleted log is found (``verify_folder``).
Appends hold an exclusive ``flock`` on ``<log>.lock`` for read-last + write + fsync + head
update, so parallel processes form one chain; readers hold a shared lock only while they note
the log size and head, then stream that prefix. Fail closed: an append that cannot be made
durable, or onto a damaged tail, raises :class:`StoreError` rather than hide the damage.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fdp_kernel.errors import StoreError, UsageError

GENESIS_HASH = "0" * 64
MAC = "hmac-sha256"
MANIFEST = "manifest.jsonl"
DECISIONS = frozenset({"allow", "deny"})
MAX_BATCH = 8  # entries written together by append_many
MAX_ENTRY_BYTES = 1 << 20  # an entry is a few hundred bytes; this bounds reads of a bad tail
_CHUNK = 8192
_SEPARATORS = (",", ":")
_Problem = tuple[str, int | None]  # what is wrong, and the seq it concerns


@dataclass(frozen=True)
class AuditEvent:
    """One governance decision, as the caller knows it (the log adds seq, time and hashes)."""

    action: str
    decision: str
    user: str
    org: str
    purpose: str | None = None
    agreement_id: str | None = None
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict, hash=False)
    rule: str = ""  # the rule that made the decision (fdp_kernel.governance.rules)

    def __post_init__(self) -> None:
        if not isinstance(self.action, str) or not self.action.strip():
            raise UsageError("an audit event needs a non-empty action, e.g. 'query' or 'release'")
        if self.decision not in DECISIONS:
            raise UsageError(f"audit decision must be 'allow' or 'deny', not {self.decision!r}")
        optional = [v for v in (self.purpose, self.agreement_id) if v is not None]
        texts = (self.user, self.org, self.reason, self.rule, *optional)
        if not all(isinstance(v, str) for v in texts):
            raise UsageError(
                "audit user, org, reason, rule must be strings; purpose/agreement str|None"
            )
        try:  # keep a JSON round-tripped copy: what append returns is exactly what is logged
            plain = json.loads(_canonical(dict(self.details)))
        except (TypeError, ValueError) as exc:
            raise UsageError(f"audit details must be a JSON-serialisable mapping: {exc}") from exc
        object.__setattr__(self, "details", plain)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :meth:`AuditLog.verify`; ``n_entries`` counts entries that verified."""

    ok: bool
    n_entries: int
    problem: str | None = None
    first_bad_line: int | None = None
    first_bad_seq: int | None = None


def _canonical(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=_SEPARATORS, ensure_ascii=False, allow_nan=False
    )


def entry_hash(entry: Mapping[str, Any], key: bytes | None = None) -> str:
    """The hash of ``entry`` without its ``hash`` key: HMAC-SHA256 with ``key`` when the entry
    is keyed (``"mac"``), else sha256 of its canonical JSON."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    data = _canonical(body).encode("utf-8")
    if body.get("mac") == MAC:
        if key is None:
            return "?"  # a keyed entry cannot be checked without the key
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def _head_mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"head:{seq}:{digest}".encode(), hashlib.sha256).hexdigest()


def _timestamp() -> str:
    """Now, UTC, ISO-8601 with microseconds and 'Z' (a seam for deterministic tests)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read_last_line(fd: int, size: int) -> bytes | None:
    """The last line (None if empty), read backwards; ValueError if it is cut or too long."""
    if size == 0:
        return None
    if os.pread(fd, 1, size - 1) != b"\n":
        raise ValueError("the last line is incomplete (it has no line ending)")
    pos, buf = size - 1, b""  # pos: where the unread part ends (the final newline)
    while True:
        start = max(0, pos - _CHUNK)
        chunk = os.pread(fd, pos - start, start)
        buf, cut = chunk + buf, chunk.rfind(b"\n")
        if cut >= 0:
            return buf[cut + 1 :]
        if start == 0:
            return buf
        if len(buf) > MAX_ENTRY_BYTES:
            raise ValueError(f"the last line is longer than {MAX_ENTRY_BYTES} bytes")
        pos = start


def _parse_link(raw: bytes | str | Mapping[str, Any]) -> tuple[int, str]:
    """(seq, hash) of a head file or an entry, checking their types."""
    obj = raw if isinstance(raw, Mapping) else json.loads(raw)
    seq, digest = obj["seq"], obj["hash"]
    if type(seq) is not int or not isinstance(digest, str):
        raise ValueError("seq must be an integer and hash a string")
    return seq, digest


class AuditLog:
    """An append-only, hash-chained audit log at ``path``, e.g. ``<dir>/audit/RXX.jsonl``;
    keyed (HMAC) when ``key`` is given. A new log is first recorded in the folder's manifest
    (unless this is the manifest)."""

    def __init__(self, path: str | Path, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.head_path = self.path.with_name(self.path.name + ".head")
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @property
    def is_manifest(self) -> bool:
        return self.path.name == MANIFEST

    def _register(self) -> None:
        """Record this log in the folder's manifest before its first entry."""
        if self.is_manifest or self.path.exists():
            return
        manifest = AuditLog(self.path.parent / MANIFEST, self.key)
        if self.path.name in manifest.logs():
            return  # listed already (it was deleted since: verify says so)
        event = AuditEvent(
            "log",
            "allow",
            "fdp",
            self.path.stem,
            reason="log created",
            details={"log": self.path.name},
        )
        manifest.append(event)

    def logs(self) -> set[str]:
        """For a manifest: the names of every log it records."""
        if not self.path.exists():
            return set()
        return {e.get("details", {}).get("log") for e in self.entries()} - {None}

    def _fail(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(
            f"cannot {what} the audit log {self.path}: {exc}. Anything that needed auditing is "
            f"refused: give this user read and write access to {self.path.parent} (and check "
            "free space), or point the node's audit log elsewhere"
        )

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold ``flock`` on the lock file; a reader that cannot open it goes unlocked."""
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exclusive:
                raise self._fail("lock", exc) from exc
            yield  # no log here, or a read-only copy: nobody can be appending to it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _check_tail(self, fd: int, size: int) -> tuple[int, str]:
        """(seq, hash) of the last entry, once its line is whole and agrees with the head."""
        try:
            line = _read_last_line(fd, size)
            last = None if line is None else json.loads(line)
            seq, digest = (0, GENESIS_HASH) if last is None else _parse_link(last)
            if last is not None and entry_hash(last, self.key) != digest:
                raise ValueError(f"the last entry (seq {seq}) does not match its hash")
            prev = GENESIS_HASH if last is None else last["prev_hash"]
            head = _parse_link(self.head_path.read_bytes()) if self.head_path.exists() else None
            if head is not None and self.key is not None:
                raw_head = json.loads(self.head_path.read_bytes())
                if raw_head.get("mac") not in (None, _head_mac(self.key, *head)):
                    raise ValueError("the head file's MAC does not match it")
            # The head is the last entry, or a batch behind it when an append was interrupted
            # just before its head update (the entries are whole: carry on; verify reports it).
            head_seq, head_hash = head or (0, GENESIS_HASH)
            behind = (head_seq, head_hash) == (seq - 1, prev) or seq - MAX_BATCH <= head_seq < seq
            if (head_seq, head_hash) != (seq, digest) and not behind:
                recorded = "is missing" if head is None else f"records seq {head[0]}"
                raise ValueError(f"the log ends at seq {seq} but its head {recorded}")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreError(
                f"refusing to append to the audit log {self.path}: {exc}. Run `fdp audit verify` "
                "and have the node's information governance lead investigate before continuing"
            ) from exc
        except OSError as exc:
            raise self._fail("read", exc) from exc
        return seq, digest

    def _write_head(self, seq: int, digest: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.head_path.name}.")
        head: dict[str, Any] = {"hash": digest, "seq": seq}
        if self.key is not None:
            head["mac"] = _head_mac(self.key, seq, digest)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_canonical(head).encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.head_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def append(self, event: AuditEvent) -> dict:
        """Record ``event`` durably and return the stored entry; StoreError if it cannot."""
        return self.append_many([event])[0]

    def append_many(self, events: list[AuditEvent]) -> list[dict]:
        """Record several events as consecutive entries with one write and one fsync."""
        if not 0 < len(events) <= MAX_BATCH or not all(isinstance(e, AuditEvent) for e in events):
            raise UsageError("AuditLog.append takes AuditEvent objects")
        try:  # parents get default permissions; the log's own directory is private
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._fail("create the directory of", exc) from exc
        self._register()
        with self._locked(exclusive=True):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise self._fail("open", exc) from exc
            try:
                size = os.fstat(fd).st_size
                seq, prev = self._check_tail(fd, size)
                entries, chunks = [], []
                for event in events:
                    seq += 1
                    entry: dict[str, Any] = {"seq": seq, "time": _timestamp(), "pid": os.getpid()}
                    entry.update(asdict(event), prev_hash=prev)
                    if self.key is not None:
                        entry["mac"] = MAC
                    entry["hash"] = prev = entry_hash(entry, self.key)
                    data = _canonical(entry).encode("utf-8") + b"\n"
                    if len(data) > MAX_ENTRY_BYTES:
                        raise UsageError(f"audit entry is too large ({len(data)} bytes)")
                    entries.append(entry)
                    chunks.append(data)
                data = b"".join(chunks)
                try:
                    written = os.write(fd, data)
                    if written != len(data):
                        raise OSError(f"short write ({written} of {len(data)} bytes)")
                    os.fsync(fd)
                    self._write_head(seq, prev)
                except OSError as exc:  # leave nothing half-recorded (the lock is still held)
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                        os.fsync(fd)
                    raise self._fail("write to", exc) from exc
            finally:
                os.close(fd)
        with contextlib.suppress(OSError):  # make the head's rename durable too
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return entries

    def _snapshot(self) -> tuple[int, bytes | None]:
        """The log size and head bytes, read under the lock so that they agree."""
        try:
            with self._locked(exclusive=False):
                size = self.path.stat().st_size if self.path.exists() else 0
                head = self.head_path.read_bytes() if self.head_path.exists() else None
        except OSError as exc:
            raise self._fail("read", exc) from exc
        return size, head

    def _lines(self, size: int) -> Iterator[tuple[int, bytes]]:
        """(line number, raw line) over the first ``size`` bytes, streamed."""
        if size == 0:
            return
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise self._fail("read", exc) from exc
        with f:
            number = 0
            while size > 0 and (raw := f.readline(min(size, MAX_ENTRY_BYTES + 1))):
                size, number = size - len(raw), number + 1
                yield number, raw

    def entries(self) -> Iterator[dict]:
        """Stream the stored entries in order; StoreError on a line that is not JSON."""
        for number, raw in self._lines(self._snapshot()[0]):
            try:
                yield json.loads(raw)
            except ValueError as exc:
                msg = f"line {number} of {self.path} is not JSON: run `fdp audit verify`"
                raise StoreError(msg) from exc

    def verify(self) -> VerifyResult:
        """Check the whole chain and the head, streaming; report the first problem found."""
        size, head_raw = self._snapshot()
        expected, prev, n = 1, GENESIS_HASH, 0
        for number, raw in self._lines(size):
            entry, problem = _check_line(number, raw, expected, prev, self.key)
            if problem is not None:
                return VerifyResult(False, n, problem[0], number, problem[1])
            expected, prev, n = expected + 1, entry["hash"], n + 1
        last, head = expected - 1, self.head_path.name
        if head_raw is None:
            if n == 0:
                return VerifyResult(True, 0)
            msg = f"the log has {n} entries but its head file {head} is missing (deleted?)"
            return VerifyResult(False, n, msg)
        try:
            head_seq, head_hash = _parse_link(head_raw)
        except (ValueError, KeyError, TypeError) as exc:
            return VerifyResult(False, n, f"the head file {head} is unreadable: {exc}")
        ends = f"the log ends at seq {last} but its head records seq {head_seq}"
        if head_seq > last:
            msg = f"{ends}: entries were removed from the end"
            return VerifyResult(False, n, msg, None, last + 1)
        if head_seq < last:
            msg = f"{ends}: entries were added without updating the head (interrupted append?)"
            return VerifyResult(False, n, msg, None, head_seq + 1)
        if head_hash != prev:
            msg = f"the last entry (seq {last}) is not the one its head records: it was replaced"
            return VerifyResult(False, n, msg, None, last)
        if self.key is not None and json.loads(head_raw).get("mac") != _head_mac(
            self.key, head_seq, head_hash
        ):
            return VerifyResult(False, n, f"the head file {head} was not written with the key")
        return VerifyResult(True, n)


def _check_line(
    number: int, raw: bytes, expected: int, prev: str, key: bytes | None = None
) -> tuple[Any, _Problem | None]:
    """(entry, None) when line ``number`` continues the chain, else (None, (problem, seq))."""
    if not raw.endswith(b"\n"):  # also a line longer than MAX_ENTRY_BYTES
        return None, (f"line {number} is incomplete (no line ending): a write was cut short", None)
    try:
        entry = json.loads(raw)
    except ValueError:
        return None, (f"line {number} is not valid JSON: it is garbled or truncated", None)
    try:
        seq, digest = _parse_link(entry)
        if not isinstance(entry["prev_hash"], str):
            raise TypeError("prev_hash")
    except (KeyError, TypeError, ValueError):
        return None, (f"line {number} is not an audit entry (no seq, hash or prev_hash)", None)
    where = f"line {number} (seq {seq})"
    if seq > expected:
        return None, (f"entry seq {expected} is missing (line {number} has seq {seq})", expected)
    if seq < expected:
        return None, (f"{where}: seq {expected} was expected; entries are out of order", seq)
    if key is not None and entry.get("mac") != MAC:
        return None, (f"{where} is not keyed: it was not written by the node service", seq)
    if key is None and entry.get("mac") == MAC:
        return None, (f"{where} is keyed: verify it with the audit key (as the service)", seq)
    if entry_hash(entry, key) != digest:
        return None, (f"{where} was altered: its hash does not match its content", seq)
    if entry["prev_hash"] != prev:
        return None, (f"{where} does not link to the entry before it: entries were moved", seq)
    return entry, None


def verify_log(path: str | Path, key: bytes | None = None) -> VerifyResult:
    """Verify the audit log at ``path`` (see :meth:`AuditLog.verify`)."""
    return AuditLog(path, key).verify()


def verify_folder(folder: Path, key: bytes | None) -> dict[str, VerifyResult]:
    """Every log of an audit folder: those its manifest records (a missing one fails) and any
    other ``*.jsonl`` there (one the manifest does not record fails). The manifest itself comes
    first; a keyed federation's folder without one fails."""
    folder = Path(folder)
    manifest = AuditLog(folder / MANIFEST, key)
    results: dict[str, VerifyResult] = {}
    listed: set[str] = set()
    present = {p.name for p in folder.glob("*.jsonl") if p.name != MANIFEST}
    if manifest.path.exists():
        results[MANIFEST] = manifest.verify()
        if results[MANIFEST].ok:
            listed = manifest.logs()
    elif present or key is not None:
        why = "the manifest of this audit folder is missing (deleted?)"
        results[MANIFEST] = VerifyResult(False, 0, why)
    for name in sorted(listed | present):
        if name not in present:
            results[name] = VerifyResult(False, 0, f"{name} is missing: the manifest records it")
        elif name not in listed and manifest.path.exists() and results[MANIFEST].ok:
            why = f"{name} is not in the manifest: it was not created by fdp"
            results[name] = VerifyResult(False, 0, why)
        else:
            results[name] = AuditLog(folder / name, key).verify()
    return results


def _as_utc(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def filter_entries(
    entries: Iterable[Mapping[str, Any]],
    *,
    user: str | None = None,
    action: str | None = None,
    decision: str | None = None,
    purpose: str | None = None,
    since: datetime | str | None = None,
) -> Iterator[Mapping[str, Any]]:
    """Entries matching every criterion given; ``since`` is inclusive (naive means UTC)."""
    wanted = {"user": user, "action": action, "decision": decision, "purpose": purpose}
    wanted = {k: v for k, v in wanted.items() if v is not None}
    start = None if since is None else _as_utc(since)
    for entry in entries:
        if all(entry.get(k) == v for k, v in wanted.items()) and (
            start is None or _as_utc(entry["time"]) >= start
        ):
            yield entry


_KEY_DETAILS = ("dataset", "columns", "row_count", "rows", "sql_hash", "node", "nodes", "output")
_COLUMNS = (("seq", 6), ("time", 19), ("user", 16), ("org", 8), ("purpose", 22))
_COLUMNS += (("action", 10), ("decision", 8), ("reason", 40), ("details", 70))


def _cell(value: Any, width: int) -> str:
    if isinstance(value, list | tuple):
        value = ",".join(str(v) for v in value)
    text = " ".join(str("-" if value is None else value).split())  # no newlines in a table
    return text if len(text) <= width else text[: width - 1] + "…"


def _column(entry: Mapping[str, Any], name: str) -> Any:
    if name == "time":
        return str(entry.get("time", ""))[:19].replace("T", " ")
    if name != "details":
        return entry.get(name)
    details = entry.get("details") or {}
    keys = [k for k in _KEY_DETAILS if k in details]
    keys += sorted(k for k in details if k not in _KEY_DETAILS)
    parts = [f"{k}={_cell(details[k], 40)}" for k in keys]
    if entry.get("agreement_id"):
        parts.insert(0, f"agreement={entry['agreement_id']}")
    return " ".join(parts)


def format_entries(entries: Iterable[Mapping[str, Any]], limit: int | None = None) -> str:
    """A plain-text table for people (times in UTC); with ``limit``, the last ``limit`` rows."""
    if limit is not None and limit < 0:
        raise UsageError(f"limit must be zero or more, not {limit}")
    rows = collections.deque(entries, maxlen=limit)
    if not rows:
        return "(no audit entries)"
    table = [[name for name, _ in _COLUMNS]]
    table += [[_cell(_column(e, name), width) for name, width in _COLUMNS] for e in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
