"""The demo federation's governance: purposes, users and roles, data sharing agreements.

Written into federation.yaml by ``fdp synth``. The person who runs the demo (the OS account,
or JupyterHub user) gets the roles an analyst team would share across the ICB so that every
report can run; named personas hold narrower roles for trying the rules out.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

PLANNING_BASIS = (
    "UK GDPR Art. 6(1)(e) public task and Art. 9(2)(h) management of health and social care "
    "systems; national data opt-out applied"
)
DIRECT_CARE_BASIS = (
    "UK GDPR Art. 6(1)(e) and Art. 9(2)(h) provision of care; common law duty of "
    "confidentiality met by implied consent for individual care"
)
DEMOGRAPHICS = ["nhs_number", "date_of_birth", "sex", "ethnicity", "imd_decile"]
GEOGRAPHY = ["lsoa_code", "registered_practice", "date_of_death"]

PURPOSES: list[dict[str, Any]] = [
    {
        "id": "elective_planning",
        "name": "Elective recovery planning",
        "priority": "elective_recovery",
        "kind": "planning",
        "level": "aggregate",
        "datasets": {
            "rtt_pathways": "all",
            "outpatient_appointments": "all",
            "patients": DEMOGRAPHICS,
        },
    },
    {
        "id": "vaccination_planning",
        "name": "Vaccination and immunisation planning",
        "priority": "vaccination",
        "kind": "planning",
        "level": "aggregate",
        "datasets": {
            "patients": DEMOGRAPHICS + GEOGRAPHY,
            "vaccinations": "all",
            "ltc_registers": ["org_code", "nhs_number", "condition", "diagnosis_date"],
        },
    },
    {
        "id": "population_health_planning",
        "name": "Population health management",
        "priority": "population_health",
        "kind": "planning",
        "level": "pseudonymised",
        "description": "Linked, pseudonymised records across practices and trusts for "
        "segmentation and risk stratification; only aggregates are released.",
        "datasets": {
            "patients": DEMOGRAPHICS + GEOGRAPHY,
            "ltc_registers": "all",
            "inpatient_spells": [
                "org_code",
                "nhs_number",
                "admission_date",
                "discharge_date",
                "admission_method",
                "died_in_hospital",
            ],
        },
    },
    {
        "id": "care_coordination_planning",
        "name": "Care coordination and discharge planning",
        "priority": "care_coordination",
        "kind": "planning",
        "level": "aggregate",
        "datasets": {
            "inpatient_spells": "all",
            "bed_occupancy": "all",
            "care_packages": "all",
            "patients": ["nhs_number", "date_of_birth", "sex", "imd_decile"],
        },
    },
    {
        "id": "supply_chain_planning",
        "name": "Supply chain management",
        "priority": "supply_chain",
        "kind": "planning",
        "level": "aggregate",
        "disclosure": "none",
        "description": "Stock, orders and prices: not data about people, so no small-number "
        "suppression applies.",
        "datasets": {
            "products": "all",
            "purchase_orders": "all",
            "receipts": "all",
            "stock_levels": "all",
            "consumption": "all",
        },
    },
    {
        "id": "direct_care",
        "name": "Direct care",
        "kind": "direct_care",
        "level": "identifiable",
        "datasets": {
            "patients": "all",
            "inpatient_spells": "all",
            "care_packages": "all",
            "vaccinations": "all",
            "ltc_registers": "all",
            "rtt_pathways": "all",
            "outpatient_appointments": "all",
        },
    },
]

ROLE_PURPOSES = {
    "acute_trust": [
        "elective_planning",
        "care_coordination_planning",
        "supply_chain_planning",
        "population_health_planning",
        "direct_care",
    ],
    "gp_practice": ["vaccination_planning", "population_health_planning", "direct_care"],
    "community_trust": ["vaccination_planning", "direct_care"],
    "local_authority": ["care_coordination_planning", "direct_care"],
    "icb": [
        "elective_planning",
        "vaccination_planning",
        "population_health_planning",
        "care_coordination_planning",
        "supply_chain_planning",
    ],
}

DISCHARGE_SHARE = {
    "inpatient_spells": [
        "org_code",
        "spell_id",
        "nhs_number",
        "admission_date",
        "discharge_ready_date",
        "discharge_date",
        "discharge_pathway",
        "nctr_reason",
    ],
    "patients": ["nhs_number", "given_name", "family_name", "date_of_birth", "sex", "lsoa_code"],
}
DIRECT_AGREEMENT = "DSA-DISCHARGE-DIRECT"
LINKED_AGREEMENT = "DSA-PHM-ICB"
SHARED_KEY_AGREEMENTS = (DIRECT_AGREEMENT, LINKED_AGREEMENT)


def _purpose_entry(p: dict[str, Any]) -> dict[str, Any]:
    basis = DIRECT_CARE_BASIS if p["kind"] == "direct_care" else PLANNING_BASIS
    return {**p, "legal_basis": basis}


def policy(org_list, operator: str, as_of: dt.date) -> dict[str, Any]:
    """The purposes, users and agreements sections of the demo federation file."""
    by_type: dict[str, list[str]] = {}
    for o in org_list:
        by_type.setdefault(o.org_type, []).append(o.code)
    icb, trusts = by_type["icb"][0], by_type["acute_trust"]
    practices, community = by_type["gp_practice"], by_type["community_trust"]
    la = by_type["local_authority"]
    operator_roles = [{"org": o.code, "purposes": ROLE_PURPOSES[o.org_type]} for o in org_list]
    users = [
        {"id": operator, "name": "Demo operator (all demo roles)", "roles": operator_roles},
        {
            "id": "rsa.analyst",
            "name": "Elective analyst at RSA",
            "roles": [{"org": trusts[0], "purposes": ["elective_planning"]}],
        },
        {
            "id": "icb.analyst",
            "name": "ICB intelligence analyst",
            "roles": [{"org": icb, "purposes": ROLE_PURPOSES["icb"]}],
        },
        {
            "id": "la.discharge",
            "name": "Local authority discharge coordinator",
            "roles": [{"org": la[0], "purposes": ["direct_care", "care_coordination_planning"]}],
        },
        {
            "id": "gp.clinician",
            "name": f"GP at {practices[0]}",
            "roles": [{"org": practices[0], "purposes": ["direct_care", "vaccination_planning"]}],
        },
    ]
    start = dt.date(as_of.year if as_of.month >= 4 else as_of.year - 1, 4, 1)
    valid = {"valid_from": start, "valid_to": dt.date(start.year + 3, 3, 31)}
    purpose_by_id = {p["id"]: p for p in PURPOSES}

    def to_icb(ident, title, providers, purpose):
        return {
            "id": ident,
            "title": title,
            "providers": providers,
            "recipients": [icb],
            "purpose": purpose,
            "level": "aggregate",
            "datasets": purpose_by_id[purpose]["datasets"],
            "legal_basis": PLANNING_BASIS,
            **valid,
        }

    agreements = [
        to_icb(
            "DSA-ELECTIVE-ICB",
            "Elective recovery across the ICB's trusts",
            trusts,
            "elective_planning",
        ),
        to_icb(
            "DSA-VACCINATION-ICB",
            "Vaccination uptake across practices and the school immunisation service",
            practices + community,
            "vaccination_planning",
        ),
        {
            **to_icb(
                LINKED_AGREEMENT,
                "Linked population health records across practices and trusts",
                practices + trusts,
                "population_health_planning",
            ),
            "level": "pseudonymised",
            "key": f"keys/agreements/{LINKED_AGREEMENT}.key",
        },
        to_icb(
            "DSA-DISCHARGE-ICB",
            "Discharge and bed flow across the ICB",
            trusts + la,
            "care_coordination_planning",
        ),
        to_icb(
            "DSA-SUPPLY-ICB",
            "Supply chain across the ICB's trusts",
            trusts,
            "supply_chain_planning",
        ),
        {
            "id": DIRECT_AGREEMENT,
            "title": "Hospital discharge to social care and community services",
            "providers": trusts,
            "recipients": la + community,
            "purpose": "direct_care",
            "level": "identifiable",
            "datasets": DISCHARGE_SHARE,
            "legal_basis": DIRECT_CARE_BASIS,
            "key": f"keys/agreements/{DIRECT_AGREEMENT}.key",
            **valid,
        },
    ]
    return {
        "purposes": [_purpose_entry(p) for p in PURPOSES],
        "users": users,
        "agreements": agreements,
    }
