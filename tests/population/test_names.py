import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from population.names import LEGACY_D, fold_name, name_problems, normalise_name


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Nguyễn Thị Hoà", "Nguyễn Thị Hòa"),  # tone placement
        ("Lê Thuỷ", "LÊ THỦY"),  # tone placement and case
        (unicodedata.normalize("NFD", "Trần Đức Anh"), "Trần Đức Anh"),  # decomposed
        (f"{LEGACY_D}ỗ Văn Hùng", "Đỗ Văn Hùng"),  # the legacy Ð
        ("  Phạm   Minh  ", "Pham Minh"),  # whitespace and diacritics
    ],
)
def test_equivalent_spellings_fold_to_one_key(a, b):
    assert fold_name(a) == fold_name(b)


def test_different_names_fold_apart():
    assert fold_name("Hoà") != fold_name("Hoa Lan")
    assert fold_name("Đào") == "dao"


def test_normalise_repairs_and_keeps_nfc():
    assert normalise_name(f"{LEGACY_D}ặng  Thị\tThu ") == "Đặng Thị Thu"
    assert unicodedata.is_normalized("NFC", normalise_name(unicodedata.normalize("NFD", "Vũ Hải Yến")))


@given(st.text())
def test_fold_is_idempotent_and_ascii_for_vietnamese(text):
    folded = fold_name(text)
    assert fold_name(folded) == folded
    assert fold_name(normalise_name(text)) == fold_name(text)


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "empty"), ("   ", "empty"), ("A" * 101, "longer than 100"), ("Lê\u200bAn", "control or format"),
     ("Lê Văn 3", "digits")],
)  # fmt: skip
def test_name_problems(name, problem):
    assert any(problem in p for p in name_problems(name))


def test_a_good_name_has_no_problems():
    assert name_problems("Nguyễn Ngọc Ánh") == []
