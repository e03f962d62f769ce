"""Date arguments of the metrics: checked once, as Ibis literals."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from fdp_kernel.errors import UsageError


def check_date(value: dt.date, name: str) -> dt.date:
    """``value`` if it is a date (not a datetime), else a UsageError naming ``name``."""
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        raise UsageError(f"{name} must be a datetime.date (not a datetime), got {value!r}")
    return value


def date_range(start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """A checked ``(start, end)`` with start on or before end."""
    lo, hi = check_date(start, "start"), check_date(end, "end")
    if lo > hi:
        raise UsageError(f"start ({lo}) is after end ({hi})")
    return lo, hi


def date_literal(value: dt.date) -> ir.DateScalar:
    return ibis.literal(value, type="date")
