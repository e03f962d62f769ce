"""Loading: every row accounted for, idempotent, atomic (even when killed), quarantined rows
exported, fixed and reloaded, audited; the CLI; FHIR batches through the same path."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fdp_kernel.cli import main
from fdp_kernel.config import load_federation as load
from fdp_kernel.errors import FdpError, StoreError, UsageError
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.governance.keys import audit_key
from fdp_kernel.ingest import export_quarantine
from tests.fixtures.ingest import (
    USER,
    fingerprint,
    node,
    quarantined,
    query,
    records,
    run,
    sample,
    store,
    write_csv,
)

ORG = "Y90001"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fed(small_federation, tmp_path):
    return node(small_federation, tmp_path / "fed", ORG)


def vaccinations(fed: Path, n: int = 5):
    """(header, n real vaccination rows re-keyed as new events)."""
    header, rows = sample(store(fed, ORG), "vaccinations", n)
    for i, row in enumerate(rows):
        row[1] = f"NEW{i:06d}"
    return header, rows


def test_rows_read_are_loaded_or_quarantined_and_the_store_agrees(fed, tmp_path):
    header, rows = vaccinations(fed, 6)
    rows[1][2] = "9434765918"  # check digit
    rows[3][4] = "measles"  # not a programme
    path = write_csv(tmp_path / "v.csv", header, rows)
    with open(path, "a") as f:
        f.write("Y90001,SHORT\n")
    before = query(store(fed, ORG), "SELECT count(*) FROM vaccinations")[0][0]
    report = run(fed, ORG, [path], dataset="vaccinations")
    c = report.files[0].counts()["vaccinations"]
    assert (c.read, c.loaded, c.quarantined) == (7, 4, 3)
    assert report.new == {"vaccinations": 4} and report.replaced == {"vaccinations": 0}
    after = query(store(fed, ORG), "SELECT count(*) FROM vaccinations")[0][0]
    assert after == before + 4
    bad = quarantined(store(fed, ORG))
    assert [(b["source_line"], b["raw_format"]) for b in bad] == [
        (8, "text"), (3, "fields"), (5, "fields")
    ]  # fmt: skip
    assert all(b["source_file"] == str(path.resolve()) for b in bad)
    assert json.loads(bad[1]["raw"]) == dict(zip(header, rows[1], strict=True))
    assert bad[0]["raw"] == "Y90001,SHORT"
    ledger = records(store(fed, ORG), "SELECT * FROM _fdp_ingest")
    assert len(ledger) == 1 and ledger[0]["rows_read"] == 7 and ledger[0]["status"] == "loaded"
    assert ledger[0]["rows_loaded"] == 4 and ledger[0]["rows_quarantined"] == 3


def test_the_same_file_twice_is_a_no_op_and_force_replaces_not_duplicates(fed, tmp_path):
    header, rows = vaccinations(fed)
    path = write_csv(tmp_path / "v.csv", header, rows)
    first = run(fed, ORG, [path], dataset="vaccinations")
    snapshot = fingerprint(store(fed, ORG))
    again = run(fed, ORG, [path], dataset="vaccinations")
    assert again.files[0].status == "skipped" and again.files[0].previous == first.ingest_id
    assert "already loaded by" in again.format()
    stored = fingerprint(store(fed, ORG))
    assert {k: v for k, v in stored.items() if k != "_fdp_ingest"} == {
        k: v for k, v in snapshot.items() if k != "_fdp_ingest"
    }
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())  # same bytes under another name: also skipped
    assert run(fed, ORG, [copy], dataset="vaccinations").files[0].status == "skipped"
    forced = run(fed, ORG, [path], dataset="vaccinations", force=True)
    assert forced.new == {"vaccinations": 0} and forced.replaced == {"vaccinations": 5}
    assert fingerprint(store(fed, ORG))["vaccinations"] == snapshot["vaccinations"]


def test_a_key_twice_in_a_file_keeps_the_first_and_quarantines_the_later(fed, tmp_path):
    header, rows = vaccinations(fed, 3)
    later = list(rows[0])
    later[8] = "B-LATER"
    path = write_csv(tmp_path / "v.csv", header, [*rows, later])
    report = run(fed, ORG, [path], dataset="vaccinations", batch_rows=1)  # across batches too
    assert report.total.loaded == 3 and report.total.quarantined == 1
    assert report.files[0].batches > 1
    (bad,) = quarantined(store(fed, ORG))
    assert bad["source_line"] == 5
    assert bad["reasons"] == (
        "duplicate key (org_code 'Y90001', vaccination_id 'NEW000000'): also on line 2 of this file"
    )


def test_a_dry_run_checks_and_writes_nothing(fed, tmp_path):
    header, rows = vaccinations(fed)
    rows[0][3] = "2099-01-01"
    path = write_csv(tmp_path / "v.csv", header, rows)
    snapshot = fingerprint(store(fed, ORG))
    report = run(fed, ORG, [path], dataset="vaccinations", dry_run=True)
    assert (report.total.loaded, report.total.quarantined) == (4, 1)
    assert "checked (dry run, nothing written)" in report.format()
    assert report.reasons == [("vaccinations", "vaccination_date … is after the as-of date "
                               "2026-10-31", 1)]  # fmt: skip
    assert fingerprint(store(fed, ORG)) == snapshot


def test_an_error_part_way_rolls_everything_back(fed, tmp_path):
    header, rows = vaccinations(fed)
    good = write_csv(tmp_path / "good.csv", header, rows)
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b",".join(h.encode() for h in header) + b"\nY90001,X,\xff\n")
    snapshot = fingerprint(store(fed, ORG))
    with pytest.raises(UsageError, match=r"broken.csv line 2 \(byte offset \d+\)"):
        run(fed, ORG, [good, broken], dataset="vaccinations")
    assert fingerprint(store(fed, ORG)) == snapshot
    entries = list(AuditLog(fed / "audit" / f"{ORG}.jsonl").entries())
    assert entries[-1]["action"] == "ingest" and entries[-1]["decision"] == "deny"
    assert "not loaded" in entries[-1]["reason"]


CRASH = """
import sys
from pathlib import Path
from fdp_kernel.config import load_federation
from fdp_kernel.ingest import ingest
from fdp_kernel.progress import Progress
import fdp_kernel.ingest.load as load

