"""FHIR R4 ingest: real-shaped resources mapped field by field, rejections with their lines,
bounded batches, accounting under random and fuzzed input, and an export/ingest round trip."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdp_kernel.catalog import CATALOG
from fdp_kernel.errors import UsageError
from fdp_kernel.ingest import fhir_terms
from fdp_kernel.ingest.fhir import SOURCE_LINE, FhirBatch, is_fhir, read_fhir
from fdp_kernel.ingest.fhir_export import RESOURCE_OF, export_bundle, export_ndjson

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
D = dt.date


def read_all(path: Path, org: str = "RXX", **kw) -> tuple[dict[str, list[dict]], dict[int, str]]:
    """Rows per dataset (``_source_line`` kept) and rejection reasons by line."""
    rows: dict[str, list[dict]] = {}
    rejected: dict[int, str] = {}
    for batch in read_fhir(path, org, **kw):
        rows.setdefault(batch.dataset, []).extend(batch.table.to_pylist())
        for line, reason, raw in batch.rejected:
            assert line not in rejected, f"line {line} rejected twice"
            assert len(raw) <= 2000
            rejected[line] = reason
    return rows, rejected


def by_line(rows: list[dict]) -> dict[int, dict]:
    return {r.pop(SOURCE_LINE): r for r in rows}


# --- field-by-field mappings ------------------------------------------------------------


def test_patient_mapping():
    rows, rejected = read_all(FIXTURES / "Patient.ndjson")
    assert set(rows) == {"patients"}
    got = by_line(rows["patients"])
    assert got[1] == {
        "org_code": "RXX",  # no managingOrganization: the node
        "nhs_number": "9000000009",
        "given_name": "Jane Anne",  # the official name, not the maiden one
        "family_name": "Smith",
        "date_of_birth": D(1956, 10, 23),
        "sex": "F",
        "ethnicity": "A",
        "lsoa_code": "E01033010",  # the home address, not the old one
        "imd_decile": 3,
        "registered_practice": "Y12345",
        "national_opt_out": False,
        "date_of_death": None,
    }
    assert got[2] == {
        "org_code": "Y12345",  # managingOrganization names the record holder
        "nhs_number": "9990000018",
        "given_name": "Kwame",
        "family_name": "Mensah",
        "date_of_birth": D(1938, 2, 11),
        "sex": "M",
        "ethnicity": "N",
        "lsoa_code": None,
        "imd_decile": None,
        "registered_practice": "Y12345",  # the Organization, not the Practitioner
        "national_opt_out": True,
        "date_of_death": D(2026, 1, 4),
    }
    # Kept as found for the core to quarantine: bad check digit, gender "unknown", no opt-out.
    assert got[4]["nhs_number"] == "9990000001"
    assert got[4]["sex"] == "unknown"
    assert got[4]["national_opt_out"] is None and got[4]["ethnicity"] is None
    assert set(got) == {1, 2, 4}  # line 3 is blank
    assert "no identifier with system https://fhir.nhs.uk/Id/nhs-number" in rejected[5]
    assert "'1990' is a partial date" in rejected[6]
    assert set(rejected) == {5, 6}


def test_immunization_mapping():
    rows, rejected = read_all(FIXTURES / "Immunization.ndjson")
    got = by_line(rows["vaccinations"])
    assert got[1] == {
        "org_code": "RXX",  # the node holds the record; the performer only gave the dose
        "vaccination_id": "RAVS-0001",
        "nhs_number": "9000000009",  # from the contained Patient (#Pat1)
        "vaccination_date": D(2025, 10, 14),  # the date as written, not shifted to UTC
        "programme": "flu",
        "procedure_code": "822851000000102",  # the UK Core VaccinationProcedure extension
        "dose_sequence": 1,
        "vaccine_product_code": "39114911000001105",  # vaccineCode: the dm+d product
        "batch_number": "TB1234",
        "site_of_vaccination_code": "368208006",
        "route_code": "78421000",
    }
    assert got[2] == {
        "org_code": "RXX",
        "vaccination_id": "5c1c14a6-37c2-45d3-9e0c-bffea36e13c7",
        "nhs_number": "9990000018",
        "vaccination_date": D(2025, 3, 2),
        "programme": "childhood",
        "procedure_code": "38598009",  # no procedure extension: vaccineCode is the procedure
        "dose_sequence": 2,  # doseNumberString "2"
        "vaccine_product_code": None,
        "batch_number": None,
        "site_of_vaccination_code": "61396006",
        "route_code": None,
    }
    assert "status is 'not-done'" in rejected[3]
    assert "STU3 profile" in rejected[4]
    assert "Immunization.patient is missing" in rejected[5]
    assert set(got) | set(rejected) == {1, 2, 3, 4, 5}


def test_condition_mapping():
    rows, rejected = read_all(FIXTURES / "Condition.ndjson")
    assert by_line(rows["ltc_registers"]) == {
        1: {
            "org_code": "RXX",
            "nhs_number": "9000000009",
            "condition": "DM",  # SNOMED 44054006 type 2 diabetes -> the DM register
            "diagnosis_date": D(2012, 4, 17),  # onset before recordedDate
        },
        2: {  # remission stays on the register; no onset, so the recorded date
            "org_code": "RXX",
            "nhs_number": "9990000018",
            "condition": "AST",
            "diagnosis_date": D(2001, 9, 9),
        },
        7: {  # an fdp register coding is kept as found (the core checks the code list)
            "org_code": "RXX",
            "nhs_number": "9000000009",
            "condition": "XYZ",
            "diagnosis_date": D(2021, 6, 1),
        },
    }
    assert "clinicalStatus is 'resolved'" in rejected[3]
    assert "271737000) maps to no QOF register" in rejected[4]
    assert "Condition.subject is missing" in rejected[5]
    assert "clinicalStatus is a string" in rejected[6] and "STU3" in rejected[6]
    assert set(rejected) == {3, 4, 5, 6}


def test_encounter_mapping():
    rows, rejected = read_all(FIXTURES / "Encounter.ndjson")
    got = by_line(rows["inpatient_spells"])
    assert got[1] == {
        "org_code": "RR8",  # serviceProvider
        "spell_id": "SP-2026-0042",  # the official identifier
        "nhs_number": "9990000018",
        "admission_date": D(2025, 12, 20),
        "discharge_date": D(2026, 1, 4),
        "admission_method": "21",  # hospitalization.extension(AdmissionMethod)
        "treatment_function_code": "430",
        "discharge_ready_date": None,
        "discharge_pathway": None,
        "nctr_reason": None,
        "died_in_hospital": True,  # discharge method 4 / destination 79
    }
    assert got[2] == {
        "org_code": "RXX",
        "spell_id": "SP-2026-0100",
        "nhs_number": "9000000009",
        "admission_date": D(2026, 10, 25),
        "discharge_date": None,  # in progress
        "admission_method": "22",  # the extension at Encounter level is read too
        "treatment_function_code": "300",
        "discharge_ready_date": D(2026, 10, 28),
        "discharge_pathway": 1,
        "nctr_reason": "P1H",
        "died_in_hospital": False,
    }
    assert "class 'AMB' is not admitted care" in rejected[3] and "Appointment" in rejected[3]
    assert "R5" in rejected[4]
    assert "status is 'cancelled'" in rejected[5]


def test_appointment_mapping():
    rows, rejected = read_all(FIXTURES / "Appointment.ndjson")
    got = by_line(rows["outpatient_appointments"])
    assert got[1] == {
        "org_code": "RXX",
        "appointment_id": "A-1001",
        "nhs_number": "9000000009",  # the Patient participant, not the Practitioner
        "pathway_id": None,
        "appointment_date": D(2026, 4, 2),
        "treatment_function_code": "110",
        "first_attendance": "2",  # v2-0276 FOLLOWUP
        "attendance_status": "5",  # fulfilled
        "moved_to_pifu": False,
    }
    assert got[2] == {
        "org_code": "RXX",
        "appointment_id": "appt-2",  # no identifier: the resource id
        "nhs_number": "9990000018",
        "pathway_id": "PW-9",
        "appointment_date": D(2026, 5, 11),
        "treatment_function_code": "330",  # from specialty
        "first_attendance": "1",
        "attendance_status": "3",  # noshow: did not attend
        "moved_to_pifu": False,
    }
    assert (got[3]["attendance_status"], got[3]["moved_to_pifu"]) == ("2", True)
    assert got[3]["first_attendance"] is None  # no type: the core quarantines it
    assert got[4]["attendance_status"] is None  # booked: a future appointment
    assert "cannot tell attended status 2 from 4" in rejected[5]


def test_transaction_bundle_resolves_full_urls():
    rows, rejected = read_all(FIXTURES / "transaction_bundle.json")
    patients = by_line(rows["patients"])
    assert {k: v["nhs_number"] for k, v in patients.items()} == {2: "9564738296", 3: "9321456783"}
    assert patients[2]["registered_practice"] == "B86001"
    ((imm_line, imm),) = by_line(rows["vaccinations"]).items()
    assert (imm_line, imm["nhs_number"], imm["programme"]) == (4, "9564738296", "covid")
    ((cond_line, cond),) = by_line(rows["ltc_registers"]).items()  # "Patient/p2" -> fullUrl
    assert (cond_line, cond["nhs_number"], cond["condition"]) == (5, "9321456783", "AF")
    ((enc_line, enc),) = by_line(rows["inpatient_spells"]).items()
    assert (enc_line, enc["nhs_number"], enc["org_code"]) == (6, "9564738296", "RR8")
    assert enc["died_in_hospital"] is False and enc["admission_method"] == "11"
    ((appt_line, appt),) = by_line(rows["outpatient_appointments"]).items()
    assert (appt_line, appt["nhs_number"]) == (7, "9321456783")  # absolute URL reference
    assert "unsupported resourceType Organization; supported: Appointment" in rejected[1]
    assert "c2f9b9999' is not a Patient in this Bundle" in rejected[8]
    assert "has no resource (request DELETE)" in rejected[9]
    assert "no identifier with system" in rejected[10]
    assert "is a Patient with no NHS number" in rejected[11]
    assert set(rejected) == {1, 8, 9, 10, 11}


# --- rejections, shapes, files ----------------------------------------------------------


def test_mixed_ndjson_rejections_keep_their_line_numbers():
    rows, rejected = read_all(FIXTURES / "mixed.ndjson")
    assert [r[SOURCE_LINE] for r in rows["patients"]] == [1]
    assert rejected[2].startswith("bad JSON")
    assert rejected[4].startswith("unsupported resourceType Observation")
    assert rejected[5] == "not a FHIR resource: no resourceType"  # a JSON array
    assert "Bundle inside NDJSON" in rejected[6]
    assert "Immunization.patient is missing" in rejected[8]
    assert "'1980-02-30' is not a calendar date" in rejected[9]
    assert set(rejected) == {2, 4, 5, 6, 8, 9}  # 3 and 7 are blank


def test_bundle_of_the_wrong_shape(tmp_path):
    _, rejected = read_all(FIXTURES / "history_bundle.json")
    assert set(rejected) == {1, 2} and all("'history' is not read" in r for r in rejected.values())
    path = tmp_path / "b.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": {}}))
    rows, rejected = read_all(path)
    assert rows == {"": []} and list(rejected) == [0]
    assert "Bundle.entry is not an array" in rejected[0]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": [7]}))
    assert read_all(path)[1] == {1: "Bundle.entry[1] is not an object"}
    path.write_text('{"resourceType": "Bundle", "type": "collection", "entry": [')
    assert read_all(path)[1][0].startswith("bad JSON")


def test_rejections_travel_with_their_dataset(tmp_path):
    batches = list(read_fhir(FIXTURES / "Immunization.ndjson", "RXX"))
    assert [b.dataset for b in batches] == ["vaccinations"]
    assert [line for line, _, _ in batches[0].rejected] == [3, 4, 5]
    only_bad = tmp_path / "obs.ndjson"
    only_bad.write_text('{"resourceType": "Observation"}\n')
    (batch,) = read_fhir(only_bad, "RXX")
    assert batch.dataset == "" and batch.table.num_rows == 0 and len(batch.rejected) == 1


def test_single_resource_json_gzip_and_ndjson_named_json(tmp_path):
    lines = (FIXTURES / "Patient.ndjson").read_text().splitlines()
    single = tmp_path / "p.json"
    single.write_text(lines[0])
    rows, rejected = read_all(single)
    assert [r[SOURCE_LINE] for r in rows["patients"]] == [1] and not rejected
    gz = tmp_path / "Patient.ndjson.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "Patient.ndjson").read_bytes()))
    assert is_fhir(gz)
    assert read_all(gz) == read_all(FIXTURES / "Patient.ndjson")
    as_json = tmp_path / "Patient.json"
    as_json.write_text((FIXTURES / "Patient.ndjson").read_text())
    assert read_all(as_json) == read_all(FIXTURES / "Patient.ndjson")


@pytest.mark.parametrize(
    "name, content",
    [
        ("a.json", '{"a": 1}'),
        ("a.json", "[1, 2]"),
        ("a.ndjson", "not json\n" * 25),
        ("a.csv", "nhs_number\n9000000009\n"),
        ("a.json.gz", "not gzip at all"),
    ],
)
def test_files_that_are_not_fhir_are_usage_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    assert not is_fhir(path)
    with pytest.raises(UsageError, match=r"not FHIR|not a FHIR resource"):
        list(read_fhir(path, "RXX"))


def test_missing_file_and_bad_batch_size_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        list(read_fhir(tmp_path / "nope.ndjson", "RXX"))
    with pytest.raises(UsageError, match="batch_rows"):
        list(read_fhir(FIXTURES / "Patient.ndjson", "RXX", batch_rows=0))


def test_raw_text_is_capped(tmp_path):
    path = tmp_path / "big.ndjson"
    path.write_text(json.dumps({"resourceType": "Observation", "note": "x" * 10_000}) + "\n")
    ((_, _, raw),) = next(read_fhir(path, "RXX")).rejected
    assert len(raw) == 2000 and raw.startswith('{"resourceType": "Observation"')


def test_every_catalogue_column_is_present_and_typed():
    for batch in read_fhir(FIXTURES / "transaction_bundle.json", "RXX"):
        schema = CATALOG[batch.dataset].schema().to_pyarrow()
        assert batch.table.column_names == [*schema.names, SOURCE_LINE]
        for field in schema:
            assert batch.table.schema.field(field.name).type == field.type
        assert batch.table.schema.field(SOURCE_LINE).type == pa.int64()


# --- round trip ---------------------------------------------------------------------------


def _store_tables(store: Path) -> dict[str, pa.Table]:
    con = duckdb.connect(str(store), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        return {
            d: con.execute(f'SELECT * FROM "{d}"').to_arrow_table()
            for d in RESOURCE_OF
            if d in names
        }
    finally:
        con.close()


def _sorted_rows(table: pa.Table, dataset: str) -> list[dict[str, Any]]:
    keys = [(k, "ascending") for k in CATALOG[dataset].primary_key]
    return table.select(list(CATALOG[dataset].column_names)).sort_by(keys).to_pylist()


def _read_back(paths: list[Path], org: str, batch_rows: int) -> dict[str, list[FhirBatch]]:
    out: dict[str, list[FhirBatch]] = {}
    for path in paths:
        for batch in read_fhir(path, org, batch_rows=batch_rows):
            assert not batch.rejected, batch.rejected[:3]
            assert batch.table.num_rows <= batch_rows
            out.setdefault(batch.dataset, []).append(batch)
    return out


@pytest.mark.parametrize("org", ["Y90001", "RSA"])
@pytest.mark.parametrize("form", ["ndjson", "bundle"])
def test_round_trip_export_then_read_gives_the_store_rows(small_federation, tmp_path, org, form):
    store = small_federation / "stores" / f"{org}.duckdb"
    original = _store_tables(store)
    if form == "ndjson":
        files = export_ndjson(store, tmp_path)
        assert {p.name for p in files.values()} == {f"{RESOURCE_OF[d]}.ndjson" for d in original}
        paths = list(files.values())
    else:
        paths = [export_bundle(store, tmp_path / "bundle.json", "transaction")]
    back = _read_back(paths, org, batch_rows=500)
    assert set(back) == set(original)
    for dataset, table in original.items():
        got = pa.concat_tables([b.table.drop_columns([SOURCE_LINE]) for b in back[dataset]])
        assert len(back[dataset]) >= -(-table.num_rows // 500)  # batches of at most 500
        assert got.num_rows == table.num_rows > 0
        assert _sorted_rows(got, dataset) == _sorted_rows(table, dataset), dataset


def test_export_is_real_shaped_and_works_from_arrow_tables(small_federation, tmp_path):
    store = small_federation / "stores" / "Y90001.duckdb"
    from_store = export_ndjson(store, tmp_path / "a")
    from_tables = export_ndjson(_store_tables(store), tmp_path / "b")
    for dataset, path in from_store.items():
        assert path.read_bytes() == from_tables[dataset].read_bytes()
    patient = json.loads(from_store["patients"].read_text().splitlines()[0])
    assert patient["meta"]["profile"] == [fhir_terms.PROFILES["Patient"]]
    assert patient["identifier"][0]["system"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert patient["generalPractitioner"][0]["identifier"]["system"] == (
        "https://fhir.nhs.uk/Id/ods-organization-code"
    )
    imm = json.loads(from_store["vaccinations"].read_text().splitlines()[0])
    assert imm["extension"][0]["url"] == fhir_terms.EXT_VACCINATION_PROCEDURE
    assert imm["status"] == "completed" and imm["patient"]["identifier"]["value"]
    bundle = json.loads(export_bundle(store, tmp_path / "c.json").read_text())
    assert bundle["type"] == "collection"
    urls = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"}
    refs = {
        e["resource"]["patient"]["reference"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Immunization"
    }
    assert refs and refs <= urls  # references by fullUrl, resolved within the Bundle


def test_batches_respect_batch_rows(small_federation):
    store = small_federation / "stores" / "RSA.duckdb"
    with tempfile.TemporaryDirectory() as tmp:
        files = export_ndjson(store, Path(tmp))
        sizes = [
            b.table.num_rows
            for b in read_fhir(files["outpatient_appointments"], "RSA", batch_rows=250)
        ]
    rows = _store_tables(store)["outpatient_appointments"].num_rows
    assert max(sizes) == 250 and sum(sizes) == rows


# --- random and fuzzed input: never a crash, every resource accounted for ----------------

_KEYS = st.sampled_from(
    [
        "resourceType", "id", "identifier", "system", "value", "patient", "subject",
        "reference", "status", "class", "code", "coding", "period", "start", "end",
        "birthDate", "gender", "extension", "url", "valueCodeableConcept", "valueInteger",
        "valueBoolean", "occurrenceDateTime", "protocolApplied", "doseNumberPositiveInt",
        "participant", "actor", "entry", "resource", "fullUrl", "type", "contained", "meta",
        "profile", "hospitalization", "clinicalStatus", "name", "given", "generalPractitioner",
        "managingOrganization", "performer", "serviceProvider", "onsetDateTime", "address",
    ]
) | st.text(max_size=4)  # fmt: skip
_STRINGS = st.sampled_from(
    [
        "Patient", "Immunization", "Condition", "Encounter", "Appointment", "Bundle",
        "Organization", "completed", "IMP", "fulfilled", "cancelled", "active", "resolved",
        fhir_terms.NHS_NUMBER, fhir_terms.ODS_CODE, fhir_terms.SNOMED, "9000000009",
        "2025-01-01", "2025-02-30", "1990", "2025-10-14T10:21:00+01:00", "#p", "urn:uuid:x",
        "Patient/1", "transaction", "collection", "history", fhir_terms.EXT_OPT_OUT,
        fhir_terms.EXT_VACCINATION_PROCEDURE, fhir_terms.EXT_IMD_DECILE,
    ]
) | st.text(max_size=8)  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _STRINGS
)
_JSON = st.recursive(
    _SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_KEYS, kids, max_size=5),
    max_leaves=25,
)
_RESOURCE = st.builds(
    lambda rtype, rest: {**rest, "resourceType": rtype},
    st.sampled_from(["Patient", "Immunization", "Condition", "Encounter", "Appointment"])
    | _STRINGS,
    st.dictionaries(_KEYS, _JSON, max_size=8),
)


def _good_resources() -> list[dict]:
    found = []
    for name in ("Patient", "Immunization", "Condition", "Encounter", "Appointment"):
        for line in (FIXTURES / f"{name}.ndjson").read_text().splitlines():
            if line.strip():
                found.append(json.loads(line))
    return found


GOOD = _good_resources()


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*prefix, i))
    return found


@st.composite
def _mutated(draw) -> dict:
    resource = json.loads(json.dumps(draw(st.sampled_from(GOOD))))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(resource)[1:]))
        parent = resource
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_JSON)
    return resource


def _expected_items(doc: Any) -> int:
    if not (isinstance(doc, dict) and isinstance(doc.get("resourceType"), str)):
        raise AssertionError("UsageError expected")
    if doc["resourceType"] != "Bundle":
        return 1
    entries = doc.get("entry")
    return 0 if entries is None else len(entries) if isinstance(entries, list) else 1


def _accounted(path: Path) -> int:
    total = 0
    for batch in read_fhir(path, "RXX", batch_rows=3):
        assert batch.table.num_rows <= 3
        total += batch.table.num_rows + len(batch.rejected)
        for _, reason, _ in batch.rejected:
            assert not reason.startswith("internal error"), reason
    return total


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=st.lists(_RESOURCE | _mutated() | _JSON, min_size=1, max_size=8))
def test_random_ndjson_is_accounted_for(tmp_path, docs):
    path = tmp_path / "random.ndjson"
    lines = [json.dumps(d) for d in docs]
    path.write_text("\n".join(lines) + "\n")
    try:
        assert _accounted(path) == len(lines)
    except UsageError:  # nothing in the file looked like FHIR
        assert not any(isinstance(d, dict) and isinstance(d.get("resourceType"), str) for d in docs)


_BUNDLE = st.builds(
    lambda btype, entries: {"resourceType": "Bundle", "type": btype, "entry": entries},
    st.sampled_from(["transaction", "collection", "searchset", "history"]) | _JSON,
    st.lists(
        st.fixed_dictionaries(
            {"resource": _RESOURCE | _mutated()},
            optional={"fullUrl": st.sampled_from(["urn:uuid:x", "Patient/1", "#p"]) | _JSON},
        )
        | _JSON,
        max_size=6,
    )
    | _JSON,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=_BUNDLE | _RESOURCE | _mutated() | _JSON)
def test_random_json_documents_are_accounted_for(tmp_path, doc):
    path = tmp_path / "random.json"
    path.write_text(json.dumps(doc))
    try:
        expected = _expected_items(doc)
    except AssertionError:
        with pytest.raises(UsageError):
            _accounted(path)
        return
    assert _accounted(path) == expected


def test_fuzzed_bytes_never_crash_the_reader(tmp_path):
    rng = random.Random(20261031)
    seed = b"".join((FIXTURES / f"{n}.ndjson").read_bytes() for n in ("Patient", "Encounter"))
    seed += (FIXTURES / "Appointment.ndjson").read_bytes()
    path = tmp_path / "fuzz.ndjson"
    outcomes = {"read": 0, "usage": 0}
    for _ in range(300):
        data = bytearray(seed)
        for _ in range(rng.randint(1, 12)):
            op, at = rng.random(), rng.randrange(len(data))
            if op < 0.5:
                data[at] = rng.randrange(256)
            elif op < 0.75:
                del data[at : at + rng.randint(1, 40)]
            else:
                data[at:at] = bytes(rng.choice(b'{}[]",:\n\\0aZ\xff') for _ in range(3))
        path.write_bytes(bytes(data))
        expected = sum(1 for line in bytes(data).split(b"\n") if line.strip())
        try:
            assert _accounted(path) == expected
            outcomes["read"] += 1
        except UsageError:
            outcomes["usage"] += 1
    assert outcomes["read"] > 250  # most mutations leave a readable FHIR file


# --- end to end: export, then `fdp ingest` into an empty copy of the node -----------------


@pytest.mark.parametrize("form", ["ndjson", "bundle"])
def test_fdp_ingest_of_an_export_rebuilds_the_node(small_federation, tmp_path, form):
    import io
    import shutil

    import pyarrow.parquet as pq

    from fdp_kernel.cli import main

    fed = shutil.copytree(small_federation, tmp_path / "fed")
    store = fed / "stores" / "Y90001.duckdb"
    original = tmp_path / "original.duckdb"
    shutil.move(store, original)  # the node's store is gone: ingest starts from empty
    con = duckdb.connect(str(original), read_only=True)
    try:
        reference = []
        for dataset in ("organisations", "gp_practices"):
            path = tmp_path / f"{dataset}.parquet"
            pq.write_table(con.execute(f"SELECT * FROM {dataset}").to_arrow_table(), path)
            reference.append((dataset, path))
    finally:
        con.close()
    if form == "ndjson":
        files = [str(p) for p in export_ndjson(original, tmp_path / "fhir").values()]
    else:
        files = [str(export_bundle(original, tmp_path / "bundle.json", "transaction"))]

    def fdp(*argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        common = ["ingest", "-q", "--org", "Y90001", "--federation", str(fed)]
        code = main([*common, "--fail-on-quarantine", *argv], environ={}, out=out, err=err)
        assert code == 0, out.getvalue() + err.getvalue()
        return out.getvalue()

    for dataset, path in reference:
        fdp("--dataset", dataset, str(path))
    fdp(*files)
    assert store.exists()
    before, after = _store_tables(original), _store_tables(store)
    assert set(after) == set(before) == {"patients", "vaccinations", "ltc_registers"}
    for dataset, table in before.items():
        assert after[dataset].num_rows == table.num_rows > 0
        assert _sorted_rows(after[dataset], dataset) == _sorted_rows(table, dataset), dataset
