"""Export a node's patient-level datasets as FHIR R4 (UK Core shaped) NDJSON or a Bundle.

The inverse of ``fhir.read_fhir``: ``patients`` -> Patient, ``vaccinations`` -> Immunization,
``ltc_registers`` -> Condition, ``inpatient_spells`` -> Encounter (class IMP) and
``outpatient_appointments`` -> Appointment. Identifiers use the NHS systems (NHS number, ODS
code), profiles are UK Core, and columns UK Core has no element for travel in the fdp
extensions of ``fhir_terms``, so that export then ``read_fhir`` gives back the same rows.

The source is a store file (opened read-only) or a mapping of dataset name -> Arrow table.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from fdp_kernel import codes
from fdp_kernel.errors import StoreError, UsageError
from fdp_kernel.ingest import fhir_terms as t
from fdp_kernel.stores import quote

RESOURCE_OF = {
    "patients": "Patient",
    "vaccinations": "Immunization",
    "ltc_registers": "Condition",
    "inpatient_spells": "Encounter",
    "outpatient_appointments": "Appointment",
}
_NAMESPACE = uuid.UUID("6f1c2d0e-4d0a-5c57-9a51-fdb0f4a1e7c3")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Source = Path | str | Mapping[str, pa.Table]
_NHS = t.NHS_NUMBER
Row = dict[str, Any]


def _fhir_id(value: str, kind: str) -> str:
    return value if _FHIR_ID.match(value) else str(uuid.uuid5(_NAMESPACE, f"{kind}/{value}"))


def _full_url(kind: str, *key: Any) -> str:
    return "urn:uuid:" + str(uuid.uuid5(_NAMESPACE, "/".join([kind, *map(str, key)])))


def _iso(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _coding(system: str, code: str | None, names: Mapping[str, str] | None = None) -> dict:
    coding = {"system": system, "code": code}
    if names and code in names:
        coding["display"] = names[code]
    return coding


def _concept(system: str, code: str | None, names: Mapping[str, str] | None = None) -> dict:
    return {"coding": [_coding(system, code, names)]} if code is not None else {}


def _org(code: str | None) -> dict | None:
    if code is None:
        return None
    return {"type": "Organization", "identifier": {"system": t.ODS_CODE, "value": code}}


def _ext(url: str, key: str, value: Any) -> dict | None:
    return None if value is None else {"url": url, key: value}


def _clean(resource: dict) -> dict:
    """Drop empty elements (None, {}, []) at the top level and one level down."""
    out = {}
    for key, value in resource.items():
        if isinstance(value, list):
            value = [v for v in value if v not in (None, {}, [])]
        if value not in (None, {}, []):
            out[key] = value
    return out


class _Links:
    """How a resource points at its patient: in a Bundle the Patient entry's fullUrl when the
    patient is in it (else the NHS number), in NDJSON the NHS number plus ``Patient/<id>``."""

    def __init__(self, bundle_patients: Mapping[str, str] | None = None) -> None:
        self.bundle = bundle_patients

    def patient(self, nhs_number: str | None) -> dict:
        ident = {"system": t.NHS_NUMBER, "value": nhs_number}
        if self.bundle is None:
            reference = f"Patient/{_fhir_id(nhs_number or '', 'Patient')}"
            return {"reference": reference, "type": "Patient", "identifier": ident}
        if nhs_number in self.bundle:
            return {"reference": self.bundle[nhs_number], "type": "Patient"}
        return {"type": "Patient", "identifier": ident}


def patient(row: Row, links: _Links) -> dict:
    lsoa = _ext(t.EXT_LSOA, "valueCode", row["lsoa_code"])
    ethnic = row["ethnicity"]
    ethnic_cc = _concept(t.ETHNIC_CATEGORY_SYSTEM, ethnic, codes.ETHNIC_CATEGORY)
    name = {"use": "official", "family": row["family_name"]}
    if row["given_name"] is not None:
        name["given"] = [row["given_name"]]
    sex = row["sex"]
    return _clean(
        {
            "resourceType": "Patient",
            "id": _fhir_id(row["nhs_number"], "Patient"),
            "meta": {"profile": [t.PROFILES["Patient"]]},
            "extension": [
                _ext(t.EXT_ETHNIC_CATEGORY, "valueCodeableConcept", ethnic_cc or None),
                _ext(t.EXT_IMD_DECILE, "valueInteger", row["imd_decile"]),
                _ext(t.EXT_OPT_OUT, "valueBoolean", row["national_opt_out"]),
            ],
            "identifier": [{"system": t.NHS_NUMBER, "value": row["nhs_number"]}],
            "name": [_clean(name)],
            "gender": None if sex is None else t.SEX_TO_GENDER.get(sex, "unknown"),
            "birthDate": _iso(row["date_of_birth"]),
            "deceasedDateTime": _iso(row["date_of_death"]),
            "address": [{"use": "home", "extension": [lsoa]}] if lsoa else [],
            "generalPractitioner": [_org(row["registered_practice"])],
            "managingOrganization": _org(row["org_code"]),
        }
    )


def immunization(row: Row, links: _Links) -> dict:
    product = row["vaccine_product_code"]
    if product is None:
        vaccine = _concept(t.NULL_FLAVOR, "UNK")
    else:
        vaccine = _concept(t.SNOMED if product.isdigit() else t.VACCINE_PRODUCT_SYSTEM, product)
    dose = row["dose_sequence"]
    dose_element = (
        {"doseNumberPositiveInt": dose}
        if dose is not None and dose >= 1
        else {"doseNumberString": "unknown" if dose is None else str(dose)}
    )
    procedure = _concept(t.SNOMED, row["procedure_code"], codes.VACCINATION_PROCEDURES)
    return _clean(
        {
            "resourceType": "Immunization",
            "id": _fhir_id(row["vaccination_id"], "Immunization"),
            "meta": {"profile": [t.PROFILES["Immunization"]]},
            "extension": [{"url": t.EXT_VACCINATION_PROCEDURE, "valueCodeableConcept": procedure}],
            "identifier": [{"system": t.ID_VACCINATION, "value": row["vaccination_id"]}],
            "status": "completed",
            "vaccineCode": vaccine,
            "patient": links.patient(row["nhs_number"]),
            "occurrenceDateTime": _iso(row["vaccination_date"]),
            "primarySource": True,
            "lotNumber": row["batch_number"],
            "site": _concept(t.SNOMED, row["site_of_vaccination_code"], codes.VACCINATION_SITE),
            "route": _concept(t.SNOMED, row["route_code"], codes.VACCINATION_ROUTE),
            "performer": [{"actor": _org(row["org_code"])}],
            "protocolApplied": [dose_element],
        }
    )


def condition(row: Row, links: _Links) -> dict:
    register = row["condition"]
    concepts = t.REGISTER_CONCEPTS.get(register, ())
    coding = [{"system": t.SNOMED, "code": c, "display": d} for c, d in concepts[:1]]
    coding.append(_coding(t.QOF_REGISTER_SYSTEM, register, codes.LTC_REGISTERS))
    onset = _iso(row["diagnosis_date"])
    return _clean(
        {
            "resourceType": "Condition",
            "id": _full_url("Condition", row["org_code"], row["nhs_number"], register)[9:],
            "meta": {"profile": [t.PROFILES["Condition"]]},
            "clinicalStatus": _concept(t.CONDITION_CLINICAL, "active"),
            "verificationStatus": _concept(t.CONDITION_VERIFICATION, "confirmed"),
            "category": [_concept(t.CONDITION_CATEGORY, "problem-list-item")],
            "code": {"coding": coding, "text": codes.LTC_REGISTERS.get(register, register)},
            "subject": links.patient(row["nhs_number"]),
            "onsetDateTime": onset,
            "recordedDate": onset,
        }
    )


def encounter(row: Row, links: _Links) -> dict:
    died, discharged = row["died_in_hospital"], row["discharge_date"] is not None
    pathway = row["discharge_pathway"]
    method = destination = None
    if died:
        method, destination = t.DIED_DISCHARGE_METHOD, t.DIED_DESTINATION
    elif discharged:
        method = t.ALIVE_DISCHARGE_METHOD
        if pathway in (0, 1):
            destination = t.HOME_DESTINATION
        elif pathway == 3:
            destination = t.CARE_HOME_DESTINATION
    hospitalization = {
        "extension": [
            _ext(
                t.EXT_ADMISSION_METHOD,
                "valueCodeableConcept",
                _concept(t.ADMISSION_METHOD_SYSTEM, row["admission_method"], codes.ADMISSION_METHOD)
                or None,
            ),
            _ext(
                t.EXT_DISCHARGE_METHOD,
                "valueCodeableConcept",
                _concept(t.DISCHARGE_METHOD_SYSTEM, method, t.DISCHARGE_METHOD_NAMES) or None,
            ),
        ],
        "dischargeDisposition": _concept(
            t.DISCHARGE_DESTINATION_SYSTEM, destination, t.DESTINATION_NAMES
        ),
    }
    tfc = row["treatment_function_code"]
    return _clean(
        {
            "resourceType": "Encounter",
            "id": _fhir_id(row["spell_id"], "Encounter"),
            "meta": {"profile": [t.PROFILES["Encounter"]]},
            "extension": [
                _ext(t.EXT_DISCHARGE_READY, "valueDate", _iso(row["discharge_ready_date"])),
                _ext(t.EXT_DISCHARGE_PATHWAY, "valueInteger", row["discharge_pathway"]),
                _ext(t.EXT_NCTR_REASON, "valueCode", row["nctr_reason"]),
            ],
            "identifier": [{"system": t.ID_SPELL, "value": row["spell_id"]}],
            "status": "finished" if discharged or died else "in-progress",
            "class": {"system": t.ACT_CODE, "code": "IMP", "display": "inpatient encounter"},
            "serviceType": _concept(t.TREATMENT_FUNCTION_SYSTEM, tfc, codes.TREATMENT_FUNCTIONS),
            "subject": links.patient(row["nhs_number"]),
            "period": _clean(
                {"start": _iso(row["admission_date"]), "end": _iso(row["discharge_date"])}
            ),
            "hospitalization": _clean(hospitalization),
            "serviceProvider": _org(row["org_code"]),
        }
    )


def appointment(row: Row, links: _Links) -> dict:
    attended = row["attendance_status"]
    status = "booked" if attended is None else t.ATTENDANCE_TO_STATUS.get(attended, "booked")
    reason = {"2": "pat", "4": "prov"}.get(attended or "")
    first = row["first_attendance"]
    day = _iso(row["appointment_date"])
    pathway = row["pathway_id"]
    tfc = row["treatment_function_code"]
    return _clean(
        {
            "resourceType": "Appointment",
            "id": _fhir_id(row["appointment_id"], "Appointment"),
            "meta": {"profile": [t.PROFILES["Appointment"]]},
            "extension": [
                _ext(t.EXT_ATTENDED_STATUS, "valueCode", attended),
                _ext(t.EXT_MOVED_TO_PIFU, "valueBoolean", row["moved_to_pifu"]),
            ],
            "identifier": [{"system": t.ID_APPOINTMENT, "value": row["appointment_id"]}],
            "status": status,
            "cancelationReason": _concept(t.CANCELLATION_REASON, reason),
            "serviceType": [_concept(t.TREATMENT_FUNCTION_SYSTEM, tfc, codes.TREATMENT_FUNCTIONS)],
            "appointmentType": {
                "coding": [
                    _coding(t.FIRST_ATTENDANCE_SYSTEM, first, codes.FIRST_ATTENDANCE),
                    _coding(t.APPOINTMENT_TYPE, "FOLLOWUP" if first == "2" else "ROUTINE"),
                ]
                if first is not None
                else []
            },
            "start": None if day is None else f"{day}T00:00:00+00:00",
            "end": None if day is None else f"{day}T23:59:59+00:00",
            "basedOn": [
                None
                if pathway is None
                else {
                    "type": "ServiceRequest",
                    "identifier": {"system": t.ID_RTT_PATHWAY, "value": pathway},
                }
            ],
            "participant": [{"actor": links.patient(row["nhs_number"]), "status": "accepted"}],
        }
    )


BUILDERS = {
    "patients": patient,
    "vaccinations": immunization,
    "ltc_registers": condition,
    "inpatient_spells": encounter,
    "outpatient_appointments": appointment,
}


def _batches(source: Source, dataset: str, batch_rows: int = 50_000) -> Iterator[list[Row]]:
    if isinstance(source, Mapping):
        for batch in source[dataset].to_batches(batch_rows):
            yield batch.to_pylist()
        return
    con = duckdb.connect(str(source), read_only=True)
    try:
        reader = con.execute(f"SELECT * FROM {quote(dataset)}").to_arrow_reader(batch_rows)
        for batch in reader:
            yield batch.to_pylist()
    finally:
        con.close()


def _datasets(source: Source) -> list[str]:
    if isinstance(source, Mapping):
        return [d for d in RESOURCE_OF if d in source]
    path = Path(source)
    if not path.is_file():
        raise StoreError(f"store {path} does not exist")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise StoreError(f"cannot open store {path}: {exc}") from None
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    return [d for d in RESOURCE_OF if d in tables]


def _dumps(resource: dict) -> str:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":"))


def export_ndjson(source: Source, out_dir: Path) -> dict[str, Path]:
    """One ``<ResourceType>.ndjson`` per patient-level dataset of the source, streamed in
    batches; returns dataset name -> file written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    links = _Links()
    written = {}
    for dataset in _datasets(source):
        path = out_dir / f"{RESOURCE_OF[dataset]}.ndjson"
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            for rows in _batches(source, dataset):
                f.writelines(_dumps(BUILDERS[dataset](row, links)) + "\n" for row in rows)
        written[dataset] = path
    return written


