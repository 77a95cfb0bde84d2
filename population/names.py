"""Vietnamese names: store NFC, repair the legacy 'Ð', and match on a folded key.

The folded key ignores diacritics, case and tone placement, so "Hoà" and "Hòa", "Thuỷ" and "Thủy", and an NFD
spelling all fold to the same key. The original string is always kept beside it.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

LEGACY_D = "\u00d0"  # Ð LATIN CAPITAL LETTER ETH, typed for Đ by old systems and fonts
VIETNAMESE_D = "\u0110"  # Đ LATIN CAPITAL LETTER D WITH STROKE
MAX_NAME_LENGTH = 100

_FOLD_TABLE = str.maketrans({"đ": "d", "Đ": "d", LEGACY_D: "d", "ð": "d"})


def normalise_name(name: str) -> str:
    """The form to store: NFC, legacy Ð repaired, runs of whitespace collapsed, outer whitespace dropped."""
    repaired = unicodedata.normalize("NFC", name).replace(LEGACY_D, VIETNAMESE_D).replace("ð", "đ")
    return " ".join(repaired.split())


@lru_cache(maxsize=1 << 18)  # names repeat a lot; folding is pure
def fold_name(name: str) -> str:
    """The matching key: lower case ASCII letters and single spaces, no diacritics, đ as d."""
    decomposed = unicodedata.normalize("NFD", name.translate(_FOLD_TABLE))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def name_problems(name: str | None) -> list[str]:
    """Why a name cannot be stored as given: the rules a life event checks before writing it."""
    if name is None or not name.strip():
        return ["name is empty"]
    problems = []
    if len(name) > MAX_NAME_LENGTH:
        problems.append(f"name is longer than {MAX_NAME_LENGTH} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        problems.append("name contains control or format characters")
    if any(ch.isdigit() for ch in name):
        problems.append("name contains digits")
    return problems
