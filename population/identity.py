"""The 12-digit personal ID number (số định danh cá nhân).

Structure: 3-digit code of the province where the birth was registered (one of the 63 legacy codes), a
century/sex digit (0/1 = 1900s male/female, 2/3 = 2000s, 4/5 = 2100s, ...), the last two digits of the birth
year, and 6 more digits. There is no check digit. "12 ASCII digits" is the only gate; the prefix, century/sex
and year agreeing with the record are consistency signals for stewards, not grounds to reject.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

_TWELVE_DIGITS = re.compile(r"[0-9]{12}")


def is_personal_id(value: str | None) -> bool:
    """The gate: exactly 12 ASCII digits."""
    return value is not None and _TWELVE_DIGITS.fullmatch(value) is not None


def century_sex_digit(birth_year: int, sex: str) -> int:
    """0/1 for the 1900s, 2/3 for the 2000s, ...; even for male, odd for female."""
    return 2 * ((birth_year // 100) - 19) + (1 if sex == "F" else 0)


def build_personal_id(province_code: str, date_of_birth: date, sex: str, serial: int) -> str:
    if not (len(province_code) == 3 and province_code.isdigit()):
        raise ValueError(f"province code must be 3 digits, got {province_code!r}")
    if not 0 <= serial < 1_000_000:
        raise ValueError("serial must have at most 6 digits")
    digit = century_sex_digit(date_of_birth.year, sex)
    return f"{province_code}{digit}{date_of_birth.year % 100:02d}{serial:06d}"


@dataclass(frozen=True)
class PersonalIdParts:
    province_code: str
    sex: str
    birth_year: int


def parse_personal_id(value: str) -> PersonalIdParts:
    """What the digits claim: birth-registration province, sex and birth year."""
    if not is_personal_id(value):
        raise ValueError("a personal ID is exactly 12 ASCII digits")
    digit = int(value[3])
    year = 1900 + 100 * (digit // 2) + int(value[4:6])
    return PersonalIdParts(province_code=value[:3], sex="F" if digit % 2 else "M", birth_year=year)


def mask_personal_id(value: str | None) -> str:
    """For logs and messages: the first 3 and last 3 digits, the rest hidden."""
    if not value:
        return "<none>"
    if len(value) <= 6:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 6) + value[-3:]


_ID_IN_TEXT = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")
_HEX = frozenset("0123456789abcdefABCDEF")
_UUID_HEAD = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-")
HEX_TOKEN_CHARS = 16  # twelve digits inside a hex run this long are part of a digest or a key, not an ID


def mask_personal_ids(text: str) -> str:
    """Every 12-digit personal ID in a text masked (``mask_personal_id``): twelve digits with no digit on either
    side. A run of twelve digits that is part of a longer hexadecimal token (a SHA-256, a fingerprint) or the last
    group of a UUID (a package id) is not an ID and stays whole."""
    if len(text) < 12:
        return text
    return _ID_IN_TEXT.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    text, start, end = match.string, match.start(), match.end()
    left, right = start, end
    while left > 0 and text[left - 1] in _HEX:
        left -= 1
    while right < len(text) and text[right] in _HEX:
        right += 1
    if right - left >= HEX_TOKEN_CHARS or _UUID_HEAD.fullmatch(text, max(0, start - 24), start):
        return match.group()
    return mask_personal_id(match.group())
