"""What an ingest run did, per file and dataset, and its plain-text summary."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from fdp_kernel.ingest.load import Counts, FileState


@dataclass
class FileReport:
    path: Path
    format: str
    sha256: str
    size: int
    recipe: str
    status: str = "loaded"  # or "skipped": the same bytes and recipe were loaded before
    previous: str | None = None  # the ingest that loaded it, when skipped
    state: FileState | None = None
    unused: tuple[str, ...] = ()  # source columns not loaded
    empty: tuple[str, ...] = ()  # optional catalogue columns the file does not supply
    planned: str | None = None  # the dataset of a CSV or Parquet file

    def counts(self) -> dict[str | None, Counts]:
        return dict(self.state.counts) if self.state else {}

    @property
    def total(self) -> Counts:
        out = Counts()
        for c in self.counts().values():
            out.read += c.read
            out.loaded += c.loaded
            out.quarantined += c.quarantined
            out.pending += c.pending
        return out

    @property
    def blank(self) -> int:
        return self.state.blank if self.state else 0

    @property
    def batches(self) -> int:
        return self.state.batches if self.state else 0

    def datasets(self) -> list[str]:
        found = sorted(name for name in self.counts() if name)
        return found or ([self.planned] if self.planned else [])


@dataclass
class IngestReport:
    ingest_id: str
    org: str
    store: Path
    as_of: dt.date
    dry_run: bool = False
    files: list[FileReport] = field(default_factory=list)
    new: dict[str, int] = field(default_factory=dict)  # rows added per dataset
    replaced: dict[str, int] = field(default_factory=dict)  # rows whose key existed
    reasons: list[tuple[str | None, str, int]] = field(default_factory=list)
    seconds: float = 0.0

    def finish(self, before: dict[str, int], after: dict[str, int]) -> None:
        loaded: dict[str, int] = {}
        for fr in self.files:
            for name, c in fr.counts().items():
                if name:
                    loaded[name] = loaded.get(name, 0) + c.loaded
        for name, n in loaded.items():
            if name not in after:  # not held by this node: every row was quarantined
                continue
            self.new[name] = after[name] - before[name]
            self.replaced[name] = n - self.new[name]

    @property
    def total(self) -> Counts:
        out = Counts()
        for fr in self.files:
            t = fr.total
            out.read += t.read
            out.loaded += t.loaded
            out.quarantined += t.quarantined
        return out

    def format(self) -> str:
        verb = "checked (dry run, nothing written)" if self.dry_run else "loaded"
        lines = [f"ingest {self.ingest_id} into {self.org} ({self.store}), as of {self.as_of}"]
        for fr in self.files:
            if fr.status == "skipped":
                lines.append(
                    f"  {fr.path}: already loaded by {fr.previous}; nothing to do "
                    "(--force loads it again)"
                )
                continue
            lines.append(f"  {fr.path} ({fr.format}):")
            for name, c in sorted(fr.counts().items(), key=lambda kv: str(kv[0])):
                label = name or "(no dataset)"
                lines.append(
                    f"    {label}: {c.read:,} rows read = {c.loaded:,} {verb} + "
                    f"{c.quarantined:,} quarantined"
                )
            if fr.blank:
                lines.append(f"    {fr.blank:,} blank line(s) skipped")
            if fr.unused:
                lines.append(
                    f"    not loaded (no catalogue column; list under `ignore:` in a mapping "
                    f"file to silence): {', '.join(fr.unused)}"
                )
            if fr.empty:
                lines.append(f"    left empty (not in the file): {', '.join(fr.empty)}")
        for name in sorted(self.new):
            lines.append(
                f"  {name}: {self.new[name]:,} new rows, {self.replaced[name]:,} replaced "
                "(same key)"
            )
        t = self.total
        lines.append(
            f"total: {t.read:,} rows read = {t.loaded:,} {verb} + {t.quarantined:,} quarantined"
            f" in {self.seconds:.1f} s"
        )
        if self.reasons:
            lines.append("quarantined because (most frequent first):")
            for name, reason, n in self.reasons:
                lines.append(f"  {n:>8,}  {name or '(no dataset)'}: {reason}")
            if not self.dry_run:
                lines.append(
                    f"see them with `fdp ingest --org {self.org} --quarantine`; export, fix and "
                    "reload them as docs/ingest.md describes"
                )
        return "\n".join(lines)
