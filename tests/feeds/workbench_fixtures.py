"""A population whose health and tax feeds were validated through the real code path (``feeds.outbound.validate``),
so that the quarantine holds records for the stewards' workbench: one citizen named with a hostile ``<script>``
(in decomposed Unicode, so the NFC rule holds them), one whose personal ID lost a digit (held, with a
block-severity finding: four eyes), and the population's own injected defects."""

from __future__ import annotations

import shutil
import unicodedata
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import Engine, select

from exchange.agreements import load_agreements
from feeds.outbound import extract, validate
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.models import Citizen
from population.simulation import DaySimulation
from validation.models import QuarantinedRecord

HOSTILE_NAME = "Nguyễn <script>alert(1)</script>"
AGREEMENTS = ("health-identity", "tax-identity")


@dataclass
class QueueWorld:
    engine: Engine
    url: str
    var: Path
    hostile_id: str  # the personal ID of the citizen with the hostile name
    short_id: str  # the personal ID that lost a digit (a block finding)
    personal_ids: set[str]

    def held(self, personal_id: str, agreement: str) -> int:
        with session_factory(self.engine)() as session:
            return session.scalar(
                select(QuarantinedRecord.id).where(
                    QuarantinedRecord.personal_id == personal_id, QuarantinedRecord.agreement == agreement
                )
            )


def queue_world(root: Path, sqlite_template: Path) -> QueueWorld:
    path = root / "population.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = create_population_engine(url)
    generate(engine, 250, 11, 0.03)
    DaySimulation(session_factory(engine), 11, date(2026, 7, 2)).run(60)
    with session_factory(engine).begin() as session:
        hostile, short = session.scalars(select(Citizen).order_by(Citizen.id).limit(2)).all()
        hostile.full_name = unicodedata.normalize("NFD", HOSTILE_NAME)
        short.personal_id = short.personal_id[:11]
        hostile_id, short_id = hostile.personal_id, short.personal_id
    agreements = load_agreements()
    for name in AGREEMENTS:
        window = extract(engine, agreements[name], mode="full")
        validate(engine, agreements[name], window, root / "staging" / name)
    with session_factory(engine)() as session:
        personal_ids = set(session.scalars(select(Citizen.personal_id)))
    return QueueWorld(engine, url, root / "var", hostile_id, short_id, personal_ids)
