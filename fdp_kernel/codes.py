"""Reference code lists used by the catalogue, the generator and validation.

Each list maps a code to its meaning. Sources are in docs/architecture.md and DOMAIN.md:
NHS Data Dictionary (ethnic category, attended status, admission method, priority type),
RTT guidance v5.0 (period status, treatment functions), the discharge sitrep (pathways,
reasons for delay), SNOMED CT (vaccination procedures), QOF (registers).
Time-dependent targets (RTT interim, uptake ambitions) are configuration, not codes.
"""

from __future__ import annotations

ORG_TYPES = {
    "icb": "Integrated care board",
    "acute_trust": "Acute NHS trust",
    "community_trust": "Community health services provider",
    "local_authority": "Local authority with adult social care responsibilities",
    "gp_practice": "GP practice",
}

SEX = {"F": "Female", "M": "Male", "I": "Indeterminate"}

ETHNIC_CATEGORY = {
    "A": "White - British",
    "B": "White - Irish",
    "C": "White - Any other White background",
    "D": "Mixed - White and Black Caribbean",
    "E": "Mixed - White and Black African",
    "F": "Mixed - White and Asian",
    "G": "Mixed - Any other mixed background",
    "H": "Asian or Asian British - Indian",
    "J": "Asian or Asian British - Pakistani",
    "K": "Asian or Asian British - Bangladeshi",
    "L": "Asian or Asian British - Any other Asian background",
    "M": "Black or Black British - Caribbean",
    "N": "Black or Black British - African",
    "P": "Black or Black British - Any other Black background",
    "R": "Other Ethnic Groups - Chinese",
    "S": "Other Ethnic Groups - Any other ethnic group",
    "Z": "Not stated",
    "99": "Not known",
}

# Broad groups used in equity breakdowns (ONS 5+1 grouping).
ETHNIC_GROUP = {
    **dict.fromkeys("ABC", "White"),
    **dict.fromkeys("DEFG", "Mixed"),
    **dict.fromkeys("HJKL", "Asian"),
    **dict.fromkeys("MNP", "Black"),
    **dict.fromkeys("RS", "Other"),
    "Z": "Not stated or not known",
    "99": "Not stated or not known",
}

LTC_REGISTERS = {
    "HYP": "Hypertension",
    "DEP": "Depression (18+)",
    "OB": "Obesity (18+)",
    "DM": "Diabetes mellitus (17+)",
    "AST": "Asthma (6+)",
    "CKD": "Chronic kidney disease stage 3-5 (18+)",
    "CAN": "Cancer",
    "CHD": "Coronary heart disease",
    "AF": "Atrial fibrillation",
    "STIA": "Stroke and transient ischaemic attack",
    "COPD": "Chronic obstructive pulmonary disease",
    "HF": "Heart failure",
    "MH": "Serious mental illness",
    "DEM": "Dementia",
    "LD": "Learning disability",
}

TREATMENT_FUNCTIONS = {
    "100": "General Surgery",
    "101": "Urology",
    "110": "Trauma and Orthopaedics",
    "120": "Ear Nose and Throat",
    "130": "Ophthalmology",
    "140": "Oral Surgery",
    "150": "Neurosurgical",
    "160": "Plastic Surgery",
    "170": "Cardiothoracic Surgery",
    "300": "General Internal Medicine",
    "301": "Gastroenterology",
    "320": "Cardiology",
    "330": "Dermatology",
    "340": "Respiratory Medicine",
    "400": "Neurology",
    "410": "Rheumatology",
    "430": "Elderly Medicine",
    "502": "Gynaecology",
    "X02": "Other - Medical Services",
    "X03": "Other - Mental Health Services",
    "X04": "Other - Paediatric Services",
    "X05": "Other - Surgical Services",
    "X06": "Other - Other Services",
}

WAITING_LIST_TYPE = {
    "IRTT": "Admitted RTT (inpatient/day case)",
    "ORTT": "Non-admitted RTT (outpatient)",
}

PRIORITY_TYPE = {"1": "Routine", "2": "Urgent", "3": "Two week wait"}

CLINICAL_PRIORITY = {
    "P1a": "Within 24 hours",
    "P1b": "Within 72 hours",
    "P2": "Within 1 month",
    "P3": "Within 3 months",
    "P4": "More than 3 months",
}

SOURCE_OF_REFERRAL = {
    "03": "GP referral",
    "05": "Consultant referral (other than A&E)",
    "10": "Consultant referral following emergency admission",
    "11": "Other referral",
    "92": "Dental practitioner",
}

INTENDED_MANAGEMENT = {"1": "Inpatient", "2": "Day case"}

