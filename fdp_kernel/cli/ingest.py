"""``fdp ingest``: load extracts into a node's store, or list and export quarantined rows."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdp_kernel.cli.arguments import iso_date


def add_ingest_parser(sub, common: argparse.ArgumentParser) -> None:
    from fdp_kernel.ingest.run import DEFAULT_BATCH_ROWS

    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="load CSV, Parquet or FHIR R4 extracts into a node's store, checking every row",
        description="Load extracts into an organisation's node store. CSV and Parquet files "
        "go into --dataset (a --mapping file renames and converts their columns); FHIR R4 "
        "NDJSON or Bundles route each resource to its dataset. Every value is checked (type, "
        "code list, NHS number, dates, references); bad rows go to the store's quarantine "
        "with their reasons and source line, good rows load, in one transaction per run. "
        "A file loaded before (same bytes, same mapping) is skipped. With --quarantine: list "
        "quarantined rows, or --export them to CSV to fix and load again. See docs/ingest.md.",
    )
    p.add_argument("files", nargs="*", type=Path, metavar="FILE", help="files to load")
    p.add_argument("--org", required=True, help="the node's organisation (ODS code)")
    p.add_argument("--dataset", help="catalogue dataset of CSV/Parquet files (`fdp catalog`)")
    p.add_argument("--mapping", type=Path, help="mapping file (YAML): source columns -> catalogue")
    p.add_argument(
        "--federation",
        type=Path,
        help="federation.yaml or its folder (default: $FDP_FEDERATION or data/demo)",
    )
    p.add_argument(
        "--as-of",
        type=iso_date,
        help="latest date a value may have (default: the federation's as_of, else today)",
    )
    p.add_argument("--delimiter", help="CSV delimiter (default ','; e.g. ';' or '\\t')")
    p.add_argument("--encoding", help="CSV encoding (default utf-8; e.g. cp1252, latin-1)")
    p.add_argument(
        "--batch-rows",
        type=int,
        default=DEFAULT_BATCH_ROWS,
        help=f"rows per batch (default {DEFAULT_BATCH_ROWS:,}); memory grows with it",
    )
    p.add_argument("--force", action="store_true", help="load files even if loaded before")
    p.add_argument("--dry-run", action="store_true", help="check and report; write nothing")
    p.add_argument(
        "--fail-on-quarantine",
        action="store_true",
        help="exit 1 when any row was quarantined (the good rows still load)",
    )
    p.add_argument("--quarantine", action="store_true", help="list open quarantined rows")
    p.add_argument("--export", type=Path, help="with --quarantine: write them to this CSV")
    p.add_argument("--ingest-id", help="with --export: only rows of this ingest")


def run_ingest_command(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.config import find_federation, load_federation
    from fdp_kernel.errors import UsageError
    from fdp_kernel.governance.policy import identify
    from fdp_kernel.ingest import quarantine
    from fdp_kernel.ingest.run import ingest, store_of
    from fdp_kernel.progress import Progress

    fed = load_federation(find_federation(args.environ, args.federation))
    org = fed.org(args.org)
    if args.quarantine:
        if args.files:
            raise UsageError("--quarantine lists or exports quarantined rows: give no FILEs")
        store = store_of(org)
        if args.export:
            n = quarantine.export(
                store, args.export, dataset=args.dataset, ingest_id=args.ingest_id
            )
            print(f"{n:,} quarantined rows written to {args.export}", file=out)
        else:
            print(quarantine.summary(store, org.code), file=out)
        return 0
    if args.export or args.ingest_id:
        raise UsageError("--export and --ingest-id go with --quarantine")
    if not args.files:
        raise UsageError("give the files to load (or --quarantine to see quarantined rows)")
    report = ingest(
        fed,
        org.code,
        args.files,
        user=identify(args.environ),
        dataset=args.dataset,
        mapping=args.mapping,
        as_of=args.as_of,
        delimiter=args.delimiter.replace("\\t", "\t") if args.delimiter else None,
        encoding=args.encoding,
        batch_rows=args.batch_rows,
        force=args.force,
        dry_run=args.dry_run,
        progress=Progress(err, enabled=not args.quiet),
    )
    print(report.format(), file=out)
    return 1 if args.fail_on_quarantine and report.total.quarantined else 0
