"""An Ibis expression as data: the allow-listed encoding a thin client sends to the node
service, which rebuilds the expression from scratch over its own governed tables.

The client encodes the expression's operation graph as JSON: each node is its operation's
class name and its arguments (other nodes by reference, plain values, data types, schemas).
Nothing executable crosses: no pickle, no code, no SQL. The service decodes it with
``decode``, which builds each node through Ibis's own constructors (they validate every
argument) and accepts only:

- operations defined by Ibis itself (``ibis.expr.operations``), minus every user-defined
  function, raw SQL relation and physical table, and minus ``DENIED`` (operations that read
  or write outside the query);
- leaf tables by name only, bound by the service to the governed tables of the requester's
  session (``bind``); any other name is refused;
- small in-memory tables (a month spine): Arrow IPC, at most ``MAX_MEMTABLE_ROWS`` rows;
- at most ``MAX_NODES`` nodes.

What the expression means (its lineage, what it releases) is then derived again by the
service's release pipeline from the decoded graph: nothing the client declares is trusted.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import enum
import hashlib
import importlib
import inspect
import io
import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import ibis
import ibis.expr.datatypes as dtypes
import ibis.expr.operations as ops
import ibis.expr.schema as sch
import ibis.expr.types as ir
import pyarrow as pa

from fdp_kernel.errors import GovernanceError, UsageError

FORMAT = "fdp-ibis-ops/1"
MAX_NODES = 50_000
MAX_MEMTABLE_ROWS = 10_000
MAX_BYTES = 16 << 20

# Operations that are Ibis's own but reach outside the query, run code, or name raw SQL.
DENIED = frozenset(
    {
        "SQLQueryResult", "SQLStringView", "View", "DatabaseTable", "PhysicalTable",
        "ScalarUDF", "AggUDF", "ElementWiseVectorizedUDF", "ReductionVectorizedUDF",
        "AnalyticVectorizedUDF", "CachedNode", "ReadParquet", "ReadCSV", "Unbound",
    }
)  # fmt: skip
_UDF_BASES = tuple(
    getattr(ops, n) for n in ("ScalarUDF", "AggUDF", "VectorizedUDF") if hasattr(ops, n)
)


def _allowed() -> dict[str, type]:
    out = {}
    for name in dir(ops):
        cls = getattr(ops, name)
        if not (inspect.isclass(cls) and issubclass(cls, ops.Node)):
            continue
        if not cls.__module__.startswith("ibis.expr.operations") or inspect.isabstract(cls):
            continue
        if name in DENIED or (_UDF_BASES and issubclass(cls, _UDF_BASES)):
            continue
        out[name] = cls
    out["UnboundTable"] = ops.UnboundTable  # a leaf by name: bound by the service
    out["InMemoryTable"] = ops.InMemoryTable  # small, checked: see _memtable
    return out


ALLOWED = _allowed()


# -- encoding (client side) ----------------------------------------------------------------
def encode(
    expr: ir.Table, leaf: Callable[[ops.DatabaseTable], str | None] | None = None
) -> dict[str, Any]:
    """The operation graph of ``expr`` as JSON-ready data (nodes in dependency order).
    ``leaf`` names the database tables that stand for governed tables at the service (the
    client's own placeholders); any other database table is refused."""
    nodes: list[dict[str, Any]] = []
    ids: dict[int, int] = {}

    def node_ref(node: ops.Node) -> int:
        key = id(node)
        if key in ids:
            return ids[key]
        if isinstance(node, ops.DatabaseTable) and leaf is not None:
            name = leaf(node)
            if name is not None:
                ids[key] = len(nodes)
                schema = {"schema": [[n, str(t)] for n, t in node.schema.items()]}
                nodes.append({"op": "UnboundTable", "args": {"name": name, "schema": schema}})
                return ids[key]
        name = type(node).__name__
        if isinstance(node, ops.DatabaseTable):
            raise GovernanceError(
                f"the expression reads {node.name!r}, which is not a governed table of this "
                "workspace; build it from ws.table(...)",
                rule="release:not-governed",
            )
        if name not in ALLOWED or ALLOWED[name] is not type(node):
            raise GovernanceError(
                f"the expression uses {name}, which a node service does not run (user-defined "
                "functions, raw SQL and tables not from ws.table are refused)",
                rule="release:operation",
            )
        args = {
            k: {"arrow": _arrow_bytes(v, node.schema)}
            if k == "data" and name == "InMemoryTable"
            else value(v)
            for k, v in zip(node.__argnames__, node.__args__, strict=True)
        }
        ids[key] = len(nodes)
        nodes.append({"op": name, "args": args})
        return ids[key]

    def value(v: Any) -> Any:
        if isinstance(v, ops.Node):
            return {"node": node_ref(v)}
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            return {"float": repr(v)}
        if isinstance(v, dtypes.DataType):
            return {"dtype": str(v)}
        if isinstance(v, sch.Schema):
            return {"schema": [[n, str(t)] for n, t in v.items()]}
        if isinstance(v, ops.Namespace):
            return {"namespace": [v.catalog, v.database]}
        if isinstance(v, enum.Enum):
            return {"enum": f"{type(v).__module__}:{type(v).__qualname__}", "value": v.value}
        if isinstance(v, dt.datetime):
            return {"datetime": v.isoformat()}
        if isinstance(v, dt.date):
            return {"date": v.isoformat()}
        if isinstance(v, dt.time):
            return {"time": v.isoformat()}
        if isinstance(v, dt.timedelta):
            return {"timedelta": v.total_seconds()}
        if isinstance(v, decimal.Decimal):
            return {"decimal": str(v)}
        if isinstance(v, uuid.UUID):
            return {"uuid": str(v)}
        if isinstance(v, Mapping):
            return {"map": [[k, value(x)] for k, x in v.items()]}
        if isinstance(v, tuple | list | frozenset):
            return {"tuple": [value(x) for x in v]}
        raise GovernanceError(
            f"the expression holds a {type(v).__name__} value, which cannot be sent to a node "
            "service; use literals, columns and ws.table(...)",
            rule="release:operation",
        )

    root = node_ref(expr.op())
    return {"format": FORMAT, "nodes": nodes, "root": root}


def dumps(expr: ir.Table, leaf=None) -> bytes:
    return json.dumps(encode(expr, leaf), separators=(",", ":")).encode()


def _arrow_bytes(data, schema: sch.Schema) -> str:
    table = data.to_pyarrow(schema)
    if table.num_rows > MAX_MEMTABLE_ROWS:
        raise UsageError(
            f"an in-memory table of {table.num_rows} rows is too big to send "
            f"(at most {MAX_MEMTABLE_ROWS}); aggregate first"
        )
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return base64.b64encode(sink.getvalue()).decode()


# -- decoding (service side) ---------------------------------------------------------------
Binder = Callable[[str, sch.Schema], ops.Relation]


def loads(payload: bytes | str, bind: Binder) -> ir.Table:
    if len(payload) > MAX_BYTES:
        raise UsageError(f"the expression is larger than {MAX_BYTES >> 20} MiB")
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise UsageError(f"the expression is not valid JSON: {exc}") from None
    return decode(data, bind)


def decode(data: Mapping[str, Any], bind: Binder) -> ir.Table:
    """Rebuild an encoded expression; ``bind(name, schema)`` gives the service's governed
    table for a leaf name (and refuses any other)."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise UsageError(f"not an encoded expression ({FORMAT})")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not 0 < len(raw_nodes) <= MAX_NODES:
        raise UsageError(f"an encoded expression has 1 to {MAX_NODES} nodes")
    built: list[ops.Node] = []

    def value(v: Any) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, list):
            raise UsageError("malformed expression: bare list")
        if not isinstance(v, Mapping) or len(v) not in (1, 2):
            raise UsageError("malformed expression value")
        if "node" in v:
            ref = v["node"]
            if not isinstance(ref, int) or not 0 <= ref < len(built):
                raise UsageError("malformed expression: a node refers forward or nowhere")
            return built[ref]
        kind, item = next(iter(v.items()))
        if kind == "float":
            return float(item)
        if kind == "dtype":
            return dtypes.dtype(item)
        if kind == "schema":
            return sch.Schema({str(n): dtypes.dtype(t) for n, t in item})
        if kind == "enum":
            return _enum(v["enum"], v["value"])
        if kind == "datetime":
            return dt.datetime.fromisoformat(item)
        if kind == "date":
            return dt.date.fromisoformat(item)
        if kind == "time":
            return dt.time.fromisoformat(item)
        if kind == "timedelta":
            return dt.timedelta(seconds=float(item))
        if kind == "decimal":
            return decimal.Decimal(item)
        if kind == "uuid":
            return uuid.UUID(item)
        if kind == "map":
            return {str(k): value(x) for k, x in item}
        if kind == "tuple":
            return tuple(value(x) for x in item)
        if kind == "arrow":
            return _memtable_data(item)
        if kind == "namespace":
            catalog, database = item
            return ops.Namespace(catalog=catalog, database=database)
        raise UsageError(f"malformed expression value of kind {kind!r}")

    for raw in raw_nodes:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("args"), Mapping):
            raise UsageError("malformed expression node")
        name = raw.get("op")
        cls = ALLOWED.get(name) if isinstance(name, str) else None
        if cls is None:
            raise GovernanceError(
                f"the expression uses {name!r}, which a node service does not run",
                rule="release:operation",
            )
        args = {str(k): value(v) for k, v in raw["args"].items()}
        if cls is ops.UnboundTable:
            schema = args.get("schema")
            built.append(
                bind(str(args.get("name")), schema if isinstance(schema, sch.Schema) else None)
            )
            continue
        if cls is ops.InMemoryTable:  # never a name the client chose: one from the content
            digest = hashlib.sha256(str(raw["args"].get("data")).encode()).hexdigest()[:20]
            args["name"] = f"fdp_memtable_{digest}"
        try:
            built.append(cls(**args))
        except (TypeError, ValueError, AttributeError) as exc:
            raise UsageError(f"malformed expression: {name}: {exc}") from None
        except Exception as exc:  # Ibis's own validation errors
            raise UsageError(f"malformed expression: {name}: {type(exc).__name__}") from None
    root = data.get("root")
    if not isinstance(root, int) or not 0 <= root < len(built):
        raise UsageError("malformed expression: no root")
    node = built[root]
    if not isinstance(node, ops.Relation):
        raise UsageError("the expression is not a table")
    return node.to_expr()


def _enum(where: str, value: Any) -> enum.Enum:
    module, _, qualname = str(where).partition(":")
    if not module.startswith("ibis."):
        raise UsageError(f"malformed expression: enum {where!r}")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (inspect.isclass(obj) and issubclass(obj, enum.Enum)):
        raise UsageError(f"malformed expression: {where!r} is not an enum")
    return obj(value)


def _memtable_data(text: str):
    from ibis.formats.pyarrow import PyArrowTableProxy

    try:
        with pa.ipc.open_stream(base64.b64decode(text, validate=True)) as reader:
            table = reader.read_all()
    except (ValueError, pa.ArrowInvalid) as exc:
        raise UsageError(f"malformed in-memory table: {exc}") from None
    if table.num_rows > MAX_MEMTABLE_ROWS:
        raise UsageError(f"an in-memory table has more than {MAX_MEMTABLE_ROWS} rows")
    return PyArrowTableProxy(table)


__all__ = ["ALLOWED", "decode", "dumps", "encode", "loads"]
_ = ibis  # the codec builds on Ibis's operations
