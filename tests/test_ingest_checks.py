"""Every check, one row at a time: a value that passes loads, a value that fails is
quarantined with a reason naming the column, the value and what is expected.

Spec-style: each case is a dataset, the changes to one real row of the synthetic federation,
and the expected outcome (None: loads) or a fragment of the reason."""

from __future__ import annotations

import datetime as dt
import itertools

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fdp_kernel.catalog import CATALOG
from fdp_kernel.identifiers import is_valid_gtin, is_valid_nhs_number, nhs_check_digit
from fdp_kernel.ingest.validate import gtin_ok_sql, nhs_number_ok_sql
from tests.fixtures.ingest import node, records, run, sample, store, write_csv

ORG, TRUST = "Y90001", "RSA"
_counter = itertools.count()


def fresh_nhs_numbers():
    """Valid NHS numbers in the 999 range (not used by the generator's 9xx people)."""
    for body in range(999_000_001, 999_999_999):
        check = nhs_check_digit(str(body))
        if check is not None:
            yield f"{body}{check}"


NEW_NHS = fresh_nhs_numbers()


@pytest.fixture(scope="module")
def fed(small_federation, tmp_path_factory):
    return node(small_federation, tmp_path_factory.mktemp("checks"), ORG, TRUST)


def ingest_one(fed, tmp_path, org: str, dataset: str, changes: dict, where: str = "true"):
    """Load one real row of ``dataset`` with a fresh key and ``changes``: (loaded, reasons)."""
    header, rows = sample(store(fed, org), dataset, 1, where)
    row = dict(zip(header, rows[0], strict=True))
    n = next(_counter)
    fresh = {
        "patients": {"nhs_number": next(NEW_NHS)},
        "vaccinations": {"vaccination_id": f"T{n}"},
        "rtt_pathways": {"pathway_id": f"T{n}"},
        "outpatient_appointments": {"appointment_id": f"T{n}"},
        "inpatient_spells": {"spell_id": f"T{n}"},
        "products": {"npc": f"T{n}"},
        "purchase_orders": {"po_number": f"T{n}"},
        "bed_occupancy": {"date": str(dt.date(2000, 1, 1) + dt.timedelta(days=n))},
        "gp_practices": {"practice_code": f"T{n:05d}"},
        "ltc_registers": {},
    }[dataset]
    row |= fresh | changes
    path = write_csv(tmp_path / f"{dataset}{n}.csv", list(row), [list(row.values())])
    report = run(fed, org, [path], dataset=dataset)
    reasons = [
        r["reasons"]
        for r in records(
            store(fed, org),
            "SELECT reasons FROM _fdp_quarantine WHERE ingest_id = ?",
            [report.ingest_id],
        )
    ]
    assert report.total.read == 1 == report.total.loaded + report.total.quarantined
    return report.total.loaded == 1, reasons


