"""Checks of the demographic reference data used by the synthetic population generator."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterator

import pytest

from population import reference_data as rd

LEGACY_CODES = [code for code, _ in rd.LEGACY_PROVINCES]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, tuple | list):
        for item in value:
            yield from _strings(item)


def _public_constants() -> dict[str, object]:
    return {name: value for name, value in vars(rd).items() if name.isupper() and not name.startswith("_")}


# --- ethnic groups ------------------------------------------------------------------------------


def test_54_ethnic_groups_with_codes_01_to_54() -> None:
    codes = [code for code, _, _ in rd.ETHNIC_GROUPS]
    assert len(rd.ETHNIC_GROUPS) == 54
    assert codes == [f"{i:02d}" for i in range(1, 55)]
    assert len({name for _, name, _ in rd.ETHNIC_GROUPS}) == 54


def test_ethnic_shares() -> None:
    shares = {name: share for _, name, share in rd.ETHNIC_GROUPS}
    assert math.isclose(math.fsum(shares.values()), 1.0, abs_tol=1e-9)
    assert all(share > 0 for share in shares.values())
    assert 0.84 < shares["Kinh"] < 0.87
    assert min(shares, key=shares.__getitem__) == "Ơ-đu"  # 428 people in 2019


def test_ethnic_counts_match_the_2019_census_total() -> None:
    # 96,208,984 people, of whom 3,902 were foreigners.
    assert sum(n for _, _, n in rd.ETHNIC_POPULATION_2019) == 96_208_984 - 3_902


# --- legacy provinces and the 2025 merger -------------------------------------------------------


def test_63_legacy_provinces_with_unique_three_digit_codes() -> None:
    assert len(rd.LEGACY_PROVINCES) == 63
    assert len(set(LEGACY_CODES)) == 63
    assert all(re.fullmatch(r"[0-9]{3}", code) for code in LEGACY_CODES)
    assert sorted(LEGACY_CODES) == LEGACY_CODES
    assert len({name for _, name in rd.LEGACY_PROVINCES}) == 63
    assert dict(rd.LEGACY_PROVINCES)["001"] == "Hà Nội"
    assert dict(rd.LEGACY_PROVINCES)["079"] == "Hồ Chí Minh"
    assert dict(rd.LEGACY_PROVINCES)["096"] == "Cà Mau"


def test_legacy_province_population() -> None:
    assert set(rd.LEGACY_PROVINCE_POPULATION_2019) == set(LEGACY_CODES)
    assert sum(rd.LEGACY_PROVINCE_POPULATION_2019.values()) == 96_208_984
    shares = rd.LEGACY_PROVINCE_POPULATION_SHARE
    assert set(shares) == set(LEGACY_CODES)
    assert math.isclose(math.fsum(shares.values()), 1.0, abs_tol=1e-9)
    assert 0.08 < shares["001"] < 0.09
    assert 0.09 < shares["079"] < 0.10


def test_every_legacy_code_maps_to_a_current_province() -> None:
    vietnam_provinces = pytest.importorskip("vietnam_provinces")
    current = {f"{p.code.value:02d}" for p in vietnam_provinces.Province.iter_all()}
    assert len(current) == 34
    mapping = rd.LEGACY_TO_CURRENT_PROVINCE
    assert set(mapping) == set(LEGACY_CODES)
    assert all(re.fullmatch(r"[0-9]{2}", code) for code in mapping.values())
    assert set(mapping.values()) == current  # every current province absorbs at least one legacy one
    # Provinces that kept their territory kept their code.
    for code in ("001", "004", "011", "012", "014", "020", "022", "038", "040", "042", "046"):
        assert mapping[code] == code[1:]


def test_mapping_agrees_with_the_ward_codes() -> None:
    """Cross-check against independent data: ward codes are inherited from the old commune codes,
    which GSO numbered province by province in code order. Walking the 3,321 current wards in code
    order must therefore visit the current provinces in the order the mapping predicts.

    The only exceptions are Hà Nội's 2008 annexations (Hà Tây province, Mê Linh from Vĩnh Phúc, four
    communes of Hòa Bình), whose communes kept their old codes; they are skipped here."""
    vietnam_provinces = pytest.importorskip("vietnam_provinces")
    wards = sorted(vietnam_provinces.Ward.iter_all(), key=lambda w: w.code.value)
    assert len(wards) == 3321
    seen: list[int] = []
    for ward in wards:
        province = ward.province_code.value
        if province == 1 and seen and seen[0] == 1 and seen[-1] != 1:
            continue  # a 2008 Hà Nội enclave inside another old province's code range
        if not seen or seen[-1] != province:
            seen.append(province)
    expected: list[int] = []
    for code in LEGACY_CODES:
        target = int(rd.LEGACY_TO_CURRENT_PROVINCE[code])
        if not expected or expected[-1] != target:
            expected.append(target)
    assert seen == expected


# --- names --------------------------------------------------------------------------------------

NAME_TABLES = (
    "SURNAMES",
    "MIDDLE_NAMES_MALE",
    "MIDDLE_NAMES_FEMALE",
    "GIVEN_NAMES_MALE",
    "GIVEN_NAMES_FEMALE",
)


@pytest.mark.parametrize("table", NAME_TABLES)
def test_name_tables_unique_and_positive(table: str) -> None:
    rows = getattr(rd, table)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names))
    assert all(weight > 0 for _, weight in rows)
    assert all(name == name.strip() and name[0].isupper() for name in names)


def test_given_name_counts() -> None:
    assert 55 <= len(rd.GIVEN_NAMES_MALE) <= 70
    assert 55 <= len(rd.GIVEN_NAMES_FEMALE) <= 70


def test_surnames() -> None:
    shares = dict(rd.SURNAMES)
    assert math.isclose(math.fsum(shares.values()), 1.0, abs_tol=1e-9)
    assert 0.30 <= shares["Nguyễn"] <= 0.45
    assert shares["Nguyễn"] > shares["Trần"] > shares["Lê"] > shares["Phạm"]
    assert len(shares) >= 30


def test_old_style_tone_placement_is_absent() -> None:
    """Names use the modern placement (Hòa, Thủy, Thúy), never the old one (Hoà, Thuỷ, Thuý)."""
    old_style = re.compile(r"(?<![Qq])(o[àáảãạ]|o[èéẻẽẹ]|u[ỳýỷỹỵ])(?!\w)")
    tables = [*NAME_TABLES, "LEGACY_PROVINCES", "RELIGIONS"]
    offenders = [s for table in tables for s in _strings(getattr(rd, table)) if old_style.search(s)]
    assert offenders == []
    assert "Thủy" in dict(rd.GIVEN_NAMES_FEMALE)
    assert "Hòa" in dict(rd.GIVEN_NAMES_FEMALE)


# --- every string, every distribution -----------------------------------------------------------


def test_all_strings_are_nfc() -> None:
    strings = [s for value in _public_constants().values() for s in _strings(value)]
    assert len(strings) > 300
    not_nfc = [s for s in strings if not unicodedata.is_normalized("NFC", s)]
    assert not_nfc == []
    assert not any("\u00d0" in s for s in strings)  # legacy Icelandic eth instead of Đ


@pytest.mark.parametrize("table", ["SURNAMES", "RELIGIONS", "BLOOD_TYPES", "HOUSEHOLD_SIZE"])
def test_pair_distributions_sum_to_one(table: str) -> None:
    rows = getattr(rd, table)
    assert math.isclose(math.fsum(share for _, share in rows), 1.0, abs_tol=1e-9)
    assert all(share > 0 for _, share in rows)


def test_religions() -> None:
    shares = dict(rd.RELIGIONS)
    assert 0.85 < shares["Không"] < 0.87
    assert shares["Công giáo"] > shares["Phật giáo"]


def test_age_sex_structure() -> None:
    rows = rd.AGE_SEX_STRUCTURE
    assert rows[0][0] == 0 and rows[-1][1] == 99
    for (_, hi, _, _), (lo, _, _, _) in zip(rows, rows[1:], strict=False):
        assert lo == hi + 1
    assert math.isclose(math.fsum(m + f for _, _, m, f in rows), 1.0, abs_tol=1e-9)
    males = math.fsum(m for _, _, m, _ in rows)
    females = math.fsum(f for _, _, _, f in rows)
    assert 98.5 < 100 * males / females < 99.7
    over_65 = math.fsum(m + f for lo, _, m, f in rows if lo >= 65)
    assert 0.07 < over_65 < 0.085


def test_household_size() -> None:
    sizes = [size for size, _ in rd.HOUSEHOLD_SIZE]
    assert sizes == list(range(1, 9))
    mean = math.fsum(size * share for size, share in rd.HOUSEHOLD_SIZE)
    assert 3.3 < mean < 3.7


def test_blood_types() -> None:
    assert [group for group, _ in rd.BLOOD_TYPES] == ["O", "B", "A", "AB"]


def test_vital_rates_are_plausible() -> None:
    assert 10 < rd.CRUDE_BIRTH_RATE < 20
    assert 4 < rd.CRUDE_DEATH_RATE < 9
    assert 4 < rd.CRUDE_MARRIAGE_RATE < 10
