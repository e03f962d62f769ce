"""Export an executed notebook to one self-contained HTML page that needs no network.

nbconvert's ``basic`` template gives a bare fragment (the ``lab``/``classic`` templates load
MathJax, require.js and mermaid from a public CDN); we hide code inputs and prompts and wrap
the fragment in our own NHS-styled page: header bar (title, organisation, run time), body,
provenance footer, inline CSS only.

Charts are static SVG, never interactive Vega. ``viz.use_offline_renderer()`` makes the
kernel store SVG; any Vega-Lite/Vega JSON output left in the notebook is converted here with
vl-convert (offline). Why not inline ``vl_convert.javascript_bundle()`` for interactivity:
~1 MB of JavaScript per page against ~20 kB per SVG chart; SVG draws with JavaScript off,
is deterministic (diffable, nbval-stable), readable by screen readers (Vega writes ARIA
labels) and leaves the page with no script at all, so a strict Content-Security-Policy
(``default-src 'none'``) can forbid every fetch, and ``find_external_resources`` need not
whitelist a bundle full of URLs. JavaScript and widget outputs are dropped.

Only outputs reach the page: code inputs are removed, cell and notebook metadata dropped,
the ``parameters``/``injected-parameters`` cells removed, stderr streams dropped (warnings
and logs are not report content). Cells tagged ``remove-cell`` vanish; ``remove-output``
drops a cell's outputs. Parameter values therefore appear only where the template shows
them. Stripping secrets from outputs is not done here.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import html
import itertools
import json
import os
import re
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat
from jinja2 import DictLoader
from nbconvert import HTMLExporter

from fdp_kernel.errors import UsageError

NotebookLike = nbformat.NotebookNode | Mapping[str, Any] | str | os.PathLike[str]

HEADER_KEYS = ("organisation", "run_at")  # provenance keys also shown in the header bar
_DROP_CELL_TAGS = {"remove-cell", "parameters", "injected-parameters"}
_DROP_MIMETYPES = {"application/javascript", "application/vnd.jupyter.widget-view+json"}
_VEGA = re.compile(r"application/vnd\.(vega|vegalite)\.v\d+(?:\.\d+)*\+json")
_SVG_REF = re.compile(r'(\bid=")([^"]+)(")|(url\(#)([^)\s]+)(\))|(href="#)([^"]+)(")')

# Our template: basic, with SVG put inline (nbconvert would base64 it into <img>, or run
# it through bleach, which strips SVG) and no script-bearing outputs.
_TEMPLATE = """{%- extends 'basic/index.html.j2' -%}
{% block data_svg scoped -%}
<div class="output_svg output_subarea {{ extra_class }}">{{ output.data['image/svg+xml'] }}</div>
{%- endblock data_svg %}
{% block data_javascript scoped %}{% endblock data_javascript %}
{% block data_widget_view scoped %}{% endblock data_widget_view %}
"""

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "base-uri 'none'; form-action 'none'"
)

_CSS = """
:root{--blue:#005EB8;--dark-blue:#003087;--text:#212B32;--grey:#425563;--pale:#E8EDEE;
--bg:#F0F4F5;--border:#D8DDE0;--red:#DA291C}*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}body{margin:0;background:var(--bg);color:var(--text);
font:16px/1.5 Arial,"Liberation Sans",Helvetica,sans-serif}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:#FFEB3B;padding:4px}
.wrap{max-width:1000px;margin:0 auto;padding:0 24px}
header.banner{background:var(--blue);color:#fff;padding:20px 0 24px}
header.banner .org{margin:0 0 4px;font-size:15px;font-weight:bold;opacity:.95}
header.banner h1{margin:0;font-size:32px;line-height:1.2}
header.banner .subtitle{margin:6px 0 0;font-size:19px}
header.banner .meta{margin:10px 0 0;font-size:14px;opacity:.9}
main.report{max-width:1000px;margin:24px auto;background:#fff;padding:24px 40px 40px;
border-top:4px solid var(--blue)}
main h1{font-size:28px}main h2{font-size:24px;margin-top:36px}main h3{font-size:19px}
main h1,main h2,main h3{color:var(--text);line-height:1.25}main p,main li{max-width:44em}
a{color:var(--blue)}.anchor-link{display:none}.output_subarea{margin:12px 0;overflow-x:auto}
.output_svg svg,.output_png img,.output_jpeg img{max-width:100%;height:auto}
table.dataframe,.rendered_html table{border-collapse:collapse;margin:12px 0;font-size:15px;
font-variant-numeric:tabular-nums}table.dataframe,table.dataframe th,table.dataframe td{border:0}
table.dataframe th,table.dataframe td,.rendered_html th,.rendered_html td{padding:6px 12px;
border-bottom:1px solid var(--border);text-align:right;vertical-align:top}
table.dataframe thead th,.rendered_html thead th{border-bottom:2px solid var(--grey);
text-align:left;vertical-align:bottom}
table.dataframe tbody th{text-align:left;font-weight:normal;color:var(--grey)}
table.dataframe tbody tr:nth-child(even){background:#F8FAFB}
pre{background:var(--bg);padding:8px 12px;font-size:13px;white-space:pre-wrap;margin:8px 0}
.output_error pre,.output_stderr pre{border-left:4px solid var(--red)}
footer.provenance{max-width:1000px;margin:0 auto 32px;padding:16px 40px;background:var(--pale);
color:var(--grey);font-size:14px}
footer.provenance h2{font-size:16px;margin:0 0 8px;color:var(--text)}
footer.provenance dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:0}
footer.provenance dt{font-weight:bold}footer.provenance dd{margin:0;overflow-wrap:anywhere}
footer.provenance .note{margin:10px 0 0}
@media print{body{background:#fff}main.report{margin:0;padding:0 8px;border:0}
header.banner{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""

_PAGE = """<!doctype html>
<html lang="en-GB"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}"><meta name="generator" content="fdp">
<title>{title}</title>
<style>{css}</style></head>
<body><a class="skip" href="#main">Skip to the report</a>
<header class="banner"><div class="wrap">{org}<h1>{h1}</h1>{subtitle}{meta}</div></header>
<main class="report" id="main">
{body}
</main>
<footer class="provenance"><h2>Provenance</h2>{provenance}
<p class="note">Self-contained page: no scripts, nothing loaded from the network.</p></footer>
</body></html>
"""


def _load(notebook: NotebookLike) -> tuple[nbformat.NotebookNode, str]:
    """A private copy of the notebook and the folder its relative images resolve from."""
    if isinstance(notebook, str | os.PathLike):
        path = Path(notebook)
        return nbformat.read(path, as_version=4), str(path.parent)
    if isinstance(notebook, Mapping):
        return nbformat.from_dict(copy.deepcopy(dict(notebook))), ""
    raise UsageError(f"export_html takes a notebook or a path, not {type(notebook).__name__}")


def _unique_ids(svg: str, prefix: str) -> str:
    """Prefix the SVG's ids (and references to them) so inline charts cannot collide."""
    svg = re.sub(r"^\s*(<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|\s)*", "", svg)
    ids = set(re.findall(r'\bid="([^"]+)"', svg))

    def fix(m: re.Match[str]) -> str:
        for i in (0, 3, 6):
            if m.group(i + 1) is not None:
                name = m.group(i + 2)
                new = f"{prefix}{name}" if name in ids else name
                return f"{m.group(i + 1)}{new}{m.group(i + 3)}"
        return m.group(0)  # pragma: no cover - one alternative always matches

    return _SVG_REF.sub(fix, svg)


def _altair_html_spec(markup: str) -> tuple[str, dict[str, Any]] | None:
    """The spec inside Altair's ``html`` renderer output (``vegaEmbed`` from a CDN), if any.

    Outside JupyterLab, Altair's default renderer emits that markup; it draws nothing
    offline. Its script ends ``})(<spec>, {"mode": "vega-lite"});``.
    """
    if "vegaEmbed" not in markup:
        return None
    try:
        spec, end = json.JSONDecoder().raw_decode(markup, markup.rindex("})(") + 3)
        opts, _ = json.JSONDecoder().raw_decode(markup, markup.index("{", end))
    except ValueError as exc:
        msg = "an interactive chart that cannot be drawn offline: call viz.use_offline_renderer()"
        raise UsageError(msg) from exc
    return f"application/vnd.{opts.get('mode', 'vega-lite').replace('-', '')}.v6+json", spec


def _static(data: dict[str, Any]) -> dict[str, Any]:
    """An output's mime bundle with Vega specs drawn as SVG and script types dropped."""
    found = _altair_html_spec(str(data.get("text/html", "")))
    if found:
        data.setdefault(*found)
    for mime in [m for m in data if _VEGA.fullmatch(m)]:
        import vl_convert as vlc  # only when a notebook still holds a Vega spec

        spec = data.pop(mime)
        if "image/svg+xml" not in data:
            vega = _VEGA.fullmatch(mime).group(1) == "vega"  # type: ignore[union-attr]
            data["image/svg+xml"] = (vlc.vega_to_svg if vega else vlc.vegalite_to_svg)(spec)
        data.pop("text/html", None)  # Altair's html renderer: CDN-loading script
    return {k: v for k, v in data.items() if k not in _DROP_MIMETYPES}


def _prepare(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep only what a reader should see (see the module docstring)."""
    counter = itertools.count(1)
    cells = []
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if tags & _DROP_CELL_TAGS:
            continue
        raw = {k: v for k, v in cell.metadata.items() if k == "raw_mimetype"}  # raw cells
        cell.metadata = nbformat.NotebookNode(raw)
        if cell.cell_type == "code":
            cell.source, cell.execution_count = "", None
            outputs = [] if "remove-output" in tags else cell.outputs
            kept = []
            for out in outputs:
                if out.output_type == "stream" and out.get("name") == "stderr":
                    continue
                if "data" in out:
                    out.data = nbformat.NotebookNode(_static(dict(out.data)))
                    if "image/svg+xml" in out.data:
                        svg = out.data["image/svg+xml"]
                        svg = "".join(svg) if isinstance(svg, list) else svg
                        out.data["image/svg+xml"] = _unique_ids(svg, f"fdp{next(counter)}-")
                    if not out.data:
                        continue
                kept.append(out)
            cell.outputs = kept
        cells.append(cell)
    nb.cells = cells
    language = nb.metadata.get("language_info")
    nb.metadata = nbformat.NotebookNode({"language_info": language} if language else {})
    return nb


def _fragment(nb: nbformat.NotebookNode, folder: str) -> str:
    exporter = HTMLExporter(
        template_file="fdp_report.html.j2",
        extra_loaders=[DictLoader({"fdp_report.html.j2": _TEMPLATE})],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=bool(folder),  # markdown images beside the notebook become data: URIs
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": folder}})
    return body


def _key(key: object) -> str:
    text = str(key).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, Mapping):
        return "; ".join(f"{k} = {_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_text(v) for v in value)
    return str(value)


def export_html(
    notebook: NotebookLike,
    *,
    title: str,
    subtitle: str = "",
    provenance: Mapping[str, object] | None = None,
) -> str:
    """One self-contained, offline HTML page for an executed notebook (or its path).

    ``title`` heads the page; ``subtitle`` sits under it; ``provenance`` (template, parameters,
    data as at, code version, ...) is listed in the footer in order, and its
    ``"organisation"`` and ``"run_at"`` entries are also shown in the header bar.
    """
    if not title.strip():
        raise UsageError("a report needs a title")
    nb, folder = _load(notebook)
    body = _fragment(_prepare(nb), folder)
    prov = dict(provenance or {})
    esc = html.escape
    rows = "".join(f"<dt>{esc(_key(k))}</dt><dd>{esc(_text(v))}</dd>" for k, v in prov.items())
    org, run_at = (prov.get(k) for k in HEADER_KEYS)
    return _PAGE.format(
        csp=_CSP,
        title=esc(f"{title} – {subtitle}" if subtitle else title),
        css=_CSS.strip(),
        org=f'<p class="org">{esc(_text(org))}</p>' if org else "",
        h1=esc(title),
        subtitle=f'<p class="subtitle">{esc(subtitle)}</p>' if subtitle else "",
        meta=f'<p class="meta">Run {esc(_text(run_at))}</p>' if run_at else "",
        body=body.strip(),
        provenance=f"<dl>{rows}</dl>" if rows else "",
    )


def write_html(
    notebook: NotebookLike, path: str | os.PathLike[str], *, check_offline: bool = True, **kw: Any
) -> Path:
    """Export (``export_html(notebook, **kw)``) and write atomically to ``path``.

    Writes a temporary file in the same folder and renames it over ``path`` (``os.replace``),
    so readers never see half a page. With ``check_offline`` (the default) a page that would
    load anything from the network is refused (``UsageError``) and nothing is written.
    """
    page = export_html(notebook, **kw)
    if check_offline and (found := find_external_resources(page)):
        raise UsageError(f"report would load from the network: {found[:5]}; remove these")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(page)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; publish like any other file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


# --- the offline guard -------------------------------------------------------------------

_ATTR = re.compile(
    r"""(?<![\w-])(src|href|xlink:href|srcset|poster|action|formaction|data|background|ping|
    manifest|cite|longdesc|codebase|archive|imagesrcset)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""",
    re.I | re.X,
)
_CSS_URL = re.compile(r"""url\(\s*("[^"]*"|'[^']*'|[^)]*)\s*\)""", re.I)
_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?("[^"]*"|'[^']*'|[^\s;)]+)""", re.I)
_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script\s*>", re.I | re.S)
_NETWORK = re.compile(r"^(?:(?:https?|wss?|ftp):)?//", re.I)
_URL_IN_TEXT = re.compile(r"""(?:(?:https?|wss?):)//[^\s"'`<>)]+""", re.I)
_DATA_DOC = re.compile(r"^data:(text/html|image/svg\+xml)[^,]*?(;base64)?,(.*)$", re.I | re.S)


def _value(raw: str) -> str:
    raw = raw.strip()
    if raw[:1] in "\"'" and raw[-1:] == raw[:1]:
        raw = raw[1:-1]
    return html.unescape(raw).strip()


def _tag(page: str, pos: int) -> str:
    """Lower-case name of the tag whose attribute starts at ``pos``."""
    m = re.match(r"<([A-Za-z][\w:-]*)", page[page.rfind("<", 0, pos) : pos])
    return m.group(1).lower() if m else ""


def find_external_resources(page: str, *, include_links: bool = True) -> list[str]:
    """Every network URL the page would load (or link to), in order, without duplicates.

    Checks attributes that load or point at something (``src``, ``href``, ``srcset``,
    ``data``, ``poster``, ``action``, ...), CSS ``url(...)`` and ``@import``, and URLs in
    inline ``<script>`` bodies (scripts that fetch at run time). A URL counts when it starts
    with ``http(s)://``, ``ws(s)://``, ``ftp://`` or ``//`` (protocol-relative). HTML and SVG
    documents inside ``data:`` URIs are checked too. ``include_links=False`` ignores ``<a
    href>`` (a navigation, not a load); the default counts them, as the pipeline does.
    """
    found: list[str] = []

    def add(url: str) -> None:
        if url not in found:
            found.append(url)

    def check(url: str) -> None:
        if _NETWORK.match(url):
            add(url)
        elif m := _DATA_DOC.match(url):
            inner = urllib.parse.unquote(m.group(3))  # "data:...," + percent-encoded text
            if m.group(2):  # ";base64,"
                try:
                    inner = base64.b64decode(m.group(3)).decode("utf-8", "replace")
                except ValueError:
                    return
            for u in find_external_resources(inner, include_links=include_links):
                add(u)

    for m in _ATTR.finditer(page):
        name, url = m.group(1).lower(), _value(m.group(2))
        if not include_links and name == "href" and _tag(page, m.start()) == "a":
            continue
        if name.endswith("srcset"):  # "url 1x, url 2x"
            for part in filter(str.strip, url.split(",")):
                check(part.split()[0])
        else:
            check(url)
    for pattern in (_CSS_URL, _IMPORT):
        for m in pattern.finditer(page):
            check(_value(m.group(1)))
    for m in _SCRIPT.finditer(page):
        for url in _URL_IN_TEXT.findall(m.group(1)):
            add(url)
    return found
