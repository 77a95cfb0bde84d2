"""The ordered change log that feeds read as "changes after N".

Ordering under concurrent writers: sequence numbers are not drawn from a database sequence (a transaction that
drew a smaller number could commit after a reader had already moved past it). Instead each writer, as the last
thing before commit, bumps the single ``change_log_head`` row. The row lock it takes is held until commit, so
the next writer waits, and numbers become visible strictly in order and without gaps: once a reader has seen
change N, every change numbered N or less is already committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from population.models import Change, ChangeLogHead, Citizen

CHANGE_LOG_CHANNEL = "lienthong_change_log"
"""PostgreSQL's notification channel on which each transaction that numbers changes announces the new head
(delivered at its commit, and only then); ``feeds.change_log_events`` listens to it."""

# The kinds of life event the change log records (``Change.event_type``, written by ``population.events``): what
# an agreement's row selection names (``events: [death]``). A birth is ``birth_registration``; a move, one of the
# three ``*_residence_change``; a renaming, ``name_change``; the surviving spouse's entry of a death,
# ``spouse_death``.
EVENT_TYPES = (
    "birth_registration",
    "death",
    "spouse_death",
    "permanent_residence_change",
    "temporary_residence_change",
    "current_residence_change",
    "name_change",
    "card_issue",
    "card_renewal",
    "marriage",
    "divorce",
)


@dataclass
class PendingChange:
    citizen: Citizen
    event_type: str
    event_date: date
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def append(session: Session, pending: list[PendingChange]) -> list[Change]:
    """Number and write the changes of this transaction, and (PostgreSQL) notify ``CHANGE_LOG_CHANNEL`` of the new
    head at its commit. Call it last, right before commit."""
    pending = [p for p in pending if p.fields]
    unknown = sorted({p.event_type for p in pending} - set(EVENT_TYPES))
    if unknown:  # agreements select rows by these names: a new kind of event is named in EVENT_TYPES first
        raise ValueError(f"not event types of the change log: {', '.join(unknown)}")
    if not pending:
        return []
    last = session.execute(
        update(ChangeLogHead)
        .where(ChangeLogHead.id == 1)
        .values(last_sequence=ChangeLogHead.last_sequence + len(pending))
        .returning(ChangeLogHead.last_sequence)
    ).scalar_one()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(CHANGE_LOG_CHANNEL, str(last))))
    first = last - len(pending) + 1
    now = datetime.now(UTC)
    entries = [
        Change(
            sequence=first + offset,
            citizen_id=p.citizen.id,
            personal_id=p.citizen.personal_id,
            event_type=p.event_type,
            changes={
                name: {"old": _json_value(v["old"]), "new": _json_value(v["new"])} for name, v in p.fields.items()
            },
            event_date=p.event_date,
            recorded_at=now,
        )
        for offset, p in enumerate(pending)
    ]
    session.add_all(entries)
    session.flush()
    return entries


def changes_after(session: Session, sequence: int, limit: int = 10_000) -> list[Change]:
    """The next committed changes after ``sequence``, in order."""
    return list(
        session.scalars(select(Change).where(Change.sequence > sequence).order_by(Change.sequence).limit(limit))
    )


def changed_citizens(after: int, up_to: int, event_types: Sequence[str] = ()):
    """The citizens (ids) with a change numbered after ``after`` up to ``up_to``, of these event types (any
    when none is given), as a subquery."""
    query = select(Change.citizen_id).where(Change.sequence > after, Change.sequence <= up_to)
    return query.where(Change.event_type.in_(list(event_types))) if event_types else query


def last_sequence(session: Session) -> int:
    return session.execute(select(ChangeLogHead.last_sequence).where(ChangeLogHead.id == 1)).scalar_one()