original = load.Loader.load
def slow(self, *args, **kwargs):
    original(self, *args, **kwargs)
    print("BATCH", flush=True)  # a batch is written inside the open transaction
    import time; time.sleep(0.2)
load.Loader.load = slow
ingest(load_federation(sys.argv[1]), "Y90001", [Path(sys.argv[2])], dataset="vaccinations",
       user="crash.test", batch_rows=2000)
print("COMMITTED", flush=True)
"""


def test_a_load_killed_mid_way_leaves_the_store_as_it_was(fed, tmp_path):
    """A real process, killed with SIGKILL after it has written batches inside its
    transaction: reopened, the store (rows and checksums of every table) is unchanged."""
    header, rows = vaccinations(fed, 1)
    big = [list(rows[0]) for _ in range(20_000)]
    for i, row in enumerate(big):
        row[1] = f"K{i:07d}"
    path = write_csv(tmp_path / "big.csv", header, big)
    snapshot = fingerprint(store(fed, ORG))
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH, str(fed), str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        batches = 0
        while batches < 3:
            line = proc.stdout.readline()
            assert line and "COMMITTED" not in line, "the load finished before it was killed"
            batches += line.startswith("BATCH")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert fingerprint(store(fed, ORG)) == snapshot  # opened read-only: as committed
    report = run(fed, ORG, [path], dataset="vaccinations")  # opened read-write: WAL replayed
    assert report.files[0].status == "loaded" and report.total.loaded == 20_000


def test_quarantined_rows_export_fix_and_reload(fed, tmp_path):
    header, rows = vaccinations(fed, 4)
    rows[0][3] = "31/12/2025"  # a date in the wrong format
    rows[2][2] = "9434765918"
    path = write_csv(tmp_path / "v.csv", header, rows)
    run(fed, ORG, [path], dataset="vaccinations")
    out = tmp_path / "fix.csv"
    assert export_quarantine(store(fed, ORG), out) == 2
    with open(out, newline="") as f:
        exported = list(csv.DictReader(f))
    assert [e["_fdp_source_line"] for e in exported] == ["2", "4"]
    assert exported[0]["vaccination_date"] == "31/12/2025"
    assert "is not a date (YYYY-MM-DD)" in exported[0]["_fdp_reasons"]
    exported[0]["vaccination_date"] = "2025-12-31"  # fixed; the second row is left as it was
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, list(exported[0]))
        writer.writeheader()
        writer.writerows(exported)
    report = run(fed, ORG, [out], dataset="vaccinations")
    assert (report.total.loaded, report.total.quarantined) == (1, 1)
    assert report.files[0].unused == ()  # _fdp_ columns are not data
    entries = quarantined(store(fed, ORG))
    assert [e["resolved_by"] for e in entries] == [report.ingest_id] * 2 + [None]
    assert entries[2]["source_file"] == str(out.resolve())
    got = query(store(fed, ORG), "SELECT vaccination_date FROM vaccinations WHERE "
                "vaccination_id = ?", [rows[0][1]])  # fmt: skip
    assert str(got[0][0]) == "2025-12-31"


def test_audit_entries_name_the_file_hash_and_counts(fed, tmp_path):
    header, rows = vaccinations(fed)
    rows[0][4] = "nope"
    path = write_csv(tmp_path / "v.csv", header, rows)
    report = run(fed, ORG, [path], dataset="vaccinations")
    run(fed, ORG, [path], dataset="vaccinations")
    log = AuditLog(fed / "audit" / f"{ORG}.jsonl", audit_key(load(fed)))
    assert log.verify().ok
    loaded, skipped = list(log.entries())[-2:]
    assert loaded["action"] == "ingest" and loaded["decision"] == "allow"
    assert loaded["user"] == USER and loaded["org"] == ORG
    assert loaded["details"]["sha256"] == report.files[0].sha256
    assert loaded["details"]["ingest_id"] == report.ingest_id
    assert (loaded["details"]["rows_read"], loaded["details"]["rows_loaded"]) == (5, 4)
    assert loaded["details"]["rows_quarantined"] == 1
    assert skipped["details"]["status"] == "skipped"
    assert skipped["details"]["datasets"] == ["vaccinations"]


def test_large_files_stream_in_batches(fed, tmp_path):
    header, rows = vaccinations(fed, 1)
    many = [list(rows[0]) for _ in range(3000)]
    for i, row in enumerate(many):
        row[1] = f"S{i:06d}"
    path = write_csv(tmp_path / "many.csv", header, many)
    report = run(fed, ORG, [path], dataset="vaccinations", batch_rows=100)
    assert report.files[0].batches >= 10
    assert report.total.loaded == 3000


def test_parquet_files_load_with_their_types(fed, tmp_path):
    import pyarrow.parquet as pq

    from fdp_kernel.catalog import CATALOG
    from fdp_kernel.stores import arrow_schema

    header, rows = vaccinations(fed, 3)
    table = pacsv.read_csv(
        write_csv(tmp_path / "v.csv", header, rows),
        convert_options=pacsv.ConvertOptions(column_types=arrow_schema(CATALOG["vaccinations"])),
    )
    bad = table.set_column(6, "dose_sequence", pa.array([1, 0, None], pa.int8()))
    pq.write_table(bad, tmp_path / "v.parquet")
    report = run(fed, ORG, [tmp_path / "v.parquet"], dataset="vaccinations")
    assert (report.total.loaded, report.total.quarantined) == (2, 1)
    (entry,) = quarantined(store(fed, ORG))
    assert entry["source_line"] == 2 and "dose_sequence '0' is below 1" in entry["reasons"]
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(UsageError, match=r"fake\.parquet is not a readable Parquet file"):
        run(fed, ORG, [tmp_path / "fake.parquet"], dataset="vaccinations")


def test_usage_errors(fed, tmp_path):
    header, rows = vaccinations(fed)
    path = write_csv(tmp_path / "v.csv", header, rows)
    with pytest.raises(UsageError, match="--dataset is needed for CSV and Parquet"):
        run(fed, ORG, [path])
    with pytest.raises(UsageError, match="Y90001 is a gp_practice node; its store does not "
                       "hold rtt_pathways"):  # fmt: skip
        run(fed, ORG, [path], dataset="rtt_pathways")
    with pytest.raises(UsageError, match="does not exist"):
        run(fed, ORG, [tmp_path / "missing.csv"], dataset="vaccinations")


def test_a_postgresql_node_is_refused_with_the_way_to_load_it(fed, tmp_path):
    doc = yaml.safe_load((fed / "federation.yaml").read_text())
    for org in doc["organisations"]:
        if org["code"] == ORG:
            org["store"] = "postgresql://fdp@127.0.0.1:5432/y90001"
    (fed / "federation.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    header, rows = vaccinations(fed)
    path = write_csv(tmp_path / "v.csv", header, rows)
    with pytest.raises(StoreError, match=r"writes DuckDB node stores.*load_store"):
        run(fed, ORG, [path], dataset="vaccinations")


def test_a_node_without_a_store_gets_an_empty_one(small_federation, tmp_path):
    fed = node(small_federation, tmp_path / "fed")  # no stores copied
    header, rows = sample(store(small_federation, ORG), "gp_practices", 3)
    path = write_csv(tmp_path / "gp.csv", header, rows)
    report = run(fed, ORG, [path], dataset="gp_practices")
    assert report.total.quarantined == 3  # their ICB is not in the organisations yet
    assert "icb_code … is not in this node's organisations (load organisations first)" in (
        report.format()
    )
    header, orgs = sample(store(small_federation, ORG), "organisations", 100)
    run(fed, ORG, [write_csv(tmp_path / "orgs.csv", header, orgs)], dataset="organisations")
    report = run(fed, ORG, [path], dataset="gp_practices", force=True)
    assert report.total.loaded == 3
    tables = {r[0] for r in query(store(fed, ORG), "SELECT table_name FROM duckdb_tables()")}
    assert {"patients", "vaccinations", "ltc_registers", "_fdp_meta"} <= tables
    meta = dict(query(store(fed, ORG), "SELECT * FROM _fdp_meta"))
    assert meta["org_code"] == ORG and meta["generator"].endswith("ingest")


def test_the_command_line(fed, tmp_path, capsys):
    header, rows = vaccinations(fed)
    rows[0][2] = "1234567890"
    path = write_csv(tmp_path / "v.csv", header, rows)
    env = {"FDP_FEDERATION": str(fed), "JUPYTERHUB_USER": "cli.user"}
    argv = ["ingest", "--org", ORG, "--dataset", "vaccinations", str(path)]
    assert main(argv, env) == 0
    out, err = capsys.readouterr()
    assert "vaccinations: 5 rows read = 4 loaded + 1 quarantined" in out
    assert "v.csv: 5 rows read (100%)" in err
    assert main([*argv, "--fail-on-quarantine", "--force", "-q"], env) == 1
    capsys.readouterr()
    assert main(["ingest", "--org", ORG, "--quarantine"], env) == 0
    out, _ = capsys.readouterr()
    assert f"{ORG}: 2 quarantined rows open" in out and "is not a valid NHS number" in out
    fix = tmp_path / "fix.csv"
    assert main(["ingest", "--org", ORG, "--quarantine", "--export", str(fix)], env) == 0
    assert len(fix.read_text().splitlines()) == 3
    assert main(["ingest", "--org", ORG], env) == 2
    assert "give the files to load" in capsys.readouterr().err
    assert main(["ingest", "--org", ORG, "--dataset", "nope", str(path)], env) == 2
    assert "no dataset 'nope' in the catalogue" in capsys.readouterr().err
    entries = list(AuditLog(fed / "audit" / f"{ORG}.jsonl").entries())
    assert {e["user"] for e in entries if e["action"] == "ingest"} == {"cli.user"}


# -- Hypothesis: malformed rows through the whole ingest --------------------------------

cell = st.text(alphabet=st.sampled_from([*list('9Y0a-/,"\n ;'), "é"]), max_size=11)


@pytest.fixture(scope="module")
def shared(small_federation, tmp_path_factory):
    return node(small_federation, tmp_path_factory.mktemp("hyp"), ORG)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(rows=st.lists(st.lists(cell, min_size=9, max_size=12), min_size=1, max_size=12))
def test_every_generated_row_is_loaded_or_quarantined(shared, tmp_path, rows):
    """Random vaccination rows (wrong types, codes, field counts, quotes, line breaks): a
    clean error, or rows read = loaded + quarantined with every record read once."""
    header, _ = sample(store(shared, ORG), "vaccinations", 1)
    path = write_csv(tmp_path / "h.csv", header, rows)
    # a row of the header's width with only empty values is a blank line, not a row
    records_written = sum(1 for r in rows if any(r) or len(r) != len(header))
    try:
        report = run(shared, ORG, [path], dataset="vaccinations", dry_run=True, force=True)
    except FdpError:
        return
    t = report.total
    assert t.read == t.loaded + t.quarantined
    assert t.read + report.files[0].blank == len(rows)
    assert t.read == records_written


def test_fhir_resources_go_through_the_same_checks(small_federation, tmp_path):
    """A FHIR NDJSON export of a practice, Immunizations before Patients (references held
    until the Patients arrive), plus a broken line: loaded into an empty store."""
    from fdp_kernel.ingest.fhir_export import export_ndjson

    fed = node(small_federation, tmp_path / "fed")
    files = export_ndjson(store(small_federation, ORG), tmp_path / "fhir")
    for name in ("organisations", "gp_practices"):  # what patients refer to
        header, rows = sample(store(small_federation, ORG), name, 100)
        run(fed, ORG, [write_csv(tmp_path / f"{name}.csv", header, rows)], dataset=name)
    with open(files["vaccinations"], "a") as f:
        f.write('{"resourceType": "Immunization", "status": \n')
    order = [files["vaccinations"], files["ltc_registers"], files["patients"]]
    report = run(fed, ORG, order)
    original = {
        name: query(store(small_federation, ORG), f"SELECT count(*) FROM {name}")[0][0]
        for name in ("patients", "vaccinations", "ltc_registers")
    }
    counts = {}
    for fr in report.files:
        for name, c in fr.counts().items():
            assert c.read == c.loaded + c.quarantined
            counts[name] = counts.get(name, 0) + c.loaded
    assert counts == original
    (bad,) = quarantined(store(fed, ORG))
    lines = files["vaccinations"].read_text().splitlines()
    assert bad["source_line"] == len(lines) and bad["raw_format"] == "text"
    assert bad["reasons"].startswith("bad JSON")


def test_file_problems_stop_the_load_naming_file_and_line(fed, tmp_path):
    header, rows = vaccinations(fed, 2)
    rows[0][8] = "Bätch"
    latin = write_csv(tmp_path / "latin.csv", header, rows, encoding="cp1252")
    with pytest.raises(UsageError, match=r"latin\.csv line 2 \(byte offset \d+\).*--encoding"):
        run(fed, ORG, [latin], dataset="vaccinations")
    assert run(fed, ORG, [latin], dataset="vaccinations", encoding="cp1252").total.loaded == 2
    missing = write_csv(tmp_path / "missing.csv", header[:2], [r[:2] for r in rows])
    with pytest.raises(UsageError, match=r"missing\.csv line 1: missing required column"):
        run(fed, ORG, [missing], dataset="vaccinations")
    semi = write_csv(tmp_path / "semi.csv", header, rows, delimiter=";", encoding="cp1252")
    with pytest.raises(UsageError, match=r"semi\.csv line 1: found 1 column .* delimiter ';'"):
        run(fed, ORG, [semi], dataset="vaccinations")
    report = run(fed, ORG, [semi], dataset="vaccinations", delimiter=";", encoding="cp1252")
    assert report.replaced == {"vaccinations": 2}  # the same rows again: replaced, not added
