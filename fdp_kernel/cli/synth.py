"""``fdp synth`` (write a synthetic federation) and ``fdp demo`` (it, then every report)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdp_kernel.cli.arguments import iso_date, patient_count

DEFAULT_DEMO_DIR = Path("data") / "demo"


def add_synth_parser(sub, common: argparse.ArgumentParser) -> None:
    from fdp_kernel.synth import DEFAULT_AS_OF, DEFAULT_PATIENTS, DEFAULT_SEED

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
        type=patient_count,
        default=DEFAULT_PATIENTS,
        help=f"registered patients (default: {DEFAULT_PATIENTS:,}; 100k, 1m work)",
    )
    synth.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default: {DEFAULT_SEED})"
    )
    synth.add_argument(
        "--as-of",
        type=iso_date,
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


def add_demo_parser(sub, common: argparse.ArgumentParser) -> None:
    from fdp_kernel.synth import DEFAULT_PATIENTS, DEFAULT_SEED

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="build the demo federation and run every report into reports/index.html",
        description="Build the demo federation (100k patients) and run every report template "
        "for every organisation it suits, ending with the path of reports/index.html.",
    )
    demo.add_argument("--out", type=Path, default=DEFAULT_DEMO_DIR, help="federation folder")
    demo.add_argument("--patients", type=patient_count, default=DEFAULT_PATIENTS, help="patients")
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    demo.add_argument(
        "--reports",
        type=Path,
        default=Path("reports"),
        help="where reports and reports/index.html go (default: reports)",
    )
    demo.add_argument("--templates", type=Path, help="template folder (default: templates/)")


def run_synth_command(args: argparse.Namespace, out, err) -> int:
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


def run_demo_command(args: argparse.Namespace, out, err) -> int:
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
