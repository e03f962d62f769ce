"""Nodes on Apache Spark: the node's tables are Parquet, read by a Spark session that the
workspace drives through Ibis's PySpark backend.

A Spark node's entry in the federation file names the engine and the data::

    - code: RSA
      store: spark://local          # or spark://spark-master.example.nhs.uk:7077
      data: stores/RSA              # one Parquet folder or file per dataset (or hdfs://, s3a://)

``spark://local`` runs Spark inside the analyst's process on this machine's cores (``local[N]``,
``?cores=N`` to choose); any other ``spark://host:port`` is a standalone cluster master. Every
workspace gets its own Spark session (``SparkSession.newSession``: separate temporary views,
shared context), in which the node's raw datasets are temporary views and the purpose's
governed views are built over them with the same plan as on DuckDB (``sql.view_sql``).
Enforcement is in the driver process, as for an embedded DuckDB store: docs/engines.md.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import duckdb
import pyarrow as pa

from fdp_kernel.catalog import DATASETS
from fdp_kernel.config import Organisation
from fdp_kernel.engines import sql
from fdp_kernel.engines.base import Engine, EngineContext, KeySource
from fdp_kernel.engines.gate import Gated
from fdp_kernel.errors import ConfigError, StoreError
from fdp_kernel.governance.policy import ViewPlan
from fdp_kernel.stores import META_TABLE, quote

SCHEME = "spark://"
_LOCK = threading.Lock()
_SESSION: dict[str, Any] = {}  # master -> the process's SparkSession


def is_spark(store: object) -> bool:
    return isinstance(store, str) and store.startswith(SCHEME)


def master_url(store: str) -> str:
    """The Spark master for a store URL: ``spark://local[?cores=N]`` or ``spark://host:port``."""
    url = urlparse(store)
    if url.scheme != "spark" or not url.netloc:
        raise ConfigError(
            f"{store!r} is not a Spark store URL; write spark://local or spark://host:7077"
        )
    if url.hostname == "local":
        cores = parse_qs(url.query).get("cores", ["2"])[0]
        if not cores.isdigit() or int(cores) < 1:
            raise ConfigError(f"{store!r}: cores must be a positive whole number, e.g. ?cores=2")
        return f"local[{cores}]"
    if url.port is None:
        raise ConfigError(f"{store!r}: a Spark cluster URL needs its port, e.g. :7077")
    return f"spark://{url.hostname}:{url.port}"


def session(store: str):
    """The process's Spark session for this store's master (started on first use, ~5-10 s).

    Spark allows one context per process, so every Spark node a process reads must share a
    master; a second master is refused with an explanation."""
    master = master_url(store)
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError(
            "this node is stored on Spark and PySpark is not installed: "
            "pip install 'fdp[spark]' (and Java 17, e.g. apt install openjdk-17-jre-headless)"
        ) from None
    with _LOCK:
        if master in _SESSION:
            return _SESSION[master]
        if _SESSION:
            (other,) = _SESSION
            raise ConfigError(
                f"this process already runs Spark on {other}; one process can use one Spark "
                f"master, not also {master}: put these nodes on the same cluster"
            )
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            raise ConfigError(
                "Spark needs Java 17 and none was found: install openjdk-17-jre-headless "
                "or set JAVA_HOME"
            )
        if master.startswith("local"):
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        spark = (
            SparkSession.builder.master(master)
            .appName("fdp")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2" if master.startswith("local") else "200")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.ansi.enabled", "false")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        _SESSION[master] = spark
        return spark


def _backend_class():
    """Ibis's PySpark backend with fdp's compiler (the one every Spark engine uses)."""
    try:
        import ibis
        from ibis.backends.pyspark import Backend as PySparkBackend

        ibis.pyspark  # noqa: B018 - loading the backend this way registers ibis.options.pyspark
    except ImportError:
        raise ConfigError(
            "this node is stored on Spark and PySpark is not installed: pip install 'fdp[spark]'"
        ) from None

    class SparkBackend(PySparkBackend):
        compiler = _compiler()

        def _register_in_memory_table(self, op) -> None:
            """In-memory tables as Arrow (PySpark 4 reads it): Ibis goes through pandas,
            where a nullable integer column becomes floats that Spark reads as nulls (found
            by the metric spec tests on Spark)."""
            rows = op.data.to_pyarrow(op.schema)
            self._session.createDataFrame(rows).createOrReplaceTempView(op.name)

        def disconnect(self) -> None:
            """Drop this session's views; the process's Spark context stays for others."""
            catalog = self._session.catalog
            for table in catalog.listTables():
                if table.isTemporary:
                    catalog.dropTempView(table.name)

    return SparkBackend


def spark_backend(spark_session):
    """An ungated Ibis backend over ``spark_session`` with fdp's compiler: for the metric
    spec tests and tools that hold no governed data."""
    return _backend_class()().connect(spark_session)


