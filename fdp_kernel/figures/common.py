"""Helpers shared by the figures modules: month ends, labels, headline tables."""

from __future__ import annotations

import calendar
import datetime as dt

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


def headline(rows: list[tuple[str, object, object, str]]) -> pd.DataFrame:
    """A headline table: measure, this period, previous period, change, standard."""
    out = []
    for measure, now, before, standard in rows:
        change = None
        if _number(now) and _number(before):
            change = now - before
        out.append(
            {
                "measure": measure,
                "now": _show(now),
                "previous": _show(before),
                "change": _show(change, signed=True),
                "standard or target": standard,
            }
        )
    return pd.DataFrame(out)


def _number(value) -> bool:
    return value is not None and not pd.isna(value) and isinstance(value, int | float)


def _show(value, signed: bool = False) -> str:
    if value is None or pd.isna(value):
        return "*"
    if isinstance(value, float):
        text = f"{value:+.1f}" if signed else f"{value:.1f}"
    else:
        text = f"{int(value):+,}" if signed else f"{int(value):,}"
    return text


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
        rows = []
        for key, part in grouped:
            key = key if isinstance(key, tuple) else (key,)
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    **{c: part[c].sum(skipna=False) for c in counts},
                }
            )
        frame = pd.DataFrame(rows)
        for c in counts:
            frame[c] = frame[c].astype("Int64")
        hidden = pd.DataFrame(
            {c: frame[c].isna().map({True: "node suppressed", False: ""}) for c in counts}
        )
    n = int((hidden != "").sum().sum())
    orgs = ", ".join(o for o, x in result.outcomes.items() if x.status == "ok")
    note = (
        f"Sum of figures released by each node ({orgs}); a total is suppressed where any "
        "node's figure is. "
        + (
            "PARTIAL: " + ", ".join({**result.declined, **result.failed}) + " not included."
            if result.partial
            else ""
        )
    )
    return Released(frame, hidden, title or result.title, f"federated: {orgs}", note.strip(), n)


def percent(frame: pd.DataFrame, name: str, numerator: str, denominator: str) -> pd.DataFrame:
    """Add ``name`` = numerator / denominator x 100 (1 dp) from released figures."""
    num = frame[numerator].astype("Float64")
    den = frame[denominator].astype("Float64")
    frame[name] = (num * 100 / den.where(den != 0)).round(1)
    return frame
