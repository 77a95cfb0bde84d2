"""A day of life events for the synthetic population, applied through the life-event service.

The mix follows Viet Nam's vital rates roughly (births about 2.6 times deaths), plus moves, renamings, chip
cards, marriages and divorces. Candidates are drawn at random; an event that breaks a rule (the population
carries injected defects) is rejected by the service and counted with its rule, never half-applied.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from population import reference_data as ref
from population.events import BirthRegistration, LifeEventError, LifeEvents, age_on
from population.generator import PopulationGenerator
from population.models import Citizen, IdCard

EVENT_MIX = (
    ("birth", 26),
    ("death", 10),
    ("move", 30),
    ("name_change", 2),
    ("card", 22),
    ("marriage", 7),
    ("divorce", 3),
)


@dataclass
class DayReport:
    day: date
    applied: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)  # (event, rule) -> count
    no_candidate: Counter = field(default_factory=Counter)

    @property
    def total_applied(self) -> int:
        return sum(self.applied.values())


class DaySimulation:
    def __init__(self, sessions: sessionmaker[Session], seed: int, day: date):
        self.sessions = sessions
        self.rng = random.Random(seed)
        self.day = day
        self.events = LifeEvents(sessions, random.Random(seed + 1))
        self.names = PopulationGenerator(seed)
        with sessions() as session:
            self.max_id = session.scalar(select(func.max(Citizen.id))) or 0

    def run(self, count: int, progress: Callable[[int], None] | None = None) -> DayReport:
        report = DayReport(self.day)
        if self.max_id == 0:
            raise ValueError("the population is empty: generate one first")
        kinds = [k for k, _ in EVENT_MIX]
        weights = [w for _, w in EVENT_MIX]
        for _ in range(count):
            kind = self.rng.choices(kinds, weights)[0]
            try:
                done = getattr(self, f"_{kind}")()
            except LifeEventError as error:
                report.rejected[(error.event, error.rule)] += 1
            else:
                if done:
                    report.applied[done] += 1
                else:
                    report.no_candidate[kind] += 1
            if progress is not None:
                progress(1)
        return report

    # -- candidates -----------------------------------------------------------------------------------

    def _find(self, accept: Callable[[Citizen], bool], tries: int = 60) -> Citizen | None:
        with self.sessions() as session:
            for _ in range(tries):
                citizen = session.get(Citizen, self.rng.randint(1, self.max_id))
                if citizen is not None and citizen.date_of_death is None and accept(citizen):
                    return citizen
        return None

    def _age(self, citizen: Citizen) -> int:
        dob = citizen.date_of_birth
        return -1 if dob is None else age_on(dob, self.day)

    # -- events ---------------------------------------------------------------------------------------

    def _birth(self) -> str | None:
        mother = self._find(lambda c: c.sex == "F" and 18 <= self._age(c) <= 45)
        if mother is None:
            return None
        father_id = mother.spouse_personal_id
        sex = "M" if self.rng.random() < ref.SEX_RATIO_AT_BIRTH / (100 + ref.SEX_RATIO_AT_BIRTH) else "F"
        surname = (mother.spouse_name or mother.full_name).split(" ", 1)[0]
        born = self.day - timedelta(days=self.rng.randint(0, 20))
        self.events.register_birth(
            BirthRegistration(
                full_name=self.names.draw_name(surname, sex, born),
                sex=sex,
                date_of_birth=born,
                registration_province=mother.birth_registration_province or "001",
                ward_code=mother.permanent_ward_code or "",
                address=mother.permanent_address or "",
                place_of_birth=mother.place_of_birth,
                mother_personal_id=mother.personal_id,
                father_personal_id=father_id,
                ethnicity_code=mother.ethnicity_code,
                religion=mother.religion,
                registered_on=self.day,
            )
        )
        return "birth_registration"

    def _death(self) -> str | None:
        old = self.rng.random() < 0.8
        person = self._find(lambda c: self._age(c) >= 60 if old else True)
        if person is None:
            return None
        self.events.record_death(person.personal_id, self.day - timedelta(days=self.rng.randint(0, 3)), self.day)
        return "death"

    def _move(self) -> str | None:
        person = self._find(lambda c: self._age(c) >= 18)
        if person is None:
            return None
        province = self.names.province(self.rng)
        ward = self.rng.choice(self.names.wards[province])
        kind = "permanent" if self.rng.random() < 0.6 else "temporary"
        self.events.change_residence(person.personal_id, kind, ward[0], self.names.draw_address(ward), self.day)
        return f"{kind}_residence_change"

    def _name_change(self) -> str | None:
        person = self._find(lambda c: c.sex in ("M", "F"))
        if person is None:
            return None
        surname = person.full_name.split(" ", 1)[0]
        self.events.change_name(person.personal_id, self.names.draw_name(surname, person.sex, self.day), self.day)
        return "name_change"

    def _card(self) -> str | None:
        person = self._find(lambda c: self._age(c) >= 14)
        if person is None:
            return None
        with self.sessions() as session:
            active = session.scalar(
                select(func.count()).where(IdCard.citizen_id == person.id, IdCard.status == "active")
            )
        if active:
            self.events.renew_card(person.personal_id, self.day)
            return "card_renewal"
        self.events.issue_card(person.personal_id, self.day)
        return "card_issue"

    def _marriage(self) -> str | None:
        groom = self._find(lambda c: c.sex == "M" and 20 <= self._age(c) <= 40 and c.marital_status != "married")
        bride = self._find(lambda c: c.sex == "F" and 18 <= self._age(c) <= 38 and c.marital_status != "married")
        if groom is None or bride is None:
            return None
        self.events.marry(groom.personal_id, bride.personal_id, self.day)
        return "marriage"

    def _divorce(self) -> str | None:
        person = self._find(lambda c: c.marital_status == "married" and c.spouse_personal_id is not None)
        if person is None:
            return None
        self.events.divorce(person.personal_id, person.spouse_personal_id, self.day)
        return "divorce"
