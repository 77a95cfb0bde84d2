from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from population.identity import (
    build_personal_id,
    century_sex_digit,
    is_personal_id,
    mask_personal_id,
    parse_personal_id,
)


def test_known_example():
    # born 1995 in Hà Nội (001), female: century/sex digit 1
    assert build_personal_id("001", date(1995, 4, 2), "F", 123456) == "001195123456"
    parts = parse_personal_id("079203000042")
    assert (parts.province_code, parts.sex, parts.birth_year) == ("079", "M", 2003)


@pytest.mark.parametrize(
    ("year", "sex", "digit"), [(1900, "M", 0), (1999, "F", 1), (2000, "M", 2), (2099, "F", 3), (2100, "M", 4)]
)
def test_century_sex_digit(year, sex, digit):
    assert century_sex_digit(year, sex) == digit


@given(
    st.sampled_from(["001", "038", "079", "096"]),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2199, 12, 31)),
    st.sampled_from(["M", "F"]),
    st.integers(0, 999_999),
)
def test_build_then_parse_round_trip(province, born, sex, serial):
    personal_id = build_personal_id(province, born, sex, serial)
    assert is_personal_id(personal_id)
    parts = parse_personal_id(personal_id)
    assert (parts.province_code, parts.sex, parts.birth_year) == (province, sex, born.year)


@pytest.mark.parametrize(
    "value", ["", "12345678901", "1234567890123", "12345678901a", "１２３４５６７８９０１２", None]
)
def test_gate_is_twelve_ascii_digits(value):
    assert not is_personal_id(value)


def test_mask_keeps_first_and_last_three():
    assert mask_personal_id("001195123456") == "001******456"
    assert mask_personal_id(None) == "<none>"
    assert mask_personal_id("1234") == "****"
