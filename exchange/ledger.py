"""The tamper-evident exchange ledger: an append-only, hash-chained table in the population database.

Each entry records a package sent or received, or a receipt sent or received. Its hash is the SHA-256 of a
canonical JSON of its fields, the previous entry's hash among them, so an edited, deleted, inserted or reordered
entry breaks the chain from that point on. ``verify`` walks the chain and names the first bad entry.

One chain under concurrent writers: an appender first updates the single ``ledger_head`` row, whose row lock
(PostgreSQL) or write lock (SQLite) it holds until commit, so appends are serialised and each one sees the hash
of the one before. Call ``append`` last in a transaction, as with the change log. Triggers refuse UPDATE and
DELETE on ``ledger_entry``; a rewrite of the whole chain by someone who drops them is caught by the signed
anchors of its head that the daily audit keeps outside the database (``exchange.anchor``), and by the partners:
each package's manifest carries the sender's ledger head at sealing (``Head``: the entry just before the package's
own ``package_sent``), and the partner's signed receipt echoes it (Receipt 1.1), so every partner holds signed
points of the chain that a rewrite must contradict (``feeds.audit.audit_witnesses``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from exchange.errors import LedgerBroken
from lienthong_verify.package import Head as Head  # a point of the chain, as manifests carry it
from population.models import LedgerEntry, LedgerHead

GENESIS_HASH = "0" * 64
KINDS = ("package_sent", "package_received", "receipt_sent", "receipt_received")


@dataclass(frozen=True)
class LedgerRecord:
    """What one entry says, before it is placed in the chain."""

    kind: str
    agreement: str
    direction: str
    sender: str
    recipient: str
    package_id: str
    sequence: int
    manifest_sha256: str
    record_count: int
    signer_fingerprint: str
    status: str | None = None  # of a receipt


@dataclass(frozen=True)
class LedgerState:
    entries: int
    head_hash: str


def head(session: Session, *, lock: bool = False) -> Head | None:
    """The chain's last entry, None while it is empty. With ``lock``, the head row's lock is taken for the rest of
    the transaction (as ``append`` takes it), so that nothing is appended between this and the caller's append."""
    if lock:
        position, last_hash = _lock_head(session)
    else:
        position, last_hash = session.execute(
            select(LedgerHead.last_position, LedgerHead.last_hash).where(LedgerHead.id == 1)
        ).one()
    return Head(position, last_hash) if position else None


def append(session: Session, record: LedgerRecord, *, once: bool = False) -> LedgerEntry | None:
    """Chain ``record`` after the last entry. With ``once``, nothing is appended (None is returned) when an
    entry of the same kind and status for the same manifest is already there: retrying a step records it once
    (a package rejected, then accepted when it came again intact, has both receipts recorded)."""
    if record.kind not in KINDS:
        raise ValueError(f"unknown ledger entry kind {record.kind!r}")
    last_position, previous_hash = _lock_head(session)
    if once and _recorded(session, record):
        return None
    entry = LedgerEntry(
        position=last_position + 1,
        recorded_at=datetime.now(UTC),
        previous_hash=previous_hash,
        **asdict(record),
    )
    entry.entry_hash = entry_hash(entry)
    session.add(entry)
    session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(last_position=entry.position, last_hash=entry.entry_hash)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    return entry


def _lock_head(session: Session) -> tuple[int, str]:
    """Take the head row's lock for the rest of the transaction (a no-op update locks on both backends)."""
    return session.execute(
        update(LedgerHead)
        .where(LedgerHead.id == 1)
        .values(last_position=LedgerHead.last_position)
        .returning(LedgerHead.last_position, LedgerHead.last_hash)
        .execution_options(synchronize_session=False)
    ).one()


def _recorded(session: Session, record: LedgerRecord) -> bool:
    return (
        session.scalar(
            select(LedgerEntry.position)
            .where(
                LedgerEntry.kind == record.kind,
                LedgerEntry.package_id == record.package_id,
                LedgerEntry.manifest_sha256 == record.manifest_sha256,
                LedgerEntry.status.is_not_distinct_from(record.status),
            )
            .limit(1)
        )
        is not None
    )


def entry_hash(entry: LedgerEntry) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of every field but the hash itself."""
    fields = {
        column.key: getattr(entry, column.key) for column in LedgerEntry.__table__.columns if column.key != "entry_hash"
    }
    fields["recorded_at"] = _utc_text(entry.recorded_at)
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _utc_text(moment: datetime) -> str:
    """SQLite gives back naive datetimes (stored as UTC), PostgreSQL aware ones: hash both the same way."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entries(session: Session, after: int = 0, batch: int = 10_000) -> Iterator[LedgerEntry]:
    """Entries after ``after``, in order, read in batches."""
    while True:
        page = list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.position > after).order_by(LedgerEntry.position).limit(batch)
            )
        )
        if not page:
            return
        yield from page
        after = page[-1].position
        session.expunge_all()


def verify(session: Session) -> LedgerState:
    """Walk the chain from the first entry; raise LedgerBroken naming the first entry that does not hold."""
    expected_position, previous_hash = 1, GENESIS_HASH
    for entry in entries(session):
        if entry.position != expected_position:
            raise LedgerBroken(
                expected_position, f"is missing: the entry after {expected_position - 1} is {entry.position} (deleted)"
            )
        if entry.previous_hash != previous_hash:
            raise LedgerBroken(
                entry.position,
                f"({entry.kind}) does not follow entry {entry.position - 1}: its previous hash differs "
                "(an entry before it was deleted, inserted, replaced or reordered)",
            )
        if entry_hash(entry) != entry.entry_hash:
            raise LedgerBroken(entry.position, f"({entry.kind}) does not match its hash: its contents were changed")
        previous_hash = entry.entry_hash
        expected_position += 1
    count = expected_position - 1
    head = session.execute(select(LedgerHead.last_position, LedgerHead.last_hash).where(LedgerHead.id == 1)).one()
    if (head.last_position, head.last_hash) != (count, previous_hash):
        raise LedgerBroken(
            0,
            f"the head says {head.last_position} entries ending in {head.last_hash[:12]}…, but the chain has {count} "
            f"ending in {previous_hash[:12]}… (entries removed from or added at the end)",
        )
    return LedgerState(count, previous_hash)
