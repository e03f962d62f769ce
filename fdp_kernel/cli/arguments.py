"""Argument types shared by the ``fdp`` commands. Imports nothing of fdp_kernel."""

from __future__ import annotations

import argparse
import datetime as dt


def patient_count(text: str) -> int:
    """Parse 100000, 100_000, 100k or 1m."""
    cleaned = text.strip().lower().replace("_", "").replace(",", "")
    scale = {"k": 1_000, "m": 1_000_000}.get(cleaned[-1:], 1)
    number = cleaned[:-1] if scale > 1 else cleaned
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of patients (e.g. 100000, 100k, 1m)"
        ) from None
    if value != int(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of patients")
    return int(value)


def iso_date(text: str) -> dt.date:
    """Parse a date written YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None
