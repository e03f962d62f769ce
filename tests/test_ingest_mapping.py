"""Mapping files: validated with errors that name the file, the entry and the fix; resolved
against a file's columns; applied on load (rename, recode, date formats, case, constants)."""

from __future__ import annotations

import datetime as dt

import pytest

from fdp_kernel.catalog import CATALOG
from fdp_kernel.errors import ConfigError, UsageError
from fdp_kernel.ingest.mapping import IDENTITY, ColumnRule, load_mapping, resolve
from tests.fixtures.ingest import HERE, node, records, run, sample, store, write_csv

FLATFILE = HERE / "flatfile_vaccinations.yaml"


def write(tmp_path, text: str):
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    return path


def test_the_sample_mapping_loads():
    m = load_mapping(FLATFILE)
    assert m.dataset == "vaccinations" and m.delimiter == "|"
    assert m.null_values == ("", "NULL")
    assert m.columns["nhs_number"] == ColumnRule(source="NHS_NUMBER")
    assert m.columns["vaccination_date"].format == "%Y%m%dT%H%M%S"
    assert m.columns["programme"].values["822851000000102"] == "flu"
    assert m.columns["route_code"].case == "upper"
    assert m.fingerprint() == load_mapping(FLATFILE).fingerprint()


@pytest.mark.parametrize(
    ("text", "where", "fix"),
    [
        ("dataset: vaccinations\ncolumns: {nhs_numbr: NHS}", "columns.nhs_numbr", "nhs_number"),
        ("dataset: vaccinations\ncolums: {}", "colums", "columns"),
        ("dataset: vacinations", "dataset", "vaccinations"),
        ("columns: {}", "dataset", "pass --dataset"),
        ("dataset: vaccinations\ncolumns: {nhs_number: {form: X}}", "columns.nhs_number", "from"),
        (
            "dataset: vaccinations\ncolumns: {nhs_number: {from: X, constant: '1'}}",
            "columns.nhs_number",
            "keep one",
        ),
        ("dataset: vaccinations\ncolumns: {nhs_number: {}}", "columns.nhs_number", "keep one"),
        (
            "dataset: vaccinations\ncolumns: {programme: {from: X, format: '%Y'}}",
            "columns.programme",
            "remove `format`",
        ),
        (
            "dataset: vaccinations\ncolumns: {vaccination_date: {from: X, format: 'YYYY'}}",
            "columns.vaccination_date",
            "%d/%m/%Y",
        ),
        (
            "dataset: vaccinations\ncolumns: {vaccination_date: {constant: 'yesterday'}}",
            "columns.vaccination_date",
            "give a date value",
        ),
        (
            "dataset: vaccinations\ncolumns: {dose_sequence: {constant: 'one'}}",
            "columns.dose_sequence",
            "give a int8 value",
        ),
        (
            "dataset: vaccinations\ncolumns: {programme: {from: X, values: [flu]}}",
            "columns.programme",
            '{"1": M}',
        ),
        ("dataset: vaccinations\ncolumns: {route_code: {from: X, case: title}}", "", "upper"),
        ("dataset: vaccinations\ndelimiter: ';;'", "delimiter", '";"'),
        ("dataset: vaccinations\nnull_values: NULL", "null_values", '["", "NULL"]'),
        ("dataset: vaccinations\nignore: POSTCODE", "ignore", "[POSTCODE]"),
        ("- just\n- a list", "top level", "docs/ingest.md"),
        ("dataset: [unclosed", "", "correct the syntax"),
    ],
)
def test_mapping_errors_name_the_file_the_entry_and_the_fix(tmp_path, text, where, fix):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_mapping(path)
    message = str(err.value)
    assert message.startswith(str(path)), message
    assert where in message and fix in message, message


def test_mapping_for_another_dataset_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="the mapping is for 'vaccinations' but --dataset"):
        load_mapping(FLATFILE, "patients")


def test_an_unknown_encoding_is_refused(tmp_path):
    with pytest.raises(UsageError, match="unknown encoding 'klingon'"):
        load_mapping(write(tmp_path, "dataset: vaccinations\nencoding: klingon"))
    with pytest.raises(UsageError, match="re-save the file as UTF-8"):
        load_mapping(write(tmp_path, "dataset: vaccinations\nencoding: utf-16"))


def test_resolve_matches_names_case_insensitively_and_defaults_org_code():
    ds = CATALOG["ltc_registers"]
    plan = resolve(IDENTITY, ds, ["NHS_NUMBER", "Condition", "extra"], "Y90001", "f.csv")
    assert plan.rules["nhs_number"].source == "NHS_NUMBER"
    assert plan.rules["condition"].source == "Condition"
    assert plan.rules["org_code"] == ColumnRule(constant="Y90001")  # the node's own code
    assert plan.unused == ("extra",)
    assert plan.empty == ("diagnosis_date",)


