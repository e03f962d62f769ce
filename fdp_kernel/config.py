"""The federation file: which organisations exist, and where each node keeps its store.

The file is YAML so that governance staff can read and review it. It is validated on load;
every error names the file, the entry and the fix. Paths in it are relative to the file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fdp_kernel.codes import ORG_TYPES
from fdp_kernel.errors import ConfigError
from fdp_kernel.identifiers import is_valid_ods_code

FEDERATION_FILE = "federation.yaml"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Organisation:
    code: str
    name: str
    org_type: str
    parent_icb: str | None
    store: Path  # absolute


@dataclass(frozen=True)
class Federation:
    path: Path
    name: str
    synthetic: bool
    as_of: dt.date | None
    seed: int | None
    organisations: dict[str, Organisation]

    @property
    def root(self) -> Path:
        return self.path.parent

    def org(self, code: str) -> Organisation:
        try:
            return self.organisations[code]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no organisation {code!r}; organisations are: "
                f"{', '.join(self.organisations)}"
            ) from None

    def orgs_of_type(self, org_type: str) -> list[Organisation]:
        return [o for o in self.organisations.values() if o.org_type == org_type]


class _Checker:
    """Collects the location of each value so that errors point at the entry to fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {problem}. Fix: {fix}")

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, found {type(value).__name__}", "see docs/")
        return value

    def text(self, entry: dict, key: str, where: str, *, required: bool = True) -> str | None:
        value = entry.get(key)
        if value is None:
            if required:
                raise self.fail(where, f"'{key}' is missing", f"add '{key}: ...' to this entry")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"'{key}' must be a non-empty string", f"set '{key}' to text")
        return value


def load_federation(path: str | Path) -> Federation:
    """Read and validate a federation file (or the ``federation.yaml`` inside a folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / FEDERATION_FILE
    if not path.exists():
        raise ConfigError(
            f"{path}: federation file not found. Fix: run `fdp synth --out {path.parent}` for a "
            "demo federation, or point FDP_FEDERATION at your federation.yaml"
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax") from None
    check = _Checker(path)
    raw = check.mapping(raw, "top level")
    version = raw.get("version")
    if version != SCHEMA_VERSION:
        raise check.fail(
            "version", f"unsupported version {version!r}", f"set 'version: {SCHEMA_VERSION}'"
        )
    header = check.mapping(raw.get("federation", {}), "federation")
    orgs_raw = raw.get("organisations")
    if not isinstance(orgs_raw, list) or not orgs_raw:
        raise check.fail(
            "organisations", "expected a non-empty list", "list each organisation with its store"
        )
    organisations: dict[str, Organisation] = {}
    for i, entry in enumerate(orgs_raw):
        where = f"organisations[{i}]"
        entry = check.mapping(entry, where)
        code = check.text(entry, "code", where)
        where = f"organisations[{i}] ({code})"
        org_type = check.text(entry, "type", where)
        if org_type not in ORG_TYPES:
            raise check.fail(
                where, f"unknown type {org_type!r}", f"use one of: {', '.join(ORG_TYPES)}"
            )
        if not is_valid_ods_code(code, org_type):
            raise check.fail(
                where,
                f"{code!r} is not an ODS code of the form used for {org_type}",
                "check the code against the ODS (e.g. trusts R + 2, ICBs Q + 2, practices A12345)",
            )
        if code in organisations:
            raise check.fail(where, f"organisation {code!r} is listed twice", "remove one entry")
        store = check.text(entry, "store", where)
        organisations[code] = Organisation(
            code=code,
            name=check.text(entry, "name", where),
            org_type=org_type,
            parent_icb=check.text(entry, "parent_icb", where, required=False),
            store=(path.parent / store).resolve(),
        )
    for code, org in organisations.items():
        if org.parent_icb and organisations.get(org.parent_icb) is None:
            raise check.fail(
                f"organisation {code}",
                f"parent_icb {org.parent_icb!r} is not an organisation in this file",
                "add the ICB or correct the code",
            )
    as_of = header.get("as_of")
    if as_of is not None and not isinstance(as_of, dt.date):
        raise check.fail(
            "federation.as_of", "expected a date (YYYY-MM-DD)", "write e.g. 2026-10-31"
        )
    return Federation(
        path=path.resolve(),
        name=str(header.get("name", path.parent.name)),
        synthetic=bool(header.get("synthetic", False)),
        as_of=as_of,
        seed=header.get("seed"),
        organisations=organisations,
    )