RTT_PERIOD_STATUS = {
    "10": "First activity - start of RTT period",
    "11": "Start of RTT period after active monitoring",
    "12": "Start of RTT period for a new condition",
    "20": "Subsequent activity - period continues",
    "21": "Transfer to another provider - period continues",
    "30": "Start of first definitive treatment - period ends",
    "31": "Start of active monitoring initiated by the patient - period ends",
    "32": "Start of active monitoring initiated by the care professional - period ends",
    "33": "Did not attend first appointment - period nullified",
    "34": "Decision not to treat - period ends",
    "35": "Patient declined offered treatment - period ends",
    "36": "Patient died before treatment - period ends",
}
RTT_STOP_STATUSES = ("30", "31", "32", "34", "35", "36")
RTT_NULLIFIED_STATUS = "33"

FIRST_ATTENDANCE = {"1": "First attendance", "2": "Follow-up attendance"}

ATTENDED_STATUS = {
    "2": "Cancelled by, or on behalf of, the patient",
    "3": "Did not attend, no advance warning",
    "4": "Cancelled or postponed by the health care provider",
    "5": "Attended on time, or late but seen",
    "6": "Arrived late but was seen",
    "7": "Arrived late and could not be seen",
}
ATTENDED_CODES = ("5", "6")
DNA_CODES = ("3",)

ADMISSION_METHOD = {
    "11": "Elective - from waiting list",
    "12": "Elective - booked",
    "13": "Elective - planned",
    "21": "Emergency - via A&E",
    "22": "Emergency - GP",
    "28": "Emergency - other means",
}
ELECTIVE_ADMISSION_METHODS = ("11", "12", "13")

DISCHARGE_PATHWAY = {
    0: "P0 - home, no new support",
    1: "P1 - home with new or extra support",
    2: "P2 - short-term bed-based care",
    3: "P3 - new long-term care home placement",
}
# Planning model shares (DHSC discharge-to-assess): configuration in metrics, kept here for synth.
DISCHARGE_PATHWAY_MODEL = {0: 0.50, 1: 0.45, 2: 0.04, 3: 0.01}

NCTR_REASONS = {
    "MED": "Awaiting medical decision or discharge summary",
    "THR": "Awaiting therapy decision",
    "HUB": "Awaiting referral to, or confirmation from, the care transfer hub",
    "DIA": "Awaiting a diagnostic test",
    "TTO": "Awaiting medicines to take home",
    "TRN": "Awaiting transport",
    "P1H": "P1 awaiting start of home care",
    "P2B": "P2 awaiting a rehabilitation bed",
    "P3C": "P3 awaiting a care home bed",
    "EQP": "Awaiting equipment or housing adaptations",
    "DIS": "Individual or family disagrees with the discharge plan",
    "HML": "Homeless or no recourse to public funds",
    "SAF": "Safeguarding or Court of Protection",
    "REP": "Repatriation to another trust",
    "INF": "Infection control",
    "NOP": "No plan",
}

# The first seven codes are from DOMAIN.md; the childhood ones (6-in-1, MMR, MenB, PCV) follow the
# SNOMED CT UK edition as we understand it: check them against the current release before any
# real extract is mapped onto them.
VACCINATION_PROCEDURES = {
    "822851000000102": "Seasonal influenza vaccination",
    "1324681000000101": "COVID-19 vaccination first dose",
    "1324691000000104": "COVID-19 vaccination second dose",
    "1362591000000103": "COVID-19 vaccination booster dose",
    "1082441000000108": "DTaP/IPV/Hib/HepB (6-in-1) vaccination",
    "38598009": "Measles, mumps and rubella (MMR) vaccination",
    "720539004": "Meningococcal group B vaccination",
    "1119254000": "Pneumococcal conjugate vaccination",
    "761841000": "Human papillomavirus vaccination",
    "871874000": "Meningococcal ACWY vaccination",
    "866186002": "Td/IPV (teenage booster) vaccination",
}

VACCINATION_PROGRAMMES = {
    "flu": "Seasonal influenza",
    "covid": "COVID-19",
    "childhood": "Routine childhood schedule (0-5 years)",
    "school": "School-aged immunisations",
}

VACCINATION_SITE = {
    "368208006": "Left upper arm",
    "368209003": "Right upper arm",
    "61396006": "Left thigh",
    "11207009": "Right thigh",
    "45206002": "Nasal",
}

VACCINATION_ROUTE = {
    "78421000": "Intramuscular",
    "46713006": "Nasal",
    "34206005": "Subcutaneous",
}

SUPPLY_ROUTES = {
    "stocked": "NHS Supply Chain stocked (warehouse)",
    "edirect": "eDirect (supplier to trust)",
    "blue_diamond": "Blue Diamond (cross-docked)",
}

PRODUCT_STATUS = {
    "available": "Available",
    "awsl": "Available while stocks last",
    "suspended": "Suspended",
}

CARE_SERVICE_TYPES = {
    "reablement": "Reablement at home (pathway 1)",
    "home_care": "Home care package (pathway 1)",
    "intermediate_bed": "Short-term rehabilitation or intermediate care bed (pathway 2)",
    "care_home": "Long-term care home placement (pathway 3)",
}
