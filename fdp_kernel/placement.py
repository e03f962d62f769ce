"""Where a node's data lives: move a DuckDB node to Spark (Parquet) or to PostgreSQL.

``fdp synth --spark ORG --postgres ORG=URL`` uses these after generating, and so can an
administrator moving a real node. The federation file is rewritten atomically, last, so a
failure part way leaves the node where it was.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import yaml

from fdp_kernel.config import load_federation
from fdp_kernel.errors import ConfigError, UsageError

SPARK_LOCAL = "spark://local"


def _rewrite(fed_path: Path, org: str, **entry: str | None) -> None:
    doc = yaml.safe_load(fed_path.read_text())
    for item in doc["organisations"]:
        if item["code"] == org:
            for key, value in entry.items():
                if value is None:
                    item.pop(key, None)
                else:
                    item[key] = value
    tmp = fed_path.with_name(fed_path.name + ".partial")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, fed_path)


def _duckdb_store(fed_path: Path, org: str) -> Path:
    fed = load_federation(fed_path)
    if org not in fed.organisations:
        raise UsageError(f"{org} is not an organisation of {fed_path}; see `fdp catalog`")
    node = fed.org(org)
    if node.engine != "duckdb":
        raise UsageError(f"{org} is already stored on {node.engine} ({node.store})")
    return node.store  # type: ignore[return-value]


def move_to_spark(fed_path: Path, org: str, store: str = SPARK_LOCAL) -> Path:
    """Export ``org``'s DuckDB store as Parquet beside it and point the federation at Spark.
    Returns the node's Parquet folder; the DuckDB file is removed once the file is rewritten."""
    from fdp_kernel.engines.spark import master_url, write_parquet

    master_url(store)
    fed_path = Path(fed_path)
    duck = _duckdb_store(fed_path, org)
    folder = duck.with_suffix("")
    write_parquet(duck, folder)
    data = os.path.relpath(folder, fed_path.parent)
    _rewrite(fed_path, org, store=store, data=data)
    duck.unlink()
    return folder


def move_to_postgres(fed_path: Path, org: str, admin_url: str) -> str:
    """Load ``org``'s DuckDB store into the PostgreSQL database at ``admin_url`` (an owner
    login; its password from PGPASSWORD or ~/.pgpass), enforce the node's policy there, and
    point the federation at the server. Returns the store URL written (no user, no password).
    """
    from fdp_kernel.engines import postgres_policy as pg

    url = urlparse(admin_url)
    if url.scheme not in ("postgresql", "postgres") or not url.hostname or not url.path[1:]:
        raise UsageError(
            f"{admin_url!r} is not a PostgreSQL URL; write postgresql://ADMIN@HOST:PORT/DATABASE"
        )
    if url.password:
        raise UsageError("put the password in PGPASSWORD or ~/.pgpass, not in the URL")
    fed_path = Path(fed_path)
    duck = _duckdb_store(fed_path, org)
    pg.load_store(admin_url, duck, org)
    pg.apply_policy(admin_url, load_federation(fed_path), org)
    store = f"postgresql://{url.hostname}:{url.port or 5432}{url.path}"
    _rewrite(fed_path, org, store=store, data=None)
    duck.unlink()
    return store


_PLACEMENT = re.compile(r"^([A-Z0-9]{3,6})=(.+)$")


def parse_postgres_option(text: str) -> tuple[str, str]:
    """``ORG=postgresql://admin@host:port/db`` as given to ``fdp synth --postgres``."""
    match = _PLACEMENT.match(text)
    if not match:
        raise ConfigError(
            f"--postgres {text!r}: write ORG=postgresql://ADMIN@HOST:PORT/DATABASE, "
            "e.g. RSC=postgresql://postgres@127.0.0.1:5432/node_rsc"
        )
    return match.group(1), match.group(2)
