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


def _audit_logs(args) -> list[Path]:
    from fdp_kernel.config import find_federation, load_federation

    fed = load_federation(find_federation(args.environ, args.federation))
    if args.org:
        return [fed.audit_path(fed.org(args.org).code)]
    logs = [fed.audit_path(code) for code in fed.organisations]
    return [*logs, fed.root / "audit" / "federation.jsonl"]


def run_audit_command(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.governance.audit import AuditLog, filter_entries, format_entries

    logs = _audit_logs(args)
    if args.audit_command == "verify":
        failures = 0
        for path in logs:
            result = AuditLog(path).verify()
            if result.ok:
                if result.n_entries:
                    noun = "entry" if result.n_entries == 1 else "entries"
                    print(f"ok      {path.name}: {result.n_entries} {noun}", file=out)
            else:
                failures += 1
                print(f"FAILED  {path}: {result.problem}", file=out)
        checked = sum(1 for p in logs if p.exists())
        print(f"{checked} logs checked, {failures} with problems", file=out)
        return 6 if failures else 0
    entries = []
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
