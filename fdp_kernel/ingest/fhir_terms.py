"""FHIR R4 vocabulary shared by the FHIR reader and writer: systems, extensions, code maps.

Standard names (NHS and HL7 UK Core) are used wherever one exists. What UK Core cannot carry
(discharge pathway, NCTR reason, opt-out, IMD decile, the QOF register itself) travels in
fdp extensions under ``FDP``: a reserved ``.example`` base that a deployment may replace
with its own published canonical URL (reader and writer use the same constant).
"""

from __future__ import annotations

from fdp_kernel.codes import VACCINATION_PROCEDURES

# --- identifier systems -------------------------------------------------------------------
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
ODS_CODE = "https://fhir.nhs.uk/Id/ods-organization-code"

# --- terminology systems ------------------------------------------------------------------
SNOMED = "http://snomed.info/sct"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
APPOINTMENT_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0276"
CANCELLATION_REASON = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ETHNIC_CATEGORY_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-EthnicCategoryEngland"
ADMISSION_METHOD_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-AdmissionMethodEngland"
DISCHARGE_METHOD_SYSTEM = "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeMethodEngland"
DISCHARGE_DESTINATION_SYSTEM = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-DischargeDestinationEngland"
)
TREATMENT_FUNCTION_SYSTEM = (
    "https://fhir.nhs.uk/CodeSystem/NHSDataModelAndDictionary-treatment-function"
)

# --- UK Core extensions and profiles ------------------------------------------------------
_UKCORE_SD = "https://fhir.hl7.org.uk/StructureDefinition/"
EXT_ETHNIC_CATEGORY = _UKCORE_SD + "Extension-UKCore-EthnicCategory"
EXT_VACCINATION_PROCEDURE = _UKCORE_SD + "Extension-UKCore-VaccinationProcedure"
EXT_ADMISSION_METHOD = _UKCORE_SD + "Extension-UKCore-AdmissionMethod"
EXT_DISCHARGE_METHOD = _UKCORE_SD + "Extension-UKCore-DischargeMethod"
PROFILES = {
    rt: _UKCORE_SD + f"UKCore-{rt}"
    for rt in ("Patient", "Immunization", "Condition", "Encounter", "Appointment")
}

# --- fdp's own definitions (no UK Core home) ----------------------------------------------
FDP = "https://fhir.fdp.example"
_FDP_SD = FDP + "/StructureDefinition/"
EXT_LSOA = _FDP_SD + "Extension-FDP-LSOA"  # on Patient.address, valueCode
EXT_IMD_DECILE = _FDP_SD + "Extension-FDP-IMDDecile"  # on Patient, valueInteger
EXT_OPT_OUT = _FDP_SD + "Extension-FDP-NationalDataOptOut"  # on Patient, valueBoolean
EXT_DISCHARGE_READY = _FDP_SD + "Extension-FDP-DischargeReadyDate"  # Encounter, valueDate
EXT_DISCHARGE_PATHWAY = _FDP_SD + "Extension-FDP-DischargePathway"  # Encounter, valueInteger
EXT_NCTR_REASON = _FDP_SD + "Extension-FDP-NCTRReason"  # Encounter, valueCode
EXT_ATTENDED_STATUS = _FDP_SD + "Extension-FDP-AttendedStatus"  # Appointment, valueCode
EXT_MOVED_TO_PIFU = _FDP_SD + "Extension-FDP-MovedToPIFU"  # Appointment, valueBoolean
QOF_REGISTER_SYSTEM = FDP + "/CodeSystem/qof-register"
FIRST_ATTENDANCE_SYSTEM = FDP + "/CodeSystem/first-attendance"
VACCINE_PRODUCT_SYSTEM = FDP + "/CodeSystem/synthetic-vaccine-product"  # non-SNOMED codes
ID_VACCINATION = FDP + "/Id/vaccination"
ID_SPELL = FDP + "/Id/hospital-provider-spell"
ID_APPOINTMENT = FDP + "/Id/outpatient-appointment"
ID_RTT_PATHWAY = FDP + "/Id/rtt-pathway"
PREFERRED_IDS = {ID_VACCINATION, ID_SPELL, ID_APPOINTMENT}

# --- value maps ---------------------------------------------------------------------------
# FHIR administrative gender -> catalogue sex (NHS Data Dictionary: 9 Indeterminate <-> other).
# Any other value (e.g. "unknown") is kept as found, so validation names it.
GENDER_TO_SEX = {"male": "M", "female": "F", "other": "I"}
SEX_TO_GENDER = {v: k for k, v in GENDER_TO_SEX.items()}

