"""The benchmark code works (no timings): at a tiny size, each priority's Ibis metrics and the
pandas baseline give the same numbers, and the summary writer makes a table of result rows."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_pandas, datasets, pandas_metrics, run
from benchmarks.common import Comparison, summary_table, write_summary

ROWS, BASE = 20_000, 2_000  # 20k rows of each main table, copied from a 2,000-patient federation


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets, "DATA", folder)
        yield folder


@pytest.mark.parametrize("priority", bench_pandas.PRIORITIES)
def test_ibis_and_pandas_agree(data_dir, priority):
    folder = datasets.dataset(priority, ROWS, base=BASE)
    spec = datasets.SPECS[priority]
    assert datasets.table_rows(folder)[spec.fact] == ROWS
    ibis_result = bench_pandas.run_ibis(priority, folder)
    params = json.loads(json.dumps(bench_pandas.params(priority)))  # as the child gets them
    data = pandas_metrics.load(priority, folder / "parquet")
    pandas_result = pandas_metrics.PANDAS[priority](data, params)
    assert all(len(frame) for frame in ibis_result.values())
    bench_pandas.compare(ibis_result, pandas_result, priority)


def test_copies_have_their_own_people(data_dir):
    import duckdb

    query = "SELECT count(*), count(DISTINCT pathway_id), count(DISTINCT nhs_number) FROM {}"
    folder = datasets.dataset("elective", ROWS, base=BASE)
    with duckdb.connect(str(folder / "data.duckdb"), read_only=True) as con:
        rows, ids, people = con.execute(query.format("rtt_pathways")).fetchone()
    with duckdb.connect(str(datasets.pooled(BASE)), read_only=True) as con:
        pooled_rows, _, pooled_people = con.execute(query.format("rtt_pathways")).fetchone()
    assert rows == ids == ROWS  # record ids stay unique across copies
    assert people >= ROWS // pooled_rows * pooled_people  # each copy brings its own people


def test_compare_catches_a_difference(data_dir):
    result = bench_pandas.run_ibis("discharge", datasets.dataset("discharge", ROWS, base=BASE))
    changed = {k: v.copy() for k, v in result.items()}
    changed["pathways"].loc[0, "discharges"] += 1
    with pytest.raises(AssertionError):
        bench_pandas.compare(result, changed, "discharge")


def test_summary_table(tmp_path):
    rows = [
        Comparison("pandas", "elective, 1,000,000 rows: wall time", 0.5, "s", 2.5, "pandas",
                   5.0, "pandas / Ibis >= 5", True),
        Comparison("synth", "generation throughput", 300_000.0, "rows/s"),
        Comparison("spark", "DuckDB vs Spark", None, "", note="not run: no module"),
    ]  # fmt: skip
    lines = summary_table(rows)
    assert lines[0].startswith("| benchmark | comparison | measured | baseline")
    assert len(lines) == 2 + len(rows)
    assert "| 0.500 s | 2.50 s (pandas) | 5.00 | pandas / Ibis >= 5 | yes |" in lines[2]
    assert "300,000 rows/s" in lines[3] and lines[3].endswith("| — | — | — |")
    assert "not run: no module" in lines[4]
    path = write_summary(rows, tmp_path / "summary.md", notes="a note")
    assert path.read_text().count("\n| ") == len(lines) - 1
    assert json.loads(path.with_suffix(".json").read_text())[0]["ratio"] == 5.0


def test_missing_optional_bench_gets_a_row(monkeypatch):
    monkeypatch.setitem(run.BENCHES, "nothing", ("benchmarks.bench_nothing", None))
    rows, ok = run.run_one("nothing", quick=True)
    assert ok and rows[0].measured is None and "does not exist" in rows[0].note


def test_scaling_skips_what_the_machine_cannot_hold(monkeypatch):
    from benchmarks import bench_scaling

    monkeypatch.setattr(bench_scaling, "available_gib", lambda: 20.0)
    measured = {"rows": 1_000_000, "gib": 0.1, "seconds": 5.0, "build_s": None, "disk_bytes": 1}
    assert bench_scaling.too_big(None, 1_000_000) == ""
    big = {**measured, "gib": 2.0, "seconds": 200.0}
    assert bench_scaling.too_big(big, 10_000_000) == ""  # 1M and 10M are always measured
    assert "projected peak 100.0 GiB" in bench_scaling.too_big(big, 50_000_000)
    slow = {**measured, "seconds": 200.0}
    assert "one run projected at 167 min" in bench_scaling.too_big(slow, 50_000_000)
    assert bench_scaling.too_big(measured, 50_000_000) == ""
