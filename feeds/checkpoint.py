"""Feed checkpoints: how far in the change log an outbound feed has been delivered.

A checkpoint moves only after the partner's signed receipt has been verified (DESIGN.md, principle 2). Between
sealing a package and that receipt, the checkpoint remembers the package as pending, with the change it covers
up to: a retry resends that sealed package (same package id, so the partner keeps it once) instead of sealing
another one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from population.db import session_factory
from population.models import FeedCheckpoint


@dataclass(frozen=True)
class Checkpoint:
    agreement: str
    last_change_sequence: int  # every change up to this one has been delivered (0: none yet)
    last_package_id: str | None
    pending_up_to: int | None
    pending_package: Path | None


def _row(session: Session, agreement: str) -> FeedCheckpoint:
    row = session.get(FeedCheckpoint, agreement, with_for_update=True)
    if row is None:
        row = FeedCheckpoint(agreement=agreement, last_change_sequence=0, updated_at=datetime.now(UTC))
        session.add(row)
    return row


def read_checkpoint(engine: Engine, agreement: str) -> Checkpoint:
    with session_factory(engine)() as session:
        row = session.get(FeedCheckpoint, agreement)
    if row is None:
        return Checkpoint(agreement, 0, None, None, None)
    pending = Path(row.pending_package) if row.pending_package else None
    return Checkpoint(agreement, row.last_change_sequence, row.last_package_id, row.pending_up_to, pending)


def start_feed(engine: Engine, agreement: str, at: int) -> bool:
    """Give a new feed its checkpoint at change ``at``; False (and nothing changed) when it has one already."""
    with session_factory(engine)() as session, session.begin():
        if session.get(FeedCheckpoint, agreement, with_for_update=True) is not None:
            return False
        session.add(FeedCheckpoint(agreement=agreement, last_change_sequence=at, updated_at=datetime.now(UTC)))
        return True


def hold_pending(engine: Engine, agreement: str, up_to: int, package: Path) -> None:
    """Remember the sealed package that covers the changes up to ``up_to``, until its receipt is verified."""
    with session_factory(engine)() as session, session.begin():
        row = _row(session, agreement)
        row.pending_up_to, row.pending_package, row.updated_at = up_to, str(package), datetime.now(UTC)


def move_checkpoint(engine: Engine, agreement: str, up_to: int, package_id: str | None) -> bool:
    """Move the feed to ``up_to`` (never backwards) and clear the pending package; returns False when the
    checkpoint was there already (a retry)."""
    with session_factory(engine)() as session, session.begin():
        row = _row(session, agreement)
        moved = up_to > row.last_change_sequence
        if moved:
            row.last_change_sequence, row.last_package_id = up_to, package_id or row.last_package_id
        row.pending_up_to, row.pending_package, row.updated_at = None, None, datetime.now(UTC)
        return moved
