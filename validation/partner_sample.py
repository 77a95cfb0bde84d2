"""Partner datasets derived from a generated population, with deliberate disagreements and their ground truth.

Until the partners' own servers exist, this is what a partner would send: people of the population database
with the partner's identifier, a share of rows changed the ways real registries disagree (an unknown or
missing personal ID, another spelling of the name, another date of birth or sex, a dead person still active,
one identifier given to two people). ``truth`` says which row was changed how, to score reconciliation. Each
partner's identifiers are made by their kind, and its fields named, as its agency file says
(``schemas/agencies/<partner>.yaml``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from population.models import Citizen
from validation.suites import Registry, partner_dataset

DISAGREEMENTS = ("unknown_id", "missing_id", "name_differs", "date_of_birth_differs", "sex_differs",
                 "dead_but_active", "duplicate_link")  # fmt: skip
_WEIGHTS = (31, 29, 23, 19, 17, 13, 7, 5, 3)


@dataclass
class PartnerSample:
    partner: str
    rows: pd.DataFrame  # the dataset's columns as text, indexed by row number from 1
    truth: dict[int, str]  # row number -> the disagreement made on it (rows not listed are left as they were)


def tax_code(rng: random.Random) -> str:
    """A 10-digit tax code with a valid check digit."""
    while True:
        body = f"{rng.randrange(10, 100):02d}{rng.randrange(1, 10**7):07d}"
        check = 10 - sum(w * int(d) for w, d in zip(_WEIGHTS, body, strict=True)) % 11
        if check < 10:
            return body + str(check)


def _identifier(registry: Registry, rng: random.Random, citizen) -> dict:
    """The partner's identifier for a citizen, made by its kind (a certificate with its parcel)."""
    if registry.kind == "digits":
        return {registry.identifier: f"{rng.randrange(10**registry.length):0{registry.length}d}"}
    if registry.kind == "personal-tax-code":
        return {registry.identifier: citizen.personal_id if rng.random() < 0.5 else tax_code(rng)}
    if registry.kind == "tax-code":
        return {registry.identifier: tax_code(rng)}
    parcel = registry.parcel  # certificate-serial
    return {registry.identifier: f"D{rng.choice('KLMNP')} {rng.randrange(10**6):06d}",
            parcel["commune"]: citizen.permanent_ward_code, parcel["map_sheet"]: str(rng.randint(1, 60)),
            parcel["parcel_number"]: str(rng.randint(1, 900))}  # fmt: skip


def _coded(schema: dict, record: dict, rng: random.Random) -> dict:
    """One of its values for each other required field with a code list (an enterprise role, say)."""
    required = set(schema.get("required", ()))
    return {column: rng.choice([value for value in prop["enum"] if value is not None])
            for column, prop in schema["properties"].items()
            if column in required and "enum" in prop and column not in record}  # fmt: skip


def partner_sample(
    engine: Engine, partner: str, rows: int, seed: int = 1, disagreement_rate: float = 0.1, as_of: date | None = None
) -> PartnerSample:
    """``rows`` partner rows about distinct citizens (adults first); ``disagreement_rate`` of them changed."""
    spec = partner_dataset(partner)
    registry = spec.registry
    rng = random.Random(seed)
    recorded_at = f"{(as_of or date(2026, 7, 1)).isoformat()}T00:00:00+00:00"
    with engine.connect() as connection:
        living = connection.execute(
            select(Citizen).where(Citizen.date_of_death.is_(None)).order_by(Citizen.id).limit(rows * 3)
        ).all()
        dead = connection.execute(select(Citizen).where(Citizen.date_of_death.isnot(None)).limit(rows)).all()
    chosen = rng.sample(living, min(rows, len(living)))
    records = []
    for citizen in chosen:
        record = {
            "personal_id": citizen.personal_id, "full_name": citizen.full_name,
            "date_of_birth": citizen.date_of_birth.isoformat(), "sex": citizen.sex,
            **_identifier(registry, rng, citizen), "status": "active", spec.record_date: recorded_at,
        }  # fmt: skip
        records.append(record | _coded(spec.schema, _as_dataset(record, registry), rng))
    truth: dict[int, str] = {}
    changed = rng.sample(range(len(records)), int(len(records) * disagreement_rate))
    for position, index in enumerate(changed):
        kind = DISAGREEMENTS[position % len(DISAGREEMENTS)]
        record = records[index]
        if kind == "sex_differs" and "sex" not in registry.match:
            continue  # land offices hold no sex
        if kind == "unknown_id":
            record["personal_id"] = "099" + record["personal_id"][3:]  # no province 099: never issued
        elif kind == "missing_id":
            record["personal_id"] = None
        elif kind == "name_differs":
            surname, rest = record["full_name"].split(" ", 1)
            record["full_name"] = f"{surname} {rest} Anh"
        elif kind == "date_of_birth_differs":
            born = date.fromisoformat(record["date_of_birth"]) + timedelta(days=rng.choice((-40, -3, 2, 31)))
            record["date_of_birth"] = born.isoformat()
        elif kind == "sex_differs":
            record["sex"] = "F" if record["sex"] == "M" else "M"
        elif kind == "dead_but_active":
            if not dead:
                continue
            person = dead.pop()
            record.update(personal_id=person.personal_id, full_name=person.full_name, sex=person.sex,
                          date_of_birth=person.date_of_birth.isoformat())  # fmt: skip
        elif kind == "duplicate_link":
            first_unchanged = min(set(range(len(records))) - set(changed))
            if not registry.one_holder or first_unchanged > index:
                continue  # shared certificates and enterprises are normal
            record[spec.identifier] = records[first_unchanged][spec.identifier]
        truth[index + 1] = kind
    frame = pd.DataFrame.from_records([_as_dataset(record, registry) for record in records], columns=spec.columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return PartnerSample(partner, frame.astype("str"), truth)


def _as_dataset(record: dict, registry: Registry) -> dict:
    """A sample record (in force at the partner) with the partner's names for the population's fields and status."""
    named = {registry.match.get(key, key): value for key, value in record.items() if key != "status"}
    if registry.status:
        named[registry.status] = registry.active[0]
    return named
