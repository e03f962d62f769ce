"""What crosses between a thin client and the node service (and between services): requests
and answers as JSON, released tables as Arrow, errors as their class, rule and message.

Nothing here is secret or trusted: the client's copy of the federation (``public_federation``)
has no store, key or audit path and no other person's roles, and it decides nothing; released
tables are exactly what the service released.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from fdp_kernel import errors
from fdp_kernel.config import Federation, Organisation
from fdp_kernel.governance.disclosure import DisclosureRules
from fdp_kernel.governance.model import Agreement, Level, Purpose, PurposeKind, Role, User
from fdp_kernel.governance.released import Released

HELD_BY_SERVICE = "held by the node service"
_ERRORS = {
    cls.__name__: cls
    for cls in (errors.FdpError, errors.UsageError, errors.ConfigError, errors.StoreError)
}


# -- errors --------------------------------------------------------------------------------
def error_info(exc: BaseException) -> bytes:
    """An error as the client should raise it again (class, rule, message)."""
    if isinstance(exc, errors.GovernanceError):
        body = {"class": "GovernanceError", "rule": exc.rule, "agreement": exc.agreement}
    elif isinstance(exc, errors.FdpError):
        body = {"class": type(exc).__name__ if type(exc).__name__ in _ERRORS else "FdpError"}
    else:
        body = {"class": "FdpError"}
    body["message"] = str(exc)
    return json.dumps(body).encode()


def raise_error(extra: bytes | None, fallback: BaseException) -> None:
    """Raise the fdp error a service reported (``FlightError.extra_info``), else the
    transport's error as a StoreError that says the service could not be reached."""
    try:
        body = json.loads(extra or b"")
    except ValueError:
        body = None
    if not isinstance(body, dict) or "message" not in body:
        raise errors.StoreError(
            f"the node service did not answer ({type(fallback).__name__}: {fallback}); "
            "check that `fdp serve` is running and FDP_SERVICE points at it"
        ) from None
    if body.get("class") == "GovernanceError":
        raise errors.GovernanceError(
            body["message"], rule=str(body.get("rule")), agreement=body.get("agreement")
        ) from None
    raise _ERRORS.get(body.get("class"), errors.FdpError)(body["message"]) from None


# -- the client's copy of the federation ----------------------------------------------------
def public_federation(fed: Federation, user: str) -> dict[str, Any]:
    """The federation as a client may know it: organisations, purposes, agreements (no paths,
    keys or stores) and only this person's own roles."""
    own = fed.users.get(user)
    return {
        "name": fed.name,
        "synthetic": fed.synthetic,
        "as_of": fed.as_of.isoformat() if fed.as_of else None,
        "organisations": [
            {"code": o.code, "name": o.name, "type": o.org_type, "parent_icb": o.parent_icb}
            for o in fed.organisations.values()
        ],
        "purposes": [_purpose_doc(p) for p in fed.purposes.values()],
        "users": [] if own is None else [_user_doc(own)],
        "agreements": [_agreement_doc(a) for a in fed.agreements.values()],
    }


def federation_from(doc: dict[str, Any]) -> Federation:
    orgs = {
        o["code"]: Organisation(
            code=o["code"],
            name=o["name"],
            org_type=o["type"],
            parent_icb=o.get("parent_icb"),
            store=HELD_BY_SERVICE,
        )
        for o in doc["organisations"]
    }
    return Federation(
        path=Path(HELD_BY_SERVICE),
        name=doc["name"],
        synthetic=bool(doc.get("synthetic")),
        as_of=dt.date.fromisoformat(doc["as_of"]) if doc.get("as_of") else None,
        seed=None,
        organisations=orgs,
        purposes={p["id"]: purpose_from(p) for p in doc["purposes"]},
        users={u["id"]: _user_from(u) for u in doc["users"]},
        agreements={a["id"]: _agreement_from(a) for a in doc["agreements"]},
    )


