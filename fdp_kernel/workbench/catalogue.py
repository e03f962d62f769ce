"""``ws.catalog()`` as analysts read it in a notebook: one table per dataset.

``Workspace.catalog`` returns a :class:`CatalogueFrame`: an ordinary pandas DataFrame (one
row per column of each dataset the node holds) that displays itself in Jupyter grouped by
dataset, with the dataset's description, how many of its columns the purpose shows, and per
column its type, class, whether it is allowed ("yes", "as a pseudonym", "no" with the
purposes that would allow it) and its description. Anything derived from it (a selection of
columns, ``set_index``...) is a plain DataFrame again, displayed as pandas does.
"""

from __future__ import annotations

import html

import pandas as pd

from fdp_kernel.catalog import dataset

_ALLOWED = {"as is": ("yes", "#006747"), "pseudonym": ("as a pseudonym", "#005EB8")}
_STYLE = (
    "<style>.fdp-catalogue td, .fdp-catalogue th {padding: 2px 8px; text-align: left; "
    "vertical-align: top} .fdp-catalogue tr.fdp-no {color: #768692}</style>"
)


def allowed(shown: str) -> str:
    """The "this purpose" entry as yes / as a pseudonym / no."""
    return _ALLOWED.get(shown, ("no", ""))[0]


class CatalogueFrame(pd.DataFrame):
    """The catalogue as a workspace sees it; ``attrs`` holds ``purpose`` and ``org``."""

    @property
    def _constructor(self):
        return pd.DataFrame  # derived frames are plain DataFrames

    def _repr_html_(self) -> str:
        needed = {"dataset", "column", "type", "class", "this purpose", "description"}
        if not needed <= set(self.columns):
            return pd.DataFrame(self)._repr_html_()
        purpose, org = self.attrs.get("purpose", "this purpose"), self.attrs.get("org", "")
        shown = self["this purpose"].map(allowed) != "no"
        parts = [
            f'<div class="fdp-catalogue">{_STYLE}',
            f"<p><b>What {html.escape(purpose)} allows at {html.escape(org)}</b>: "
            f"{int(shown.sum())} of {len(self)} columns in "
            f"{self['dataset'].nunique()} datasets. Identifiers are shown as pseudonyms "
            "unless the purpose is identifiable; figures leave only through ws.release.</p>",
        ]
        groups = [(str(name), rows) for name, rows in self.groupby("dataset", sort=False)]
        shut = {n for n, r in groups if (r["this purpose"].map(allowed) == "no").all()}
        closed = [(n, r) for n, r in groups if n in shut]
        parts += [_dataset_html(n, r) for n, r in groups if n not in shut]
        if closed:
            parts.append(
                f"<details><summary>{len(closed)} dataset(s) this node holds that "
                f"{html.escape(purpose)} does not allow</summary>"
            )
            parts += [_dataset_html(n, r) for n, r in closed]
            parts.append("</details>")
        parts.append("</div>")
        return "".join(parts)


def _dataset_html(name: str, rows: pd.DataFrame) -> str:
    n_shown = int((rows["this purpose"].map(allowed) != "no").sum())
    try:
        about = dataset(name).description
    except Exception:  # a dataset the catalogue no longer knows: show the rows anyway
        about = ""
    verdict = f"{n_shown} of {len(rows)} columns allowed" if n_shown else "not allowed"
    head = "".join(f"<th>{h}</th>" for h in ("column", "type", "class", "allowed", "description"))
    body = []
    for _, r in rows.iterrows():
        entry = str(r["this purpose"])
        word, colour = _ALLOWED.get(entry, ("no", ""))
        if word == "no":
            word = "no" + entry.removeprefix("not shown")
        cells = [
            f"<code>{html.escape(str(r['column']))}</code>",
            html.escape(str(r["type"])),
            html.escape(str(r["class"]).replace("_", " ")),
            f'<span style="color:{colour or "#768692"};font-weight:bold">'
            f"{html.escape(word)}</span>",
            html.escape(str(r["description"])),
        ]
        row = "".join(f"<td>{c}</td>" for c in cells)
        body.append(f'<tr class="{"" if colour else "fdp-no"}">{row}</tr>')
    return (
        f'<h4 style="margin:1em 0 0.2em">{html.escape(name)} '
        f'<small style="font-weight:normal">({verdict})</small></h4>'
        f'<p style="margin:0 0 0.4em">{html.escape(about)}</p>'
        f'<table class="fdp-catalogue-table" style="border-collapse:collapse">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def catalogue_frame(rows: list[dict], purpose: str, org: str) -> CatalogueFrame:
    frame = CatalogueFrame(rows)
    frame.attrs.update(purpose=purpose, org=org)
    return frame
