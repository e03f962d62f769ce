"""The ``fdp`` command line. ``main(argv, environ)`` is the testable entry point.

User errors (``FdpError``) print one line without a traceback and exit with the class's code;
argument errors exit 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fdp_kernel import __version__
from fdp_kernel.errors import FdpError, UsageError

DEFAULT_DEMO_DIR = Path("data") / "demo"


def _count(text: str) -> int:
    """Parse 100000, 100_000, 100k or 1m."""
    cleaned = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale > 1 else cleaned
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of patients (e.g. 100000, 100k, 1m)"
        ) from None
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of patients")
    return int(value)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    from fdp_kernel.synth import DEFAULT_AS_OF, DEFAULT_PATIENTS, DEFAULT_SEED

    parser = argparse.ArgumentParser(
        prog="fdp",
        description="Federated data platform for health and care: synthetic federation, "
        "governed access, reports.",
    )
    parser.add_argument("--version", action="version", version=f"fdp {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    synth = sub.add_parser(
        "synth",
        parents=[common],
        help="write a synthetic federation: one DuckDB store per organisation + federation.yaml",
        description="Generate a synthetic federation: one ICB with three acute trusts, a "
        "community provider, a local authority and GP practices (about 40 at 100k patients). "
        "The same --seed and --patients give identical data.",
    )
    synth.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_DEMO_DIR,
        help=f"output folder (default: {DEFAULT_DEMO_DIR})",
    )
    synth.add_argument(
        "--patients",
        type=_count,
        default=DEFAULT_PATIENTS,
        help=f"registered patients (default: {DEFAULT_PATIENTS:,}; 100k, 1m work)",
    )
    synth.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})"
    )
    synth.add_argument(
        "--as-of",
        type=_date,
        default=DEFAULT_AS_OF,
        help=f"reference date of the data, YYYY-MM-DD (default: {DEFAULT_AS_OF})",
    )
    synth.add_argument("--force", action="store_true", help="replace an existing federation")
    synth.add_argument(
        "--spark",
        metavar="ORG",
        action="append",
        default=[],
        help="write this node as Parquet for Spark (store spark://local); repeatable",
    )
    synth.add_argument(
        "--postgres",
        metavar="ORG=URL",
        action="append",
        default=[],
        help="load this node into PostgreSQL and enforce its policy there "
        "(URL postgresql://ADMIN@HOST:PORT/DATABASE, password in PGPASSWORD); repeatable",
    )

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="build the demo federation and run every report into reports/index.html",
        description="Build the demo federation (100k patients) and run every report template "
        "for every organisation it suits, ending with the path of reports/index.html.",
    )
    demo.add_argument("--out", type=Path, default=DEFAULT_DEMO_DIR, help="federation folder")
    demo.add_argument("--patients", type=_count, default=DEFAULT_PATIENTS, help="patients")
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    demo.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="where reports and reports/index.html go (default: reports)",
    )
    demo.add_argument("--templates", type=Path, help="template folder (default: templates/)")

    catalog = sub.add_parser(
        "catalog",
        parents=[common],
        help="describe the datasets and columns of the catalogue",
        description="List the catalogue's datasets, or one dataset's columns with their "
        "classification (direct identifier, quasi-identifier, clinical, operational).",
    )
    catalog.add_argument("dataset", nargs="?", help="a dataset name to show its columns")

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

    transparency = sub.add_parser(
        "transparency",
        parents=[common],
        help="write plain-language transparency pages for patients and the public",
        description="Write one HTML page per node and one for the federation: agreements in "
        "force, purposes, and disclosure-controlled counts of accesses and releases per "
        "purpose over a period, from the audit logs.",
    )
    transparency.add_argument("--federation", type=Path, help="federation.yaml or its folder")
    transparency.add_argument(
        "--out",
        type=Path,
        default=Path("reports") / "transparency",
        help="output folder (default: reports/transparency)",
    )
    transparency.add_argument(
        "--since", type=_date, help="start of the period (default: a year ago)"
    )

    from fdp_kernel.reports.cli import add_report_parser

    add_report_parser(sub, common)
    from fdp_kernel.ingest.cli import add_ingest_parser

    add_ingest_parser(sub, common)
    return parser


def cmd_synth(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.placement import move_to_postgres, move_to_spark, parse_postgres_option
    from fdp_kernel.progress import Progress
    from fdp_kernel.synth import generate_federation

    postgres = [parse_postgres_option(text) for text in args.postgres]
    summary = generate_federation(
        args.out,
        patients=args.patients,
        seed=args.seed,
        as_of=args.as_of,
        force=args.force,
        progress=Progress(err, enabled=not args.quiet),
    )
    for org in args.spark:
        folder = move_to_spark(summary.path, org)
        print(f"{org}: Parquet for Spark in {folder}", file=err)
    for org, url in postgres:
        print(f"{org}: loaded into {move_to_postgres(summary.path, org, url)}", file=err)
    total = sum(summary.rows.values())
    print(f"{summary.organisations} organisations, {total:,} rows: {summary.path}", file=out)
    return 0


def cmd_demo(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.config import FEDERATION_FILE, load_federation
    from fdp_kernel.errors import StoreError
    from fdp_kernel.progress import Progress
    from fdp_kernel.reports.index import write_index
    from fdp_kernel.reports.params import load_template
    from fdp_kernel.reports.schedule import REPO_ROOT, Planner, ensure_kernel, run_jobs
    from fdp_kernel.synth import generate_federation
    from fdp_kernel.transparency import write_pages

    existing = args.out / FEDERATION_FILE
    if existing.exists() and not load_federation(existing).synthetic:
        raise StoreError(
            f"{existing} is not a synthetic federation; `fdp demo` only replaces its own demo "
            "data. Choose another --out"
        )
    progress = Progress(err, enabled=not args.quiet)
    summary = generate_federation(
        args.out, patients=args.patients, seed=args.seed, force=True, progress=progress
    )
    fed = load_federation(summary.path)
    ensure_kernel(err)
    planner = Planner(
        templates=args.templates or REPO_ROOT / "templates",
        out=args.reports,
        run="demo",
        federation=summary.path.resolve(),
        environ=args.environ,
    )
    jobs = []
    for name, path in planner.templates.items():
        suited = load_template(path).org_types
        jobs += [
            planner.job(name, o.code, {})
            for o in fed.organisations.values()
            if o.org_type in suited
        ]
    progress.step(f"running {len(jobs)} reports ({len(planner.templates)} templates)")
    results = run_jobs(jobs, err=None if args.quiet else err)
    write_pages(fed, args.reports / "transparency")
    index = write_index(args.reports)
    failed = [r for r in results if r.status != "ok"]
    for r in failed:
        print(f"FAILED {r.template} for {r.org}: {r.reason}", file=err)
    print(f"{len(results) - len(failed)} of {len(results)} reports ok", file=out)
    print(index.resolve(), file=out)
    return 1 if failed else 0


def cmd_catalog(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.catalog import CATALOG, dataset

    if args.dataset is None:
        width = max(len(n) for n in CATALOG)
        for ds in CATALOG.values():
            print(f"{ds.name:<{width}}  {ds.description}", file=out)
        return 0
    ds = dataset(args.dataset)
    print(f"{ds.name}: {ds.description}", file=out)
    width = max(len(c.name) for c in ds.columns)
    for c in ds.columns:
        print(
            f"  {c.name:<{width}}  {c.dtype:<8} {c.classification.value:<18} {c.description}",
            file=out,
        )
    return 0


def _audit_logs(args) -> list[Path]:
    from fdp_kernel.config import load_federation
    from fdp_kernel.workspace import find_federation

    fed = load_federation(args.federation or find_federation(args.environ))
    if args.org:
        return [fed.audit_path(fed.org(args.org).code)]
    logs = [fed.audit_path(code) for code in fed.organisations]
    return [*logs, fed.root / "audit" / "federation.jsonl"]


def cmd_audit(args: argparse.Namespace, out, err) -> int:
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


def cmd_transparency(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.config import load_federation
    from fdp_kernel.transparency import write_pages
    from fdp_kernel.workspace import find_federation

    fed = load_federation(args.federation or find_federation(args.environ))
    pages = write_pages(fed, args.out, since=args.since)
    print(f"{len(pages)} transparency pages: {pages[0]}", file=out)
    return 0


def cmd_ingest(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.ingest.cli import run_ingest_command

    return run_ingest_command(args, out, err)


def cmd_report(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.reports.cli import run_report_command

    return run_report_command(args, out, err)


COMMANDS = {
    "synth": cmd_synth,
    "demo": cmd_demo,
    "catalog": cmd_catalog,
    "audit": cmd_audit,
    "report": cmd_report,
    "transparency": cmd_transparency,
    "ingest": cmd_ingest,
}


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out=None,
    err=None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code or 0)
    args.environ = environ
    try:
        return COMMANDS[args.command](args, out, err)
    except FdpError as exc:
        print(f"fdp {args.command}: error: {exc}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"fdp {args.command}: interrupted", file=err)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
