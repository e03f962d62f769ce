"""The federation file: organisations and their nodes, purposes, users, and agreements.

The file is YAML so that governance staff can read and review it. It is validated on load;
every error names the file, the entry and the fix. Paths in it are relative to the file.
See docs/governance.md for every field.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fdp_kernel.catalog import CATALOG
from fdp_kernel.codes import ORG_TYPES
from fdp_kernel.engines import registry
from fdp_kernel.errors import ConfigError, UsageError
from fdp_kernel.governance.disclosure import DisclosureRules
from fdp_kernel.governance.model import Agreement, Level, Purpose, PurposeKind, Role, User
from fdp_kernel.identifiers import is_valid_ods_code

FEDERATION_FILE = "federation.yaml"
AUDIT_KEY = "audit.key"
FEDERATION_ENV = "FDP_FEDERATION"
DEMO_FEDERATION = Path("data") / "demo" / FEDERATION_FILE
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Organisation:
    code: str
    name: str
    org_type: str
    parent_icb: str | None
    store: Path | str  # a DuckDB file (absolute path), a postgresql:// or a spark:// URL
    key: Path | None = None  # the node's secret pseudonymisation key (outside the store)
    audit: Path | None = None  # the node's audit log
    data: Path | str | None = None  # a Spark node's Parquet folder (or hdfs://, s3a:// URL)

    @property
    def engine(self) -> str:
        """The registered engine that holds and queries the node's data (``duckdb``,
        ``postgres``, ``spark``...: ``fdp_kernel.engines.registry``)."""
        return registry.engine_name(self.store)


@dataclass(frozen=True)
class Service:
    """A node service and the nodes it hosts (``services:`` in the federation file)."""

    id: str
    location: str  # grpc+unix:///run/fdp or grpc+tls://host:port
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Federation:
    path: Path
    name: str
    synthetic: bool
    as_of: dt.date | None
    seed: int | None
    organisations: dict[str, Organisation]
    purposes: dict[str, Purpose] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    agreements: dict[str, Agreement] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)

    def service_of(self, org: str) -> Service | None:
        """The node service that hosts ``org``, if the file says (else one serves all)."""
        return next((s for s in self.services.values() if org in s.nodes), None)

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

    def audit_path(self, code: str) -> Path:
        org = self.org(code)
        return org.audit or self.root / "audit" / f"{code}.jsonl"

    @property
    def audit_key(self) -> Path:
        """The key of the audit chains' HMAC: readable by the node service's account only."""
        return self.root / "keys" / AUDIT_KEY


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

    def names(self, entry: dict, key: str, where: str, known, what: str) -> tuple[str, ...]:
        value = entry.get(key)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.fail(where, f"'{key}' must be a list of {what}", f"list the {what}")
        unknown = [v for v in value if v not in known]
        if unknown:
            raise self.fail(
                where, f"unknown {what}: {', '.join(unknown)}", f"use one of: {', '.join(known)}"
            )
        return tuple(value)

    def date(self, entry: dict, key: str, where: str) -> dt.date:
        value = entry.get(key)
        if not isinstance(value, dt.date):
            raise self.fail(where, f"'{key}' must be a date", f"write e.g. '{key}: 2026-04-01'")
        return value

    def datasets(self, entry: dict, where: str) -> dict[str, tuple[str, ...]]:
        """``{dataset: all | [columns]}`` checked against the catalogue."""
        raw = entry.get("datasets")
        if not isinstance(raw, dict) or not raw:
            raise self.fail(
                where,
                "'datasets' must map dataset names to 'all' or a list of columns",
                "write e.g. 'datasets: {rtt_pathways: all, patients: [nhs_number, sex]}'",
            )
        out = {}
        for name, cols in raw.items():
            if name not in CATALOG:
                raise self.fail(
                    where, f"unknown dataset {name!r}", f"use one of: {', '.join(CATALOG)}"
                )
            known = CATALOG[name].column_names
            if cols == "all":
                out[name] = known
                continue
            out[name] = self.names(raw, name, f"{where} datasets.{name}", known, "columns")
        return out


def find_federation(
    environ: Mapping[str, str], given: Path | None = None, *, required: bool = True
) -> Path | None:
    """``given``, else ``$FDP_FEDERATION``, else ``data/demo/federation.yaml`` here or above.

    The path is not checked: ``load_federation`` does that. When there is none, a
    ``ConfigError`` saying how to make one, or ``None`` if not ``required``.
    """
    if given is not None:
        return given
    if environ.get(FEDERATION_ENV):
        return Path(environ[FEDERATION_ENV])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / DEMO_FEDERATION).exists():
            return folder / DEMO_FEDERATION
    if not required:
        return None
    raise ConfigError(
        f"no federation file: set {FEDERATION_ENV} to your federation.yaml, or run `make demo` "
        "(or `fdp synth`) to build the demo federation in data/demo"
    )


def load_federation(path: str | Path) -> Federation:
    """Read and validate a federation file (or the ``federation.yaml`` inside a folder)."""
    path = Path(path)
    if path.is_dir() or path.suffix not in (".yaml", ".yml"):
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
        key = check.text(entry, "key", where, required=False)
        audit = check.text(entry, "audit", where, required=False)
        data = check.text(entry, "data", where, required=False)
        store_value, needs_data = _store(check, store, where, path)
        if needs_data and not data:
            raise check.fail(
                where,
                "a Spark node needs `data`, the folder (or URL) of its Parquet tables",
                "add e.g. `data: stores/RSA` (written by `fdp synth --spark RSA`)",
            )
        if data and not needs_data:
            raise check.fail(
                where, "`data` is only used by Spark nodes", "remove it, or use a spark:// store"
            )
        organisations[code] = Organisation(
            code=code,
            name=check.text(entry, "name", where),
            org_type=org_type,
            parent_icb=check.text(entry, "parent_icb", where, required=False),
            store=store_value,
            key=(path.parent / key).resolve() if key else None,
            audit=(path.parent / audit).resolve() if audit else None,
            data=_data(data, path) if data else None,
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
    purposes = _purposes(check, raw.get("purposes", []))
    users = _users(check, raw.get("users", []), organisations, purposes)
    agreements = _agreements(check, raw.get("agreements", []), organisations, purposes, path)
    services = _services(check, raw.get("services", []), organisations)
    return Federation(
        path=path.resolve(),
        name=str(header.get("name", path.parent.name)),
        synthetic=bool(header.get("synthetic", False)),
        as_of=as_of,
        seed=header.get("seed"),
        organisations=organisations,
        purposes=purposes,
        users=users,
        agreements=agreements,
        services=services,
    )


def _services(check: _Checker, raw: Any, organisations) -> dict[str, Service]:
    out: dict[str, Service] = {}
    seen: dict[str, str] = {}
    for where, entry, ident in _entries(check, raw, "services"):
        location = check.text(entry, "location", where)
        if not location.startswith(("grpc+unix://", "grpc+tls://")):
            raise check.fail(
                where,
                f"location {location!r} is not a node service address",
                "write grpc+unix:///run/fdp (this machine) or grpc+tls://HOST:PORT",
            )
        nodes = check.names(entry, "nodes", where, list(organisations), "organisations")
        for org in nodes:
            if org in seen:
                raise check.fail(
                    where, f"{org} is hosted by service {seen[org]} already", "host it once"
                )
            seen[org] = ident
        out[ident] = Service(ident, location, nodes)
    return out


def _data(data: str, path: Path) -> Path | str:
    """A Spark node's data: a folder relative to the federation file, or a URL Spark reads."""
    return data if "://" in data else (path.parent / data).resolve()


