"""The administrative-unit catalogue: province and ward codes with the dates they are in force.

Since 2025-07-01 Viet Nam has 34 provinces and 3,321 communes and wards, with no district level (package
``vietnam-provinces``). Before that, 63 provinces, whose codes still open every personal ID number. Codes were
reused across the reform (01 is Hà Nội both before and after), so each code is kept with its effective period.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine, or_, select
from sqlalchemy.orm import Session
from vietnam_provinces import Province, Ward

from population.models import AdministrativeUnit
from population.reference_data import LEGACY_PROVINCES

REFORM_DATE = date(2025, 7, 1)  # Resolution 202/2025/QH15: 34 provinces, two-level local government
LEGACY_FROM = date(2008, 8, 1)  # Hà Tây joined Hà Nội: the 63-province map starts


def catalogue_rows() -> list[dict]:
    """Every unit the catalogue holds, ready for a bulk insert: the 63 legacy provinces (until the reform), and
    the 34 provinces and 3,321 wards in force since."""
    last_legacy_day = REFORM_DATE - timedelta(days=1)
    rows = [
        dict(
            level="province",
            code=code3[1:],
            name=name,
            division_type="legacy province",
            province_code=None,
            effective_from=LEGACY_FROM,
            effective_to=last_legacy_day,
        )
        for code3, name in LEGACY_PROVINCES
    ]
    rows += [
        dict(
            level="province",
            code=f"{p.code.value:02d}",
            name=p.name,
            division_type=p.division_type.value,
            province_code=None,
            effective_from=REFORM_DATE,
            effective_to=None,
        )
        for p in Province.iter_all()
    ]
    rows += [
        dict(
            level="ward",
            code=f"{w.code.value:05d}",
            name=w.name,
            division_type=w.division_type.value,
            province_code=f"{w.province_code.value:02d}",
            effective_from=REFORM_DATE,
            effective_to=None,
        )
        for w in Ward.iter_all()
    ]
    return rows


def _in_force(level: str, code: str, on: date):
    return select(AdministrativeUnit).where(
        AdministrativeUnit.level == level,
        AdministrativeUnit.code == code,
        AdministrativeUnit.effective_from <= on,
        or_(AdministrativeUnit.effective_to.is_(None), AdministrativeUnit.effective_to >= on),
    )


def ward_in_force(session: Session, code: str, on: date) -> AdministrativeUnit | None:
    return session.scalar(_in_force("ward", code, on))


def province_in_force(session: Session, code: str, on: date) -> AdministrativeUnit | None:
    return session.scalar(_in_force("province", code, on))


def legacy_province(session: Session, id_prefix: str) -> AdministrativeUnit | None:
    """The legacy province behind the 3-digit prefix of a personal ID number."""
    if len(id_prefix) != 3 or not id_prefix.startswith("0"):
        return None
    return session.scalar(
        select(AdministrativeUnit).where(
            AdministrativeUnit.level == "province",
            AdministrativeUnit.code == id_prefix[1:],
            AdministrativeUnit.effective_from == LEGACY_FROM,
        )
    )


def ward_provinces(engine: Engine) -> dict[str, str]:
    """Ward code → province code, for wards in force."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(AdministrativeUnit.code, AdministrativeUnit.province_code).where(
                AdministrativeUnit.level == "ward", AdministrativeUnit.effective_to.is_(None)
            )
        )
        return {code: province for code, province in rows}
