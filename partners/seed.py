"""Seed the partner registries from a synthetic population, with deliberate disagreements.

Each registry holds the people it would really hold (its agency file's ``sandbox.registry``: from what age, what
share of them) under its own identifiers, and its own copy of names and dates of birth. The four reference
registries make their own records (the insured with their cards, taxpayers and their tax offices, land-use right
holders and their parcels, founders and legal representatives and their enterprises: ``records``); any other
agency's registry gives each person it holds an identifier of the agency's kind. Some of that copy is made to
disagree with the population database, and the store keeps the ground truth:

- ``missing``          the person is not in the registry although they belong there;
- ``name_differs``     the registry's name lost its diacritics or a middle name;
- ``dob_differs``      the registry's date of birth is a day off, or has day and month swapped;
- ``dead_but_active``  the population database records a death, the registry still lists the person as active.

The same population and seed give the same registries.
"""

from __future__ import annotations

import random
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import Engine
from stdnum.vn import mst

from exchange.agencies import Identifier, load_agencies
from partners.store import Disagreement, PersonRow
from population.extract import extract_columns, iter_extract

AS_OF = date(2026, 7, 1)
SHARE_MISSING, SHARE_NAME, SHARE_DOB, SHARE_DEAD_ACTIVE = 0.03, 0.03, 0.02, 0.6


@dataclass(frozen=True)
class Citizen:
    personal_id: str
    full_name: str
    date_of_birth: date | None
    date_of_death: date | None
    ward_code: str | None
    sex: str | None = None

    def age(self) -> int:
        if self.date_of_birth is None:
            return 0
        return AS_OF.year - self.date_of_birth.year


def citizens_from(engine: Engine) -> Iterator[Citizen]:
    """The citizens of a population database, streamed from the canonical extract."""
    columns = extract_columns()
    for row in iter_extract(engine):
        values = dict(zip(columns, row, strict=True))
        yield Citizen(
            personal_id=values["personal_id"],
            full_name=values["full_name"],
            date_of_birth=_as_date(values["date_of_birth"]),
            date_of_death=_as_date(values["date_of_death"]),
            ward_code=values["permanent_ward_code"],
            sex=values["sex"],
        )


def _as_date(value) -> date | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# -- who each registry holds, under which identifier -------------------------------------------------------------


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _tax_code(rng: random.Random) -> str:
    """A 10-digit tax code with a valid check digit (bodies whose check would be 10 are never issued)."""
    while True:
        body = rng.choice("0123456789") + rng.choice("123456789") + _digits(rng, 7)
        code = body + mst.calc_check_digit(body)
        if mst.is_valid(code) and len(code) == 10:
            return code


def _health(citizen: Citizen, rng: random.Random) -> PersonRow:
    number = f"{rng.randint(1, 99):02d}{_digits(rng, 8)}"
    group = rng.choice(["DN", "HT", "GD", "TE", "HS", "HN", "CN"])
    card = f"{group}{rng.randint(1, 5)}{number[:2]}{number}"
    dead = citizen.date_of_death is not None
    details = {"social_insurance_number": number, "card_code": card,
               "card_status": "expired" if dead else rng.choice(["valid"] * 9 + ["expired"])}  # fmt: skip
    return _row(citizen, number, "deceased" if dead else "active", details)


def _personal_tax_code(citizen: Citizen, rng: random.Random) -> str:
    """Since 2025-07-01 the personal ID is the personal tax code; older taxpayers keep their 10-digit code."""
    return citizen.personal_id if rng.random() < 0.3 else _tax_code(rng)


def _certificate_serial(rng: random.Random) -> str:
    return f"{rng.choice('ABCDEFGHKLMNPS')}{rng.choice('ABCDEFGHKLMNPS')} {_digits(rng, 6)}"


def _tax(citizen: Citizen, rng: random.Random) -> PersonRow:
    code = _personal_tax_code(citizen, rng)
    details = {"tax_code": code, "tax_office": f"Chi cục Thuế khu vực {rng.randint(1, 20)}"}
    return _row(citizen, code, "closed" if citizen.date_of_death else "active", details)


def _land(citizen: Citizen, rng: random.Random) -> PersonRow:
    serial = _certificate_serial(rng)
    commune = (citizen.ward_code or _digits(rng, 5))[:5]
    details = {"certificate_serial": serial, "commune_code": commune, "map_sheet": rng.randint(1, 60),
               "parcel_number": rng.randint(1, 900), "area_square_metres": round(rng.uniform(40, 2500), 1)}  # fmt: skip
    return _row(citizen, serial, "transferred" if citizen.date_of_death else "active", details)


def _business(citizen: Citizen, rng: random.Random) -> PersonRow:
    code = _tax_code(rng)
    kind = rng.choice(["Công ty TNHH", "Công ty cổ phần", "Doanh nghiệp tư nhân"])
    details = {"enterprise_code": code, "enterprise_name": f"{kind} {rng.choice(_TRADES)} {code[-4:]}",
               "role": rng.choice(["founder", "legal_representative", "owner", "member"]),
               "since": (AS_OF - timedelta(days=rng.randint(100, 7000))).isoformat()}  # fmt: skip
    return _row(citizen, f"{code}/{citizen.personal_id}", "suspended" if citizen.date_of_death else "active", details)


