"""The report pipeline end to end: real papermill runs of tiny templates in report_templates/.

No mocks of papermill: each run starts a real kernel (about a second). Spies only check
that papermill is *not* reached when parameters are wrong.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path

import nbformat
import pytest

from fdp_kernel import __version__
from fdp_kernel.cli.report import add_report_parser, run_report_command
from fdp_kernel.errors import ConfigError, FdpError, UsageError
from fdp_kernel.governance.keys import create_key, derive, read_key
from fdp_kernel.reports.html import find_external_resources
from fdp_kernel.reports.params import coerce, load_template, parse_parameters, resolve
from fdp_kernel.reports.provenance import SecretScanner, federation_secrets
from fdp_kernel.reports.schedule import ensure_kernel

TEMPLATES = Path(__file__).parent / "report_templates"


def fdp(*argv: str) -> tuple[int, str, str]:
    """``fdp report ...`` as the lead's ``fdp_kernel.cli.main`` runs it: (code, out, err)."""
    parser = argparse.ArgumentParser(prog="fdp")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true")
    add_report_parser(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["report", *argv])
    args.environ = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        code = run_report_command(args, out, err)
    except FdpError as exc:
        print(f"fdp report: error: {exc}", file=err)
        code = exc.exit_code
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """An empty working folder with no federation in sight; reports go to ./reports."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FDP_FEDERATION", raising=False)
    return tmp_path


def run(*argv: str) -> tuple[int, str, str]:
    return fdp(*argv, "--templates", str(TEMPLATES), "--out", "reports")


def record(work: Path, run_name: str, org: str, template: str) -> dict:
    return json.loads((work / "reports" / run_name / org / f"{template}.json").read_text())


# --- parameters: parsed with ast, validated before any kernel --------------------------

FULL = """\
org: str = "RSA"  # ODS code of the organisation
as_of: str = "2026-10-31"  # Reference date [type: date]
months: int = 12  # Months of history [allowed: 3, 6, 12, 24]
scale: float = 1  # Multiplier
flag: bool = False  # A switch
region: str = 'north'  # Region [allowed: north, "south"]
"""


def test_declarations_of_every_type_are_parsed():
    params = parse_parameters(FULL)
    assert {n: p.type for n, p in params.items()} == {
        "org": "str",
        "as_of": "date",
        "months": "int",
        "scale": "float",
        "flag": "bool",
        "region": "str",
    }
    assert params["months"].allowed == (3, 6, 12, 24)
    assert params["region"].allowed == ("north", "south")
    assert params["scale"].default == 1.0 and isinstance(params["scale"].default, float)
    assert params["as_of"].description == "Reference date"
    template = load_template(TEMPLATES / "table_report.ipynb")
    assert [p.type for p in template.params.values()] == [
        *("str", "date", "int", "float", "bool", "str", "str")
    ]
    assert template.org_types == ("acute_trust",)
    assert template.title == "Test table report"


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("months", "6", 6),
        ("months", 24, 24),
        ("scale", "2.5", 2.5),
        ("scale", 3, 3.0),
        ("flag", "yes", True),
        ("flag", "false", False),
        ("as_of", "2026-02-28", "2026-02-28"),
        ("as_of", dt.date(2026, 2, 28), "2026-02-28"),  # YAML reads dates as dates
        ("region", "south", "south"),
    ],
)
def test_values_are_coerced_to_their_declared_type(name, given, expected):
    params = parse_parameters(FULL)
    value = coerce(params[name], given)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("x = 1", "only annotated"),
        ("x: int = 1", "no description"),
        ('x: int = "1"  # text for a number', "not a valid int"),
        ('d: date = "2026-01-01"  # a date', "the type must be"),
        ('d: str = "2026-02-30"  # a date [type: date]', "not a valid date"),
        ("m: int = 5  # months [allowed: 3, 6]", "not among"),
        ('api_token: str = ""  # a token', "looks like a secret"),
        ("import os", "only annotated"),
        ('x: str = "a"  # described [colour: red]', "unknown tag"),
    ],
)
def test_bad_declarations_are_refused(source, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_parameters(source)


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["-p", "month=6"], "unknown parameter 'month'"),
        (["-p", "months=six"], "months: 'six' is not a valid int"),
        (["-p", "months=5"], "months: 5 is not allowed; use one of 3, 6, 12, 24"),
        (["-p", "as_of=2026-02-30"], "as_of: '2026-02-30' is not a valid date"),
        (["-p", "scale=abc"], "not a valid float"),
        (["-p", "cumulative=maybe"], "not a valid bool"),
        (["-p", "region=east"], "not allowed; use one of north, south"),
        (["-p", "password=hunter2"], "looks like a secret"),
        (["-p", "months"], "write NAME=VALUE"),
    ],
)
def test_bad_parameters_are_rejected_before_any_kernel(work, monkeypatch, argv, problem):
    import papermill

    def no_papermill(*a, **k):
        raise AssertionError("papermill must not be reached")

    monkeypatch.setattr(papermill, "execute_notebook", no_papermill)
    t0 = time.perf_counter()
    code, _, err = run("run", "table_report", "--org", "RSA", *argv)
    assert code == 2, err
    assert problem in err
    if "unknown" in problem or "not allowed" in problem:
        assert "months (int, default 12; one of 3, 6, 12, 24): Months of history" in err
    assert not (work / "reports").exists()  # nothing written, no run folder
    assert time.perf_counter() - t0 < 1.5  # no kernel started


def test_list_shows_every_template_with_its_parameters(work):
    code, out, _ = fdp("list", "--templates", str(TEMPLATES))
    assert code == 0
    for name in ("table_report", "failing", "leaky", "sleepy"):
        assert f"{name}: " in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("months"))
    assert re.search(r"months\s+int\s+12\s+3, 6, 12, 24\s+Months of history", line)
    assert re.search(r"as_of\s+date\s+'2026-10-31'", out)


# --- running ------------------------------------------------------------------------


def test_kernel_python3_runs_this_environment():
    assert ensure_kernel() in ("ok", "installed")


def test_run_writes_notebook_html_and_status_with_provenance(work):
    code, out, err = run(
        "run", "table_report", "--org", "rsb", "-p", "months=6", "-p", "cumulative=true",
        "-p", "as_of=2026-09-30", "--run", "r1",
    )  # fmt: skip
    assert code == 0, err
    folder = work / "reports" / "r1" / "RSB"
    assert out.strip() == str(folder / "table_report.html")
    assert sorted(p.name for p in folder.iterdir()) == [
        "table_report.html",
        "table_report.ipynb",
        "table_report.json",
    ]
    rec = record(work, "r1", "RSB", "table_report")
    assert rec["status"] == "ok"
    params = {"org": "RSB", "as_of": "2026-09-30", "months": 6, "scale": 1.5}
    assert rec["params"] == params | {"cumulative": True, "region": "north", "label": "count"}
    prov = rec["provenance"]
    template_bytes = (TEMPLATES / "table_report.ipynb").read_bytes()
    assert prov["template_sha256"] == hashlib.sha256(template_bytes).hexdigest()
    assert prov["template"] == "table_report" and prov["parameters"] == rec["params"]
    assert prov["fdp_version"] == __version__
    assert re.fullmatch(r"[0-9a-f]{4,40}(-dirty)?|unknown", prov["git_revision"])
    started = dt.datetime.fromisoformat(prov["run_at"])
    assert dt.datetime.fromisoformat(prov["finished_at"]) >= started
    assert 0 < prov["seconds"] < 60
    assert prov["workspace"]["user"] == "test.user"  # read back from provenance.show()
    assert prov["workspace"]["org"] == "RSB"
    for name, digest in rec["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    nb = nbformat.read(folder / "table_report.ipynb", as_version=4)
    assert nb.metadata["fdp"]["provenance"] == prov
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert "months = 6" in injected[0].source
    page = (folder / "table_report.html").read_text()
    assert find_external_resources(page) == []
    assert "RSB (north): 6 months to 2026-09-30" in page  # real work: pandas, cumulative
    assert ">31.5<" in page  # 1.5 + 3 + ... + 9 (running total of six months)
    assert prov["template_sha256"] in page and "Provenance" in page


def test_a_failing_report_in_a_schedule_does_not_stop_the_others(work):
    schedule = work / "nightly.yaml"
    schedule.write_text(
        "run: nightly\n"
        "reports:\n"
        "  - template: table_report\n"
        "    orgs: [RSA, RSC]\n"
        "    params: {months: 3, as_of: 2026-06-30}\n"
        "  - template: failing\n"
        "    orgs: RSB\n"
    )
    code, out, err = run("schedule", str(schedule), "--jobs", "2")
    assert code == 1
    assert "1 of 3 reports failed" in err
    assert "RSB failing: cell 3 (if fail:): ValueError: boom from the test template" in err
    assert len(re.findall(r"^\[\d/3\] (ok    |FAILED) ", err, re.M)) == 3
    assert "3 reports in" in err and "2 ok, 1 failed" in err
    base = work / "reports" / "nightly"
    for org in ("RSA", "RSC"):
        assert record(work, "nightly", org, "table_report")["status"] == "ok"
        assert (base / org / "table_report.html").exists()
    failed = record(work, "nightly", "RSB", "failing")
    assert failed["status"] == "failed"
    assert failed["error"]["cell"] == 3 and failed["error"]["source"] == "if fail:"
    assert failed["error"]["ename"] == "ValueError"
    assert (base / "RSB" / "failing.failed.ipynb").exists()
    assert not (base / "RSB" / "failing.html").exists()

    index = work / "reports" / "index.html"
    assert out.strip() == str(index)
    page = index.read_text()
    assert find_external_resources(page) == []
    assert 'href="nightly/RSA/table_report.html"' in page
    assert 'href="nightly/RSC/table_report.html"' in page
    assert 'href="nightly/RSB/failing.failed.ipynb"' in page
    assert page.count('class="tag ok"') == 2 and page.count('class="tag failed"') == 1
    assert "ValueError: boom from the test template" in page
    assert "months=3" in page


def test_schedule_problems_are_all_listed_before_anything_runs(work):
    schedule = work / "bad.yaml"
    schedule.write_text(
        "reports:\n"
        "  - {template: table_report, orgs: [RSA], params: {months: 5}}\n"
        "  - {template: nowhere, orgs: [RSA]}\n"
        "  - {template: failing, orgs: [RSA, RSA]}\n"
    )
    code, _, err = run("schedule", str(schedule))
    assert code == 3
    assert "months: 5 is not allowed" in err and "no template 'nowhere'" in err
    assert "listed twice" in err
    assert not (work / "reports").exists()


def test_rerun_with_the_same_name_is_idempotent(work):
    assert run("run", "failing", "--org", "RSA", "--run", "same")[0] == 1
    folder = work / "reports" / "same" / "RSA"
    assert sorted(p.name for p in folder.iterdir()) == ["failing.failed.ipynb", "failing.json"]
    for _ in range(2):
        code, _, err = run("run", "failing", "--org", "RSA", "--run", "same", "-p", "fail=no")
        assert code == 0, err
        assert sorted(p.name for p in folder.iterdir()) == [
            "failing.html",
            "failing.ipynb",
            "failing.json",
        ]
        assert record(work, "same", "RSA", "failing")["status"] == "ok"
    page = (work / "reports" / "index.html").read_text()
    assert page.count('href="same/RSA/failing.html"') == 1


def test_timeout_stops_a_hung_cell_and_the_run_ends(work):
    t0 = time.perf_counter()
    code, _, err = run(
        "run", "sleepy", "--org", "RSA", "-p", "seconds=120", "--timeout", "2", "--run", "t"
    )
    assert code == 1
    assert time.perf_counter() - t0 < 30
    assert "cell 2 (import time): timed out: no result after 2 s" in err
    assert record(work, "t", "RSA", "sleepy")["error"]["kind"] == "timeout"


def test_a_crash_between_writes_leaves_no_finished_looking_report(work, monkeypatch):
    assert run("run", "table_report", "--org", "RSA", "--run", "a")[0] == 0
    folder = work / "reports" / "a" / "RSA"
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith("table_report.html"):
            raise OSError(28, "No space left on device")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    code, _, err = run("run", "table_report", "--org", "RSA", "--run", "a")
    assert code == 4, err  # StoreError
    assert "No space left on device" in err
    assert not (folder / "table_report.html").exists()
    assert not (folder / "table_report.ipynb").exists()  # the new one was withdrawn too
    assert record(work, "a", "RSA", "table_report")["status"] == "failed"
    assert not list(folder.glob(".*partial"))
    assert 'class="tag ok"' not in (work / "reports" / "index.html").read_text()

    # A kill after both renames but before the status record: files no record vouches for.
    monkeypatch.setattr(os, "replace", real_replace)
    from fdp_kernel.reports import runner

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(runner, "write_record", killed)
    with pytest.raises(Killed):
        run("run", "table_report", "--org", "RSA", "--run", "a")
    assert (folder / "table_report.html").exists()
    assert not (folder / "table_report.json").exists()
    page = (work / "reports" / "index.html").read_text()
    assert 'class="tag incomplete"' in page and 'class="tag ok"' not in page


# --- the secret guard -----------------------------------------------------------------


@pytest.fixture
def keyed_federation(tmp_path) -> Path:
    root = tmp_path / "fed"
    (root / "keys").mkdir(parents=True)
    for name in ("RSA", "link"):
        create_key(root / "keys" / f"{name}.key")
    (root / "federation.yaml").write_text(
        "version: 1\n"
        "federation: {name: test}\n"
        "organisations:\n"
        "  - {code: RSA, name: Trust, type: acute_trust, store: s/RSA.duckdb, key: keys/RSA.key}\n"
        "  - {code: QSY, name: ICB, type: icb, store: s/QSY.duckdb}\n"
        "purposes:\n"
        "  - {id: plan, name: Planning, kind: planning, level: aggregate,\n"
        "     datasets: {organisations: all}, legal_basis: test}\n"
        "agreements:\n"
        "  - {id: dsa1, providers: [RSA], recipients: [QSY], purpose: plan, level: aggregate,\n"
        "     datasets: {organisations: all}, legal_basis: test, valid_from: 2026-01-01,\n"
        "     valid_to: 2027-01-01, key: keys/link.key}\n"
    )
    return root


def test_secret_scanner_finds_every_key_and_its_derivations(keyed_federation):
    node = read_key(keyed_federation / "keys" / "RSA.key", owner="RSA")
    link = read_key(keyed_federation / "keys" / "link.key", owner="link")
    scanner = SecretScanner(federation_secrets(keyed_federation / "federation.yaml"))
    assert scanner.count == 6  # node key, its purpose key (inner, outer), agreement key x3
    purpose = derive(node, "purpose:plan")
    agreement = derive(link, "agreement:dsa1")
    assert scanner.find(f"x={node.hex().upper()}") == "the pseudonymisation key of node RSA"
    assert scanner.find(f"'{purpose.outer}'") == "the derived key purpose:plan of node RSA"
    assert scanner.find(agreement.inner[10:30]) == "the derived key agreement:dsa1"
    assert scanner.find(base64.b64encode(link).decode()) == "the linkage key of agreement dsa1"
    assert scanner.find(str(node)) is not None  # bytes repr
    assert scanner.find(purpose.pseudonym("9434765919")) is None  # pseudonyms are fine
    assert scanner.find(hashlib.sha256(b"unrelated").hexdigest()) is None
    assert scanner.find_in({"cells": [{"outputs": [{"text": node.hex()[:16]}]}]})


def test_a_report_that_prints_a_key_is_refused_and_nothing_is_saved(
    work, keyed_federation, monkeypatch
):
    key = (keyed_federation / "keys" / "RSA.key").read_text().strip()
    monkeypatch.setenv("FDP_TEST_LEAK", f"key={key}")  # the template prints it
    code, _, err = run(
        "run", "leaky", "--org", "RSA", "--federation", str(keyed_federation), "--run", "x"
    )
    assert code == 5, err  # GovernanceError
    assert "cell 2 (import os) shows the pseudonymisation key of node RSA; nothing was saved" in err
    folder = work / "reports" / "x" / "RSA"
    assert sorted(p.name for p in folder.iterdir()) == ["leaky.json"]
    assert record(work, "x", "RSA", "leaky")["error"]["kind"] == "secret"
    for path in (work / "reports").rglob("*"):
        if path.is_file():
            assert key not in path.read_text(), path

    # A key passed as a parameter value (here a derived purpose key) is caught too.
    purpose_key = derive(bytes.fromhex(key), "purpose:plan").inner
    code, _, err = run(
        "run", "table_report", "--org", "RSA", "-p", f"label={purpose_key}",
        "--federation", str(keyed_federation), "--run", "y",
    )  # fmt: skip
    assert code == 5
    assert "the injected-parameters cell shows the derived key purpose:plan of node RSA" in err
    assert record(work, "y", "RSA", "table_report")["params"] == {}
    for path in (work / "reports").rglob("*"):
        if path.is_file():
            assert purpose_key not in path.read_text(), path
    with pytest.raises(UsageError, match="looks like a secret"):
        resolve(load_template(TEMPLATES / "leaky.ipynb"), "RSA", {"secret_key": key})


def test_organisations_are_checked_against_the_federation_first(work, keyed_federation):
    fed = ("--federation", str(keyed_federation))
    code, _, err = run("run", "table_report", "--org", "RSB", *fed)
    assert code == 2 and "RSB is not in the federation" in err and "organisations: RSA, QSY" in err
    code, _, err = run("run", "table_report", "--org", "QSY", *fed)
    assert code == 2
    assert "table_report is for acute_trust organisations and QSY is of type icb" in err
    assert "it suits: RSA" in err
    code, _, err = run("run", "table_report", "--org", "R$A")
    assert code == 2 and "not an ODS code" in err
    assert not (work / "reports").exists()