def _purpose_doc(p: Purpose) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "kind": p.kind.value,
        "level": p.level.value,
        "datasets": {k: list(v) for k, v in p.datasets.items()},
        "opt_out_applies": p.opt_out_applies,
        "disclosure": dataclasses.asdict(p.disclosure),
        "legal_basis": p.legal_basis,
        "priority": p.priority,
        "description": p.description,
    }


def purpose_from(d: dict[str, Any]) -> Purpose:
    return Purpose(
        id=d["id"],
        name=d["name"],
        kind=PurposeKind(d["kind"]),
        level=Level(d["level"]),
        datasets={k: tuple(v) for k, v in d["datasets"].items()},
        opt_out_applies=d["opt_out_applies"],
        disclosure=DisclosureRules(**d["disclosure"]),
        legal_basis=d["legal_basis"],
        priority=d.get("priority"),
        description=d.get("description") or "",
    )


def _user_doc(u: User) -> dict[str, Any]:
    return {
        "id": u.id,
        "name": u.name,
        "roles": [{"org": r.org, "purposes": list(r.purposes)} for r in u.roles],
    }


def _user_from(d: dict[str, Any]) -> User:
    roles = tuple(Role(r["org"], tuple(r["purposes"])) for r in d["roles"])
    return User(id=d["id"], name=d["name"], roles=roles)


def _agreement_doc(a: Agreement) -> dict[str, Any]:
    return {
        "id": a.id,
        "title": a.title,
        "providers": list(a.providers),
        "recipients": list(a.recipients),
        "purpose": a.purpose,
        "level": a.level.value,
        "datasets": {k: list(v) for k, v in a.datasets.items()},
        "legal_basis": a.legal_basis,
        "valid_from": a.valid_from.isoformat(),
        "valid_to": a.valid_to.isoformat(),
        "exchange": a.exchange,
    }


def _agreement_from(d: dict[str, Any]) -> Agreement:
    return Agreement(
        id=d["id"],
        title=d["title"],
        providers=tuple(d["providers"]),
        recipients=tuple(d["recipients"]),
        purpose=d["purpose"],
        level=Level(d["level"]),
        datasets={k: tuple(v) for k, v in d["datasets"].items()},
        legal_basis=d["legal_basis"],
        valid_from=dt.date.fromisoformat(d["valid_from"]),
        valid_to=dt.date.fromisoformat(d["valid_to"]),
        exchange=d.get("exchange", "released"),
    )


# -- released tables ----------------------------------------------------------------------
def table_to_arrow(data: pd.DataFrame, suppressed: pd.DataFrame, **meta: Any) -> pa.Table:
    """Released figures as Arrow; the suppression reasons and ``meta`` in its metadata."""
    table = pa.Table.from_pandas(data, preserve_index=False)
    meta["suppressed"] = {c: [str(x) for x in suppressed[c].tolist()] for c in suppressed}
    merged = {**(table.schema.metadata or {}), b"fdp.released": json.dumps(meta).encode()}
    return table.replace_schema_metadata(merged)


def table_from_arrow(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    meta = json.loads((table.schema.metadata or {})[b"fdp.released"])
    data = table.to_pandas()
    hidden = meta.pop("suppressed")
    suppressed = pd.DataFrame(
        {c: pd.Series(v, dtype=object) for c, v in hidden.items()},
        index=pd.RangeIndex(len(data)),
        columns=list(hidden),
    )
    return data, suppressed, meta


def released_to_arrow(released: Released) -> pa.Table:
    """A released table with everything a person may see of it in the schema's metadata."""
    return table_to_arrow(
        released.data,
        released.suppressed,
        title=released.title,
        source=released.source,
        note=released.note,
        n_suppressed=released.n_suppressed,
        listing=released.listing,
    )


def released_from_arrow(table: pa.Table) -> Released:
    data, suppressed, meta = table_from_arrow(table)
    return Released(
        data,
        suppressed,
        meta["title"],
        meta["source"],
        meta["note"],
        int(meta["n_suppressed"]),
        bool(meta["listing"]),
    )


def frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(frame, preserve_index=False)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_default, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")
