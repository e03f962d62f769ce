"""Mapping files: how a source extract's columns become the catalogue's columns.

A mapping file is YAML, reviewed like the federation file, and validated on load: every error
names the file, the entry and the fix. Example::

    dataset: vaccinations          # optional: must agree with --dataset
    delimiter: ";"                 # CSV only; default ","
    encoding: cp1252               # CSV only; default utf-8
    null_values: ["", "NULL"]      # text read as missing, after trimming spaces; default [""]
    columns:
      nhs_number: NHS_NUMBER                     # rename
      vaccination_date:
        from: DATE_AND_TIME
        format: "%Y%m%dT%H%M%S"                  # strptime format for a date or timestamp
      sex: {from: GENDER, values: {"1": M, "2": F, "9": I}}   # recode (others kept as read)
      route_code: {from: ROUTE, case: upper}     # upper or lower case before checking
      org_code: {constant: Y90001}               # the same value on every row
    ignore: [PERSON_POSTCODE]                    # source columns deliberately not loaded

Without a mapping file a source column loads into the catalogue column of the same name
(matched case-insensitively) and ``org_code`` defaults to the node's own ODS code.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdp_kernel.catalog import CATALOG, Dataset
from fdp_kernel.errors import ConfigError, UsageError

FDP_PREFIX = "_fdp_"  # columns added by `fdp ingest --quarantine --export`; never data
QUARANTINE_ID = "_fdp_quarantine_id"
_TOP_KEYS = ("dataset", "delimiter", "encoding", "null_values", "columns", "ignore")
_COLUMN_KEYS = ("from", "constant", "format", "values", "case")
_DATE_TYPES = ("date", "timestamp")


@dataclass(frozen=True)
class ColumnRule:
    """How one catalogue column is filled: from a source column or a constant."""

    source: str | None = None
    constant: str | None = None
    format: str | None = None
    values: Mapping[str, str] = field(default_factory=dict)
    case: str | None = None


@dataclass(frozen=True)
class SourceMapping:
    """A validated mapping file (or the empty identity mapping)."""

    path: Path | None = None
    dataset: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
    null_values: tuple[str, ...] = ("",)
    columns: Mapping[str, ColumnRule] = field(default_factory=dict)
    ignore: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """sha256 of what the mapping does (not its comments or layout)."""
        doc = {
            "dataset": self.dataset,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "null_values": list(self.null_values),
            "columns": {k: vars(v) | {"values": dict(v.values)} for k, v in self.columns.items()},
            "ignore": list(self.ignore),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


IDENTITY = SourceMapping()  # no mapping file: same-named columns


def _fail(path: Path, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}. Fix: {fix}")


def _closest(name: str, options: Iterable[str]) -> str:
    options = list(options)
    lower = {o.lower(): o for o in options}
    found = difflib.get_close_matches(name.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean {lower[found[0]]!r}?)" if found else ""


def _check_constant(path: Path, where: str, value: str, dtype: str) -> None:
    try:
        if dtype == "date":
            dt.date.fromisoformat(value)
        elif dtype == "timestamp":
            dt.datetime.fromisoformat(value)
        elif dtype.startswith("int"):
            int(value)
        elif dtype == "float64":
            float(value)
        elif dtype == "boolean" and value.lower() not in ("true", "false"):
            raise ValueError
    except ValueError:
        raise _fail(
            path, where, f"constant {value!r} is not a {dtype}", f"give a {dtype} value"
        ) from None


def _rule(path: Path, ds: Dataset, name: str, raw: Any) -> ColumnRule:
    where = f"columns.{name}"
    column = ds.column(name) if name in ds.column_names else None
    if column is None:
        raise _fail(
            path,
            where,
            f"dataset {ds.name!r} has no column {name!r}{_closest(name, ds.column_names)}",
            f"use one of its columns: {', '.join(ds.column_names)}",
        )
    if isinstance(raw, str):
        return ColumnRule(source=raw)
    if not isinstance(raw, dict):
        raise _fail(
            path, where, "expected a source column name or a mapping", "write e.g. `from: COL`"
        )
    unknown = [k for k in raw if k not in _COLUMN_KEYS]
    if unknown:
        raise _fail(
            path,
            where,
            f"unknown key {unknown[0]!r}{_closest(str(unknown[0]), _COLUMN_KEYS)}",
            f"use {', '.join(_COLUMN_KEYS)}",
        )
    source, constant = raw.get("from"), raw.get("constant")
    if (source is None) == (constant is None):
        raise _fail(path, where, "give exactly one of `from` and `constant`", "keep one of the two")
    if source is not None and (not isinstance(source, str) or not source):
        raise _fail(path, where, "`from` must be a column name", "write e.g. `from: NHS_NO`")
    if constant is not None:
        if isinstance(constant, bool | int | float | dt.date):
            constant = str(constant).lower() if isinstance(constant, bool) else str(constant)
        if not isinstance(constant, str):
            raise _fail(path, where, "`constant` must be a single value", "write one value")
        _check_constant(path, where, constant, column.dtype)
    fmt = raw.get("format")
    if fmt is not None and (column.dtype not in _DATE_TYPES or not isinstance(fmt, str)):
        raise _fail(
            path,
            where,
            f"`format` applies to date and timestamp columns; {name} is {column.dtype}",
            "remove `format`" if column.dtype not in _DATE_TYPES else "write e.g. '%d/%m/%Y'",
        )
    if fmt is not None and "%" not in fmt:
        raise _fail(path, where, f"format {fmt!r} has no % fields", "write e.g. '%d/%m/%Y'")
    values = raw.get("values", {})
    if not isinstance(values, dict) or not all(
        isinstance(v, str | int | float | bool) for v in values.values()
    ):
        raise _fail(
            path, where, "`values` must map source values to catalogue values", 'e.g. {"1": M}'
        )
    case = raw.get("case")
    if case not in (None, "upper", "lower"):
        raise _fail(path, where, f"`case` is {case!r}", "use upper or lower")
    return ColumnRule(
        source=source,
        constant=constant,
        format=fmt,
        values={_text(k): _text(v) for k, v in values.items()},
        case=case,
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load_mapping(path: str | Path, dataset: str | None = None) -> SourceMapping:
    """Read and validate a mapping file for ``dataset`` (or the dataset the file names)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the mapping file ({exc.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax") from None
    if not isinstance(raw, dict):
        raise _fail(path, "top level", "expected a mapping", "see docs/ingest.md")
    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        raise _fail(
            path,
            str(unknown[0]),
            f"unknown key{_closest(str(unknown[0]), _TOP_KEYS)}",
            f"use {', '.join(_TOP_KEYS)}",
        )
    named = raw.get("dataset")
    if named is not None and named not in CATALOG:
        raise _fail(
            path, "dataset", f"unknown dataset {named!r}", f"use one of: {', '.join(CATALOG)}"
        )
    if dataset and named and named != dataset:
        raise _fail(
            path,
            "dataset",
            f"the mapping is for {named!r} but --dataset is {dataset!r}",
            "give the matching mapping file or --dataset",
        )
    name = dataset or named
    if name is None:
        raise _fail(path, "dataset", "no dataset given", "add `dataset: NAME` or pass --dataset")
    ds = CATALOG[name]
    delimiter = raw.get("delimiter")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise _fail(path, "delimiter", f"{delimiter!r} is not one character", 'e.g. ";"')
    encoding = raw.get("encoding")
    if encoding is not None:
        check_encoding(encoding, where=f"{path}: encoding")
    nulls = raw.get("null_values", [""])
    if not isinstance(nulls, list) or not all(isinstance(v, str) for v in nulls):
        raise _fail(path, "null_values", "expected a list of strings", 'e.g. ["", "NULL"]')
    columns = raw.get("columns") or {}
    if not isinstance(columns, dict):
        raise _fail(path, "columns", "expected a mapping", "write `columns:` then `name: SOURCE`")
    ignore = raw.get("ignore") or []
    if not isinstance(ignore, list) or not all(isinstance(v, str) for v in ignore):
        raise _fail(path, "ignore", "expected a list of source column names", "e.g. [POSTCODE]")
    return SourceMapping(
        path=path,
        dataset=name,
        delimiter=delimiter,
        encoding=encoding,
        null_values=tuple(v.strip() for v in nulls),
        columns={str(k): _rule(path, ds, str(k), v) for k, v in columns.items()},
        ignore=tuple(ignore),
    )


def check_encoding(encoding: str, where: str = "--encoding") -> str:
    """The codec name, or a UsageError naming the problem (UTF-16/32 are not streamed)."""
    import codecs

    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UsageError(f"{where}: unknown encoding {encoding!r}; e.g. utf-8, cp1252") from None
    if name.startswith(("utf-16", "utf-32")):
        raise UsageError(
            f"{where}: {encoding} files are not read; re-save the file as UTF-8 (or cp1252)"
        )
    return name


@dataclass(frozen=True)
class Plan:
    """A mapping resolved against one file's columns: the source of each catalogue column."""

    dataset: Dataset
    rules: Mapping[str, ColumnRule]  # catalogue column -> rule (absent: left empty)
    unused: tuple[str, ...]  # source columns not loaded (and not listed under `ignore`)
    empty: tuple[str, ...]  # optional catalogue columns with no source: loaded as null


def resolve(
    mapping: SourceMapping,
    ds: Dataset,
    header: list[str],
    org: str,
    where: str,
    *,
    require: bool = True,
) -> Plan:
    """Match the mapping and the file's ``header`` to the catalogue's columns of ``ds``.

    Missing required columns raise one error listing them, the file's columns and the
    mapping entries that would supply them (unless ``require`` is false: then every row
    is quarantined as missing the value, as for FHIR resources without the element).
    """
    present = set(header)
    by_lower: dict[str, list[str]] = {}
    for name in header:
        by_lower.setdefault(name.lower(), []).append(name)
    rules: dict[str, ColumnRule] = {}
    for column in ds.columns:
        rule = mapping.columns.get(column.name)
        if rule is not None:
            if rule.source is not None and rule.source not in present:
                src = mapping.path or "the mapping"
                raise UsageError(
                    f"{src}: columns.{column.name} reads source column {rule.source!r} but "
                    f"{where} has no such column{_closest(rule.source, header)}; its columns "
                    f"are: {', '.join(header)}"
                )
            rules[column.name] = rule
        elif column.name in present:
            rules[column.name] = ColumnRule(source=column.name)
        elif len(by_lower.get(column.name.lower(), [])) == 1:
            rules[column.name] = ColumnRule(source=by_lower[column.name.lower()][0])
        elif column.name == "org_code" and ds.org_column and column.references:
            rules[column.name] = ColumnRule(constant=org)
    missing = [c.name for c in ds.columns if not c.nullable and c.name not in rules]
    if missing and require:
        hints = [f"    {m}: <source column>{_closest(m, header)}" for m in missing]
        raise UsageError(
            f"{where}: missing required column(s) of {ds.name}: {', '.join(missing)}. "
            f"The file's columns are: {', '.join(header) or '(none)'}. Fix: add them to the "
            "file, or map them in a mapping file (--mapping) with:\n  columns:\n" + "\n".join(hints)
        )
    used = {r.source for r in rules.values() if r.source} | set(mapping.ignore)
    unused = tuple(h for h in header if h not in used and not h.startswith(FDP_PREFIX))
    empty = tuple(c.name for c in ds.columns if c.name not in rules)
    return Plan(ds, rules, unused, empty)
