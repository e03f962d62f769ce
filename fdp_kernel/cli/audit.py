"""``fdp audit verify|show``: check every node's hash-chained audit log; print entries."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdp_kernel.errors import UsageError


def add_audit_parser(sub, common: argparse.ArgumentParser) -> None:
    audit = sub.add_parser(
        "audit",
        parents=[common],
        help="verify or show the hash-chained audit logs",
        description="Every governance decision is recorded in its node's append-only, "
        "hash-chained audit log. `verify` checks every log and names the first tampered or "
        "missing entry; `show` prints entries for people.",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION")
    audit_sub.required = True
    verify = audit_sub.add_parser(
        "verify",
        help="check every log's chain; exit non-zero on the first problem",
        description="Check the audit log of each node (or one with --org).",
    )
    show = audit_sub.add_parser(
        "show", help="print audit entries", description="Print audit entries, newest last."
    )
    for p in (verify, show):
        p.add_argument(
            "--federation",
            type=Path,
            help="federation.yaml or its folder (default: $FDP_FEDERATION or data/demo)",
        )
        p.add_argument("--org", help="one organisation's log (ODS code)")
    show.add_argument("--user", help="only this user")
    show.add_argument("--action", help="only this action (connect, table, query, release, deny)")
    show.add_argument("--decision", choices=["allow", "deny"], help="only allow or deny")
    show.add_argument("--purpose", help="only this purpose")
    show.add_argument("--since", help="only entries at or after this time (ISO 8601)")
    show.add_argument("--limit", type=int, default=50, help="the last N entries (default 50)")


def _audit_logs(args):
    """(federation, audit key or None, the logs to read)."""
    from fdp_kernel.config import find_federation, load_federation
    from fdp_kernel.governance.keys import audit_key

    fed = load_federation(find_federation(args.environ, args.federation))
    key = audit_key(fed)
    if args.org:
        return fed, key, [fed.audit_path(fed.org(args.org).code)]
    logs = [fed.audit_path(code) for code in fed.organisations]
    return fed, key, [*logs, fed.root / "audit" / "federation.jsonl"]


def _verify(fed, key, logs: list[Path]) -> dict[Path, object]:
    """Each log's verification: every log of each audit folder its manifest knows of (so a
    deleted log fails), and the logs named."""
    from fdp_kernel.governance.audit import AuditLog, verify_folder

    results: dict[Path, object] = {}
    for folder in sorted({p.parent for p in logs}):
        for name, result in verify_folder(folder, key).items():
            results[folder / name] = result
    for path in logs:
        if path not in results and path.exists():
            results[path] = AuditLog(path, key).verify()
    return results


def run_audit_command(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.governance.audit import AuditLog, filter_entries, format_entries

    fed, key, logs = _audit_logs(args)
    if args.audit_command == "verify":
        if args.org:
            wanted = set(logs)
            results = {p: r for p, r in _verify(fed, key, logs).items() if p in wanted}
            if not results:
                results = {logs[0]: AuditLog(logs[0], key).verify()}
        else:
            results = _verify(fed, key, logs)
        failures = 0
        for path, result in results.items():
            if result.ok:
                if result.n_entries:
                    noun = "entry" if result.n_entries == 1 else "entries"
                    print(f"ok      {path.name}: {result.n_entries} {noun}", file=out)
            else:
                failures += 1
                print(f"FAILED  {path}: {result.problem}", file=out)
        print(f"{len(results)} logs checked, {failures} with problems", file=out)
        return 6 if failures else 0
    entries = []
    for path, result in _verify(fed, key, logs).items():
        if not result.ok and path in logs:
            print(
                f"fdp audit show: WARNING: {path.name} does not verify: {result.problem}", file=err
            )
    for path in logs:
        if path.exists():
            entries.extend(AuditLog(path).entries())
    entries.sort(key=lambda e: e["time"])
    try:
        chosen = filter_entries(
            entries,
            user=args.user,
            action=args.action,
            decision=args.decision,
            purpose=args.purpose,
            since=args.since,
        )
    except ValueError as exc:
        raise UsageError(f"--since: {exc}; write e.g. 2026-11-23T09:00") from None
    print(format_entries(chosen, limit=args.limit), file=out)
    return 0
