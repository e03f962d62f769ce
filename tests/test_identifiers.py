import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fdp_kernel.identifiers import (
    format_nhs_number,
    gtin_check_digit,
    gtin_check_digits_array,
    is_valid_gtin,
    is_valid_nhs_number,
    is_valid_ods_code,
    nhs_check_digit,
    nhs_check_digits_array,
)


@pytest.mark.parametrize(
    "number",
    ["9990000018", "9000000009", "9434765919", "943 476 5919", "943-476-5919"],
)
def test_valid_nhs_numbers(number):
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize(
    "number, why",
    [
        ("9990000001", "a common test fixture that fails the check"),
        ("1234567890", "check digit would be 10: never issued"),
        ("9990000019", "wrong check digit"),
        ("999000001", "nine digits"),
        ("99900000180", "eleven digits"),
        ("99900000 8", "not all digits"),
        ("", "empty"),
        (None, "missing"),
    ],
)
def test_invalid_nhs_numbers(number, why):
    assert not is_valid_nhs_number(number), why


def test_worked_example_from_the_domain_brief():
    # 9x10 + 9x9 + 9x8 + 1x2 = 245; 245 mod 11 = 3; 11 - 3 = 8
    assert nhs_check_digit("999000001") == 8
    assert nhs_check_digit("123456789") is None
    assert format_nhs_number("9434765919") == "943 476 5919"


@given(st.lists(st.integers(0, 999_999_999), min_size=1, max_size=50))
def test_vectorised_nhs_check_digits_match_scalar(stems):
    got = nhs_check_digits_array(np.array(stems))
    for stem, check in zip(stems, got, strict=True):
        expected = nhs_check_digit(f"{stem:09d}")
        assert check == (-1 if expected is None else expected)


@pytest.mark.parametrize(
    "gtin", ["5012345678900", "4006381333931", "96385074", "036000291452", "00012345600012"]
)
def test_valid_gtins(gtin):
    assert is_valid_gtin(gtin)


@pytest.mark.parametrize(
    "gtin", ["5012345678901", "4006381333932", "036000291453", "50123456789", "abc", None]
)
def test_invalid_gtins(gtin):
    assert not is_valid_gtin(gtin)


@given(st.integers(0, 999_999_999_999))
def test_vectorised_gtin_check_digits_match_scalar(body):
    assert gtin_check_digits_array(np.array([body]), 13)[0] == gtin_check_digit(f"{body:012d}")


@pytest.mark.parametrize(
    "code, org_type, ok",
    [
        ("QSY", "icb", True),
        ("RSA", "acute_trust", True),
        ("A81001", "gp_practice", True),
        ("701", "local_authority", True),
        ("RSA", "icb", False),
        ("A8100", "gp_practice", False),
        ("R", "acute_trust", False),
    ],
)
def test_ods_formats(code, org_type, ok):
    assert is_valid_ods_code(code, org_type) is ok


def test_unknown_org_type_is_an_error():
    with pytest.raises(ValueError, match="unknown organisation type"):
        is_valid_ods_code("RSA", "hospital")
