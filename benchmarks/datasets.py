"""Benchmark inputs: one DuckDB file (and Parquet copies) per priority at N rows of its main table.

The synthetic generator makes a federation of ``base`` patients (cached). Its node stores are
pooled into one DuckDB file, as if one organisation held every row. A priority's dataset at N
rows copies the pooled tables it needs as many times as it takes for its main table to reach
N rows, then cuts the main table at exactly N. Each copy gets new NHS numbers (10 digits,
consistent across the copy's tables), new record ids and, for the supply chain, new trust
codes, so keys stay unique and joins keep their cardinality: copy j is the same synthetic
population again, not the same rows twice.

Everything is cached under ``benchmarks/results/data`` (git-ignored), keyed by priority, rows,
base patients, seed and a digest of the generator's source (a changed generator makes new
data), so re-runs start at once. Folders are built under a temporary name and renamed when
complete.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from benchmarks.common import RESULTS

DATA = RESULTS / "data"
SEED = 42


@dataclass(frozen=True)
class Spec:
    """The tables one priority's metric set reads, and its main (fact) table."""

    fact: str
    tables: tuple[str, ...]


SPECS: dict[str, Spec] = {
    "elective": Spec("rtt_pathways", ("rtt_pathways",)),
    "vaccination": Spec("vaccinations", ("patients", "ltc_registers", "vaccinations")),
    "population": Spec("patients", ("patients", "ltc_registers")),
    "discharge": Spec("inpatient_spells", ("inpatient_spells",)),
    "supply": Spec("stock_levels", ("stock_levels", "consumption", "products", "purchase_orders")),
}
# Which node types' stores a pooled table is taken from (patients: the registered lists only,
# each person once; trusts and the local authority hold other views of the same people).
SOURCES: dict[str, tuple[str, ...]] = {
    "patients": ("gp_practice",),
    "ltc_registers": ("gp_practice",),
    "vaccinations": ("gp_practice", "community_provider"),
    "rtt_pathways": ("acute_trust",),
    "inpatient_spells": ("acute_trust",),
    "stock_levels": ("acute_trust",),
    "consumption": ("acute_trust",),
    "purchase_orders": ("acute_trust",),
    "products": ("acute_trust",),
}
# Record ids made unique per copy (suffix ".<copy>"), and tables whose org_code is per copy.
RECORD_IDS = {"rtt_pathways": "pathway_id", "vaccinations": "vaccination_id"}
RECORD_IDS["inpatient_spells"] = "spell_id"
PER_COPY_ORG = ("stock_levels", "consumption", "purchase_orders")
PERSON_TABLES = ("patients", "ltc_registers", "vaccinations", "rtt_pathways", "inpatient_spells")
NHS_BASE = 9_000_000_000


