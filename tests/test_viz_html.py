"""Charts (fdp_kernel.viz) and offline HTML reports (fdp_kernel.reports.html).

The end-to-end test executes a real notebook in the venv's ``python3`` kernel, exports it
and opens the page in headless Chromium with the network blocked (tests/browser.py).
"""

from __future__ import annotations

import base64
import re
import stat
import sys
from pathlib import Path

import altair as alt
import nbclient
import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from fdp_kernel import viz
from fdp_kernel.errors import UsageError
from fdp_kernel.reports.html import export_html, find_external_resources, write_html
from tests.browser import render, require_browser

REPO = Path(__file__).resolve().parents[1]
TITLE = "Elective recovery: waiting list"
SECRET = "parameter-value-7f3a"  # injected by "papermill"; must not reach the page

CHARTS_CELL = """\
import sys
import pandas as pd
from fdp_kernel import viz

viz.use_nhs_theme()
viz.use_offline_renderer()
df = pd.DataFrame({
    "treatment_function": ["General Surgery", "Urology", "ENT", "Cardiology"],
    "within_18_weeks": pd.array([0.95, 0.88, None, 0.93], dtype="Float64"),
    "pathways": pd.array([120, 85, pd.NA, 40], dtype="Int64"),
})
source = "RSA rtt_pathways as at 2026-10-31"
display(viz.bar(df, "treatment_function", "within_18_weeks", title="Within 18 weeks",
                source=source, target=0.92, target_label="92% standard",
                value_format=".0%", breach="below"))
display(viz.pareto(df, "treatment_function", "pathways", title="Open pathways",
                   source=source))
"""


def _notebook() -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell("# Waiting list\n\nHow long patients have waited."),
        new_code_cell(f'token = "{SECRET}"', metadata={"tags": ["injected-parameters"]}),
        new_code_cell(CHARTS_CELL),
        new_code_cell("print(sys.prefix)", metadata={"tags": ["remove-output"]}),
        new_code_cell("df.rename(columns=str.upper)"),
    ]
    meta = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "papermill": {"parameters": {"token": SECRET}},
    }
    return new_notebook(cells=cells, metadata=meta)


@pytest.fixture(scope="module")
def executed() -> nbformat.NotebookNode:
    """The notebook, run for real in the ``python3`` kernel (about 2-3 s)."""
    nb = _notebook()
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}
    )
    client.execute()
    return nb


@pytest.fixture(scope="module")
def page(executed) -> str:
    provenance = {
        "organisation": "Royal Sample NHS Trust (RSA)",
        "run_at": "2026-11-02 09:00 UTC",
        "template": "templates/elective_recovery.ipynb",
        "parameters": {"as_of": "2026-10-31"},
    }
    return export_html(executed, title=TITLE, subtitle="RTT", provenance=provenance)


@pytest.fixture
def theme():
    """Restore Altair's global theme and renderer after a test that changes them."""
    active, renderer = alt.theme.active, alt.renderers.active
    yield
    alt.theme.enable(active)
    alt.renderers.enable(renderer)


# --- the end-to-end report --------------------------------------------------------------


def test_kernel_is_the_venv_python(executed):
    printed = executed.cells[3].outputs[0]["text"].strip()
    assert printed == sys.prefix  # nbclient ran this venv's ipykernel, not another Python


def test_page_is_self_contained(page):
    assert page.startswith("<!doctype html>")
    assert find_external_resources(page) == []
    assert "<script" not in page.lower()
    assert not re.search(r"<link[^>]+href", page, re.I)
    assert f"<title>{TITLE} – RTT</title>" in page
    assert f"<h1>{TITLE}</h1>" in page
    assert "default-src &#x27;none&#x27;" in page or "default-src 'none'" in page


def test_page_has_no_code_parameters_or_metadata(page):
    for code in ("import pandas", "viz.use_offline_renderer()", "print(sys.prefix)", "token ="):
        assert code not in page
    assert SECRET not in page
    assert "papermill" not in page
    assert sys.prefix not in page  # remove-output tag honoured


def test_page_has_both_charts_as_inline_svg_with_captions(page):
    assert page.count("<svg") == 2
    assert "data:image/svg+xml" not in page  # inline, not an <img>
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # clip-path ids made unique across charts
    caption = "Title text 'Source: RSA rtt_pathways as at 2026-10-31. Counts of 1-7 suppressed"
    assert page.count(caption) == 2  # the caption, also as the SVG's ARIA label
    assert page.count("1 category suppressed.") == 4  # drawn text + ARIA label, per chart
    assert "GENERAL SURGERY" not in page and "TREATMENT_FUNCTION" in page  # the table
    assert "Royal Sample NHS Trust (RSA)" in page and "as_of = 2026-10-31" in page


def test_page_draws_in_chromium_with_the_network_blocked(page, tmp_path):
    require_browser()
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    shot = tmp_path / "report.png"
    result = render(path, shot)
    assert result.title == f"{TITLE} – RTT"
    assert len(result.svgs) == 2 and result.charts_drawn == 2
    assert all(s.marks > 0 for s in result.svgs)
    assert result.blocked == [] and result.requested == []
    assert result.console_errors == [] and result.page_errors == []
    assert shot.stat().st_size > 10_000


