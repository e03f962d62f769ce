"""The catalogue covers the five priorities and classifies and describes every column."""

import re

import ibis
import pytest

from fdp_kernel.catalog import CATALOG, ColumnClass, Priority, dataset, datasets_held_by
from fdp_kernel.errors import UsageError

REQUIRED = {
    "organisations": {"org_code", "org_type", "parent_icb"},
    "gp_practices": {"practice_code", "pcn_code", "icb_code"},
    "patients": {
        "nhs_number",
        "date_of_birth",
        "sex",
        "ethnicity",
        "lsoa_code",
        "imd_decile",
        "registered_practice",
        "national_opt_out",
        "date_of_death",
    },
    "ltc_registers": {"nhs_number", "condition", "diagnosis_date"},
    "rtt_pathways": {
        "pathway_id",
        "rtt_start_date",
        "rtt_end_date",
        "waiting_list_type",
        "treatment_function_code",
        "priority_type_code",
        "rtt_period_status",
        "decision_to_admit_date",
        "tci_date",
        "last_pas_validation_date",
    },
    "outpatient_appointments": {"appointment_date", "attendance_status", "first_attendance"},
    "inpatient_spells": {
        "admission_date",
        "discharge_date",
        "discharge_ready_date",
        "discharge_pathway",
        "nctr_reason",
    },
    "bed_occupancy": {"date", "ga_beds_available", "ga_beds_occupied"},
    "vaccinations": {"procedure_code", "dose_sequence", "site_of_vaccination_code"},
    "products": {"npc", "gtin", "category", "pack_size"},
    "purchase_orders": {"po_number", "npc", "quantity", "unit_price"},
    "receipts": {"po_number", "receipt_date", "quantity_received"},
    "stock_levels": {"npc", "on_hand_units"},
    "consumption": {"npc", "units_issued"},
}


@pytest.mark.parametrize("name, columns", sorted(REQUIRED.items()))
def test_required_datasets_and_columns_exist(name, columns):
    assert columns <= set(dataset(name).column_names)


def test_every_priority_has_datasets():
    covered = {p for ds in CATALOG.values() for p in ds.priorities}
    assert covered == set(Priority)


@pytest.mark.parametrize("ds", CATALOG.values(), ids=lambda d: d.name)
def test_every_column_is_classified_described_and_typed(ds):
    assert len(ds.description) > 20
    schema = ds.schema()
    assert isinstance(schema, ibis.Schema)
    for col in ds.columns:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", col.name), col.name
        assert isinstance(col.classification, ColumnClass)
        assert len(col.description) >= 8, f"{ds.name}.{col.name} needs a description"
        assert schema[col.name] == ibis.dtype(col.dtype).copy(nullable=col.nullable)
        if col.codes is not None:
            assert col.codes, f"{ds.name}.{col.name} has an empty code list"


@pytest.mark.parametrize("ds", CATALOG.values(), ids=lambda d: d.name)
def test_keys_and_references_point_at_real_columns(ds):
    for key in ds.primary_key:
        assert not ds.column(key).nullable, f"{ds.name}.{key} is a key and must not be null"
    for col in ds.columns:
        if col.references:
            target, column = col.references.split(".")
            assert column in dataset(target).column_names


def test_person_level_datasets_identify_the_patient_as_a_direct_identifier():
    for ds in CATALOG.values():
        if "nhs_number" in ds.column_names:
            assert ds.patient_column == "nhs_number"
            assert ds.column("nhs_number").classification is ColumnClass.DIRECT_IDENTIFIER
            assert ds.org_column == "org_code", f"{ds.name} needs an org_code for own-row rules"


def test_quasi_identifiers_of_patients():
    quasi = set(dataset("patients").columns_of(ColumnClass.QUASI_IDENTIFIER))
    assert {"date_of_birth", "sex", "ethnicity", "lsoa_code", "imd_decile"} <= quasi


def test_unknown_names_give_errors_that_list_what_exists():
    with pytest.raises(UsageError, match="datasets are: organisations"):
        dataset("patient")
    with pytest.raises(UsageError, match="its columns are: org_code"):
        dataset("patients").column("nhs")


def test_node_types_hold_their_datasets():
    assert {d.name for d in datasets_held_by("gp_practice")} >= {"patients", "ltc_registers"}
    assert {d.name for d in datasets_held_by("acute_trust")} >= {"rtt_pathways", "products"}
    assert {d.name for d in datasets_held_by("local_authority")} >= {"care_packages"}