def generator_key() -> str:
    """A short digest of the generator's source files: part of every cache key."""
    import fdp_kernel.synth

    digest = hashlib.sha256()
    for path in sorted(Path(fdp_kernel.synth.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con


def _log(message: str) -> None:
    print(f"[data] {message}", flush=True)


def federation(patients: int, seed: int = SEED) -> Path:
    """The generated federation of ``patients`` (cached)."""
    folder = DATA / f"fed-{patients}-s{seed}-g{generator_key()}"
    if not (folder / "federation.yaml").exists():
        from fdp_kernel.synth import generate_federation

        start = time.perf_counter()
        generate_federation(folder, patients=patients, seed=seed, force=True)
        _log(f"generated {patients:,} patients in {time.perf_counter() - start:.1f} s")
    return folder


def pooled(patients: int, seed: int = SEED) -> Path:
    """One DuckDB file holding every node's rows of the benchmark tables (cached).

    Each table gets ``_rn`` (a stable row number) and the persons table ``_persons`` maps
    every NHS number to a dense index ``_pid``, used to give each copy new NHS numbers.
    """
    path = DATA / f"pooled-{patients}-s{seed}-g{generator_key()}.duckdb"
    if path.exists():
        return path
    fed = federation(patients, seed)
    doc = yaml.safe_load((fed / "federation.yaml").read_text())
    orgs = [(o["code"], o["type"], fed / o["store"]) for o in doc["organisations"]]
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    con = _connect(partial)
    for i, (_, _, store) in enumerate(orgs):
        con.execute(f"ATTACH '{store}' AS s{i} (READ_ONLY)")
    present = {
        (db, t)
        for db, t in con.execute("SELECT database_name, table_name FROM duckdb_tables()").fetchall()
    }
    from fdp_kernel.catalog import CATALOG

    for table, types in SOURCES.items():
        parts = [
            f"SELECT * FROM s{i}.{table}"
            for i, (_, org_type, _) in enumerate(orgs)
            if org_type in types and (f"s{i}", table) in present
        ]
        union = " UNION ALL ".join(parts)
        if table == "products":  # every trust holds the same product list
            union = f"SELECT DISTINCT * FROM ({union})"
        keys = ", ".join(CATALOG[table].primary_key)
        con.execute(
            f"CREATE TABLE {table} AS SELECT *, row_number() OVER (ORDER BY {keys}) - 1 AS _rn "
            f"FROM ({union})"
        )
    people = " UNION ".join(f"SELECT nhs_number FROM {t}" for t in PERSON_TABLES)
    con.execute(
        "CREATE TABLE _persons AS SELECT nhs_number, row_number() OVER (ORDER BY nhs_number) - 1 "
        f"AS _pid FROM ({people})"
    )
    con.close()
    partial.rename(path)
    return path


def base_rows(patients: int, seed: int = SEED) -> dict[str, int]:
    """Rows of each pooled table at ``patients``."""
    con = _connect(pooled(patients, seed), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in SOURCES}
    finally:
        con.close()


def _copy_sql(con: duckdb.DuckDBPyConnection, table: str, copies: int, persons: int) -> str:
    """SELECT of ``copies`` copies of pooled ``table`` with per-copy keys (see the module)."""
    columns = [
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'pool' "
            f"AND table_name = '{table}' ORDER BY column_index"
        ).fetchall()
        if name != "_rn"
    ]
    chosen, join = [], ""
    for name in columns:
        if name == "nhs_number":
            value = f"({NHS_BASE} + c.j * {persons} + p._pid)::VARCHAR"
            join = "JOIN pool._persons p USING (nhs_number)"
        elif name == RECORD_IDS.get(table):
            value = f"CASE WHEN c.j = 0 THEN b.{name} ELSE b.{name} || '.' || c.j END"
        elif name == "org_code" and table in PER_COPY_ORG:
            value = "CASE WHEN c.j = 0 THEN b.org_code ELSE b.org_code || c.j END"
        else:
            value = f"b.{name}"
        chosen.append(f"{value} AS {name}")
    return (
        f"SELECT {', '.join(chosen)}, b._rn, c.j FROM pool.{table} b {join} "
        f"CROSS JOIN range({copies}) c(j)"
    )


def folder_of(priority: str, rows: int, base: int = 1_000_000, seed: int = SEED) -> Path:
    """Where ``priority``'s dataset at ``rows`` is cached."""
    return DATA / f"{priority}-{rows}-b{base}-s{seed}-g{generator_key()}"


def cached(priority: str, rows: int, base: int = 1_000_000, seed: int = SEED) -> bool:
    return (folder_of(priority, rows, base, seed) / "data.duckdb").exists()


def dataset(
    priority: str,
    rows: int,
    *,
    base: int = 1_000_000,
    seed: int = SEED,
    parquet: bool = True,
) -> Path:
    """The folder of ``priority``'s tables at ``rows`` rows of its main table (cached):
    ``data.duckdb`` and, with ``parquet``, ``parquet/<table>.parquet``."""
    spec = SPECS[priority]
    folder = folder_of(priority, rows, base, seed)
    db = folder / "data.duckdb"
    if not db.exists():
        pool = pooled(base, seed)
        n_base = base_rows(base, seed)[spec.fact]
        copies = math.ceil(rows / n_base)
        start = time.perf_counter()
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        con = _connect(partial / "data.duckdb")
        con.execute(f"ATTACH '{pool}' AS pool (READ_ONLY)")
        persons = con.execute("SELECT count(*) FROM pool._persons").fetchone()[0]
        for table in spec.tables:
            n = copies if table != "products" else 1
            select = _copy_sql(con, table, n, persons)
            cut = f"WHERE j * {n_base} + _rn < {rows}" if table == spec.fact else ""
            con.execute(
                f"CREATE TABLE {table} AS SELECT * EXCLUDE (_rn, j) FROM ({select}) {cut} "
                "ORDER BY j, _rn"
            )
        con.execute("CHECKPOINT")
        con.close()
        partial.rename(folder)
        _log(
            f"{priority}: {rows:,} rows of {spec.fact} ({copies} copies of {base:,} patients' "
            f"data) in {time.perf_counter() - start:.1f} s"
        )
    if parquet:
        write_parquet(folder, spec.tables)
    return folder


def write_parquet(folder: Path, tables: tuple[str, ...]) -> None:
    """Parquet copies of the dataset's tables (what the pandas implementation reads)."""
    out = folder / "parquet"
    if out.exists():
        return
    partial = folder / "parquet.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    con = _connect(folder / "data.duckdb", read_only=True)
    for table in tables:
        con.execute(f"COPY {table} TO '{partial / table}.parquet' (FORMAT parquet)")
    con.close()
    partial.rename(out)


def table_rows(folder: Path) -> dict[str, int]:
    con = _connect(folder / "data.duckdb", read_only=True)
    try:
        names = [t for (t,) in con.execute("SHOW TABLES").fetchall()]
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in names}
    finally:
        con.close()


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
