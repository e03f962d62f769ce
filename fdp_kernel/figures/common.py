"""Helpers shared by the figures modules: month ends, labels, headline tables."""

from __future__ import annotations

import calendar
import datetime as dt
import numbers
from typing import ClassVar

import pandas as pd


def month_end(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def month_ends(as_of: dt.date, months: int) -> list[dt.date]:
    """The last ``months`` month ends up to ``as_of`` (``as_of`` itself if it is one), oldest
    first; a mid-month ``as_of`` is the latest point."""
    points = [as_of]
    day = as_of.replace(day=1) - dt.timedelta(days=1)
    while len(points) < months:
        points.append(day)
        day = day.replace(day=1) - dt.timedelta(days=1)
    return sorted(points)


def parse_date(text: str | dt.date) -> dt.date:
    return text if isinstance(text, dt.date) else dt.date.fromisoformat(text)


def check_as_of(ws, as_of: dt.date, *, month_end_only: bool = True) -> dt.date:
    """Refuse a reference date after the federation's data, or not a month end."""
    from fdp_kernel.errors import UsageError

    latest = ws.federation.as_of
    if latest is not None and as_of > latest:
        raise UsageError(
            f"as_of {as_of} is after the data ({ws.federation.name} runs to {latest}); "
            f"choose {latest} or earlier"
        )
    if month_end_only and as_of != month_end(as_of) and as_of != latest:
        raise UsageError(f"as_of {as_of} is not a month end; use e.g. {month_end(as_of)}")
    return as_of


def headline(rows: list[tuple[str, object, object, str]]) -> pd.DataFrame:
    """A headline table: measure, now, previous period, change, standard. A measure whose
    name has "%" or "(weeks)", or whose figures have fractions (a rate, an average), is shown
    to 1 decimal place, others as whole numbers; "-" where a figure was not computed and "*"
    where it is suppressed."""
    out = []
    for measure, now, before, standard in rows:
        fractional = any(_number(v) and not float(v).is_integer() for v in (now, before))
        decimals = "%" in measure or "(weeks)" in measure or fractional
        change = now - before if _number(now) and _number(before) else None
        out.append(
            {
                "measure": measure,
                "now": _show(now, decimals),
                "previous": "-" if before is None else _show(before, decimals),
                "change": "-" if before is None else _show(change, decimals, signed=True),
                "standard or target": standard,
            }
        )
    return pd.DataFrame(out)


def _number(value) -> bool:
    return value is not None and not pd.isna(value) and isinstance(value, numbers.Number)


def _show(value, decimals: bool, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "*"
    if decimals:
        return f"{float(value):+.1f}" if signed else f"{float(value):.1f}"
    return f"{round(float(value)):+,}" if signed else f"{round(float(value)):,}"


LOWER_BOUND = "lower bound: a node's figure is suppressed"


def combine_nodes(result, by: list[str], counts: list[str], title: str | None = None):
    """ICB figures from node-released ones: sums over nodes per ``by`` group.

    Each node has already applied disclosure control, so a sum over nodes is a sum of
    released (rounded) figures; where any node's figure is suppressed, the total is unknown and
    shown as suppressed. Returns a ``Released`` whose caption says so.
    """
    from fdp_kernel.governance.released import Released

    data = result.data
    if data.empty:
        frame = pd.DataFrame(columns=[*by, *counts])
        hidden = pd.DataFrame({c: pd.Series(dtype=object) for c in counts})
    else:
        grouped = data.groupby(by, dropna=False, sort=True) if by else [((), data)]
        rows, marks = [], []
        for key, part in grouped:
            key = key if isinstance(key, tuple) else (key,)
            row, mark = dict(zip(by, key, strict=True)), {}
            for c in counts:
                shown, hidden_any = part[c].sum(skipna=True), bool(part[c].isna().any())
                if hidden_any and part[c].notna().any():
                    row[c], mark[c] = shown, LOWER_BOUND  # at least the nodes' shown figures
                elif hidden_any:
                    row[c], mark[c] = None, "node suppressed"
                else:
                    row[c], mark[c] = shown, ""
            rows.append(row)
            marks.append(mark)
        frame = pd.DataFrame(rows)
        for c in counts:
            frame[c] = frame[c].astype("Int64")
        hidden = pd.DataFrame(marks, columns=counts).fillna("")
    n = int((hidden != "").sum().sum())
    orgs = ", ".join(o for o, x in result.outcomes.items() if x.status == "ok")
    note = (
        f"Sum of figures released by each node ({orgs}); where a node suppressed its figure "
        "the total shown is a lower bound (≥). "
        + (
            "PARTIAL: " + ", ".join({**result.declined, **result.failed}) + " not included."
            if result.partial
            else ""
        )
    )
    return Released(frame, hidden, title or result.title, f"federated: {orgs}", note.strip(), n)


def combine_counts(result, by, title=None, percentages=None, also=()):
    """An ICB figure from node-released ones: every integer column (and ``also``) summed over
    nodes by ``by`` (``combine_nodes``), then ``percentages`` from the summed figures."""
    data = result.data
    sums = [
        c
        for c in data.columns
        if c not in ("org", *by) and (pd.api.types.is_integer_dtype(data[c]) or c in also)
    ]
    combined = combine_nodes(result, list(by), sums, title)
    for name, (num, den) in (percentages or {}).items():
        percent(combined.data, name, num, den)
    return combined


def merge_provenance(prov: dict, other) -> dict:
    """Add a second workspace's purpose, agreements and datasets (e.g. direct care) to a
    report's provenance; ``other`` may be None."""
    if other is None:
        return prov
    extra = other.provenance()
    prov["purpose"] = f"{prov['purpose']}, {extra['purpose']}"
    for key in ("agreements", "datasets"):
        prov[key] = sorted({*prov[key], *extra[key]})
    return prov


def percent(frame: pd.DataFrame, name: str, numerator: str, denominator: str) -> pd.DataFrame:
    """Add ``name`` = numerator / denominator x 100 (1 dp) from released figures."""
    num = frame[numerator].astype("Float64")
    den = frame[denominator].astype("Float64")
    frame[name] = (num * 100 / den.where(den != 0)).round(1)
    return frame


class Sections:
    """Report sections that depend on the view (trust, ICB, local authority...): a figures
    class sets ``SECTIONS = {key: (title, introduction, views)}`` and ``self.view``."""

    SECTIONS: ClassVar[dict[str, tuple[str, str, tuple[str, ...]]]] = {}
    view: str

    def shows(self, section: str) -> bool:
        return self.view in self.SECTIONS[section][2]

    def section(self, section: str) -> bool:
        """Display the section's heading and introduction if this view shows it."""
        from IPython.display import Markdown, display

        if not self.shows(section):
            return False
        title, intro, _ = self.SECTIONS[section]
        display(Markdown(f"## {title}\n\n{intro}"))
        return True
