"""Turn the generator's working arrays into catalogue-shaped Arrow tables, one set per node."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fdp_kernel.catalog import CATALOG


def ids(prefix: str, numbers: np.ndarray, width: int = 9) -> pa.Array:
    """Identifiers such as ``RSA-P000001234`` built in Arrow (fast for millions of rows)."""
    digits = pc.utf8_lpad(
        pa.array(np.asarray(numbers, dtype=np.int64)).cast(pa.string()), width, "0"
    )
    return pc.binary_join_element_wise(prefix, digits, "")


def _array(values, typ: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values.cast(typ)
    values = np.asarray(values)
    if pa.types.is_string(typ) and values.dtype.kind in "iu":
        return pa.array(values).cast(pa.string())
    if values.dtype.kind == "i" and pa.types.is_integer(typ) and values.dtype.itemsize == 1:
        # int8 columns use -1 for "null" (e.g. discharge pathway of a death)
        return pa.array(values, mask=values < 0).cast(typ)
    if values.dtype == object:
        return pa.array(values, type=typ, from_pandas=True)
    return pa.array(values, from_pandas=True).cast(typ)


def table(dataset: str, columns: dict, rows: np.ndarray | None = None) -> pa.Table:
    """An Arrow table with exactly the catalogue's columns and types for ``dataset``.

    ``columns`` maps column names to arrays (or scalars); ``rows`` selects a subset.
    """
    schema = CATALOG[dataset].schema().to_pyarrow()
    arrays = []
    n = None
    for field in schema:
        value = columns[field.name]
        if np.isscalar(value) or value is None:
            arrays.append(value)
            continue
        if rows is not None:
            value = value.take(pa.array(rows)) if isinstance(value, pa.Array) else value[rows]
        arr = _array(value, field.type)
        n = len(arr)
        arrays.append(arr)
    if n is None:
        n = 1
    arrays = [
        pa.array([a] * n, type=f.type) if not isinstance(a, pa.Array) else a
        for a, f in zip(arrays, schema, strict=True)
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def split(owner: np.ndarray, n_owners: int) -> list[np.ndarray]:
    """Row indices per owner (stable order), for owners numbered 0..n_owners-1."""
    order = np.argsort(owner, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_owners))])
    return [order[bounds[i] : bounds[i + 1]] for i in range(n_owners)]