def test_browser_harness_sees_and_blocks_network_requests(tmp_path):
    """Control: a page that does fetch is caught, so 'no requests' above means something."""
    require_browser()
    path = tmp_path / "leaky.html"
    path.write_text(
        '<!doctype html><title>leaky</title><img src="http://example.org/a.png">'
        '<link rel="stylesheet" href="https://cdn.example.org/x.css">'
        '<svg width="10" height="10"><rect width="10" height="10"/></svg>',
        encoding="utf-8",
    )
    result = render(path, tmp_path / "leaky.png")
    seen = set(result.blocked) | set(result.requested)
    assert {"http://example.org/a.png", "https://cdn.example.org/x.css"} <= seen
    assert result.charts_drawn == 1


def test_export_accepts_a_path_and_write_html_is_atomic(executed, tmp_path):
    src = tmp_path / "run.ipynb"
    nbformat.write(executed, src)
    out = write_html(src, tmp_path / "out" / "report.html", title="From a path")
    assert out.read_text(encoding="utf-8").count("<svg") == 2
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temp file left
    assert stat.S_IMODE(out.stat().st_mode) & 0o044  # readable like any published file


def test_write_html_refuses_a_page_that_loads_from_the_network(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("![logo](https://example.org/logo.png)")])
    target = tmp_path / "report.html"
    with pytest.raises(UsageError, match=r"example\.org/logo\.png"):
        write_html(nb, target, title="Leaky")
    assert list(tmp_path.iterdir()) == []


def test_vega_outputs_become_svg_and_scripts_are_dropped(theme):
    viz.use_nhs_theme()
    chart = alt.Chart(pd.DataFrame({"a": [1, 2]})).mark_bar().encode(x="a:O", y="a:Q")
    alt.renderers.enable("html")  # the CDN-loading renderer an analyst might leave on
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    outputs = [
        nbformat.v4.new_output("display_data", data=bundle),
        nbformat.v4.new_output("display_data", data={"application/vnd.vegalite.v6+json":
                                                     chart.to_dict()}),
        nbformat.v4.new_output("display_data", data={"application/javascript": "alert(1)"}),
        nbformat.v4.new_output("stream", name="stderr", text="a warning\n"),
    ]  # fmt: skip
    cell = new_code_cell("chart", outputs=outputs)
    page = export_html(new_notebook(cells=[cell]), title="Converted")
    assert page.count("<svg") == 2
    assert "<script" not in page and "alert(1)" not in page and "a warning" not in page
    assert find_external_resources(page) == []


# --- find_external_resources ------------------------------------------------------------

_B64_HTML = base64.b64encode(b'<img src="https://inner.example/x.png">').decode()


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ('<script src="https://cdn.example/v.js"></script>', "https://cdn.example/v.js"),
        ('<link rel="stylesheet" href="http://x.example/s.css">', "http://x.example/s.css"),
        ("<img src='//cdn.example/a.png'>", "//cdn.example/a.png"),
        ("<img SRC=https://x.example/a.png>", "https://x.example/a.png"),
        ('<img srcset="a.png 1x, https://x.example/b.png 2x">', "https://x.example/b.png"),
        ('<a href="&#104;ttps://x.example/">x</a>', "https://x.example/"),
        ('<svg><image xlink:href="https://x.example/i.png"/></svg>', "https://x.example/i.png"),
        ('<object data="https://x.example/o.svg"></object>', "https://x.example/o.svg"),
        ('<div style="background:url(https://x.example/bg.png)">', "https://x.example/bg.png"),
        ("<style>p{background:url( '//cdn.example/f.woff' )}</style>", "//cdn.example/f.woff"),
        ('<style>@import "https://x.example/i.css";</style>', "https://x.example/i.css"),
        ("<style>@import url(//x.example/j.css);</style>", "//x.example/j.css"),
        ('<script>s.src = "https://cdn.example/vega@6";</script>', "https://cdn.example/vega@6"),
        (f'<iframe src="data:text/html;base64,{_B64_HTML}">', "https://inner.example/x.png"),
    ],
)
def test_find_external_resources_catches(html, expected):
    assert find_external_resources(html) == [expected]


@pytest.mark.parametrize(
    "html",
    [
        '<svg xmlns="http://www.w3.org/2000/svg"><g clip-path="url(#clip1)"></g></svg>',
        '<a href="#main">skip</a><use href="#glyph"/><img src="data:image/png;base64,AAAA">',
        "<p>See https://www.england.nhs.uk/ for the guidance.</p>",
        '<img src="chart.png" data-note="https://x.example/">',
    ],
)
def test_find_external_resources_ignores_local_and_text(html):
    assert find_external_resources(html) == []


def test_find_external_resources_can_ignore_plain_links():
    html = '<a href="https://www.nhs.uk/">NHS</a><img src="https://x.example/a.png">'
    assert find_external_resources(html) == ["https://www.nhs.uk/", "https://x.example/a.png"]
    assert find_external_resources(html, include_links=False) == ["https://x.example/a.png"]


