"""Transparency pages for patients and the public: what each node shares, why, and how often.

``fdp transparency`` writes one plain-language HTML page per node and one for the federation:
the data sharing agreements in force (parties, purpose, datasets, level, legal basis, dates),
the purposes, and how many accesses and releases each purpose made in a period, counted from
the audit logs. The counts are about people's use of data, so they pass disclosure control
(1-7 shown as *, others rounded to 5) like any other figure.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd

from fdp_kernel.catalog import dataset
from fdp_kernel.config import Federation
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.governance.disclosure import DisclosureRules, apply_disclosure_control, infer_spec
from fdp_kernel.governance.model import Level

LEVELS = {
    Level.IDENTIFIABLE: "identifiable records, for the care of the people concerned",
    Level.PSEUDONYMISED: "records with names and NHS numbers replaced by codes; only "
    "statistics leave the secure setting",
    Level.AGGREGATE: "statistics only: no record about a person leaves the organisation",
}
KINDS = {"direct_care": "your own care", "planning": "planning and improving services"}
STYLE = """
body{font-family:Arial,'Liberation Sans',sans-serif;color:#231f20;margin:0;background:#f0f4f5}
header{background:#005eb8;color:#fff;padding:24px 32px}header h1{margin:0;font-size:28px}
main{max-width:960px;margin:0 auto;padding:24px 32px;background:#fff}
h2{color:#003087;border-bottom:2px solid #e8edee;padding-bottom:4px}
table{border-collapse:collapse;width:100%;margin:12px 0}
th,td{border-bottom:1px solid #e8edee;text-align:left;padding:6px 8px;vertical-align:top}
th{background:#e8edee}.note{color:#425563;font-size:14px}
"""


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        f"style-src 'unsafe-inline'\"><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><header><h1>{html.escape(title)}</h1></header>"
        f"<main>{body}</main></body></html>"
    )


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, escape=True, na_rep="*")


def agreements_table(fed: Federation, org: str | None, on: dt.date) -> pd.DataFrame:
    rows = []
    for a in fed.agreements.values():
        if org and org not in a.providers and org not in a.recipients:
            continue
        if not a.in_force(on):
            continue
        names = [dataset(d).description.split(":")[0].split(".")[0] for d in a.datasets]
        rows.append(
            {
                "agreement": f"{a.id}: {a.title}",
                "shared by": ", ".join(fed.org(p).name for p in a.providers[:4])
                + (f" and {len(a.providers) - 4} more" if len(a.providers) > 4 else ""),
                "shared with": ", ".join(fed.org(r).name for r in a.recipients),
                "purpose": fed.purposes[a.purpose].name,
                "what": "; ".join(names),
                "how": LEVELS[a.level],
                "legal basis": a.legal_basis,
                "in force": f"{a.valid_from} to {a.valid_to}",
            }
        )
    return pd.DataFrame(rows)


def purposes_table(fed: Federation) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "purpose": p.name,
                "used for": KINDS[p.kind.value],
                "how": LEVELS[p.level],
                "national data opt-out respected": "yes"
                if p.opt_out_applies
                else "no (your own care)",
                "legal basis": p.legal_basis,
            }
            for p in fed.purposes.values()
        ]
    )


def activity(fed: Federation, orgs: list[str], since: dt.date, until: dt.date) -> pd.DataFrame:
    """Accesses, releases and refusals per purpose in [since, until], disclosure-controlled."""
    counts: Counter = Counter()
    for code in orgs:
        for entry in AuditLog(fed.audit_path(code)).entries():
            day = dt.date.fromisoformat(entry["time"][:10])
            if not since <= day <= until or not entry.get("purpose"):
                continue
            kind = {"table": "accesses", "release": "releases", "deny": "refusals"}.get(
                entry["action"]
            )
            if kind:
                counts[(entry["purpose"], kind)] += 1
    purposes = [p for p in fed.purposes]
    frame = pd.DataFrame(
        [
            {
                "purpose": fed.purposes[p].name,
                **{k: counts[(p, k)] for k in ("accesses", "releases", "refusals")},
            }
            for p in purposes
        ]
    )
    released = apply_disclosure_control(frame, infer_spec(frame), DisclosureRules())
    return released.display()


def write_pages(fed: Federation, out: Path, *, since: dt.date | None = None) -> list[Path]:
    """Write ``index.html`` (the federation) and ``<ODS>.html`` per node into ``out``."""
    until = dt.date.today()
    since = since or until - dt.timedelta(days=365)
    out.mkdir(parents=True, exist_ok=True)
    period = f"{since} to {until}"
    intro = (
        "<p>Health and care organisations here each keep their own records. They share "
        "information only under a written data sharing agreement, only for the purpose it "
        "names, and only as much as that purpose needs. Every use is recorded in a tamper-"
        "evident log; the counts below come from those logs. Counts of 1 to 7 are shown as * "
        "and others are rounded to the nearest 5, so that no one can be identified from them."
        "</p><p>If you have registered a national data opt-out, your records are left out of "
        "planning and research here; they are still used for your own care.</p>"
    )
    written = []
    nodes = list(fed.organisations)
    links = "".join(
        f"<li><a href='{html.escape(code)}.html'>{html.escape(o.name)}</a></li>"
        for code, o in fed.organisations.items()
    )
    body = (
        f"{intro}<h2>Agreements in force</h2>{_table(agreements_table(fed, None, until))}"
        f"<h2>Purposes</h2>{_table(purposes_table(fed))}"
        f"<h2>Use of data, {period}</h2>{_table(activity(fed, nodes, since, until))}"
        f"<h2>Organisations</h2><ul>{links}</ul>"
    )
    written.append(_write(out / "index.html", _page(f"How {fed.name} uses data", body)))
    for code, org in fed.organisations.items():
        agreements = agreements_table(fed, code, until)
        body = (
            f"{intro}<p><a href='index.html'>All organisations</a></p>"
            f"<h2>Agreements {html.escape(org.name)} is part of</h2>"
            + (_table(agreements) if not agreements.empty else "<p>None in force.</p>")
            + f"<h2>Use of data at {html.escape(org.name)}, {period}</h2>"
            f"{_table(activity(fed, [code], since, until))}"
        )
        written.append(_write(out / f"{code}.html", _page(f"How {org.name} uses data", body)))
    return written


def _write(path: Path, text: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
