"""`fdp demo` end to end at a small size: federation, every report, transparency, index."""

from __future__ import annotations

import io
import json

import nbformat

from fdp_kernel.cli import main
from fdp_kernel.config import load_federation
from fdp_kernel.reports.html import find_external_resources
from tests.test_templates import TEMPLATES


def test_demo_builds_the_federation_runs_every_report_and_writes_the_index(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    monkeypatch.delenv("FDP_FEDERATION", raising=False)
    out, err = io.StringIO(), io.StringIO()
    data, reports = tmp_path / "data", tmp_path / "reports"
    code = main(
        ["demo", "-q", "--out", str(data), "--patients", "1500", "--reports", str(reports)],
        environ={},
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    index = reports / "index.html"
    assert out.getvalue().strip().endswith(str(index.resolve()))
    fed = load_federation(data)
    expected = {
        (path.stem, o.code)
        for path in TEMPLATES
        for o in fed.organisations.values()
        if o.org_type in nbformat.read(path, as_version=4).metadata["fdp"]["org_types"]
    }
    records = {
        (json.loads(p.read_text())["template"], json.loads(p.read_text())["org"])
        for p in (reports / "demo").glob("*/*.json")
    }
    assert records == expected
    page = index.read_text()
    assert 'class="tag failed"' not in page and 'class="tag incomplete"' not in page
    assert page.count('class="tag ok"') == len(expected)
    assert 'href="transparency/index.html"' in page
    assert (reports / "transparency" / "index.html").exists()
    assert find_external_resources(page) == []
