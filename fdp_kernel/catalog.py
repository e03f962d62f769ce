"""The catalogue: the shared data model of every node, for all five priorities.

Each dataset is a typed table. Every column carries a classification that governance uses
(``direct_identifier`` columns are pseudonymised or dropped, ``quasi_identifier`` columns are
minimised, ``clinical`` and ``operational`` columns are released per purpose), a description,
and where it applies a code list and a reference to another dataset.

Every dataset that holds organisation data has an ``org_code`` column: the ODS code of the
organisation that holds the record. That is the column the policy filters to "own rows".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

import ibis

from fdp_kernel import codes
from fdp_kernel.errors import UsageError


class ColumnClass(StrEnum):
    """How identifying a column is; governance treats each class differently."""

    DIRECT_IDENTIFIER = "direct_identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    CLINICAL = "clinical"
    OPERATIONAL = "operational"


class Priority(StrEnum):
    """The five national priorities, plus shared reference data."""

    ELECTIVE = "elective_recovery"
    VACCINATION = "vaccination"
    POPULATION = "population_health"
    CARE_COORDINATION = "care_coordination"
    SUPPLY = "supply_chain"
    REFERENCE = "reference"


DIRECT = ColumnClass.DIRECT_IDENTIFIER
QUASI = ColumnClass.QUASI_IDENTIFIER
CLINICAL = ColumnClass.CLINICAL
OPERATIONAL = ColumnClass.OPERATIONAL


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    classification: ColumnClass
    description: str
    nullable: bool = True
    codes: Mapping[str, str] | None = None
    references: str | None = None  # "dataset.column"
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True, eq=False)  # identity: each dataset is a single catalogue entry
class Dataset:
    name: str
    description: str
    priorities: tuple[Priority, ...]
    held_by: tuple[str, ...]  # organisation types whose node stores hold this dataset
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    patient_column: str | None = None  # NHS number column: links rows to a patient (opt-out)
    _by_name: Mapping[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", MappingProxyType({c.name: c for c in self.columns}))

    @property
    def org_column(self) -> str | None:
        return "org_code" if "org_code" in self._by_name else None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise UsageError(
                f"dataset {self.name!r} has no column {name!r}; "
                f"its columns are: {', '.join(self.column_names)}"
            ) from None

    def columns_of(self, classification: ColumnClass) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.classification == classification)

    def schema(self) -> ibis.Schema:
        return ibis.schema(
            {c.name: ibis.dtype(c.dtype).copy(nullable=c.nullable) for c in self.columns}
        )


def _col(name, dtype, cls, description, *, nullable=True, **kw) -> Column:
    return Column(name, dtype, cls, description, nullable=nullable, **kw)


def _org_code(role: str) -> Column:
    return _col(
        "org_code",
        "string",
        OPERATIONAL,
        f"ODS code of the organisation holding the record ({role}).",
        nullable=False,
        references="organisations.org_code",
    )


def _nhs_number(description: str = "NHS number of the patient (10 digits, Modulus 11).") -> Column:
    return _col(
        "nhs_number",
        "string",
        DIRECT,
        description,
        nullable=False,
        references="patients.nhs_number",
    )


_NODE_TYPES = ("icb", "acute_trust", "community_trust", "local_authority", "gp_practice")
_PATIENT_HOLDERS = ("acute_trust", "community_trust", "local_authority", "gp_practice")

DATASETS: tuple[Dataset, ...] = (
    Dataset(
        "organisations",
        "Organisations in the federation: ODS code, type and parent ICB, with effective dates "
        "so that mergers can be versioned.",
        (Priority.REFERENCE,),
        _NODE_TYPES,
        ("org_code",),
        (
            _col("org_code", "string", OPERATIONAL, "ODS organisation code.", nullable=False),
            _col("name", "string", OPERATIONAL, "Organisation name.", nullable=False),
            _col(
                "org_type",
                "string",
                OPERATIONAL,
                "Type of organisation.",
                nullable=False,
                codes=codes.ORG_TYPES,
            ),
            _col(
                "parent_icb",
                "string",
                OPERATIONAL,
                "ODS code of the ICB the organisation belongs to (null for an ICB).",
                references="organisations.org_code",
            ),
            _col("region_code", "string", OPERATIONAL, "NHS England region code (Y5x/Y6x)."),
            _col("effective_from", "date", OPERATIONAL, "Date the record took effect."),
            _col("effective_to", "date", OPERATIONAL, "Date the record ended (null if current)."),
        ),
    ),
    Dataset(
        "gp_practices",
        "GP practices with their primary care network and ICB.",
        (Priority.REFERENCE,),
        _NODE_TYPES,
        ("practice_code",),
        (
            _col("practice_code", "string", OPERATIONAL, "ODS practice code.", nullable=False),
            _col("name", "string", OPERATIONAL, "Practice name.", nullable=False),
            _col("pcn_code", "string", OPERATIONAL, "Primary care network code (U + 5 digits)."),
            _col(
                "icb_code",
                "string",
                OPERATIONAL,
                "ODS code of the ICB.",
                references="organisations.org_code",
            ),
            _col("lsoa_code", "string", OPERATIONAL, "LSOA (2011) of the main surgery."),
        ),
    ),
    Dataset(
        "patients",
        "People known to the organisation: registered list (GP), patient index (trust, "
        "community) or adult social care clients (local authority).",
        (Priority.REFERENCE,),
        _PATIENT_HOLDERS,
        ("org_code", "nhs_number"),
        (
            _org_code("the organisation whose records hold the person"),
            _nhs_number("NHS number (10 digits, Modulus 11)."),
            _col("given_name", "string", DIRECT, "Given name."),
            _col("family_name", "string", DIRECT, "Family name."),
            _col("date_of_birth", "date", QUASI, "Date of birth.", nullable=False),
            _col("sex", "string", QUASI, "Phenotypic sex.", nullable=False, codes=codes.SEX),
            _col(
                "ethnicity",
                "string",
                QUASI,
                "Ethnic category (NHS Data Dictionary 2001 codes).",
                nullable=False,
                codes=codes.ETHNIC_CATEGORY,
            ),
            _col("lsoa_code", "string", QUASI, "Lower layer super output area of residence."),
            _col(
                "imd_decile",
                "int8",
                QUASI,
                "Index of Multiple Deprivation 2019 decile of the LSOA (1 = most deprived).",
                minimum=1,
                maximum=10,
            ),
            _col(
                "registered_practice",
                "string",
                QUASI,
                "ODS code of the GP practice the person is registered with.",
                references="gp_practices.practice_code",
            ),
            _col(
                "national_opt_out",
                "boolean",
                OPERATIONAL,
                "True when the person has registered a national data opt-out: their data may "
                "be used for their own care but not for planning or research.",
                nullable=False,
            ),
            _col("date_of_death", "date", QUASI, "Date of death (null if alive)."),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "ltc_registers",
        "Long-term condition registers (QOF): one row per person per register.",
        (Priority.POPULATION, Priority.VACCINATION),
        ("gp_practice",),
        ("org_code", "nhs_number", "condition"),
        (
            _org_code("the GP practice"),
            _nhs_number(),
            _col(
                "condition",
                "string",
                CLINICAL,
                "QOF register.",
                nullable=False,
                codes=codes.LTC_REGISTERS,
            ),
            _col("diagnosis_date", "date", CLINICAL, "Date first recorded on the register."),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "rtt_pathways",
        "Referral to treatment pathways (WLMDS-like): open pathways have no end date.",
        (Priority.ELECTIVE,),
        ("acute_trust",),
        ("org_code", "pathway_id"),
        (
            _org_code("the provider"),
            _col(
                "pathway_id",
                "string",
                DIRECT,
                "Patient pathway identifier (a local identifier, so pseudonymised).",
                nullable=False,
            ),
            _nhs_number(),
            _col("referral_received_date", "date", OPERATIONAL, "Date the referral was received."),
            _col(
                "rtt_start_date",
                "date",
                OPERATIONAL,
                "Clock start: referral to treatment period start date.",
                nullable=False,
            ),
            _col(
                "rtt_end_date",
                "date",
                OPERATIONAL,
                "Clock stop: period end date (null while the pathway is open).",
            ),
            _col(
                "waiting_list_type",
                "string",
                OPERATIONAL,
                "Admitted (IRTT) or non-admitted (ORTT) pathway.",
                nullable=False,
                codes=codes.WAITING_LIST_TYPE,
            ),
            _col(
                "treatment_function_code",
                "string",
                CLINICAL,
                "Activity treatment function code (RTT reporting groups).",
                nullable=False,
                codes=codes.TREATMENT_FUNCTIONS,
            ),
            _col(
                "priority_type_code",
                "string",
                CLINICAL,
                "Referral priority.",
                codes=codes.PRIORITY_TYPE,
            ),
            _col(
                "clinical_priority",
                "string",
                CLINICAL,
                "Surgical prioritisation (FSSA P1a-P4) for admitted pathways.",
                codes=codes.CLINICAL_PRIORITY,
            ),
            _col(
                "source_of_referral",
                "string",
                OPERATIONAL,
                "Source of referral.",
                codes=codes.SOURCE_OF_REFERRAL,
            ),
            _col(
                "intended_management_code",
                "string",
                CLINICAL,
                "Intended management for admitted pathways.",
                codes=codes.INTENDED_MANAGEMENT,
            ),
            _col("decision_to_admit_date", "date", OPERATIONAL, "Decision to admit date."),
            _col("tci_date", "date", OPERATIONAL, "To-come-in (admission) date, if booked."),
            _col(
                "outpatient_future_appointment_date",
                "date",
                OPERATIONAL,
                "Next booked outpatient appointment, if any.",
            ),
            _col("date_last_attended", "date", OPERATIONAL, "Date of the last attendance."),
            _col(
                "last_pas_validation_date",
                "date",
                OPERATIONAL,
                "Date the pathway was last validated on the PAS.",
            ),
            _col(
                "rtt_period_status",
                "string",
                OPERATIONAL,
                "RTT period status of the latest activity.",
                nullable=False,
                codes=codes.RTT_PERIOD_STATUS,
            ),
            _col(
                "removed_by_validation",
                "boolean",
                OPERATIONAL,
                "True when validation closed the pathway (already treated, duplicate).",
                nullable=False,
            ),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "outpatient_appointments",
        "Outpatient appointments with attendance status (for DNA rates).",
        (Priority.ELECTIVE,),
        ("acute_trust",),
        ("org_code", "appointment_id"),
        (
            _org_code("the provider"),
            _col("appointment_id", "string", DIRECT, "Appointment identifier.", nullable=False),
            _nhs_number(),
            _col(
                "pathway_id",
                "string",
                DIRECT,
                "RTT pathway the appointment belongs to (null for non-RTT activity).",
                references="rtt_pathways.pathway_id",
            ),
            _col("appointment_date", "date", OPERATIONAL, "Appointment date.", nullable=False),
            _col(
                "treatment_function_code",
                "string",
                CLINICAL,
                "Treatment function.",
                nullable=False,
                codes=codes.TREATMENT_FUNCTIONS,
            ),
            _col(
                "first_attendance",
                "string",
                OPERATIONAL,
                "First or follow-up attendance.",
                nullable=False,
                codes=codes.FIRST_ATTENDANCE,
            ),
            _col(
                "attendance_status",
                "string",
                OPERATIONAL,
                "Attended or did not attend (CDS codes). Null for future appointments.",
                codes=codes.ATTENDED_STATUS,
            ),
            _col(
                "moved_to_pifu",
                "boolean",
                OPERATIONAL,
                "True when the outcome was patient-initiated follow-up.",
                nullable=False,
            ),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "inpatient_spells",
        "Admitted patient care spells with discharge-ready date, discharge pathway and the "
        "reason for any delay (not meeting the criteria to reside).",
        (Priority.CARE_COORDINATION, Priority.ELECTIVE),
        ("acute_trust",),
        ("org_code", "spell_id"),
        (
            _org_code("the provider"),
            _col("spell_id", "string", DIRECT, "Hospital provider spell number.", nullable=False),
            _nhs_number(),
            _col("admission_date", "date", OPERATIONAL, "Admission date.", nullable=False),
            _col(
                "discharge_date",
                "date",
                OPERATIONAL,
                "Discharge date (null while the patient is in hospital).",
            ),
            _col(
                "admission_method",
                "string",
                OPERATIONAL,
                "Admission method.",
                nullable=False,
                codes=codes.ADMISSION_METHOD,
            ),
            _col(
                "treatment_function_code",
                "string",
                CLINICAL,
                "Treatment function of the spell.",
                nullable=False,
                codes=codes.TREATMENT_FUNCTIONS,
            ),
            _col(
                "discharge_ready_date",
                "date",
                OPERATIONAL,
                "Date the patient no longer met the criteria to reside (discharge ready date).",
            ),
            _col(
                "discharge_pathway",
                "int8",
                OPERATIONAL,
                "Discharge pathway 0-3 (null for deaths and current inpatients not yet ready).",
                codes={str(k): v for k, v in codes.DISCHARGE_PATHWAY.items()},
                minimum=0,
                maximum=3,
            ),
            _col(
                "nctr_reason",
                "string",
                OPERATIONAL,
                "Main reason for delay while not meeting the criteria to reside.",
                codes=codes.NCTR_REASONS,
            ),
            _col(
                "died_in_hospital",
                "boolean",
                CLINICAL,
                "True when the spell ended with the patient's death.",
                nullable=False,
            ),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "bed_occupancy",
        "Daily general and acute bed base and occupancy (UEC sitrep, midnight count).",
        (Priority.CARE_COORDINATION,),
        ("acute_trust",),
        ("org_code", "date"),
        (
            _org_code("the provider"),
            _col("date", "date", OPERATIONAL, "Sitrep date.", nullable=False),
            _col(
                "ga_beds_available",
                "int32",
                OPERATIONAL,
                "General and acute beds available.",
                nullable=False,
                minimum=0,
            ),
            _col(
                "ga_beds_occupied",
                "int32",
                OPERATIONAL,
                "General and acute beds occupied at midnight.",
                nullable=False,
                minimum=0,
            ),
        ),
    ),
    Dataset(
        "vaccinations",
        "Vaccination events (national flat-file layout, SNOMED CT procedure codes).",
        (Priority.VACCINATION,),
        ("gp_practice", "community_trust"),
        ("org_code", "vaccination_id"),
        (
            _org_code("the organisation that recorded the vaccination"),
            _col("vaccination_id", "string", DIRECT, "Event identifier.", nullable=False),
            _nhs_number(),
            _col("vaccination_date", "date", CLINICAL, "Date given.", nullable=False),
            _col(
                "programme",
                "string",
                OPERATIONAL,
                "Programme.",
                nullable=False,
                codes=codes.VACCINATION_PROGRAMMES,
            ),
            _col(
                "procedure_code",
                "string",
                CLINICAL,
                "SNOMED CT vaccination procedure code.",
                nullable=False,
                codes=codes.VACCINATION_PROCEDURES,
            ),
            _col("dose_sequence", "int8", CLINICAL, "Dose number in the course.", minimum=1),
            _col("vaccine_product_code", "string", CLINICAL, "dm+d product code (synthetic)."),
            _col("batch_number", "string", OPERATIONAL, "Batch number."),
            _col(
                "site_of_vaccination_code",
                "string",
                CLINICAL,
                "SNOMED CT body site.",
                codes=codes.VACCINATION_SITE,
            ),
            _col(
                "route_code",
                "string",
                CLINICAL,
                "SNOMED CT route of administration.",
                codes=codes.VACCINATION_ROUTE,
            ),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "care_packages",
        "Adult social care services arranged at or after hospital discharge (local authority).",
        (Priority.CARE_COORDINATION,),
        ("local_authority",),
        ("org_code", "package_id"),
        (
            _org_code("the local authority"),
            _col("package_id", "string", DIRECT, "Care package identifier.", nullable=False),
            _nhs_number(),
            _col(
                "referring_org_code",
                "string",
                OPERATIONAL,
                "ODS code of the trust that referred the person at discharge.",
                references="organisations.org_code",
            ),
            _col("referral_date", "date", OPERATIONAL, "Referral received.", nullable=False),
            _col("start_date", "date", OPERATIONAL, "Service start (null while awaited)."),
            _col(
                "service_type",
                "string",
                OPERATIONAL,
                "Service arranged.",
                nullable=False,
                codes=codes.CARE_SERVICE_TYPES,
            ),
            _col(
                "discharge_pathway",
                "int8",
                OPERATIONAL,
                "Discharge pathway the service supports (1-3).",
                minimum=1,
                maximum=3,
            ),
        ),
        patient_column="nhs_number",
    ),
    Dataset(
        "products",
        "Product catalogue lines (NHS Supply Chain style): NPC, GTIN, eClass, pack size.",
        (Priority.SUPPLY, Priority.REFERENCE),
        ("acute_trust",),
        ("npc",),
        (
            _col("npc", "string", OPERATIONAL, "National Product Code.", nullable=False),
            _col("mpc", "string", OPERATIONAL, "Manufacturer product code."),
            _col("gtin", "string", OPERATIONAL, "GS1 GTIN-13 with a valid check digit."),
            _col("eclass_code", "string", OPERATIONAL, "NHS-eClass code (synthetic)."),
            _col("description", "string", OPERATIONAL, "Product description.", nullable=False),
            _col(
                "product_group",
                "string",
                OPERATIONAL,
                "Like-for-like group: products in one group are substitutes, compared per unit.",
                nullable=False,
            ),
            _col("category", "string", OPERATIONAL, "Spend category.", nullable=False),
            _col("unit_of_issue", "string", OPERATIONAL, "Unit of issue (each, box, pair)."),
            _col(
                "pack_size",
                "int32",
                OPERATIONAL,
                "Units per pack.",
                nullable=False,
                minimum=1,
            ),
            _col("supplier", "string", OPERATIONAL, "Supplier name."),
            _col(
                "supply_route",
                "string",
                OPERATIONAL,
                "Delivery route.",
                nullable=False,
                codes=codes.SUPPLY_ROUTES,
            ),
            _col(
                "status",
                "string",
                OPERATIONAL,
                "Catalogue status.",
                nullable=False,
                codes=codes.PRODUCT_STATUS,
            ),
        ),
    ),
    Dataset(
        "purchase_orders",
        "Purchase order lines.",
        (Priority.SUPPLY,),
        ("acute_trust",),
        ("org_code", "po_number", "po_line"),
        (
            _org_code("the buying trust"),
            _col("po_number", "string", OPERATIONAL, "Purchase order number.", nullable=False),
            _col("po_line", "int32", OPERATIONAL, "Line number.", nullable=False),
            _col("order_date", "date", OPERATIONAL, "Date ordered.", nullable=False),
            _col(
                "npc",
                "string",
                OPERATIONAL,
                "Product ordered.",
                nullable=False,
                references="products.npc",
            ),
            _col("location_code", "string", OPERATIONAL, "Ordering location (store or ward)."),
            _col("quantity", "int32", OPERATIONAL, "Packs ordered.", nullable=False, minimum=1),
            _col("unit_price", "float64", OPERATIONAL, "Price per pack (GBP).", minimum=0),
            _col("net_value", "float64", OPERATIONAL, "quantity x unit_price (GBP).", minimum=0),
        ),
    ),
    Dataset(
        "receipts",
        "Goods receipts against purchase order lines.",
        (Priority.SUPPLY,),
        ("acute_trust",),
        ("org_code", "po_number", "po_line", "receipt_date"),
        (
            _org_code("the receiving trust"),
            _col("po_number", "string", OPERATIONAL, "Purchase order number.", nullable=False),
            _col("po_line", "int32", OPERATIONAL, "Line number.", nullable=False),
            _col("receipt_date", "date", OPERATIONAL, "Date received.", nullable=False),
            _col(
                "quantity_received",
                "int32",
                OPERATIONAL,
                "Packs received.",
                nullable=False,
                minimum=0,
            ),
        ),
    ),
    Dataset(
        "stock_levels",
        "End-of-day stock on hand per product and location.",
        (Priority.SUPPLY,),
        ("acute_trust",),
        ("org_code", "location_code", "npc", "date"),
        (
            _org_code("the trust"),
            _col("location_code", "string", OPERATIONAL, "Store or ward.", nullable=False),
            _col(
                "npc",
                "string",
                OPERATIONAL,
                "Product.",
                nullable=False,
                references="products.npc",
            ),
            _col("date", "date", OPERATIONAL, "Stock date.", nullable=False),
            _col("on_hand_units", "int32", OPERATIONAL, "Units on hand.", nullable=False),
        ),
    ),
    Dataset(
        "consumption",
        "Daily issues (consumption) per product and location, with demand that could not be "
        "met when stock ran out.",
        (Priority.SUPPLY,),
        ("acute_trust",),
        ("org_code", "location_code", "npc", "date"),
        (
            _org_code("the trust"),
            _col("location_code", "string", OPERATIONAL, "Store or ward.", nullable=False),
            _col(
                "npc",
                "string",
                OPERATIONAL,
                "Product.",
                nullable=False,
                references="products.npc",
            ),
            _col("date", "date", OPERATIONAL, "Issue date.", nullable=False),
            _col("units_issued", "int32", OPERATIONAL, "Units issued.", nullable=False),
            _col(
                "units_unmet",
                "int32",
                OPERATIONAL,
                "Units requested but not issued because none were on hand.",
                nullable=False,
            ),
        ),
    ),
)

CATALOG: Mapping[str, Dataset] = MappingProxyType({d.name: d for d in DATASETS})


def dataset(name: str) -> Dataset:
    """The catalogue entry for ``name``; a clear error naming the datasets that exist."""
    try:
        return CATALOG[name]
    except KeyError:
        raise UsageError(
            f"no dataset {name!r} in the catalogue; datasets are: {', '.join(CATALOG)}"
        ) from None


def datasets_held_by(org_type: str) -> tuple[Dataset, ...]:
    """Datasets a node of ``org_type`` holds in its store."""
    return tuple(d for d in DATASETS if org_type in d.held_by)


def table(name: str) -> ibis.Table:
    """An unbound Ibis table of dataset ``name``: write a federated query against it once and
    ``ws.federated`` binds it to each node's governed table."""
    return ibis.table(dataset(name).schema(), name=name)
