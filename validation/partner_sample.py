"""Partner datasets derived from a generated population, with deliberate disagreements and their ground truth.

Until the partners' own servers exist, this is what a partner would send: people of the population database
with the partner's identifier, a share of rows changed the ways real registries disagree (an unknown or
missing personal ID, another spelling of the name, another date of birth or sex, a dead person still active,
one identifier given to two people). ``truth`` says which row was changed how, to score reconciliation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, select

from population.models import Citizen
from validation.reconciliation import ONE_HOLDER
from validation.suites import PARTNER_DATASETS

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


def _identifier(partner: str, rng: random.Random, citizen) -> dict:
    if partner == "health":
        return {"social_insurance_number": f"{rng.randrange(10**10):010d}"}
    if partner == "tax":
        return {"tax_code": citizen.personal_id if rng.random() < 0.5 else tax_code(rng)}
    if partner == "land":
        return {"certificate_serial": f"D{rng.choice('KLMNP')} {rng.randrange(10**6):06d}",
                "commune_code": citizen.permanent_ward_code, "map_sheet": str(rng.randint(1, 60)),
                "parcel_number": str(rng.randint(1, 900))}  # fmt: skip
    return {"enterprise_code": tax_code(rng), "role": rng.choice(("founder", "legal_representative", "owner"))}


def partner_sample(
    engine: Engine, partner: str, rows: int, seed: int = 1, disagreement_rate: float = 0.1, as_of: date | None = None
) -> PartnerSample:
    """``rows`` partner rows about distinct citizens (adults first); ``disagreement_rate`` of them changed."""
    spec = PARTNER_DATASETS[partner]
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
        records.append({
            "personal_id": citizen.personal_id, "full_name": citizen.full_name,
            "date_of_birth": citizen.date_of_birth.isoformat(), "sex": citizen.sex,
            **_identifier(partner, rng, citizen), "status": "active", spec.record_date: recorded_at,
        })  # fmt: skip
    truth: dict[int, str] = {}
    changed = rng.sample(range(len(records)), int(len(records) * disagreement_rate))
    for position, index in enumerate(changed):
        kind = DISAGREEMENTS[position % len(DISAGREEMENTS)]
        record = records[index]
        if kind == "sex_differs" and "sex" not in spec.columns:
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
            if partner not in ONE_HOLDER or first_unchanged > index:
                continue  # shared certificates and enterprises are normal
            record[spec.identifier] = records[first_unchanged][spec.identifier]
        truth[index + 1] = kind
    frame = pd.DataFrame.from_records(records, columns=spec.columns)
    frame.index = pd.RangeIndex(1, len(frame) + 1)
    return PartnerSample(partner, frame.astype("str"), truth)
