"""Helpers shared by the figures modules: dates, the reference date check, headline tables,
released scalars."""

from __future__ import annotations

import calendar
import datetime as dt
import numbers

import pandas as pd


def month_end(day: dt.date) -> dt.date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def month_start(day: dt.date, back: int = 0) -> dt.date:
    """The first day of ``day``'s month, or of the month ``back`` months before it."""
    first = day.replace(day=1)
    for _ in range(back):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    return first


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


def plain(value):
    """A released scalar as a plain int or float (``None`` when suppressed or missing)."""
    if value is None or pd.isna(value):
        return None
    number = float(value)
    return int(number) if number.is_integer() and not isinstance(value, float) else number


def ratio(num, den, scale: float = 100.0, digits: int = 1):
    """``num`` / ``den`` x ``scale`` of two released scalars; ``None`` where either is
    suppressed or the denominator is 0."""
    num, den = plain(num), plain(den)
    if num is None or not den:
        return None
    return round(num * scale / den, digits)


def combine_nodes(result, by: list[str], counts: list[str], title: str | None = None):
    """ICB figures from node-released ones: ``FederatedResult.combined``."""
    return result.combined(by, counts, title=title)
