"""The fdp command line: help everywhere, clear errors, non-zero exit codes."""

from __future__ import annotations

import io

import pytest

from fdp_kernel.cli import build_parser, main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), environ={}, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def _commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", [None, *_commands()])
def test_every_command_has_help(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    code, _, _ = run(*argv)
    assert code == 0
    assert "usage: fdp" in capsys.readouterr().out


@pytest.mark.parametrize(
    "patients, message",
    [("abc", "not a number of patients"), ("1.5k2", "not a number"), ("12.5", "whole number")],
)
def test_bad_patient_counts_are_usage_errors(patients, message, tmp_path, capsys):
    code, _, _ = run("synth", "--out", str(tmp_path), "--patients", patients)
    assert code == 2
    assert message in capsys.readouterr().err


def test_patient_count_out_of_range(tmp_path):
    code, _, err = run("synth", "--out", str(tmp_path / "x"), "--patients", "5")
    assert code == 2
    assert "--patients must be a whole number from 200" in err
    assert not (tmp_path / "x" / "federation.yaml").exists()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run("synth", "-q", "--out", str(blocker / "fed"))
    assert code == 4
    assert "cannot write to" in err and "Choose another --out" in err


def test_existing_stores_need_force(tmp_path):
    assert run("synth", "-q", "--out", str(tmp_path), "--patients", "300")[0] == 0
    code, _, err = run("synth", "-q", "--out", str(tmp_path), "--patients", "300")
    assert code == 4
    assert "--force" in err
    assert run("synth", "-q", "--out", str(tmp_path), "--patients", "300", "--force")[0] == 0


def test_synth_reports_progress_and_where_it_wrote(tmp_path):
    code, out, err = run("synth", "--out", str(tmp_path), "--patients", "1k", "--seed", "3")
    assert code == 0
    assert "generating 1,000 patients (seed 3" in err
    assert "stores written" in err
    assert str(tmp_path / "federation.yaml") in out


def test_catalog_lists_datasets_and_columns():
    code, out, _ = run("catalog")
    assert code == 0 and "rtt_pathways" in out and "vaccinations" in out
    code, out, _ = run("catalog", "patients")
    assert code == 0 and "nhs_number" in out and "direct_identifier" in out
    code, _, err = run("catalog", "nope")
    assert code == 2 and "datasets are:" in err


def test_demo_refuses_to_overwrite_a_federation_that_is_not_synthetic(tmp_path):
    (tmp_path / "federation.yaml").write_text(
        "version: 1\nfederation: {name: real, synthetic: false}\norganisations:\n"
        "  - {code: RSA, name: Real trust, type: acute_trust, store: stores/RSA.duckdb}\n"
    )
    code, _, err = run("demo", "-q", "--out", str(tmp_path), "--patients", "300")
    assert code == 4
    assert "not a synthetic federation" in err


def test_audit_verify_names_the_first_tampered_entry_and_exits_non_zero(
    act_as, federation, tmp_path
):
    import shutil

    import fdp_kernel

    fed = shutil.copytree(federation, tmp_path / "fed")
    act_as("rsa.analyst", fed)
    ws = fdp_kernel.connect(purpose="elective_planning")
    ws.table("rtt_pathways")
    code, out, _ = run("audit", "verify", "--federation", str(fed))
    assert code == 0 and "0 with problems" in out
    code, out, _ = run("audit", "show", "--federation", str(fed), "--user", "rsa.analyst")
    assert code == 0 and "rsa.analyst" in out and "connect" in out
    log = fed / "audit" / "RSA.jsonl"
    lines = log.read_text().splitlines()
    lines[-1] = lines[-1].replace('"allow"', '"deny"')
    log.write_text("\n".join(lines) + "\n")
    code, out, _ = run("audit", "verify", "--federation", str(fed))
    assert code == 6
    assert f"line {len(lines)}" in out and "was altered" in out
