"""Package sequence numbers, per feed: one sender's packages for one agreement and direction.

The sending side numbers its packages 1, 2, 3 … and puts the previous manifest's SHA-256 in each; the receiving
side accepts only the next number whose previous hash is the manifest it accepted last. So a package seen again
is a replay, a number skipped is a gap, and two different packages claiming the same place are a fork.
Both sides keep their state in ``package_feed``; a writer holds the feed's row lock until it commits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from lienthong_verify.sequence import (  # noqa: F401 (re-exported: the sequence rule lives in the partners' kit)
    INBOUND,
    OUTBOUND,
    Feed,
    direction_of,
)
from lienthong_verify.sequence import check_next as check_after
from population.models import LedgerEntry, PackageFeed

SENT, RECEIVED = "sent", "received"


def state(session: Session, side: str, feed: Feed) -> PackageFeed | None:
    return session.scalar(_where(select(PackageFeed), side, feed))


def locked_state(session: Session, side: str, feed: Feed) -> PackageFeed:
    """The feed's row, created if new, locked until the transaction ends (the insert takes SQLite's write lock,
    FOR UPDATE PostgreSQL's row lock)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(
        insert(PackageFeed)
        .values(
            side=side,
            sender=feed.sender,
            agreement=feed.agreement,
            direction=feed.direction,
            last_sequence=0,
            updated_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing()
    )
    return session.scalars(_where(select(PackageFeed), side, feed).with_for_update()).one()


def _where(query, side: str, feed: Feed):
    return query.where(
        PackageFeed.side == side,
        PackageFeed.sender == feed.sender,
        PackageFeed.agreement == feed.agreement,
        PackageFeed.direction == feed.direction,
    )


def advance(row: PackageFeed, sequence: int, package_id: str, manifest_sha256: str) -> None:
    row.last_sequence = sequence
    row.last_package_id = package_id
    row.last_manifest_sha256 = manifest_sha256
    row.updated_at = datetime.now(UTC)


def check_next(
    session: Session,
    feed: Feed,
    last: PackageFeed | None,
    sequence: int,
    previous_manifest_sha256: str | None,
    manifest_sha256: str,
) -> None:
    """Is this package the next one on the feed, after ``last`` (the receiving side's state)?"""
    last_sequence = last.last_sequence if last else 0
    last_hash = last.last_manifest_sha256 if last else None
    accepted = partial(_accepted_manifest, session, feed)
    check_after(feed, last_sequence, last_hash, sequence, previous_manifest_sha256, manifest_sha256, accepted)


def _accepted_manifest(session: Session, feed: Feed, sequence: int) -> str | None:
    """The manifest hash the ledger recorded when package ``sequence`` of the feed was received."""
    return session.scalar(
        select(LedgerEntry.manifest_sha256).where(
            LedgerEntry.kind == "package_received",
            LedgerEntry.sender == feed.sender,
            LedgerEntry.agreement == feed.agreement,
            LedgerEntry.direction == feed.direction,
            LedgerEntry.sequence == sequence,
        )
    )