def test_missing_required_columns_are_listed_with_the_mapping_that_would_supply_them():
    ds = CATALOG["vaccinations"]
    header = ["NHS_NO", "VACC_DATE", "vaccination_id"]
    with pytest.raises(UsageError) as err:
        resolve(IDENTITY, ds, header, "Y90001", "extract.csv")
    message = str(err.value)
    assert message.startswith("extract.csv: missing required column(s) of vaccinations: ")
    for name in ("nhs_number", "vaccination_date", "programme", "procedure_code"):
        assert name in message
    assert "The file's columns are: NHS_NO, VACC_DATE, vaccination_id" in message
    assert "nhs_number: <source column> (did you mean 'NHS_NO'?)" in message


def test_a_mapped_source_column_must_exist(tmp_path):
    mapping = load_mapping(FLATFILE)
    with pytest.raises(UsageError, match=r"reads source column 'SITE_CODE' but x\.csv has no"):
        resolve(mapping, CATALOG["vaccinations"], ["NHS_NUMBER", "SITE_COD"], "Y90001", "x.csv")


def test_a_flat_file_loads_through_its_mapping(small_federation, tmp_path):
    fed = node(small_federation, tmp_path / "fed", "Y90001")
    _, people = sample(store(fed, "Y90001"), "patients", 2, "date_of_birth < DATE '2000-01-01'")
    header = ["NHS_NUMBER", "PERSON_POSTCODE", "DATE_AND_TIME", "SITE_CODE", "UNIQUE_ID",
              "VACCINATION_PROCEDURE_CODE", "DOSE_SEQUENCE", "VACCINE_PRODUCT_CODE",
              "BATCH_NUMBER", "SITE_OF_VACCINATION_CODE", "ROUTE_OF_VACCINATION_CODE"]  # fmt: skip
    nhs = [p[1] for p in people]
    spaced = f"{nhs[0][:3]} {nhs[0][3:6]} {nhs[0][6:]}"
    rows = [
        [spaced, "LS1 1AA", "20251015T093000", "Y90001", "F-1", "822851000000102", "1",
         "SYN-FLU", "B1", "368208006", "78421000"],
        [nhs[1], "NULL", "20251101T120000", "Y90001", "C-1", "1324681000000101", "NULL",
         "NULL", "B2", "368209003", "78421000"],
        [nhs[1], "", "2025-11-02", "Y90001", "C-2", "1324691000000104", "2", "", "", "", ""],
    ]  # fmt: skip
    path = write_csv(tmp_path / "flat.csv", header, rows, delimiter="|")
    report = run(fed, "Y90001", [path], mapping=FLATFILE)
    assert (report.total.read, report.total.loaded, report.total.quarantined) == (3, 2, 1)
    assert report.files[0].unused == ()  # PERSON_POSTCODE is listed under `ignore`
    got = records(
        store(fed, "Y90001"),
        "SELECT * FROM vaccinations WHERE vaccination_id IN ('F-1', 'C-1') ORDER BY 2",
    )
    assert got[0]["vaccination_id"] == "C-1" and got[0]["programme"] == "covid"
    assert got[0]["dose_sequence"] is None and got[0]["vaccine_product_code"] is None  # NULL
    assert got[1]["nhs_number"] == nhs[0]  # spaces removed
    assert got[1]["vaccination_date"] == dt.date(2025, 10, 15) and got[1]["programme"] == "flu"
    bad = records(store(fed, "Y90001"), "SELECT * FROM _fdp_quarantine")
    assert len(bad) == 1 and bad[0]["source_line"] == 4
    assert (
        "vaccination_date (from DATE_AND_TIME) '2025-11-02' is not a date in format"
        in (bad[0]["reasons"])
    )


def test_a_constant_fills_every_row(small_federation, tmp_path):
    fed = node(small_federation, tmp_path / "fed", "Y90001")
    header, rows = sample(store(fed, "Y90001"), "ltc_registers", 2)
    keep = [i for i, h in enumerate(header) if h != "diagnosis_date"]
    path = write_csv(
        tmp_path / "reg.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
    )
    mapping = write(
        tmp_path,
        "dataset: ltc_registers\ncolumns:\n  diagnosis_date: {constant: 2020-01-31}\n",
    )
    report = run(fed, "Y90001", [path], mapping=mapping)
    assert report.total.loaded == 2
    for row in rows:
        dates = records(
            store(fed, "Y90001"),
            "SELECT diagnosis_date FROM ltc_registers WHERE nhs_number = ? AND condition = ?",
            [row[1], row[2]],
        )
        assert dates == [{"diagnosis_date": dt.date(2020, 1, 31)}]
