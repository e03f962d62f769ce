"""Reports on disk: atomic publishing, status records, and ``reports/index.html``.

Layout: ``<out>/<run>/<org>/<template>.{ipynb,html,json}`` (``<template>.failed.ipynb`` for a
failed report). The ``.json`` status record is written last, atomically, and names the
SHA-256 of the files it vouches for: a report is finished exactly when its record says ``ok``
and the files match. The index is rebuilt from what is on disk, so it is always true to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat

from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.reports import html as page_html

INDEX = "index.html"
RECORD_SCHEMA = 1
_CSS = getattr(page_html, "CSS", getattr(page_html, "_CSS", ""))
_CSP = getattr(page_html, "CSP", getattr(page_html, "_CSP", "default-src 'none'"))
_EXTRA_CSS = """
table.index{border-collapse:collapse;width:100%;font-size:15px}
table.index th,table.index td{padding:6px 10px;border-bottom:1px solid var(--border,#D8DDE0);
text-align:left;vertical-align:top}
table.index thead th{border-bottom:2px solid var(--grey,#425563)}
tr.run th{background:var(--pale,#E8EDEE);font-size:16px}
.tag{display:inline-block;padding:0 8px;font-weight:bold;border-radius:2px;color:#fff}
.tag.ok{background:#007F3B}.tag.failed{background:#DA291C}.tag.incomplete{background:#ED8B00}
td.when{white-space:nowrap}
.reason{display:block;color:var(--grey,#425563);font-size:14px;overflow-wrap:anywhere}
"""


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a private temporary name in the same folder, then rename it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_record(folder: Path, template: str, record: dict[str, Any]) -> Path:
    path = Path(folder) / f"{template}.json"
    atomic_write_text(path, json.dumps({"schema": RECORD_SCHEMA, **record}, indent=2) + "\n")
    return path


def publish(folder: Path, name: str, nb: Any, page: dict[str, Any], scanner: Any) -> dict[str, str]:
    """Stage ``<name>.ipynb`` and ``.html``, check them, then rename both into place.

    The old status record is removed first, so an interrupted publish leaves files that no
    record vouches for (the index shows them as incomplete), never a finished-looking report.
    Raises ``GovernanceError`` (a secret in the page), ``UsageError`` (network resources) or
    ``OSError``; on any error nothing of this report is left but what ``withdraw`` keeps.
    """
    folder = Path(folder)
    token = uuid.uuid4().hex[:8]
    final = {ext: folder / f"{name}{ext}" for ext in (".ipynb", ".html")}
    staged = {ext: folder / f".{name}{ext}.{token}.partial" for ext in final}
    try:
        with open(staged[".ipynb"], "w", encoding="utf-8", newline="\n") as fh:
            fh.write(nbformat.writes(nb))
            fh.flush()
            os.fsync(fh.fileno())
        page_html.write_html(nb, staged[".html"], **page)
        text = staged[".html"].read_text(encoding="utf-8")
        if found := page_html.find_external_resources(text):
            raise UsageError(f"the page would load from the network: {', '.join(found[:3])}")
        if label := scanner.find(text):
            raise GovernanceError(f"the HTML page shows {label}; nothing was saved", rule="report:secret")
        (folder / f"{name}.json").unlink(missing_ok=True)
        for ext in (".ipynb", ".html"):
            os.replace(staged[ext], final[ext])
    except BaseException:
        for path in (*staged.values(), *final.values()):
            path.unlink(missing_ok=True)
        raise
    (folder / f"{name}.failed.ipynb").unlink(missing_ok=True)
    return {path.name: sha256(path) for path in final.values()}


def withdraw(folder: Path, name: str, nb: Any | None) -> str | None:
    """Remove a report's published files; keep ``nb`` as ``<name>.failed.ipynb`` if given."""
    folder = Path(folder)
    (folder / f"{name}.json").unlink(missing_ok=True)
    for ext in (".ipynb", ".html", ".failed.ipynb"):
        (folder / f"{name}{ext}").unlink(missing_ok=True)
    if nb is None:
        return None
    atomic_write_text(folder / f"{name}.failed.ipynb", nbformat.writes(nb))
    return f"{name}.failed.ipynb"


def read_records(out: Path) -> list[dict[str, Any]]:
    """Every report under ``out`` with ``state`` ok / failed / incomplete, newest run first."""
    out = Path(out)
    records = []
    for path in sorted(out.glob("*/*/*.json")):
        try:
            rec = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rec, dict) or rec.get("schema") != RECORD_SCHEMA:
                continue
        except (OSError, ValueError):
            continue
        rec["folder"] = path.parent.relative_to(out).as_posix()
        rec["state"] = _state(path.parent, rec)
        records.append(rec)
    known = {(r["folder"], r.get("template")) for r in records}
    for path in sorted(out.glob("*/*/*.html")):  # published files with no record: interrupted
        folder = path.parent.relative_to(out).as_posix()
        if (folder, path.stem) not in known:
            run, org = path.parent.parent.name, path.parent.name
            records.append(
                {"run": run, "org": org, "template": path.stem, "folder": folder, "params": {}}
                | {"state": "incomplete", "reason": "interrupted before its status was recorded"}
            )
    started: dict[str, str] = {}
    for r in records:
        started[r["run"]] = max(started.get(r["run"], ""), str(r.get("started") or ""))
    records.sort(key=lambda r: (r.get("org", ""), r.get("template", "")))
    records.sort(key=lambda r: (started[r["run"]], r["run"]), reverse=True)
    return records


def _state(folder: Path, rec: dict[str, Any]) -> str:
    if rec.get("status") != "ok":
        return "failed"
    for name, digest in (rec.get("files") or {}).items():
        path = folder / name
        if not path.exists() or sha256(path) != digest:
            rec["reason"] = f"{name} is missing or does not match its status record"
            return "incomplete"
    return "ok"


def write_index(out: Path) -> Path:
    """Rebuild ``<out>/index.html`` from the records on disk (atomically); its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / INDEX
    transparency = (out / "transparency" / "index.html").exists()
    atomic_write_text(path, render_index(read_records(out), transparency=transparency))
    return path


def render_index(records: list[dict[str, Any]], *, transparency: bool = False) -> str:
    esc = html.escape
    rows, current = [], None
    for r in records:
        if r["run"] != current:
            current = r["run"]
            rows.append(f'<tr class="run"><th colspan="7">Run {esc(current)}</th></tr>')
        state = r["state"]
        reason = (
            f'<span class="reason">{esc(r.get("reason") or "")}</span>' if state != "ok" else ""
        )
        params = ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items() if k != "org")
        rows.append(
            "<tr>"
            f'<td><span class="tag {state}">{state}</span>{reason}</td>'
            f"<td>{esc(str(r.get('org', '')))}</td><td>{esc(str(r.get('template', '')))}</td>"
            f'<td>{esc(params)}</td><td class="when">{esc(_when(r.get("started")))}</td>'
            f"<td>{_seconds(r.get('seconds'))}</td><td>{_links(r)}</td></tr>"
        )
    body = (
        '<table class="index"><thead><tr><th>Status</th><th>Organisation</th><th>Template'
        "</th><th>Parameters</th><th>Started</th><th>Time</th><th>Files</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        if rows
        else "<p>No reports yet. Run <code>fdp report run</code> or "
        "<code>fdp report schedule</code>.</p>"
    )
    counts = {s: sum(r["state"] == s for r in records) for s in ("ok", "failed", "incomplete")}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"
    now = f"{dt.datetime.now():%Y-%m-%d %H:%M}"
    return f"""<!doctype html>
<html lang="en-GB">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="generator" content="fdp">
<title>Reports</title>
<style>{_CSS.strip()}{_EXTRA_CSS}</style>
</head>
<body>
<header class="banner"><div class="wrap"><h1>Reports</h1>
<p class="meta">{len(records)} reports: {esc(summary)}. Updated {esc(now)}.</p></div></header>
<main class="report" id="main">
{body}
{_TRANSPARENCY if transparency else ""}
</main>
</body>
</html>
"""


_TRANSPARENCY = (
    '<h2>Transparency</h2><p><a href="transparency/index.html">How these organisations use '
    "data</a>: the data sharing agreements in force, the purposes, and how often each purpose "
    "accessed and released data (for patients and the public).</p>"
)


def _links(r: dict[str, Any]) -> str:
    base = "/".join(quote(part) for part in r["folder"].split("/"))
    name = quote(str(r.get("template", "")))
    if r["state"] == "ok":
        return (
            f'<a href="{base}/{name}.html">report</a> · <a href="{base}/{name}.ipynb">notebook</a>'
        )
    if r.get("notebook"):
        return f'<a href="{base}/{quote(r["notebook"])}">notebook</a>'
    return ""


def _when(value: Any) -> str:
    try:
        return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return ""


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, int | float) else ""
