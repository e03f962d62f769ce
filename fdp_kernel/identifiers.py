"""Check digits and formats of the identifiers the catalogue uses.

- NHS number: 10 digits, Modulus 11 (weights 10..2 over digits 1-9; 11 -> 0, 10 -> invalid).
- GTIN-8/12/13/14 (GS1): mod-10 with weights 3,1,3,... counted from the right, excluding the
  check digit.
- ODS codes: format checks per organisation type.

The scalar functions take strings; the ``*_array`` variants are vectorised over NumPy arrays
of integers and are what the synthetic generator uses.
"""

from __future__ import annotations

import re

import numpy as np

_NHS_WEIGHTS = np.arange(10, 1, -1, dtype=np.int64)  # 10, 9, ..., 2


def nhs_check_digit(first_nine: str) -> int | None:
    """The Modulus 11 check digit for the first nine digits, or None if no valid one exists."""
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError(f"expected 9 digits, got {first_nine!r}")
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def normalise_nhs_number(value: str) -> str:
    """Strip the spaces and dashes people type (``943 476 5919`` -> ``9434765919``)."""
    return re.sub(r"[\s-]", "", str(value))


def is_valid_nhs_number(value: str | None) -> bool:
    """True when ``value`` is 10 digits whose last digit is the Modulus 11 check digit."""
    if value is None:
        return False
    digits = normalise_nhs_number(value)
    if len(digits) != 10 or not digits.isdigit():
        return False
    return nhs_check_digit(digits[:9]) == int(digits[9])


def nhs_check_digits_array(first_nine: np.ndarray) -> np.ndarray:
    """Vectorised check digits for integers of up to nine digits; -1 where none is valid."""
    values = np.asarray(first_nine, dtype=np.int64)
    total = np.zeros(values.shape, dtype=np.int64)
    rest = values.copy()
    for weight in _NHS_WEIGHTS[::-1]:  # least significant digit has weight 2
        total += (rest % 10) * weight
        rest //= 10
    check = 11 - total % 11
    check = np.where(check == 11, 0, check)
    return np.where(check == 10, -1, check)


def format_nhs_number(value: str) -> str:
    """Show an NHS number as 3-3-4 (``943 476 5919``)."""
    digits = normalise_nhs_number(value)
    return f"{digits[:3]} {digits[3:6]} {digits[6:]}"


def gtin_check_digit(body: str) -> int:
    """The GS1 mod-10 check digit for a GTIN body (all digits except the check digit)."""
    if not body.isdigit() or not 7 <= len(body) <= 13:
        raise ValueError(f"expected 7 to 13 digits, got {body!r}")
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def is_valid_gtin(value: str | None) -> bool:
    """True for an 8, 12, 13 or 14 digit GTIN whose check digit is right."""
    if value is None:
        return False
    value = str(value).strip()
    if len(value) not in (8, 12, 13, 14) or not value.isdigit():
        return False
    return gtin_check_digit(value[:-1]) == int(value[-1])


def gtin_check_digits_array(bodies: np.ndarray, length: int) -> np.ndarray:
    """Vectorised GS1 check digits for integer bodies of ``length - 1`` digits."""
    rest = np.asarray(bodies, dtype=np.int64).copy()
    total = np.zeros(rest.shape, dtype=np.int64)
    for position in range(length - 1):  # position 0 is the digit next to the check digit
        total += (rest % 10) * (3 if position % 2 == 0 else 1)
        rest //= 10
    return (10 - total % 10) % 10


_ODS_PATTERNS = {
    "icb": re.compile(r"^Q[A-Z0-9]{2}$"),
    "acute_trust": re.compile(r"^R[A-Z0-9]{2}$"),
    "community_trust": re.compile(r"^R[A-Z0-9]{2}$"),
    "gp_practice": re.compile(r"^[A-Z][0-9]{5}$"),
    "local_authority": re.compile(r"^([0-9]{3}|[A-Z][0-9][A-Z][0-9][A-Z])$"),  # CASSR code
}


def is_valid_ods_code(code: str, org_type: str) -> bool:
    """True when ``code`` has the ODS format of ``org_type``."""
    pattern = _ODS_PATTERNS.get(org_type)
    if pattern is None:
        raise ValueError(f"unknown organisation type {org_type!r}; known: {sorted(_ODS_PATTERNS)}")
    return bool(pattern.match(code))