_TRADES = ("Thương mại Sao Mai", "Xây dựng Hồng Hà", "Nông sản Mekong", "Dịch vụ Ánh Dương", "Vận tải Bắc Nam")


def _row(citizen: Citizen, identifier: str, status: str, details: dict) -> PersonRow:
    dob = citizen.date_of_birth.isoformat() if citizen.date_of_birth else None
    return PersonRow(identifier, citizen.personal_id, citizen.full_name, dob, status, {**details, "sex": citizen.sex})


def _identifier_of(identifier: Identifier, citizen: Citizen, rng: random.Random) -> str:
    """An identifier of the agency's kind for the citizen."""
    if identifier.kind == "digits":
        return _digits(rng, identifier.length)
    if identifier.kind == "tax-code":
        return _tax_code(rng)
    if identifier.kind == "personal-tax-code":
        return _personal_tax_code(citizen, rng)
    return _certificate_serial(rng)


def _identified(identifier: Identifier) -> Callable[[Citizen, random.Random], PersonRow]:
    """People under an identifier of the agency's kind, for a registry without records of its own here. The store's
    key qualifies it with the personal ID: an identifier may have several holders."""

    def make(citizen: Citizen, rng: random.Random) -> PersonRow:
        value = _identifier_of(identifier, citizen, rng)
        status = "deceased" if citizen.date_of_death else "active"
        return _row(citizen, f"{value}/{citizen.personal_id}", status, {identifier.field: value})

    return make


RECORDS = {"insured": _health, "taxpayers": _tax, "land-owners": _land, "enterprise-roles": _business}


@dataclass(frozen=True)
class RegistryProfile:
    """Who a registry holds (minimum age, share of those) and how it names them."""

    minimum_age: int
    share: float
    make: Callable[[Citizen, random.Random], PersonRow]
    active_status: str = "active"


def registry_profile(partner: str) -> RegistryProfile:
    """The profile of a partner's sandbox registry, from its agency file."""
    agency = load_agencies().get(partner)
    if agency is None or agency.sandbox is None:
        raise ValueError(f"the sandbox does not play {partner!r}: no schemas/agencies/{partner}.yaml with a sandbox")
    part = agency.sandbox
    make = RECORDS[part.records] if part.records else _identified(agency.reconciliation.identifier)
    return RegistryProfile(part.minimum_age, part.share, make)


# -- disagreements ----------------------------------------------------------------------------------------------------


def strip_diacritics(name: str) -> str:
    decomposed = unicodedata.normalize("NFD", name.replace("Đ", "D").replace("đ", "d"))
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) != "Mn"))


def _other_name(name: str, rng: random.Random) -> str:
    parts = name.split()
    if len(parts) > 2 and rng.random() < 0.5:
        return " ".join(parts[:1] + parts[2:])
    changed = strip_diacritics(name)
    return changed if changed != name else name + " Văn"


def _other_date(value: date, rng: random.Random) -> date:
    if value.day <= 12 and value.day != value.month and rng.random() < 0.5:
        return value.replace(day=value.month, month=value.day)
    return value + timedelta(days=rng.choice([-1, 1]))


def seed_registry(partner: str, citizens: Iterable[Citizen], seed: int) -> tuple[list[PersonRow], list[Disagreement]]:
    """The people of one partner's registry and the disagreements seeded into it."""
    profile = registry_profile(partner)
    rng = random.Random(f"{seed}:{partner}")
    people: list[PersonRow] = []
    truth: list[Disagreement] = []
    taken: set[str] = set()  # a registry's identifiers are unique (drawn again on a collision: land's serials collide
    for citizen in citizens:  # a few times among 100,000 citizens)
        if citizen.age() < profile.minimum_age or rng.random() >= profile.share:
            continue
        if rng.random() < SHARE_MISSING:
            truth.append(Disagreement(citizen.personal_id, "missing"))
            continue
        row = profile.make(citizen, rng)
        while row.identifier in taken:
            row = profile.make(citizen, rng)
        taken.add(row.identifier)
        if rng.random() < SHARE_NAME:
            other = _other_name(citizen.full_name, rng)
            truth.append(Disagreement(citizen.personal_id, "name_differs", citizen.full_name, other))
            row = _replace(row, full_name=other)
        if citizen.date_of_birth is not None and rng.random() < SHARE_DOB:
            other = _other_date(citizen.date_of_birth, rng).isoformat()
            truth.append(Disagreement(citizen.personal_id, "dob_differs", row.date_of_birth, other))
            row = _replace(row, date_of_birth=other)
        if citizen.date_of_death is not None and rng.random() < SHARE_DEAD_ACTIVE:
            truth.append(Disagreement(citizen.personal_id, "dead_but_active", citizen.date_of_death.isoformat()))
            row = _replace(row, status=profile.active_status)
        people.append(row)
    return people, truth


def _replace(row: PersonRow, **changes) -> PersonRow:
    return PersonRow(**{**vars(row), **changes})