CASES = [
    # types
    (
        "vaccinations",
        {"vaccination_date": "2025-02-30"},
        "vaccination_date '2025-02-30' is not a date (YYYY-MM-DD)",
    ),
    ("vaccinations", {"dose_sequence": "two"}, "dose_sequence 'two' is not a whole number"),
    ("vaccinations", {"dose_sequence": "300"}, "is not a whole number (at most 127)"),
    ("vaccinations", {"dose_sequence": "2.5"}, "dose_sequence '2.5' is not a whole number"),
    ("vaccinations", {"dose_sequence": " 2 "}, None),
    ("purchase_orders", {"unit_price": "£3"}, "unit_price '£3' is not a number"),
    ("purchase_orders", {"unit_price": "nan"}, "unit_price 'nan' is not a number"),
    ("patients", {"national_opt_out": "maybe"}, "national_opt_out 'maybe' is not true or false"),
    ("patients", {"national_opt_out": "Y"}, None),
    # required
    ("vaccinations", {"procedure_code": ""}, "procedure_code is missing (required)"),
    ("vaccinations", {"procedure_code": "   "}, "procedure_code is missing (required)"),
    ("patients", {"date_of_birth": ""}, "date_of_birth is missing (required)"),
    # code lists
    (
        "patients",
        {"ethnicity": "Q"},
        "ethnicity 'Q' is not in its code list (see `fdp catalog patients`)",
    ),
    ("vaccinations", {"route_code": "oral"}, "route_code 'oral' is not in its code list"),
    ("vaccinations", {"route_code": ""}, None),  # optional: empty is fine
    # ranges
    ("bed_occupancy", {"ga_beds_available": "-1"}, "ga_beds_available '-1' is below 0"),
    ("patients", {"imd_decile": "11"}, "imd_decile '11' is above 10"),
    ("patients", {"imd_decile": "0"}, "imd_decile '0' is below 1"),
    # identifiers
    (
        "patients",
        {"nhs_number": "9434765918"},
        "nhs_number '9434765918' is not a valid NHS number (10 digits, Modulus 11 check digit)",
    ),
    ("patients", {"nhs_number": "943476591"}, "is not a valid NHS number"),
    ("patients", {"nhs_number": "+434765919"}, "is not a valid NHS number"),
    ("patients", {"nhs_number": "999 000 0018"}, None),  # spaces removed: 9990000018 is valid
    (
        "products",
        {"gtin": "5071516479266"},
        "gtin '5071516479266' is not a GTIN with a valid check digit",
    ),
    ("products", {"gtin": "5012345678900"}, None),
    (
        "gp_practices",
        {"practice_code": "Y9001"},
        "practice_code 'Y9001' is not a practice code (letter + 5 digits)",
    ),
    ("gp_practices", {"pcn_code": "X12345"}, "pcn_code 'X12345' is not a PCN code"),
    ("patients", {"lsoa_code": "W01000001"}, "lsoa_code 'W01000001' is not an LSOA code"),
    (
        "vaccinations",
        {"org_code": "Y90002"},
        "org_code 'Y90002' is not this node (Y90001): a node loads only its own records",
    ),
    # dates in range and in order
    ("patients", {"date_of_birth": "1899-12-31"}, "date_of_birth '1899-12-31' is before 1900"),
    (
        "vaccinations",
        {"vaccination_date": "2026-11-01"},
        "vaccination_date '2026-11-01' is after the as-of date 2026-10-31",
    ),
    (
        "patients",
        {"date_of_birth": "1950-05-01", "date_of_death": "1950-04-30"},
        "date_of_death '1950-04-30' is before date_of_birth '1950-05-01'",
    ),
    # references to the node's other datasets
    (
        "vaccinations",
        {"nhs_number": "9434765919"},
        "nhs_number '9434765919' is not in this node's patients (load patients first)",
    ),
    (
        "patients",
        {"registered_practice": "Y99999"},
        "registered_practice 'Y99999' is not in this node's gp_practices",
    ),
    (
        "vaccinations",
        {"vaccination_date": "1901-01-01"},
        "vaccination_date '1901-01-01' is before the patient's date of birth",
    ),
]


CASES += [
    ("rtt_pathways", {"tci_date": "2027-06-01"}, None),  # a booking may be in the future
    (
        "rtt_pathways",
        {"tci_date": "2037-06-01"},
        "tci_date '2037-06-01' is more than 10 years after the as-of date",
    ),
    (
        "rtt_pathways",
        {"rtt_end_date": "2020-01-01"},
        "rtt_end_date '2020-01-01' is before rtt_start_date",
    ),
    (
        "rtt_pathways",
        {"treatment_function_code": "999"},
        "treatment_function_code '999' is not in its code list",
    ),
    (
        "outpatient_appointments",
        {"pathway_id": "RSA-NOPE"},
        "pathway_id 'RSA-NOPE' is not in this node's rtt_pathways",
    ),
    ("purchase_orders", {"npc": "ZZZ999"}, "npc 'ZZZ999' is not in this node's products"),
    (
        "inpatient_spells",
        {"discharge_pathway": "4"},
        "discharge_pathway '4' is not in its code list",
    ),
    ("inpatient_spells", {"discharge_pathway": "3"}, None),
]


