"""Round trip: a synthetic node's datasets exported to CSV and to Parquet, ingested into an
empty store (the node has none to start with), equal the original, every row accounted for
and none quarantined: the generator's data passes every check ingest makes."""

from __future__ import annotations

import duckdb
import pytest

from fdp_kernel.catalog import CATALOG
from fdp_kernel.ingest.load import _dependency_order
from tests.fixtures.ingest import node, query, run, store


def export(source, folder, fmt: str) -> dict[str, object]:
    """Each catalogue table of the store written by DuckDB as CSV (header) or Parquet."""
    con = duckdb.connect(str(source), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        files = {}
        for name in (n for n in names if n in CATALOG):
            path = folder / f"{name}.{fmt}"
            options = "FORMAT parquet" if fmt == "parquet" else "HEADER, FORMAT csv"
            con.execute(f"COPY {name} TO '{path}' ({options})")
            files[name] = path
    finally:
        con.close()
    return files


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("org", ["Y90001", "RSA"])
def test_export_and_ingest_give_back_the_original(small_federation, tmp_path, org, fmt):
    source = store(small_federation, org)
    files = export(source, tmp_path, fmt)
    fed = node(small_federation, tmp_path / "fed")
    for name in _dependency_order(files):  # what others refer to first
        report = run(fed, org, [files[name]], dataset=name)
        c = report.total
        assert c.read == query(source, f"SELECT count(*) FROM {name}")[0][0] > 0
        assert (c.loaded, c.quarantined) == (c.read, 0), report.format()
        got = query(store(fed, org), f"SELECT * FROM {name} ORDER BY ALL")
        assert got == query(source, f"SELECT * FROM {name} ORDER BY ALL"), name