# SNOMED CT concepts -> QOF register. The first concept of each register is the one the
# writer uses. A starter map of the common concepts, not the QOF cluster reference sets
# (e.g. HYP_COD): load those from TRUD before mapping a real extract.
REGISTER_CONCEPTS: dict[str, tuple[tuple[str, str], ...]] = {
    "HYP": (("38341003", "Hypertensive disorder"), ("59621000", "Essential hypertension")),
    "DEP": (("35489007", "Depressive disorder"), ("370143000", "Major depressive disorder")),
    "OB": (("414916001", "Obesity"), ("238136002", "Morbid obesity")),
    "DM": (
        ("73211009", "Diabetes mellitus"),
        ("44054006", "Type 2 diabetes mellitus"),
        ("46635009", "Type 1 diabetes mellitus"),
    ),
    "AST": (("195967001", "Asthma"),),
    "CKD": (
        ("709044004", "Chronic kidney disease"),
        ("433144002", "Chronic kidney disease stage 3"),
        ("431857002", "Chronic kidney disease stage 4"),
        ("433146000", "Chronic kidney disease stage 5"),
    ),
    "CAN": (("363346000", "Malignant neoplastic disease"),),
    "CHD": (
        ("414545008", "Ischaemic heart disease"),
        ("53741008", "Coronary arteriosclerosis"),
        ("22298006", "Myocardial infarction"),
    ),
    "AF": (("49436004", "Atrial fibrillation"),),
    "STIA": (
        ("230690007", "Cerebrovascular accident"),
        ("266257000", "Transient ischaemic attack"),
    ),
    "COPD": (("13645005", "Chronic obstructive lung disease"),),
    "HF": (("84114007", "Heart failure"),),
    "MH": (
        ("58214004", "Schizophrenia"),
        ("13746004", "Bipolar disorder"),
        ("69322001", "Psychotic disorder"),
    ),
    "DEM": (("52448006", "Dementia"), ("26929004", "Alzheimer's disease")),
    "LD": (("110359009", "Intellectual disability"),),
}
SNOMED_TO_REGISTER = {
    code: register for register, concepts in REGISTER_CONCEPTS.items() for code, _ in concepts
}

# Vaccination procedure -> programme (the catalogue's programme is not a FHIR element).
_PROGRAMME_OF = {
    "Seasonal influenza": "flu",
    "COVID-19": "covid",
    "DTaP": "childhood",
    "Measles": "childhood",
    "Meningococcal group B": "childhood",
    "Pneumococcal": "childhood",
    "Human papillomavirus": "school",
    "Meningococcal ACWY": "school",
    "Td/IPV": "school",
}
PROCEDURE_TO_PROGRAMME = {
    code: next(p for prefix, p in _PROGRAMME_OF.items() if meaning.startswith(prefix))
    for code, meaning in VACCINATION_PROCEDURES.items()
}

# Encounter.class codes read as admitted patient care (inpatient, acute, non-acute, short stay).
INPATIENT_CLASSES = frozenset({"IMP", "ACUTE", "NONAC", "SS"})
ENCOUNTER_SKIPPED_STATUS = frozenset({"planned", "cancelled", "entered-in-error"})
DIED_DISCHARGE_METHOD = "4"  # NHS Data Dictionary discharge method: patient died
DIED_DESTINATION = "79"  # discharge destination: not applicable, patient died or stillbirth
HOME_DESTINATION = "19"  # usual place of residence
CARE_HOME_DESTINATION = "85"  # non-NHS run care home
ALIVE_DISCHARGE_METHOD = "1"  # discharged on clinical advice or with clinical consent
DISCHARGE_METHOD_NAMES = {
    ALIVE_DISCHARGE_METHOD: "Patient discharged on clinical advice or with clinical consent",
    DIED_DISCHARGE_METHOD: "Patient died",
}
DESTINATION_NAMES = {
    HOME_DESTINATION: "Usual place of residence",
    CARE_HOME_DESTINATION: "Non-NHS (other than Local Authority) run care home",
    DIED_DESTINATION: "Not applicable - patient died or stillbirth",
}

# Appointment.status -> CDS attended or did not attend (fdp extension overrides).
APPOINTMENT_ATTENDANCE = {
    "fulfilled": "5",
    "arrived": "5",
    "checked-in": "5",
    "noshow": "3",
    "booked": None,
    "pending": None,
    "proposed": None,
    "waitlist": None,
}
ATTENDANCE_TO_STATUS = {"2": "cancelled", "3": "noshow", "4": "cancelled", "5": "fulfilled"}
ATTENDANCE_TO_STATUS |= {"6": "fulfilled", "7": "noshow"}

CONDITION_OFF_REGISTER = frozenset({"inactive", "resolved"})
CONDITION_UNCONFIRMED = frozenset(
    {"unconfirmed", "provisional", "differential", "refuted", "entered-in-error"}
)
