"""Typed access to FHIR R4 JSON: every wrong shape becomes an ``Unmappable`` with its path.

FHIR JSON arrives from many systems and versions. These helpers read one element at a time,
check its JSON type against R4, and raise ``Unmappable`` naming the element (for example
``Condition.clinicalStatus is a string; FHIR R4 has an object here (an STU3 resource?)``),
so the reader can reject the resource with that reason instead of failing.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fdp_kernel.ingest import fhir_terms as t


class Unmappable(Exception):
    """A resource that cannot be mapped onto the catalogue; the message is the reason."""


_KIND_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return _KIND_NAMES.get(type(value), type(value).__name__)


def get(obj: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    """``obj[key]`` if present and of JSON type ``kind`` (dict, list, str, bool, int)."""
    value = obj.get(key)
    if value is None:
        return None
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, kind)
    if not ok:
        wanted = "an integer" if kind is int else _KIND_NAMES[kind]
        hint = " (an STU3 resource?)" if kind is dict and isinstance(value, str) else ""
        raise Unmappable(f"{path}.{key} is {_describe(value)}; FHIR R4 has {wanted} here{hint}")
    return value


def objects(obj: Mapping[str, Any], key: str, path: str) -> list[dict]:
    """The array ``obj[key]`` of objects (empty when absent)."""
    values = get(obj, key, list, path) or []
    for i, value in enumerate(values):
        if not isinstance(value, dict):
            raise Unmappable(f"{path}.{key}[{i}] is {_describe(value)}; FHIR R4 has an object here")
    return values


def codings(concept: Mapping[str, Any] | None, path: str) -> list[tuple[str | None, str]]:
    """(system, code) of each coding with a code in a CodeableConcept."""
    if concept is None:
        return []
    found = []
    for coding in objects(concept, "coding", path):
        code = get(coding, "code", str, f"{path}.coding")
        if code is not None:
            found.append((get(coding, "system", str, f"{path}.coding"), code))
    return found


def code(concept: Mapping[str, Any] | None, path: str, system: str | None = None) -> str | None:
    """The code from ``system`` if the concept has one, else its first code of any system."""
    found = codings(concept, path)
    for sys, value in found:
        if sys == system:
            return value
    return found[0][1] if found else None


def identifier(identifiers: list[dict], system: str, path: str) -> str | None:
    """The value of the first identifier of ``system``."""
    for ident in identifiers:
        if get(ident, "system", str, path) == system:
            value = get(ident, "value", str, path)
            if value is not None:
                return value
    return None


def business_id(resource: Mapping[str, Any], path: str) -> str:
    """A record identifier: fdp's own identifier system, else an official identifier, else the
    first identifier with a value, else the resource id."""
    idents = objects(resource, "identifier", path)
    ranked = sorted(
        idents,
        key=lambda i: (
            get(i, "system", str, f"{path}.identifier") not in t.PREFERRED_IDS,
            get(i, "use", str, f"{path}.identifier") != "official",
        ),
    )
    for ident in ranked:
        value = get(ident, "value", str, f"{path}.identifier")
        if value:
            return value
    rid = get(resource, "id", str, path)
    if not rid:
        raise Unmappable(f"{path} has neither an identifier nor an id to key the record")
    return rid


def extension(obj: Mapping[str, Any], url: str, path: str) -> dict | None:
    """The first extension with ``url``."""
    for ext in objects(obj, "extension", path):
        if get(ext, "url", str, f"{path}.extension") == url:
            return ext
    return None


def extension_value(obj: Mapping[str, Any], url: str, key: str, kind: type, path: str) -> Any:
    ext = extension(obj, url, path)
    return None if ext is None else get(ext, key, kind, f"{path}.extension({url.rsplit('/')[-1]})")


_FULL_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$"
)
_PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2})?$")


def date(value: str | None, path: str) -> dt.date | None:
    """A FHIR date, dateTime or instant as the calendar date written (no time-zone shift)."""
    if value is None:
        return None
    match = _FULL_DATE.match(value)
    if match is None:
        if _PARTIAL_DATE.match(value):
            raise Unmappable(f"{path} {value!r} is a partial date; the catalogue needs a day")
        raise Unmappable(f"{path} {value!r} is not a FHIR date or dateTime")
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise Unmappable(f"{path} {value!r} is not a calendar date") from None


def small_int(value: int | None, path: str) -> int | None:
    """An integer that must fit the catalogue's int8 columns (range rules are the core's)."""
    if value is not None and not -128 <= value <= 127:
        raise Unmappable(f"{path} {value} does not fit a small integer column (-128 to 127)")
    return value


@dataclass
class Context:
    """What a mapper may look at beyond the resource: the node's ODS code and, in a Bundle,
    the other entries by ``fullUrl`` and by ``Type/id``."""

    org: str
    in_bundle: bool = False
    entries: dict[str, dict] = field(default_factory=dict)

    def add(self, full_url: str | None, resource: dict) -> None:
        if full_url:
            self.entries[full_url] = resource
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            self.entries.setdefault(f"{rtype}/{rid}", resource)

    def resolve(self, reference: str, resource: Mapping[str, Any], path: str) -> dict | None:
        """A contained (``#id``) or Bundle resource (``urn:uuid:..``, ``Patient/1``, URL)."""
        if reference.startswith("#"):
            for item in objects(resource, "contained", path):
                if item.get("id") == reference[1:]:
                    return item
            return None
        if reference in self.entries:
            return self.entries[reference]
        parts = reference.split("/_history/")[0].rstrip("/").split("/")
        if len(parts) >= 2:
            return self.entries.get(f"{parts[-2]}/{parts[-1]}")
        return None


def patient_nhs_number(patient: Mapping[str, Any], path: str) -> str | None:
    return identifier(objects(patient, "identifier", path), t.NHS_NUMBER, f"{path}.identifier")


def linked_nhs_number(
    ref: Mapping[str, Any] | None, resource: Mapping[str, Any], ctx: Context, path: str
) -> str:
    """The NHS number of the patient a Reference points at: its logical identifier, else the
    Patient it references (contained, or another entry of the Bundle)."""
    if ref is None:
        raise Unmappable(f"{path} is missing: no patient to link the record to")
    ident = get(ref, "identifier", dict, path)
    if ident is not None:
        value = identifier([ident], t.NHS_NUMBER, f"{path}.identifier")
        if value is not None:
            return value
    reference = get(ref, "reference", str, path)
    if reference is None:
        raise Unmappable(f"{path} has no NHS number identifier ({t.NHS_NUMBER}) and no reference")
    target = ctx.resolve(reference, resource, path)
    if target is None:
        where = "this Bundle" if ctx.in_bundle else "the resource (contained)"
        hint = "" if ctx.in_bundle else f"; in NDJSON give the NHS number in {path}.identifier"
        raise Unmappable(f"{path}.reference {reference!r} is not a Patient in {where}{hint}")
    if target.get("resourceType") != "Patient":
        raise Unmappable(f"{path}.reference {reference!r} is a {target.get('resourceType')}")
    value = patient_nhs_number(target, "Patient")
    if value is None:
        raise Unmappable(f"{path}.reference {reference!r} is a Patient with no NHS number")
    return value


def ods_code(
    ref: Mapping[str, Any] | None, resource: Mapping[str, Any], ctx: Context, path: str
) -> str | None:
    """The ODS code of an Organization reference (logical identifier or resolved)."""
    if ref is None:
        return None
    ident = get(ref, "identifier", dict, path)
    if ident is not None:
        value = identifier([ident], t.ODS_CODE, f"{path}.identifier")
        if value is not None:
            return value
    reference = get(ref, "reference", str, path)
    target = None if reference is None else ctx.resolve(reference, resource, path)
    if target is None or target.get("resourceType") != "Organization":
        return None
    return identifier(objects(target, "identifier", path), t.ODS_CODE, path)


def reject_other_versions(resource: Mapping[str, Any], rtype: str) -> None:
    """Reject resources whose profile says they are STU3 (CareConnect) rather than R4."""
    meta = get(resource, "meta", dict, rtype) or {}
    for profile in get(meta, "profile", list, f"{rtype}.meta") or []:
        if isinstance(profile, str) and ("/STU3/" in profile or "CareConnect" in profile):
            raise Unmappable(
                f"{rtype}.meta.profile {profile!r} is a FHIR STU3 profile; fdp reads R4 (UK Core)"
            )
