"""FHIR R4 resources -> catalogue rows: one mapper per supported resource type.

A mapper maps structure and converts types; it never applies business rules (check digits,
code lists, date ranges, references to other datasets): values are kept as found so the
ingest core quarantines a bad one with the right reason. A resource that cannot be mapped
at all raises ``Unmappable`` with the reason. docs/ingest_fhir_section.md has the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fdp_kernel.ingest import fhir_terms as t
from fdp_kernel.ingest.fhir_read import (
    Context,
    Unmappable,
    business_id,
    code,
    codings,
    date,
    extension,
    extension_value,
    get,
    linked_nhs_number,
    objects,
    ods_code,
    patient_nhs_number,
    reject_other_versions,
    small_int,
)

Row = dict[str, Any]


def _name(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(given names joined by a space, family) of the official name, else the first name in
    use (names with ``use: old`` are skipped)."""
    names = objects(resource, "name", "Patient")
    names = [n for n in names if get(n, "use", str, "Patient.name") != "old"]
    names.sort(key=lambda n: n.get("use") != "official")
    if not names:
        return None, None
    given = get(names[0], "given", list, "Patient.name") or []
    if not all(isinstance(g, str) for g in given):
        raise Unmappable("Patient.name.given holds a non-string; FHIR R4 has strings here")
    return (" ".join(given) or None), get(names[0], "family", str, "Patient.name")


def _lsoa(resource: Mapping[str, Any]) -> str | None:
    for address in objects(resource, "address", "Patient"):
        if get(address, "use", str, "Patient.address") == "old":
            continue
        value = extension_value(address, t.EXT_LSOA, "valueCode", str, "Patient.address")
        if value is not None:
            return value
    return None


def map_patient(r: Mapping[str, Any], ctx: Context) -> Row:
    nhs_number = patient_nhs_number(r, "Patient")
    if nhs_number is None:
        raise Unmappable(f"Patient has no identifier with system {t.NHS_NUMBER}")
    given, family = _name(r)
    gender = get(r, "gender", str, "Patient")
    ethnic = extension_value(
        r, t.EXT_ETHNIC_CATEGORY, "valueCodeableConcept", dict, "Patient.extension"
    )
    practice = None
    for gp in objects(r, "generalPractitioner", "Patient"):
        practice = ods_code(gp, r, ctx, "Patient.generalPractitioner")
        if practice is not None:
            break
    imd = extension_value(r, t.EXT_IMD_DECILE, "valueInteger", int, "Patient")
    managing = get(r, "managingOrganization", dict, "Patient")
    return {
        "org_code": ods_code(managing, r, ctx, "Patient.managingOrganization") or ctx.org,
        "nhs_number": nhs_number,
        "given_name": given,
        "family_name": family,
        "date_of_birth": date(get(r, "birthDate", str, "Patient"), "Patient.birthDate"),
        "sex": None if gender is None else t.GENDER_TO_SEX.get(gender, gender),
        "ethnicity": code(ethnic, "Patient.extension(EthnicCategory)", t.ETHNIC_CATEGORY_SYSTEM),
        "lsoa_code": _lsoa(r),
        "imd_decile": small_int(imd, "Patient.extension(IMDDecile)"),
        "registered_practice": practice,
        "national_opt_out": extension_value(r, t.EXT_OPT_OUT, "valueBoolean", bool, "Patient"),
        "date_of_death": date(
            get(r, "deceasedDateTime", str, "Patient"), "Patient.deceasedDateTime"
        ),
    }


def _dose_number(r: Mapping[str, Any]) -> int | None:
    applied = objects(r, "protocolApplied", "Immunization")
    if not applied:
        return None
    path = "Immunization.protocolApplied"
    number = get(applied[0], "doseNumberPositiveInt", int, path)
    if number is None:
        text = get(applied[0], "doseNumberString", str, path)
        number = int(text) if text is not None and text.strip().isdigit() else None
    return small_int(number, f"{path}.doseNumber")


def _vaccine_product(r: Mapping[str, Any]) -> str | None:
    vaccine = get(r, "vaccineCode", dict, "Immunization")
    found = [(s, c) for s, c in codings(vaccine, "Immunization.vaccineCode") if s != t.NULL_FLAVOR]
    found.sort(key=lambda sc: sc[0] != t.SNOMED)
    return found[0][1] if found else None


