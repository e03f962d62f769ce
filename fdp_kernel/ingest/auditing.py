"""The audit entries of an ingest run, in the node's hash-chained audit log.

One ``ingest`` entry per file (decision ``allow``): the file, its sha256, the datasets and the
counts read, loaded and quarantined, or ``skipped``. A run that fails is recorded once with
decision ``deny`` and the error. The entries are appended before the transaction commits:
if the log cannot be written, nothing is loaded.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from fdp_kernel.config import Federation
from fdp_kernel.errors import FdpError
from fdp_kernel.governance.audit import MAX_BATCH, AuditEvent, AuditLog
from fdp_kernel.governance.keys import audit_key
from fdp_kernel.ingest.report import IngestReport


class AuditFailed(Exception):
    """The audit log could not be written: the load is rolled back, the cause re-raised."""


def _events(user: str, org: str, report: IngestReport) -> list[AuditEvent]:
    out = []
    for fr in report.files:
        c = fr.total
        if fr.status == "skipped":
            reason = f"{fr.path.name}: already loaded ({fr.previous}); nothing to do"
        else:
            reason = (
                f"{fr.path.name}: {c.read} rows read, {c.loaded} loaded, "
                f"{c.quarantined} quarantined"
            )
        details = {
            "ingest_id": report.ingest_id,
            "file": str(fr.path.resolve()),
            "sha256": fr.sha256,
            "format": fr.format,
            "datasets": fr.datasets(),
            "status": fr.status,
            "rows_read": c.read,
            "rows_loaded": c.loaded,
            "rows_quarantined": c.quarantined,
        }
        out.append(AuditEvent("ingest", "allow", user, org, reason=reason, details=details))
    return out


def audit_run(fed: Federation, org: str, user: str, report: IngestReport) -> None:
    events = _events(user, org, report)
    log = AuditLog(fed.audit_path(org), audit_key(fed))
    try:
        for start in range(0, len(events), MAX_BATCH):
            log.append_many(events[start : start + MAX_BATCH])
    except FdpError as exc:
        raise AuditFailed() from exc


def audit_failure(fed, org, user, ingest_id, paths, hashes, exc: FdpError) -> None:
    """Record a run that failed (nothing loaded); never hides the original error."""
    details = {
        "ingest_id": ingest_id,
        "files": [str(Path(p).resolve()) for p in paths],
        "sha256": list(hashes),
    }
    event = AuditEvent(
        "ingest", "deny", user, org, reason=f"not loaded: {exc}"[:2000], details=details
    )
    with contextlib.suppress(FdpError):
        AuditLog(fed.audit_path(org), audit_key(fed)).append(event)