def gated_spark(store: str, on_refuse=None):
    """A gated Ibis PySpark backend over a new session of the process's Spark context."""

    class GatedSpark(Gated, _backend_class()):
        """A Spark node read through governed temporary views in this workspace's session."""

    con = GatedSpark().connect(session(store).newSession())
    con._arm(on_refuse)
    return con


def check_master(store: str, con) -> None:
    """Refuse a node on another Spark master than the session's (one context per process)."""
    master = master_url(store)
    running = con._session.sparkContext.master
    if master != running:
        raise ConfigError(
            f"this process runs Spark on {running}; a node on {master} cannot be read from it: "
            "put the federation's Spark nodes on one cluster"
        )


def _compiler():
    """Ibis 12's PySpark compiler with one fix: ``count(where=...)`` over no rows is 0, as on
    DuckDB and PostgreSQL (Ibis compiles it to ``SUM(CAST(cond AS BIGINT))``, which is NULL
    there; found by the engine suite)."""
    from ibis.backends.sql.compilers.pyspark import PySparkCompiler

    class Compiler(PySparkCompiler):
        def visit_CountStar(self, op, *, arg, where):
            if where is not None:
                return self.f.count_if(where)
            return super().visit_CountStar(op, arg=arg, where=where)

    return Compiler()


def raw_view(org: str, name: str) -> str:
    """The temporary view holding a node's raw dataset inside a workspace's Spark session."""
    return f"`__fdp_raw_{org}_{name}`"


def dataset_path(data: str | Path, name: str) -> str:
    """Where a dataset's Parquet lives under a node's data location."""
    text = str(data)
    if "://" in text:
        return text.rstrip("/") + f"/{name}.parquet"
    path = Path(text) / f"{name}.parquet"
    if not path.exists():
        raise StoreError(
            f"the Spark node's {name} table is missing ({path}); nothing is shown. Write the "
            "node with `fdp synth --spark ORG` or export its store with "
            "fdp_kernel.governance.spark.write_parquet"
        )
    return str(path)


def register_raw(con, org: str, data: str | Path, name: str) -> None:
    """Make a node's raw dataset a temporary view of the workspace's Spark session."""
    with con._open_gate():
        spark = con._session
        frame = spark.read.parquet(dataset_path(data, name))
        frame.createOrReplaceTempView(raw_view(org, name).strip("`"))


def write_parquet(store: Path, folder: Path) -> dict[str, int]:
    """Export a DuckDB node store to a Spark node folder: ``<dataset>.parquet`` per dataset
    and ``_fdp_meta.parquet``; written beside and renamed into place. Rows per dataset."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(store), read_only=True)
    try:
        held = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        for name in [d.name for d in DATASETS if d.name in held] + [META_TABLE] * (
            META_TABLE in held
        ):
            target = tmp / f"{name}.parquet"
            con.execute(
                f"COPY (SELECT * FROM {quote(name)}) TO '{target}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
            )
            if name != META_TABLE:
                counts[name] = con.execute(f"SELECT count(*) FROM {quote(name)}").fetchone()[0]
    finally:
        con.close()
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return counts


class SparkEngine(Engine):
    """Nodes stored as Parquet, read in this workspace's own Spark session: the node's raw
    datasets are temporary views, and governed views are built over them."""

    name = "spark"
    needs_data = True

    @classmethod
    def check_url(cls, store: str) -> None:
        master_url(store)

    @classmethod
    def instance_key(cls, org: Organisation) -> str:
        return f"spark:{master_url(str(org.store))}"  # one session per master

    def __init__(self, ctx: EngineContext, store: str) -> None:
        super().__init__(ctx)
        self._backend = gated_spark(store, ctx.on_refuse)

    @classmethod
    def open(cls, ctx: EngineContext, org: Organisation) -> SparkEngine:
        return cls(ctx, str(org.store))

    @property
    def backend(self):
        return self._backend

    def governed_table(self, org: Organisation, plan: ViewPlan, view: str, key: KeySource):
        con = self._backend
        check_master(str(org.store), con)
        if view not in self.plans:
            needed = {plan.dataset} | ({"patients"} if plan.opt_out else set())
            for name in sorted(needed):
                register_raw(con, plan.provider, org.data, name)
            secret = key() if plan.key_label else None
            table = lambda name: raw_view(plan.provider, name)  # noqa: E731
            with con._open_gate():
                con._session.sql(sql.view_sql(plan, view, sql.SPARK, table, secret, temporary=True))
            self.plans[view] = plan
        with con._open_gate():
            return con.table(view)

    def import_rows(self, view: str, rows: pa.Table, plan: ViewPlan):
        con = self._backend
        if view not in self.plans:
            with con._open_gate():
                con._session.createDataFrame(rows).createOrReplaceTempView(view)
            self.plans[view] = plan
        with con._open_gate():
            return con.table(view)

    def fingerprint(self, org: Organisation) -> object:
        return (org.store, str(org.data or ""))
