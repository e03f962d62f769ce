"""A node's store selects its engine: a DuckDB file, a postgresql:// URL or a spark:// URL
with the node's Parquet ``data``. Bad URLs and missing drivers are clear errors."""

from __future__ import annotations

import sys

import pytest

from fdp_kernel.config import load_federation
from fdp_kernel.engines.spark import master_url
from fdp_kernel.errors import ConfigError, UsageError
from fdp_kernel.placement import move_to_spark, parse_postgres_option
from tests.test_config import GOOD, write

SPARK_RSA = "store: spark://local, data: nodes/RSA"


def test_each_store_selects_its_engine(tmp_path):
    text = GOOD.replace("store: stores/RSA.duckdb", SPARK_RSA)
    text += "  - {code: RSB, name: T, type: acute_trust, store: 'postgresql://db:5432/rsb'}\n"
    fed = load_federation(write(tmp_path, text))
    assert fed.org("QSY").engine == "duckdb"
    assert fed.org("RSB").engine == "postgres"
    rsa = fed.org("RSA")
    assert rsa.engine == "spark" and rsa.data == (tmp_path / "nodes" / "RSA").resolve()


@pytest.mark.parametrize(
    "store, master",
    [
        ("spark://local", "local[2]"),
        ("spark://local?cores=4", "local[4]"),
        ("spark://spark-master.nhs.example:7077", "spark://spark-master.nhs.example:7077"),
    ],
)
def test_spark_urls_give_the_master(store, master):
    assert master_url(store) == master


@pytest.mark.parametrize(
    "entry, message",
    [
        ("store: spark://local", "a Spark node needs `data`"),
        ("store: 'spark://local?cores=none', data: n", "cores must be a positive whole number"),
        ("store: 'spark://master', data: n", "needs its port"),
        ("store: stores/RSA.duckdb, data: n", "`data` is only used by Spark nodes"),
        ("store: 'mysql://db/rsa'", "unsupported store"),
    ],
)
def test_bad_engine_entries_say_what_to_write(tmp_path, entry, message):
    path = write(tmp_path, GOOD.replace("store: stores/RSA.duckdb", entry))
    with pytest.raises(ConfigError, match="Fix:") as err:
        load_federation(path)
    assert message in str(err.value) and "organisations[1] (RSA)" in str(err.value)


def test_a_missing_spark_driver_names_the_extra(monkeypatch):
    import fdp_kernel.engines.spark as spark

    monkeypatch.setitem(sys.modules, "pyspark", None)  # as if pyspark were not installed
    monkeypatch.setitem(sys.modules, "pyspark.sql", None)
    monkeypatch.setattr(spark, "_SESSION", {})
    with pytest.raises(ConfigError, match=r"pip install 'fdp\[spark\]'"):
        spark.session("spark://local")


def test_a_missing_postgres_driver_names_the_extra(monkeypatch):
    from fdp_kernel.engines.postgres import gated_postgres

    monkeypatch.setitem(sys.modules, "ibis.backends.postgres", None)
    with pytest.raises(ConfigError, match=r"pip install 'fdp\[postgres\]'"):
        gated_postgres()


def test_moving_a_node_to_spark_writes_parquet_and_rewrites_the_file(small_federation, tmp_path):
    import shutil

    fed = shutil.copytree(small_federation, tmp_path / "fed")
    folder = move_to_spark(fed / "federation.yaml", "RSA")
    node = load_federation(fed).org("RSA")
    assert node.engine == "spark" and node.data == folder
    assert (folder / "rtt_pathways.parquet").exists() and (folder / "_fdp_meta.parquet").exists()
    assert not (fed / "stores" / "RSA.duckdb").exists()
    with pytest.raises(UsageError, match="already stored on spark"):
        move_to_spark(fed / "federation.yaml", "RSA")


@pytest.mark.parametrize("text", ["RSC", "RSC=", "rsc=postgresql://x/y"])
def test_postgres_placement_option_is_checked(text):
    with pytest.raises(ConfigError, match="ORG=postgresql://"):
        parse_postgres_option(text)