def _store(check: _Checker, store: str, where: str, path: Path) -> tuple[Path | str, bool]:
    """(store, whether the node needs ``data``): a DuckDB file relative to the federation
    file, or the URL of a registered engine, checked by that engine's adapter."""
    value: Path | str = store if "://" in store else (path.parent / store).resolve()
    try:
        adapter = registry.adapter_for(value)
        if isinstance(value, str):
            adapter.check_url(value)
    except ConfigError as exc:
        raise check.fail(where, str(exc), "see docs/engines.md for store URLs") from None
    return value, adapter.needs_data


def _entries(check: _Checker, raw: Any, section: str) -> list[tuple[str, dict, str]]:
    """(where, entry, id) for each entry of a list section, ids unique."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise check.fail(section, "expected a list", f"write '{section}:' followed by '- id: ...'")
    out, seen = [], set()
    for i, entry in enumerate(raw):
        where = f"{section}[{i}]"
        entry = check.mapping(entry, where)
        ident = check.text(entry, "id", where)
        where = f"{section}[{i}] ({ident})"
        if ident in seen:
            raise check.fail(where, f"id {ident!r} is used twice", "give each entry its own id")
        seen.add(ident)
        out.append((where, entry, ident))
    return out


def _enum(check: _Checker, entry: dict, key: str, where: str, enum, default=None):
    value = entry.get(key, default)
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(e.value for e in enum)
        raise check.fail(where, f"'{key}' is {value!r}", f"use one of: {choices}") from None


def _rules(check: _Checker, value: Any, where: str) -> DisclosureRules:
    if value in (None, "default"):
        return DisclosureRules()
    if value == "none":
        return DisclosureRules.none()
    if not isinstance(value, dict):
        raise check.fail(where, "'disclosure' is not valid", "use default, none or a mapping")
    try:
        return DisclosureRules(**value)
    except (TypeError, UsageError) as exc:
        raise check.fail(where, f"disclosure rules: {exc}", "see docs/governance.md") from None


def _purposes(check: _Checker, raw: Any) -> dict[str, Purpose]:
    purposes = {}
    for where, entry, ident in _entries(check, raw, "purposes"):
        kind = _enum(check, entry, "kind", where, PurposeKind)
        level = _enum(check, entry, "level", where, Level)
        if level is Level.IDENTIFIABLE and kind is not PurposeKind.DIRECT_CARE:
            raise check.fail(
                where,
                "only a direct care purpose may see identifiable data",
                "set 'level: pseudonymised' or 'aggregate', or 'kind: direct_care'",
            )
        opt_out = entry.get("opt_out_applies", kind is PurposeKind.PLANNING)
        if not isinstance(opt_out, bool):
            raise check.fail(where, "'opt_out_applies' must be true or false", "fix the value")
        if kind is PurposeKind.PLANNING and not opt_out:
            raise check.fail(
                where,
                "the national data opt-out applies to every planning purpose",
                "remove 'opt_out_applies: false' or make the purpose direct care",
            )
        purposes[ident] = Purpose(
            id=ident,
            name=check.text(entry, "name", where),
            kind=kind,
            level=level,
            datasets=check.datasets(entry, where),
            opt_out_applies=opt_out,
            disclosure=_rules(check, entry.get("disclosure"), where),
            legal_basis=check.text(entry, "legal_basis", where),
            priority=check.text(entry, "priority", where, required=False),
            description=check.text(entry, "description", where, required=False) or "",
        )
    return purposes


def _users(check, raw, organisations, purposes) -> dict[str, User]:
    users = {}
    for where, entry, ident in _entries(check, raw, "users"):
        roles = entry.get("roles")
        if not isinstance(roles, list) or not roles:
            raise check.fail(where, "'roles' must list org and purposes", "add a role")
        parsed = []
        for j, role in enumerate(roles):
            rwhere = f"{where} roles[{j}]"
            role = check.mapping(role, rwhere)
            org = check.text(role, "org", rwhere)
            if org not in organisations:
                raise check.fail(rwhere, f"unknown org {org!r}", "use an organisation's code")
            held = check.names(role, "purposes", rwhere, list(purposes), "purposes")
            parsed.append(Role(org=org, purposes=held))
        accounts = entry.get("accounts", [])
        if isinstance(accounts, str):
            accounts = [accounts]
        if not isinstance(accounts, list) or not all(isinstance(a, str) and a for a in accounts):
            raise check.fail(where, "'accounts' must list account names", "e.g. [rsa.analyst]")
        users[ident] = User(
            id=ident,
            name=check.text(entry, "name", where, required=False) or ident,
            roles=tuple(parsed),
            accounts=tuple(accounts),
        )
    return users


def _agreements(check, raw, organisations, purposes, path: Path) -> dict[str, Agreement]:
    agreements = {}
    for where, entry, ident in _entries(check, raw, "agreements"):
        providers = check.names(entry, "providers", where, list(organisations), "organisations")
        recipients = check.names(entry, "recipients", where, list(organisations), "organisations")
        purpose_id = check.text(entry, "purpose", where)
        if purpose_id not in purposes:
            raise check.fail(
                where, f"unknown purpose {purpose_id!r}", f"use one of: {', '.join(purposes)}"
            )
        purpose = purposes[purpose_id]
        level = _enum(check, entry, "level", where, Level)
        if level.rank > purpose.level.rank:
            raise check.fail(
                where,
                f"level {level.value} is more identifiable than purpose {purpose_id} allows "
                f"({purpose.level.value})",
                "lower the agreement's level or choose another purpose",
            )
        datasets = check.datasets(entry, where)
        for name, cols in datasets.items():
            outside = [c for c in cols if not purpose.allows(name, c)]
            if outside:
                raise check.fail(
                    where,
                    f"{name} columns {', '.join(outside)} are outside purpose {purpose_id}",
                    "share only what the purpose allows",
                )
        valid_from = check.date(entry, "valid_from", where)
        valid_to = check.date(entry, "valid_to", where)
        if valid_to < valid_from:
            raise check.fail(where, "'valid_to' is before 'valid_from'", "correct the dates")
        key = check.text(entry, "key", where, required=False)
        agreements[ident] = Agreement(
            id=ident,
            title=check.text(entry, "title", where, required=False) or ident,
            providers=providers,
            recipients=recipients,
            purpose=purpose_id,
            level=level,
            datasets=datasets,
            legal_basis=check.text(entry, "legal_basis", where),
            valid_from=valid_from,
            valid_to=valid_to,
            key=str((path.parent / key).resolve()) if key else None,
            exchange=_exchange(check, entry, where, level),
        )
    return agreements


EXCHANGES = ("released", "exact_partials")


def _exchange(check: _Checker, entry: dict, where: str, level: Level) -> str:
    value = entry.get("exchange", "released")
    if value not in EXCHANGES:
        raise check.fail(
            where, f"unknown exchange {value!r}", f"use one of: {', '.join(EXCHANGES)}"
        )
    if value == "exact_partials" and level is not Level.AGGREGATE:
        raise check.fail(
            where,
            "exact partial aggregates are for aggregate-level agreements",
            "set 'level: aggregate' or remove 'exchange'",
        )
    return value
