"""``fdp transparency``: plain-language pages of agreements, purposes and use of data."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdp_kernel.cli.arguments import iso_date


def add_transparency_parser(sub, common: argparse.ArgumentParser) -> None:
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
        "--since", type=iso_date, help="start of the period (default: a year ago)"
    )


def run_transparency_command(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.config import find_federation, load_federation
    from fdp_kernel.transparency import write_pages

    fed = load_federation(find_federation(args.environ, args.federation))
    pages = write_pages(fed, args.out, since=args.since)
    print(f"{len(pages)} transparency pages: {pages[0]}", file=out)
    return 0