@pytest.mark.parametrize(("dataset", "changes", "expected"), CASES)
def test_each_check(fed, tmp_path, dataset, changes, expected):
    org = ORG if "gp_practice" in CATALOG[dataset].held_by else TRUST
    where = {
        "rtt_pathways": "rtt_end_date IS NOT NULL",
        "outpatient_appointments": "pathway_id IS NOT NULL",
    }.get(dataset, "true")
    loaded, reasons = ingest_one(fed, tmp_path, org, dataset, changes, where)
    if expected is None:
        assert loaded and not reasons, reasons
    else:
        assert not loaded and len(reasons) == 1 and expected in reasons[0], reasons


def test_every_failing_check_is_listed(fed, tmp_path):
    changes = {"nhs_number": "123", "sex": "X", "ethnicity": "", "imd_decile": "12"}
    loaded, reasons = ingest_one(fed, tmp_path, ORG, "patients", changes)
    assert not loaded
    parts = reasons[0].split("; ")
    assert parts == [
        "nhs_number '123' is not a valid NHS number (10 digits, Modulus 11 check digit)",
        "sex 'X' is not in its code list (see `fdp catalog patients`)",
        "ethnicity is missing (required)",
        "imd_decile '12' is above 10",
    ]


def test_values_are_converted_to_the_catalogue_types(fed, tmp_path):
    nhs = next(NEW_NHS)
    changes = {"nhs_number": f"{nhs[:3]}-{nhs[3:6]}-{nhs[6:]}", "national_opt_out": "yes",
               "imd_decile": "+3", "date_of_birth": "1980-02-29"}  # fmt: skip
    loaded, _ = ingest_one(fed, tmp_path, ORG, "patients", changes)
    assert loaded
    got = records(store(fed, ORG), "SELECT * FROM patients WHERE nhs_number = ?", [nhs])
    assert got[0]["national_opt_out"] is True and got[0]["imd_decile"] == 3
    assert got[0]["date_of_birth"] == dt.date(1980, 2, 29)


# -- the SQL checks agree with the reference implementations in identifiers.py ------------

digits = st.text(alphabet=st.sampled_from("0123456789"), min_size=0, max_size=15)
noisy = st.text(alphabet=st.sampled_from("0123456789+-. x_"), min_size=0, max_size=15)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(digits, noisy), min_size=1, max_size=200))
def test_sql_check_digits_agree_with_identifiers(values):
    """Modulus 11 and GS1 mod 10 in SQL, over many values at once, give the same answers as
    the scalar functions (the NHS number is checked after spaces and dashes are removed)."""
    con = duckdb.connect()
    try:
        got = con.execute(
            f"SELECT v, {nhs_number_ok_sql('v')}, {gtin_ok_sql('v')} "
            "FROM unnest(?) AS t(v) ORDER BY ALL",
            [values],
        ).fetchall()
    finally:
        con.close()
    for value, nhs_ok, gtin_ok in got:
        plain = value.isdigit()  # the SQL sees values already stripped of spaces and dashes
        assert nhs_ok == (plain and is_valid_nhs_number(value)), value
        assert gtin_ok == is_valid_gtin(value), value


def test_sql_nhs_check_on_the_worked_examples():
    con = duckdb.connect()
    try:
        sql = f"SELECT {nhs_number_ok_sql('v')} FROM unnest(?) AS t(v)"
        rows = con.execute(sql, [["9990000018", "9000000009", "9990000001"]]).fetchall()
        got = [r[0] for r in rows]
    finally:
        con.close()
    assert got == [True, True, False]  # DOMAIN.md: 999 000 0018 and 900 000 0009 pass
