"""One aggregate across 20 nodes against the same aggregate on one store holding their union.

20 trust nodes, each with its own DuckDB store of referral-to-treatment pathways; the ICB asks
for the waiting list by treatment function at every node with ``ws.federated`` (each node runs
it under its own policy, applies disclosure control and audits; nodes run in parallel). The
baseline is the same governed aggregate (``ws.release``) at one node whose store holds the
union of all 20 nodes' rows, measured in the same run. Target (issue 5): ratio <= 1.5.

    python -m benchmarks.bench_federation [--nodes 20] [--rows-per-node 500000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
from pathlib import Path

import duckdb

from benchmarks.bench_governance import build_store, insert_rows, timed, write_federation
from benchmarks.common import Comparison, write_markdown

AS_OF = dt.date(2026, 10, 31)


def query(node):
    from fdp_kernel.metrics import rtt as m

    rtt = node.table("rtt_pathways")
    return m.long_waiters_by_treatment_function(rtt, AS_OF)


def main(argv=None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rows-per-node", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    patients = max(1000, args.rows_per_node // 10)
    codes = [f"R{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(args.nodes)]
    with tempfile.TemporaryDirectory() as tmp:
        fed_dir, union_dir = Path(tmp) / "fed", Path(tmp) / "union"
        for i, code in enumerate(codes):
            build_store(
                fed_dir / "stores" / f"{code}.duckdb",
                code,
                args.rows_per_node,
                patients,
                offset=i * 10_000_000,
            )
        agreement = {
            "id": "DSA-BENCH",
            "title": "benchmark",
            "providers": codes,
            "recipients": ["QBM"],
            "purpose": "elective_planning",
            "level": "aggregate",
            "datasets": {"rtt_pathways": "all", "patients": ["nhs_number"]},
            "legal_basis": "benchmark",
            "valid_from": dt.date(2026, 4, 1),
            "valid_to": dt.date(2029, 3, 31),
        }
        build_store(fed_dir / "stores" / "QBM.duckdb", "QBM", 0, 0)
        write_federation(
            fed_dir, [("QBM", "icb"), *[(c, "acute_trust") for c in codes]], [agreement]
        )
        # The union: one node holding every row (as if one organisation held it all).
        build_store(union_dir / "stores" / "RUN.duckdb", "RUN", 0, 0)
        con = duckdb.connect(str(union_dir / "stores" / "RUN.duckdb"))
        for i, _ in enumerate(codes):
            insert_rows(con, "RUN", args.rows_per_node, patients, offset=i * 10_000_000)
        con.close()
        write_federation(union_dir, [("RUN", "acute_trust")])

        import fdp_kernel

        os.environ.pop("JUPYTERHUB_USER", None)
        os.environ["FDP_FEDERATION"] = str(fed_dir)
        icb = fdp_kernel.connect(purpose="elective_planning", org="QBM")
        fed_s, result = timed(lambda: icb.federated(query), args.repeats)
        assert not result.partial and set(result.data["org"]) == set(codes)
        os.environ["FDP_FEDERATION"] = str(union_dir)
        one = fdp_kernel.connect(purpose="elective_planning", org="RUN")
        union_s, _ = timed(lambda: one.release(query(one)), args.repeats)
    total = args.nodes * args.rows_per_node
    ratio = fed_s / union_s
    write_markdown(
        "federation",
        f"One aggregate across {args.nodes} nodes vs their union ({total:,} rows)",
        ["query", "median s", "ratio to union"],
        [
            [
                f"ws.federated over {args.nodes} nodes (parallel, disclosure at each)",
                f"{fed_s:.3f}",
                f"{ratio:.2f}",
            ],
            ["ws.release at one node holding the union", f"{union_s:.3f}", "1.00"],
        ],
        notes=f"Median of {args.repeats} warm runs on {os.cpu_count()} cores. Target <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}). Each federated run opens a "
        "workspace per node (attach, governed view, key derivation) and writes its audit "
        "entries at the requester and at every node.",
    )
    return [
        Comparison(
            "federation", f"ws.federated over {args.nodes} nodes ({total:,} rows)", fed_s, "s",
            union_s, "union at one node", ratio, "federated / union <= 1.5", ratio <= 1.5,
        )
    ]  # fmt: skip


if __name__ == "__main__":
    main()
