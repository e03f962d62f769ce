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
