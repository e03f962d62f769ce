"""``fdp catalog``: the catalogue's datasets, or one dataset's columns and classification."""

from __future__ import annotations

import argparse


def add_catalog_parser(sub, common: argparse.ArgumentParser) -> None:
    catalog = sub.add_parser(
        "catalog",
        parents=[common],
        help="describe the datasets and columns of the catalogue",
        description="List the catalogue's datasets, or one dataset's columns with their "
        "classification (direct identifier, quasi-identifier, clinical, operational).",
    )
    catalog.add_argument("dataset", nargs="?", help="a dataset name to show its columns")


def run_catalog_command(args: argparse.Namespace, out, err) -> int:
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
