"""Generation throughput: synthetic federation of N patients, all linked tables.

Target (issue 2): 1,000,000 patients in <= 60 s wall on 2 cores, peak memory <= 4 GiB.
Baseline in the same run: copying the very same rows into fresh DuckDB files (the write
floor on this machine), so the ratio says how much the generator adds to plain I/O.

    python -m benchmarks.bench_synth [--patients 1000000]
"""

from __future__ import annotations

import argparse
import tempfile

from benchmarks.common import Comparison, run_measured, write_markdown

GENERATE = """
import json, sys
from fdp_kernel.synth import generate_federation
s = generate_federation(sys.argv[1], patients=int(sys.argv[2]), seed=42, force=True)
print(json.dumps({"rows": sum(s.rows.values()), "orgs": s.organisations}))
"""

COPY = """
import json, sys, pathlib, duckdb
src = pathlib.Path(sys.argv[1]) / "stores"
dst = pathlib.Path(sys.argv[2]); dst.mkdir(parents=True, exist_ok=True)
rows = 0
for store in sorted(src.glob("*.duckdb")):
    con = duckdb.connect(str(dst / store.name))
    con.execute(f"ATTACH '{store}' AS src (READ_ONLY)")
    tables = "SELECT table_name FROM duckdb_tables() WHERE database_name = 'src'"
    for (t,) in con.execute(tables).fetchall():
        tbl = con.execute(f"SELECT * FROM src.{t}").to_arrow_table()
        rows += tbl.num_rows
        con.execute(f"CREATE TABLE {t} AS SELECT * FROM tbl")
    con.execute("CHECKPOINT"); con.close()
print(json.dumps({"rows": rows}))
"""


def main(argv=None) -> list[Comparison]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        gen_s, gen_gib, gen = run_measured(GENERATE, f"{tmp}/fed", str(args.patients))
        copy_s, copy_gib, _ = run_measured(COPY, f"{tmp}/fed", f"{tmp}/copy")
    rows = gen["rows"]
    ok = gen_s <= 60 and gen_gib <= 4
    write_markdown(
        "synth",
        f"Generation throughput: {args.patients:,} patients",
        ["what", "wall s", "peak GiB", "rows", "rows/s", "ratio to baseline"],
        [
            [
                "generate federation (fdp synth)",
                f"{gen_s:.1f}",
                f"{gen_gib:.2f}",
                f"{rows:,}",
                f"{rows / gen_s:,.0f}",
                f"{gen_s / copy_s:.2f}",
            ],
            [
                "baseline: copy the same rows into fresh DuckDB files",
                f"{copy_s:.1f}",
                f"{copy_gib:.2f}",
                f"{rows:,}",
                f"{rows / copy_s:,.0f}",
                "1.00",
            ],
        ],
        notes=f"{gen['orgs']} node stores. Target: <= 60 s and <= 4 GiB at 1M patients: "
        + (
            f"{'met' if ok else 'NOT met'} ({gen_s:.1f} s, {gen_gib:.2f} GiB)."
            if args.patients == 1_000_000
            else f"not measured by this run ({args.patients:,} patients)."
        ),
    )
    at_1m = args.patients == 1_000_000
    what = f"generate {args.patients:,} patients with all linked tables"
    copy = "copy the same rows into DuckDB"
    return [
        Comparison(
            "synth", f"{what}: wall time", gen_s, "s", copy_s, copy, gen_s / copy_s,
            "<= 60 s at 1M patients", gen_s <= 60 if at_1m else None,
        ),
        Comparison(
            "synth", f"{what}: peak memory", gen_gib, "GiB", copy_gib, copy, gen_gib / copy_gib,
            "<= 4 GiB at 1M patients", gen_gib <= 4 if at_1m else None,
        ),
        Comparison(
            "synth", f"generation throughput ({rows:,} rows)", rows / gen_s, "rows/s",
            rows / copy_s, copy, copy_s / gen_s,
        ),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