def map_immunization(r: Mapping[str, Any], ctx: Context) -> Row:
    p = "Immunization"
    if "notGiven" in r or ("date" in r and "occurrenceDateTime" not in r):
        raise Unmappable("Immunization has notGiven/date: an STU3 resource; fdp reads R4")
    status = get(r, "status", str, p)
    if status is None:
        raise Unmappable("Immunization.status is missing (required in R4)")
    if status != "completed":
        raise Unmappable(
            f"Immunization.status is {status!r}: vaccinations holds doses given (completed)"
        )
    if "occurrenceString" in r and "occurrenceDateTime" not in r:
        raise Unmappable("Immunization.occurrenceString gives no date; occurrenceDateTime needed")
    procedure_cc = extension_value(r, t.EXT_VACCINATION_PROCEDURE, "valueCodeableConcept", dict, p)
    if procedure_cc is not None:
        procedure = code(procedure_cc, f"{p}.extension(VaccinationProcedure)", t.SNOMED)
        product = _vaccine_product(r)
    else:  # no UK Core procedure extension: the vaccineCode is taken as the procedure
        procedure = code(get(r, "vaccineCode", dict, p), f"{p}.vaccineCode", t.SNOMED)
        product = None
    # performer/location name who gave the dose (a pharmacy, a vaccination centre), not who
    # holds the record: a GP record holds doses given elsewhere, so org_code is the node's.
    return {
        "org_code": ctx.org,
        "vaccination_id": business_id(r, p),
        "nhs_number": linked_nhs_number(get(r, "patient", dict, p), r, ctx, f"{p}.patient"),
        "vaccination_date": date(get(r, "occurrenceDateTime", str, p), f"{p}.occurrenceDateTime"),
        "programme": t.PROCEDURE_TO_PROGRAMME.get(procedure or ""),
        "procedure_code": procedure,
        "dose_sequence": _dose_number(r),
        "vaccine_product_code": product,
        "batch_number": get(r, "lotNumber", str, p),
        "site_of_vaccination_code": code(get(r, "site", dict, p), f"{p}.site", t.SNOMED),
        "route_code": code(get(r, "route", dict, p), f"{p}.route", t.SNOMED),
    }


def _register(concept: Mapping[str, Any] | None) -> str:
    found = codings(concept, "Condition.code")
    for system, value in found:
        if system == t.QOF_REGISTER_SYSTEM:
            return value  # as found: the code list check is the core's
    for system, value in found:
        if system == t.SNOMED and value in t.SNOMED_TO_REGISTER:
            return t.SNOMED_TO_REGISTER[value]
    shown = ", ".join(f"{s or '?'}|{c}" for s, c in found) or "no coding"
    raise Unmappable(
        f"Condition.code ({shown}) maps to no QOF register: fdp maps a coding from "
        f"{t.QOF_REGISTER_SYSTEM} or a SNOMED CT concept of a register (fhir_terms)"
    )


def map_condition(r: Mapping[str, Any], ctx: Context) -> Row:
    p = "Condition"
    clinical = code(get(r, "clinicalStatus", dict, p), f"{p}.clinicalStatus")
    if clinical in t.CONDITION_OFF_REGISTER:
        raise Unmappable(
            f"Condition.clinicalStatus is {clinical!r}: registers hold current diagnoses only"
        )
    verification = code(get(r, "verificationStatus", dict, p), f"{p}.verificationStatus")
    if verification in t.CONDITION_UNCONFIRMED:
        raise Unmappable(f"Condition.verificationStatus is {verification!r}: not a diagnosis")
    subject = linked_nhs_number(get(r, "subject", dict, p), r, ctx, f"{p}.subject")
    if get(r, "code", dict, p) is None:
        raise Unmappable("Condition.code is missing: no condition to put on a register")
    onset = get(r, "onsetDateTime", str, p)
    onset_path = f"{p}.onsetDateTime"
    if onset is None:
        onset = get(get(r, "onsetPeriod", dict, p) or {}, "start", str, f"{p}.onsetPeriod")
        onset_path = f"{p}.onsetPeriod.start"
    if onset is None:
        onset, onset_path = get(r, "recordedDate", str, p), f"{p}.recordedDate"
    return {
        "org_code": ctx.org,
        "nhs_number": subject,
        "condition": _register(r["code"]),
        "diagnosis_date": date(onset, onset_path),
    }


