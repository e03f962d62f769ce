"""The node service against the embedded mode, measured in the same run.

1. One node (trust RSA) with 10,000,000 pathways over 1,000,000 patients: the same governed
   release (``ws.release`` of the waiting list by treatment function) through ``fdp serve``
   (a separate process; the kernel is a thin client over a Unix socket, identity from the
   socket), embedded in this process, and as raw DuckDB SQL giving the same numbers.
   Target (issue 14): service <= 1.25 x embedded.
2. 20 trust nodes, each its own store: one federated aggregate through the service (one
   service hosting every node; each node applies its own policy and disclosure control)
   against the same aggregate through the service at one node whose store holds the union.
   Target: <= 1.5.

    python -m benchmarks.bench_service [--rows 10000000] [--nodes 20]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from benchmarks.bench_federation import query as federated_query
from benchmarks.bench_governance import (
    RAW_SQL,
    build,
    build_store,
    insert_rows,
    timed,
    write_federation,
)
from benchmarks.common import Comparison, write_markdown

QUICK_ARGS = ["--rows", "1000000", "--patients", "100000", "--rows-per-node", "50000"]


class Service:
    """``fdp serve`` for a federation folder, as its own process."""

    def __init__(self, folder: Path, run: Path) -> None:
        self.run = run
        env = {**os.environ, "FDP_FEDERATION": str(folder)}
        env.pop("FDP_SERVICE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fdp_kernel.cli", "serve", "--socket-dir", str(run)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while not (run / "ident.sock").exists():
            if self.process.poll() is not None or time.time() > deadline:
                raise RuntimeError("fdp serve did not start")
            time.sleep(0.1)

    def connect(self, org: str):
        from fdp_kernel.service.client import connect

        return connect("elective_planning", org, service=str(self.run))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _expression(ws):
    import ibis

    rtt = ws.table("rtt_pathways")
    open_ = rtt.filter(rtt.rtt_end_date.isnull())
    days = ibis.date("2026-10-31").delta(open_.rtt_start_date, unit="day")
    return open_.group_by("treatment_function_code").agg(
        pathways=open_.count(), within_18_weeks=(days <= 126).sum()
    )


def single_node(tmp: Path, rows: int, patients: int, repeats: int) -> list[Comparison]:
    folder = build(tmp / "one", rows, patients)
    os.environ["FDP_FEDERATION"] = str(folder)
    os.environ.pop("JUPYTERHUB_USER", None)
    from fdp_kernel.connection import connect

    embedded = connect(purpose="elective_planning", org="RSA")
    service = Service(folder, tmp / "run-one")
    try:
        remote = service.connect("RSA")
        local_expr, remote_expr = _expression(embedded), _expression(remote)
        emb_s, emb = timed(lambda: embedded.release(local_expr).data, repeats)
        svc_s, svc = timed(lambda: remote.release(remote_expr).data, repeats)
        raw_con = duckdb.connect(str(folder / "stores" / "RSA.duckdb"), read_only=True)
        raw_s, _ = timed(lambda: raw_con.execute(RAW_SQL).df(), repeats)
    finally:
        service.stop()
    key = "treatment_function_code"
    same = (
        emb.sort_values(key)
        .reset_index(drop=True)
        .equals(svc.sort_values(key).reset_index(drop=True))
    )
    assert same, "the service and the embedded release disagree"
    ratio = svc_s / emb_s
    write_markdown(
        "service",
        f"Governed release through the node service vs embedded: {rows:,} rows",
        ["query", "median s", "ratio to embedded", "ratio to raw SQL"],
        [
            [
                "ws.release through fdp serve (thin client)",
                f"{svc_s:.3f}",
                f"{ratio:.2f}",
                f"{svc_s / raw_s:.2f}",
            ],
            ["ws.release embedded", f"{emb_s:.3f}", "1.00", f"{emb_s / raw_s:.2f}"],
            ["raw DuckDB SQL, same numbers", f"{raw_s:.3f}", f"{raw_s / emb_s:.2f}", "1.00"],
        ],
        notes=f"Median of {repeats} warm runs on {os.cpu_count()} cores. Target service <= "
        f"1.25 x embedded: {'met' if ratio <= 1.25 else 'NOT met'} ({ratio:.2f}).",
    )
    return [
        Comparison("service", f"release through the service ({rows:,} rows)", svc_s, "s",
                   emb_s, "embedded", ratio, "service / embedded <= 1.25", ratio <= 1.25),
        Comparison("service", f"release through the service vs raw SQL ({rows:,} rows)",
                   svc_s, "s", raw_s, "raw DuckDB SQL", svc_s / raw_s, "", None),
    ]  # fmt: skip


def federated(tmp: Path, nodes: int, rows_per_node: int, repeats: int) -> list[Comparison]:
    patients = max(1000, rows_per_node // 10)
    codes = [f"R{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(nodes)]
    fed_dir, union_dir = tmp / "fed", tmp / "union"
    for i, code in enumerate(codes):
        store = fed_dir / "stores" / f"{code}.duckdb"
        build_store(store, code, rows_per_node, patients, offset=i * 10_000_000)
    agreement = {
        "id": "DSA-BENCH", "title": "benchmark", "providers": codes, "recipients": ["QBM"],
        "purpose": "elective_planning", "level": "aggregate",
        "datasets": {"rtt_pathways": "all", "patients": ["nhs_number"]},
        "legal_basis": "benchmark", "valid_from": dt.date(2026, 4, 1),
        "valid_to": dt.date(2029, 3, 31),
    }  # fmt: skip
    build_store(fed_dir / "stores" / "QBM.duckdb", "QBM", 0, 0)
    write_federation(fed_dir, [("QBM", "icb"), *[(c, "acute_trust") for c in codes]], [agreement])
    build_store(union_dir / "stores" / "RUN.duckdb", "RUN", 0, 0)
    con = duckdb.connect(str(union_dir / "stores" / "RUN.duckdb"))
    for i, _ in enumerate(codes):
        insert_rows(con, "RUN", rows_per_node, patients, offset=i * 10_000_000)
    con.close()
    write_federation(union_dir, [("RUN", "acute_trust")])
    many, one = Service(fed_dir, tmp / "run-fed"), Service(union_dir, tmp / "run-union")
    try:
        icb, whole = many.connect("QBM"), one.connect("RUN")
        fed_s, result = timed(lambda: icb.federated(federated_query), repeats)
        assert not result.partial and set(result.data["org"]) == set(codes)
        expr = federated_query(whole)
        union_s, _ = timed(lambda: whole.release(expr), repeats)
    finally:
        many.stop()
        one.stop()
    ratio = fed_s / union_s
    total = nodes * rows_per_node
    write_markdown(
        "service_federation",
        f"One aggregate across {nodes} nodes through the node service vs their union "
        f"({total:,} rows)",
        ["query", "median s", "ratio to union"],
        [
            [f"ws.federated over {nodes} nodes through fdp serve", f"{fed_s:.3f}", f"{ratio:.2f}"],
            [
                "ws.release through fdp serve at one node holding the union",
                f"{union_s:.3f}",
                "1.00",
            ],
        ],
        notes=f"Median of {repeats} warm runs on {os.cpu_count()} cores. Target <= 1.5: "
        f"{'met' if ratio <= 1.5 else 'NOT met'} ({ratio:.2f}).",
    )
    return [
        Comparison("service", f"federated over {nodes} nodes through the service "
                   f"({total:,} rows)", fed_s, "s", union_s, "union at one node, service",
                   ratio, "federated / union <= 1.5", ratio <= 1.5),
    ]  # fmt: skip


def main(argv=None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--patients", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rows-per-node", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:  # short paths: Unix socket names
        rows = single_node(Path(tmp), args.rows, args.patients, args.repeats)
        rows += federated(Path(tmp), args.nodes, args.rows_per_node, args.repeats)
    return rows


if __name__ == "__main__":
    main()
