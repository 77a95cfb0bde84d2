"""What the population database says should cross: the people changed in a window, the people a feed held back."""

from __future__ import annotations

from sqlalchemy import select

from population.db import session_factory
from population.models import Change, Citizen
from validation.models import QuarantinedRecord, ValidationRun


def changed_personal_ids(engine, after: int, up_to: int | None = None) -> set[str]:
    """The personal IDs of citizens with a change after ``after`` (up to ``up_to``, when given)."""
    changed = select(Change.citizen_id).where(Change.sequence > after)
    if up_to is not None:
        changed = changed.where(Change.sequence <= up_to)
    with session_factory(engine)() as session:
        return set(session.scalars(select(Citizen.personal_id).where(Citizen.id.in_(changed))))


def quarantined_ids(engine, agreement: str) -> set[str]:
    """The personal IDs every validation run of this agreement's feeds held back."""
    with session_factory(engine)() as session:
        runs = select(ValidationRun.id).where(ValidationRun.source.like(f"{agreement}:%"))
        return set(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id.in_(runs))))


def selected_personal_ids(engine, agreement, after: int, up_to: int | None = None) -> set[str]:
    """The personal IDs of citizens changed in the window that the agreement's outbound ``select`` takes (worked
    out in Python, apart from the feed's SQL): a change of one of its events, and every field test met."""
    rows = agreement.directions["outbound"].rows
    changed = select(Change.citizen_id).where(Change.sequence > after)
    if up_to is not None:
        changed = changed.where(Change.sequence <= up_to)
    if rows.events:
        changed = changed.where(Change.event_type.in_(rows.events))
    with session_factory(engine)() as session:
        people = session.scalars(select(Citizen).where(Citizen.id.in_(changed)))
        return {person.personal_id for person in people if all(_meets(person, test) for test in rows.where)}


def _meets(person, test) -> bool:
    value = getattr(person, test.field)
    if test.test == "prefix":
        return value is not None and any(value.startswith(prefix) for prefix in test.values)
    return value in test.values