def _encounter_class(r: Mapping[str, Any]) -> str:
    if isinstance(r.get("class"), list) or "actualPeriod" in r or "admission" in r:
        raise Unmappable("Encounter has class[], actualPeriod or admission: R5; fdp reads R4")
    cls = get(r, "class", dict, "Encounter")
    value = None if cls is None else get(cls, "code", str, "Encounter.class")
    if value is None:
        raise Unmappable("Encounter.class is missing (required in R4)")
    if value not in t.INPATIENT_CLASSES:
        raise Unmappable(
            f"Encounter.class {value!r} is not admitted care: inpatient_spells takes "
            f"{', '.join(sorted(t.INPATIENT_CLASSES))}; outpatient attendances are read "
            "from Appointment resources"
        )
    return value


def map_encounter(r: Mapping[str, Any], ctx: Context) -> Row:
    p = "Encounter"
    _encounter_class(r)
    status = get(r, "status", str, p)
    if status in t.ENCOUNTER_SKIPPED_STATUS:
        raise Unmappable(f"Encounter.status is {status!r}: not a hospital spell")
    period = get(r, "period", dict, p) or {}
    admitted = date(get(period, "start", str, f"{p}.period"), f"{p}.period.start")
    if admitted is None:
        raise Unmappable("Encounter.period.start is missing: a spell needs its admission date")
    hosp = get(r, "hospitalization", dict, p) or {}
    hp = f"{p}.hospitalization"
    method_cc = extension_value(
        hosp, t.EXT_ADMISSION_METHOD, "valueCodeableConcept", dict, hp
    ) or extension_value(r, t.EXT_ADMISSION_METHOD, "valueCodeableConcept", dict, p)
    discharge_cc = extension_value(
        hosp, t.EXT_DISCHARGE_METHOD, "valueCodeableConcept", dict, hp
    ) or extension_value(r, t.EXT_DISCHARGE_METHOD, "valueCodeableConcept", dict, p)
    disposition = code(get(hosp, "dischargeDisposition", dict, hp), f"{hp}.dischargeDisposition")
    died = (
        code(discharge_cc, f"{p}.extension(DischargeMethod)", t.DISCHARGE_METHOD_SYSTEM)
        == t.DIED_DISCHARGE_METHOD
        or disposition == t.DIED_DESTINATION
    )
    pathway = extension_value(r, t.EXT_DISCHARGE_PATHWAY, "valueInteger", int, p)
    ready = extension(r, t.EXT_DISCHARGE_READY, p)
    ready_value = None
    if ready is not None:
        ready_value = get(ready, "valueDate", str, f"{p}.extension(DischargeReadyDate)")
        ready_value = ready_value or get(ready, "valueDateTime", str, f"{p}.extension")
    return {
        "org_code": ods_code(get(r, "serviceProvider", dict, p), r, ctx, f"{p}.serviceProvider")
        or ctx.org,
        "spell_id": business_id(r, p),
        "nhs_number": linked_nhs_number(get(r, "subject", dict, p), r, ctx, f"{p}.subject"),
        "admission_date": admitted,
        "discharge_date": date(get(period, "end", str, f"{p}.period"), f"{p}.period.end"),
        "admission_method": code(method_cc, f"{p}.extension(AdmissionMethod)"),
        "treatment_function_code": code(
            get(r, "serviceType", dict, p), f"{p}.serviceType", t.TREATMENT_FUNCTION_SYSTEM
        ),
        "discharge_ready_date": date(ready_value, f"{p}.extension(DischargeReadyDate)"),
        "discharge_pathway": small_int(pathway, f"{p}.extension(DischargePathway)"),
        "nctr_reason": extension_value(r, t.EXT_NCTR_REASON, "valueCode", str, p),
        "died_in_hospital": died,
    }


