"""Life events: the one domain service that changes citizens.

Each event checks its rules first; a violation raises ``LifeEventError`` naming the citizen (masked), the field
and the rule, and nothing is written. Otherwise the event's changes and their change-log entries are written in
one transaction.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from population import admin_units, changelog
from population.identity import (
    build_personal_id,
    is_personal_id,
    mask_personal_id,
)
from population.models import Citizen, Household, IdCard
from population.names import fold_name, name_problems, normalise_name

RESIDENCE_KINDS = ("permanent", "temporary", "current")
MARRIAGE_AGE = {"M": 20, "F": 18}  # Law on Marriage and Family 2014, art. 8
CARD_RENEWAL_AGES = (14, 25, 40, 60)  # Law on Identification 2023, art. 21


class LifeEventError(ValueError):
    """A life event broke a rule. Names the citizen (masked personal ID), the field and the rule."""

    def __init__(self, event: str, citizen: str, field: str, rule: str, detail: str):
        self.event, self.citizen, self.field, self.rule, self.detail = event, citizen, field, rule, detail
        super().__init__(f"{event} rejected for citizen {citizen}: field '{field}' breaks rule '{rule}': {detail}")


@dataclass(frozen=True)
class BirthRegistration:
    full_name: str
    sex: str
    date_of_birth: date
    registration_province: str  # 3-digit legacy code, the ID number's prefix
    ward_code: str
    address: str
    place_of_birth: str | None = None
    mother_personal_id: str | None = None
    father_personal_id: str | None = None
    ethnicity_code: str | None = None
    religion: str | None = None
    nationality: str = "VN"
    personal_id: str | None = None  # assigned when not given
    registered_on: date | None = None  # defaults to the date of birth


def card_expiry(date_of_birth: date, issued_on: date) -> date | None:
    """Cards are renewed at 14, 25, 40 and 60; one issued within two years of a renewal age lasts to the next;
    one issued at 58 or older does not expire."""
    age = age_on(date_of_birth, issued_on)
    for renewal_age in CARD_RENEWAL_AGES:
        if age < renewal_age - 2:
            return _birthday(date_of_birth, renewal_age)
    return None


def _birthday(date_of_birth: date, age: int) -> date:
    try:
        return date_of_birth.replace(year=date_of_birth.year + age)
    except ValueError:  # 29 February
        return date(date_of_birth.year + age, 3, 1)


def age_on(date_of_birth: date, on: date) -> int:
    """Age in whole years on a date."""
    return on.year - date_of_birth.year - ((on.month, on.day) < (date_of_birth.month, date_of_birth.day))


class _Event:
    """The changes of one event inside one transaction, and the rule checks that name who broke what."""

    def __init__(self, session: Session, name: str, event_date: date):
        self.session, self.name, self.event_date = session, name, event_date
        self.pending: list[changelog.PendingChange] = []

    def fail(self, citizen: str | None, field: str, rule: str, detail: str) -> LifeEventError:
        label = mask_personal_id(citizen) if citizen else "(newborn, no personal ID yet)"
        return LifeEventError(self.name, label, field, rule, detail)

    def citizen(self, personal_id: str, field: str = "personal_id") -> Citizen:
        found = None
        if is_personal_id(personal_id):
            found = self.session.scalar(select(Citizen).where(Citizen.personal_id == personal_id))
        if found is None:
            raise self.fail(personal_id, field, "unknown_citizen", "no citizen has this personal ID")
        return found

    def living(self, personal_id: str, field: str = "personal_id") -> Citizen:
        found = self.citizen(personal_id, field)
        if found.date_of_death is not None and found.date_of_death <= self.event_date:
            raise self.fail(personal_id, "date_of_death", "citizen_dead", f"died on {found.date_of_death}")
        if found.date_of_birth is not None and self.event_date < found.date_of_birth:
            raise self.fail(personal_id, "event_date", "event_before_birth", "the event predates the birth")
        return found

    def check_date(self, citizen: str | None, field: str, value: date) -> None:
        if value > datetime.now(UTC).date():
            raise self.fail(citizen, field, "date_in_future", f"{value} is after today")

    def check_ward(self, citizen: str | None, field: str, ward_code: str) -> None:
        if admin_units.ward_in_force(self.session, ward_code, self.event_date) is None:
            raise self.fail(
                citizen,
                field,
                "ward_not_in_force",
                f"ward code {ward_code!r} is not in force on {self.event_date}",
            )

    def check_name(self, citizen: str | None, field: str, name: str) -> str:
        problems = name_problems(name)
        if problems:
            raise self.fail(citizen, field, "invalid_name", "; ".join(problems))
        return normalise_name(name)

    def _entry(self, citizen: Citizen, event_type: str | None) -> changelog.PendingChange:
        """The change-log entry of this event for this citizen: one per citizen and event type."""
        kind = event_type or self.name
        for entry in self.pending:
            if entry.citizen is citizen and entry.event_type == kind:
                return entry
        entry = changelog.PendingChange(citizen, kind, self.event_date)
        self.pending.append(entry)
        return entry

    def change(self, citizen: Citizen, event_type: str | None = None, **values: Any) -> None:
        """Set fields on a citizen and remember old and new values for the change log."""
        entry = self._entry(citizen, event_type)
        for field, new in values.items():
            old = getattr(citizen, field)
            if old != new:
                entry.fields[field] = {"old": old, "new": new}
                setattr(citizen, field, new)
        if entry.fields:
            citizen.updated_at = datetime.now(UTC)

    def created(self, citizen: Citizen, values: dict[str, Any]) -> None:
        """Record a new citizen: every field goes from nothing to its value."""
        self._entry(citizen, None).fields.update(
            {f: {"old": None, "new": v} for f, v in values.items() if v is not None}
        )

    def note(self, citizen: Citizen, field: str, old: Any, new: Any) -> None:
        """Record a change to something held outside the citizen row (an ID card)."""
        self._entry(citizen, None).fields[field] = {"old": old, "new": new}

    def active_card(self, citizen: Citizen) -> IdCard | None:
        return self.session.scalar(
            select(IdCard).where(IdCard.citizen_id == citizen.id, IdCard.status == "active").order_by(IdCard.id.desc())
        )


class LifeEvents:
    """Applies life events to the population database, one transaction per event."""

    def __init__(self, sessions: sessionmaker[Session], rng: random.Random | None = None):
        self._sessions = sessions
        self._rng = rng or random.Random()

    def _run(self, name: str, event_date: date, apply) -> Any:
        with self._sessions() as session, session.begin():
            event = _Event(session, name, event_date)
            event.check_date(None, "event_date", event_date)
            result = apply(event)
            changelog.append(session, event.pending)
        return result

    # -- births and deaths -------------------------------------------------------------------------------

    def register_birth(self, birth: BirthRegistration) -> str:
        """Registers a newborn and returns the personal ID given to them."""
        registered_on = birth.registered_on or birth.date_of_birth

        def apply(event: _Event) -> str:
            label = birth.personal_id
            name = event.check_name(label, "full_name", birth.full_name)
            if birth.sex not in ("M", "F"):
                raise event.fail(label, "sex", "invalid_sex", "sex must be 'M' or 'F'")
            event.check_date(label, "date_of_birth", birth.date_of_birth)
            if registered_on < birth.date_of_birth:
                raise event.fail(label, "registered_on", "event_before_birth", "registered before being born")
            if admin_units.legacy_province(event.session, birth.registration_province) is None:
                raise event.fail(
                    label,
                    "registration_province",
                    "unknown_province",
                    f"{birth.registration_province!r} is not one of the 63 province codes used in ID numbers",
                )
            event.check_ward(label, "ward_code", birth.ward_code)
            mother = father = None
            if birth.mother_personal_id:
                mother = event.citizen(birth.mother_personal_id, "mother_personal_id")
                if mother.date_of_death is not None and mother.date_of_death < birth.date_of_birth:
                    raise event.fail(label, "mother_personal_id", "parent_dead", "the mother died before the birth")
                self._check_parent(event, label, "mother_personal_id", mother, birth.date_of_birth)
            if birth.father_personal_id:
                father = event.citizen(birth.father_personal_id, "father_personal_id")
                # a father may have died up to ten months before the birth
                if father.date_of_death is not None and (birth.date_of_birth - father.date_of_death).days > 300:
                    raise event.fail(label, "father_personal_id", "parent_dead", "the father died long before")
                self._check_parent(event, label, "father_personal_id", father, birth.date_of_birth)
            personal_id = birth.personal_id or self._new_personal_id(event, birth)
            if not is_personal_id(personal_id):
                raise event.fail(personal_id, "personal_id", "invalid_id", "a personal ID is exactly 12 ASCII digits")
            if event.session.scalar(select(Citizen.id).where(Citizen.personal_id == personal_id)) is not None:
                raise event.fail(personal_id, "personal_id", "duplicate_id", "another citizen has this personal ID")

            household, relation = self._household_for(event, mother or father)
            values = dict(
                personal_id=personal_id,
                full_name=name,
                name_fold=fold_name(name),
                date_of_birth=birth.date_of_birth,
                sex=birth.sex,
                place_of_birth=birth.place_of_birth,
                birth_registration_province=birth.registration_province,
                hometown=father.hometown if father else (mother.hometown if mother else None),
                ethnicity_code=birth.ethnicity_code,
                religion=birth.religion,
                nationality=birth.nationality,
                father_personal_id=father.personal_id if father else None,
                father_name=father.full_name if father else None,
                mother_personal_id=mother.personal_id if mother else None,
                mother_name=mother.full_name if mother else None,
                permanent_ward_code=birth.ward_code,
                permanent_address=birth.address,
                current_ward_code=birth.ward_code,
                current_address=birth.address,
                marital_status="single",
                household_id=household.id if household else None,
                relation_to_head=relation,
            )
            child = Citizen(**values, updated_at=datetime.now(UTC))
            event.session.add(child)
            event.session.flush()
            event.created(child, values)
            return personal_id

        return self._run("birth_registration", registered_on, apply)

    @staticmethod
    def _check_parent(event: _Event, label, field: str, parent: Citizen, date_of_birth: date) -> None:
        if parent.date_of_birth is not None and age_on(parent.date_of_birth, date_of_birth) < 12:
            raise event.fail(label, field, "parent_too_young", "the parent would be younger than 12 at the birth")

    def _new_personal_id(self, event: _Event, birth: BirthRegistration) -> str:
        for _ in range(100):
            candidate = build_personal_id(
                birth.registration_province, birth.date_of_birth, birth.sex, self._rng.randrange(1_000_000)
            )
            if event.session.scalar(select(Citizen.id).where(Citizen.personal_id == candidate)) is None:
                return candidate
        raise event.fail(None, "personal_id", "id_space_exhausted", "no free personal ID found in 100 draws")

    @staticmethod
    def _household_for(event: _Event, parent: Citizen | None) -> tuple[Household | None, str | None]:
        if parent is None or parent.household_id is None:
            return None, None
        relation = {"head": "child", "spouse": "child", "child": "grandchild"}.get(
            parent.relation_to_head or "", "other"
        )
        return event.session.get(Household, parent.household_id), relation

    def record_death(self, personal_id: str, date_of_death: date, recorded_on: date | None = None) -> None:
        def apply(event: _Event) -> None:
            citizen = event.citizen(personal_id)
            if citizen.date_of_death is not None:
                raise event.fail(
                    personal_id, "date_of_death", "already_dead", f"already dead on {citizen.date_of_death}"
                )
            event.check_date(personal_id, "date_of_death", date_of_death)
            if citizen.date_of_birth is not None and date_of_death < citizen.date_of_birth:
                raise event.fail(personal_id, "date_of_death", "death_before_birth", "the death predates the birth")
            if recorded_on is not None and recorded_on < date_of_death:
                raise event.fail(personal_id, "recorded_on", "recorded_before_death", "recorded before it happened")
            event.change(citizen, date_of_death=date_of_death)
            card = event.active_card(citizen)
            if card is not None:
                card.status = "cancelled"
                event.note(citizen, "card_status", "active", "cancelled")
            if citizen.spouse_personal_id:
                spouse = event.session.scalar(select(Citizen).where(Citizen.personal_id == citizen.spouse_personal_id))
                if spouse is not None and spouse.date_of_death is None:
                    event.change(spouse, "spouse_death", marital_status="widowed")

        self._run("death", recorded_on or date_of_death, apply)

    # -- residence and name -----------------------------------------------------------------------------

    def change_residence(self, personal_id: str, kind: str, ward_code: str, address: str, event_date: date) -> None:
        def apply(event: _Event) -> None:
            citizen = event.living(personal_id)
            if kind not in RESIDENCE_KINDS:
                raise event.fail(
                    personal_id, "kind", "unknown_residence_kind", f"kind must be one of {RESIDENCE_KINDS}"
                )
            event.check_ward(personal_id, f"{kind}_ward_code", ward_code)
            if not address or not address.strip():
                raise event.fail(personal_id, f"{kind}_address", "missing_address", "an address is required")
            values = {f"{kind}_ward_code": ward_code, f"{kind}_address": normalise_name(address)}
            if all(getattr(citizen, f) == v for f, v in values.items()):
                raise event.fail(personal_id, f"{kind}_ward_code", "unchanged", "the citizen already lives there")
            event.change(citizen, **values)

        self._run(f"{kind}_residence_change", event_date, apply)

    def change_name(self, personal_id: str, new_name: str, event_date: date) -> None:
        def apply(event: _Event) -> None:
            citizen = event.living(personal_id)
            name = event.check_name(personal_id, "full_name", new_name)
            if name == citizen.full_name:
                raise event.fail(personal_id, "full_name", "unchanged", "the new name is the current name")
            earlier = [n for n in (citizen.other_names or "").split("; ") if n] + [citizen.full_name]
            event.change(citizen, full_name=name, name_fold=fold_name(name), other_names="; ".join(earlier))

        self._run("name_change", event_date, apply)

    # -- ID cards ---------------------------------------------------------------------------------------

    def issue_card(self, personal_id: str, issued_on: date) -> None:
        """First chip card for a citizen who has none in force."""

        def apply(event: _Event) -> None:
            citizen = event.living(personal_id)
            if event.active_card(citizen) is not None:
                raise event.fail(personal_id, "card_status", "card_active_exists", "renew the active card instead")
            self._new_card(event, citizen, issued_on)

        self._run("card_issue", issued_on, apply)

    def renew_card(self, personal_id: str, issued_on: date) -> None:
        """Replace the card in force (renewal age, loss, damage or changed particulars)."""

        def apply(event: _Event) -> None:
            citizen = event.living(personal_id)
            card = event.active_card(citizen)
            if card is None:
                raise event.fail(personal_id, "card_status", "no_active_card", "there is no card in force to renew")
            if issued_on < card.issued_on:
                raise event.fail(personal_id, "issued_on", "before_current_card", "predates the card in force")
            card.status = "replaced"
            self._new_card(event, citizen, issued_on)

        self._run("card_renewal", issued_on, apply)

    @staticmethod
    def _new_card(event: _Event, citizen: Citizen, issued_on: date) -> None:
        if citizen.date_of_birth is None:
            raise event.fail(citizen.personal_id, "date_of_birth", "missing_mandatory", "needed to set card expiry")
        expires = card_expiry(citizen.date_of_birth, issued_on)
        event.session.add(
            IdCard(
                citizen_id=citizen.id,
                card_number=citizen.personal_id,
                issued_on=issued_on,
                expires_on=expires,
                status="active",
            )
        )
        event.note(citizen, "card_issued_on", None, issued_on)
        event.note(citizen, "card_expires_on", None, expires)

    # -- marriage ---------------------------------------------------------------------------------------

    def marry(self, personal_id: str, spouse_personal_id: str, event_date: date) -> None:
        def apply(event: _Event) -> None:
            if personal_id == spouse_personal_id:
                raise event.fail(personal_id, "spouse_personal_id", "same_person", "a citizen cannot marry themself")
            a = event.living(personal_id)
            b = event.living(spouse_personal_id, "spouse_personal_id")
            for person in (a, b):
                if person.marital_status == "married" or person.spouse_personal_id:
                    raise event.fail(person.personal_id, "marital_status", "already_married", "is married")
                minimum = MARRIAGE_AGE.get(person.sex or "", 20)
                if person.date_of_birth is None or age_on(person.date_of_birth, event_date) < minimum:
                    raise event.fail(person.personal_id, "date_of_birth", "under_marriage_age", f"under {minimum}")
            event.change(a, spouse_personal_id=b.personal_id, spouse_name=b.full_name, marital_status="married")
            event.change(b, spouse_personal_id=a.personal_id, spouse_name=a.full_name, marital_status="married")

        self._run("marriage", event_date, apply)

    def divorce(self, personal_id: str, spouse_personal_id: str, event_date: date) -> None:
        def apply(event: _Event) -> None:
            a = event.living(personal_id)
            b = event.citizen(spouse_personal_id, "spouse_personal_id")
            if a.spouse_personal_id != b.personal_id or b.spouse_personal_id != a.personal_id:
                raise event.fail(personal_id, "spouse_personal_id", "not_married_to", "not married to each other")
            for person in (a, b):
                event.change(person, spouse_personal_id=None, spouse_name=None, marital_status="divorced")

        self._run("divorce", event_date, apply)