# --- viz --------------------------------------------------------------------------------


def test_suppression_note():
    rule = "Counts of 1-7 suppressed (*), others rounded to the nearest 5"
    assert viz.suppression_note(2) == f"{rule}; 2 categories suppressed."
    assert viz.suppression_note(1) == f"{rule}; 1 category suppressed."
    assert viz.suppression_note(0) == f"{rule}; no categories suppressed."
    assert viz.suppression_note(3, noun="band").endswith("; 3 bands suppressed.")
    assert viz.suppression_note(0, min_count=1, rounding_base=1).startswith("No suppression")
    assert viz.suppression_note(1, min_count=10, rounding_base=1) == (
        "Counts of 1-9 suppressed (*); 1 category suppressed."
    )
    for bad in (-1, 1.5, True, None):
        with pytest.raises(UsageError):
            viz.suppression_note(bad)


def _rows(chart: alt.TopLevelMixin, field: str) -> list[dict]:
    """Rows of the chart's dataset(s) that have ``field``."""
    spec = chart.to_dict()
    return [r for rows in spec["datasets"].values() for r in rows if field in r]


def _caption(chart: alt.VConcatChart) -> str:
    return " ".join(chart.to_dict()["vconcat"][0]["title"]["text"])


RELEASED = pd.DataFrame(
    {
        "org": ["RXA", "RXB", "RXC", "RXD"],
        "count": pd.array([40, pd.NA, 15, pd.NA], dtype="Int64"),
        "week": [0, 1, 2, 3],
    }
)


def test_bar_drops_suppressed_values_and_says_so():
    chart = viz.bar(RELEASED, "org", "count", title="Pathways", source="test data")
    assert [r["org"] for r in _rows(chart, "count")] == ["RXA", "RXC"]
    assert "Source: test data. Counts of 1-7" in _caption(chart)
    assert "2 categories suppressed." in _caption(chart)
    assert chart.to_dict()["title"] == ["Pathways"]


def test_bar_target_and_breach_layers():
    chart = viz.bar(
        RELEASED, "org", "count", title="T", source="s", target=20, breach="below",
        horizontal=True, target_label="Plan",
    )  # fmt: skip
    spec = chart.to_dict()
    layers = spec["vconcat"][0]["layer"]
    assert [layer["mark"]["type"] for layer in layers] == ["bar", "rule", "text"]
    assert layers[0]["encoding"]["color"]["condition"]["value"] == viz.EMERGENCY_RED
    assert any(r.get("label") == "Plan" for r in _rows(chart, "label"))
    with pytest.raises(UsageError):
        viz.bar(RELEASED, "org", "count", title="T", source="s", breach="below")


def test_line_keeps_the_gap_as_null_and_counts_points():
    chart = viz.line(RELEASED, "week", "count", title="Trend", source="s", target=30)
    assert [r["count"] for r in _rows(chart, "count")] == [40, None, 15, None]
    assert "2 points suppressed." in _caption(chart)


def test_histogram_bands_and_pareto():
    hist = viz.histogram_bands(RELEASED, "week", "count", title="Weeks", source="s")
    assert [r["week"] for r in _rows(hist, "band_end")] == [0, 2]
    assert [r["label"] for r in _rows(hist, "label")] == ["18 wks", "52 wks", "65 wks", "78 wks"]
    assert "2 bands suppressed." in _caption(hist)
    with pytest.raises(UsageError, match="one row per"):
        viz.histogram_bands(pd.concat([RELEASED, RELEASED]), "week", "count", title="W", source="s")
    par = viz.pareto(RELEASED, "org", "count", title="Pareto", source="s")
    rows = _rows(par, "cumulative_share")
    assert [r["org"] for r in rows] == ["RXA", "RXC"]
    assert [round(r["cumulative_share"], 3) for r in rows] == [0.727, 1.0]


def test_star_marks_count_as_suppressed_and_bad_input_is_refused():
    frame = pd.DataFrame({"org": ["A", "B"], "count": ["*", "10"]})
    chart = viz.bar(frame, "org", "count", title="T", source="s")
    assert [r["org"] for r in _rows(chart, "count")] == ["B"]
    with pytest.raises(UsageError, match="no column"):
        viz.bar(frame, "org", "missing", title="T", source="s")
    with pytest.raises(UsageError, match="needs a source"):
        viz.bar(frame, "org", "count", title="T", source=" ")


def test_theme_and_offline_renderer(theme):
    viz.use_nhs_theme()
    viz.use_offline_renderer()
    assert alt.theme.active == "nhs" and alt.renderers.active == "svg"
    config = viz.nhs_theme()["config"]
    assert config["range"]["category"][0] == viz.NHS_BLUE
    assert viz.EMERGENCY_RED not in config["range"]["category"]
    assert config["title"]["anchor"] == "start"
    chart = viz.bar(RELEASED, "org", "count", title="T", source="s")
    bundle = chart._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert bundle["image/svg+xml"].lstrip().startswith("<svg")