def _attendance(r: Mapping[str, Any], status: str) -> str | None:
    override = extension_value(r, t.EXT_ATTENDED_STATUS, "valueCode", str, "Appointment")
    if override is not None:
        return override
    if status in t.APPOINTMENT_ATTENDANCE:
        return t.APPOINTMENT_ATTENDANCE[status]
    if status == "cancelled":
        reason = code(get(r, "cancelationReason", dict, "Appointment"), "Appointment")
        if reason is not None and reason.startswith("pat"):
            return "2"
        if reason is not None and reason.startswith("prov"):
            return "4"
        raise Unmappable(
            "Appointment.status is 'cancelled' without a patient (pat*) or provider (prov*) "
            "cancelationReason: cannot tell attended status 2 from 4"
        )
    raise Unmappable(f"Appointment.status is {status!r}: not an outpatient appointment")


def _first_attendance(r: Mapping[str, Any]) -> str | None:
    found = codings(get(r, "appointmentType", dict, "Appointment"), "Appointment.appointmentType")
    for system, value in found:
        if system == t.FIRST_ATTENDANCE_SYSTEM:
            return value
    if (t.APPOINTMENT_TYPE, "FOLLOWUP") in found:
        return "2"
    return None


def _appointment_patient(r: Mapping[str, Any], ctx: Context) -> str:
    p = "Appointment.participant"
    for participant in objects(r, "participant", "Appointment"):
        actor = get(participant, "actor", dict, p)
        if actor is None:
            continue
        reference = get(actor, "reference", str, f"{p}.actor") or ""
        ident = get(actor, "identifier", dict, f"{p}.actor") or {}
        if (
            get(actor, "type", str, f"{p}.actor") == "Patient"
            or reference.startswith("Patient/")
            or "/Patient/" in reference
            or get(ident, "system", str, f"{p}.actor.identifier") == t.NHS_NUMBER
            or (reference and (ctx.resolve(reference, r, p) or {}).get("resourceType") == "Patient")
        ):
            return linked_nhs_number(actor, r, ctx, f"{p}.actor")
    raise Unmappable("Appointment.participant has no Patient actor: no patient to link")


def map_appointment(r: Mapping[str, Any], ctx: Context) -> Row:
    p = "Appointment"
    status = get(r, "status", str, p)
    if status is None:
        raise Unmappable("Appointment.status is missing (required in R4)")
    if status == "entered-in-error":
        raise Unmappable("Appointment.status is 'entered-in-error'")
    start = date(get(r, "start", str, p), f"{p}.start")
    if start is None:
        raise Unmappable("Appointment.start is missing: an appointment needs its date")
    tfc = None
    for element in ("serviceType", "specialty", "serviceCategory"):
        for concept in objects(r, element, p):
            tfc = tfc or code(concept, f"{p}.{element}", t.TREATMENT_FUNCTION_SYSTEM)
    pathway = None
    for based_on in objects(r, "basedOn", p):
        ident = get(based_on, "identifier", dict, f"{p}.basedOn") or {}
        if get(ident, "system", str, f"{p}.basedOn.identifier") == t.ID_RTT_PATHWAY:
            pathway = get(ident, "value", str, f"{p}.basedOn.identifier")
    pifu = extension_value(r, t.EXT_MOVED_TO_PIFU, "valueBoolean", bool, p)
    return {
        "org_code": ctx.org,
        "appointment_id": business_id(r, p),
        "nhs_number": _appointment_patient(r, ctx),
        "pathway_id": pathway,
        "appointment_date": start,
        "treatment_function_code": tfc,
        "first_attendance": _first_attendance(r),
        "attendance_status": _attendance(r, status),
        "moved_to_pifu": bool(pifu),
    }


Mapper = Callable[[Mapping[str, Any], Context], Row]
MAPPERS: dict[str, tuple[str, Mapper]] = {
    "Patient": ("patients", map_patient),
    "Immunization": ("vaccinations", map_immunization),
    "Condition": ("ltc_registers", map_condition),
    "Encounter": ("inpatient_spells", map_encounter),
    "Appointment": ("outpatient_appointments", map_appointment),
}
SUPPORTED = ", ".join(sorted(MAPPERS))


def map_resource(resource: Mapping[str, Any], ctx: Context) -> tuple[str, Row]:
    """(dataset, row) for one resource, or ``Unmappable`` with the reason."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise Unmappable("not a FHIR resource: no resourceType")
    if rtype not in MAPPERS:
        raise Unmappable(f"unsupported resourceType {rtype}; supported: {SUPPORTED}")
    reject_other_versions(resource, rtype)
    dataset, mapper = MAPPERS[rtype]
    return dataset, mapper(resource, ctx)