def export_bundle(source: Source, out_file: Path, bundle_type: str = "collection") -> Path:
    """One Bundle (``collection`` or ``transaction``) of every patient-level row, Patients
    first; other resources reference their Patient entry by ``fullUrl``."""
    if bundle_type not in ("collection", "transaction"):
        raise UsageError(f"bundle_type must be collection or transaction (got {bundle_type!r})")
    datasets = _datasets(source)
    entries: list[dict] = []
    patients: dict[str, str] = {}
    if "patients" in datasets:
        for rows in _batches(source, "patients"):
            for row in rows:
                full_url = _full_url("Patient", row["org_code"], row["nhs_number"])
                patients.setdefault(row["nhs_number"], full_url)
                entries.append({"fullUrl": full_url, "resource": patient(row, _Links())})
    links = _Links(patients)
    for dataset in datasets:
        if dataset == "patients":
            continue
        for rows in _batches(source, dataset):
            for row in rows:
                resource = BUILDERS[dataset](row, links)
                entries.append({"fullUrl": _full_url(dataset, *row.values()), "resource": resource})
    if bundle_type == "transaction":
        for entry in entries:
            resource = entry["resource"]
            entry["request"] = {"method": "POST", "url": resource["resourceType"]}
            if resource["resourceType"] == "Patient":  # conditional update: one per person
                nhs = resource["identifier"][0]["value"]
                entry["request"] = {"method": "PUT", "url": f"Patient?identifier={_NHS}|{nhs}"}
    bundle = {
        "resourceType": "Bundle",
        "id": _full_url("Bundle", Path(out_file).name, len(entries))[9:],
        "type": bundle_type,
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "entry": entries,
    }
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(bundle, ensure_ascii=False, indent=1), encoding="utf-8")
    return out_file
