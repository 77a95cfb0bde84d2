"""The disclosure index: which packages carried a citizen's record, to whom, under which agreement (issue 19).

Two tables (migration 0007):

- ``disclosure_package``: one row per package that crossed the boundary, outbound (sealed by the population side)
  or inbound (accepted from a partner): its id, agreement, direction, sender and recipient, mode and sequence, the
  fields it carried, the agreement's legal basis and purpose as they stood then, when it was made
  (``created_at``, the manifest's) and indexed (``recorded_at``), and how many records were indexed;
- ``disclosure``: one row per record, ``(subject, package)`` only: ``subject`` is the HMAC-SHA256 of the
  record's personal ID under the disclosure key (``lienthong.settings.disclosure_key``), so the index is not one
  more copy of the IDs, and the key never reaches the database; ``package`` is the ``disclosure_package`` row.

The receipt's status is not copied here: it is the ledger's ``receipt_received`` (outbound) or ``receipt_sent``
(inbound) entry of the package, joined when looked up, so it is never stale.

Writing streams: the subjects of a staged payload file are written, while the file is written, to a sidecar of
32-byte digests beside it, in sorted runs (``SubjectsFile``); sealing (or accepting) merges the runs of the
package's sidecars and writes them, in key order, into ``disclosure`` in the package's own transaction
(``record_package``): PostgreSQL by ``COPY … FROM STDIN`` in binary, SQLite by batched inserts. Nothing holds more
than a run of digests (8 MiB) in memory.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from population.models import Base, Citizen, LedgerEntry

SUBJECT_BYTES = 32  # HMAC-SHA256
SUFFIX = ".subjects"  # the sidecar of a staged payload file
BLOCK_SUBJECTS = 32_768  # digests sent to the database at a time
RUN_SUBJECTS = 262_144  # digests sorted at a time in a sidecar (8 MiB)
MERGE_BYTES = 16 << 20  # the slices of every run read at a time while merging
OUTBOUND, INBOUND = "outbound", "inbound"
RECEIPT_KINDS = {OUTBOUND: "receipt_received", INBOUND: "receipt_sent"}  # the receipt that settles a package


class DisclosurePackage(Base):
    """One package that crossed the boundary, with what it carried and why (per package, never per record)."""

    __tablename__ = "disclosure_package"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[str] = mapped_column(String(36), unique=True)
    agreement: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # outbound | inbound
    sender: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(12))  # full | incremental
    sequence: Mapped[int] = mapped_column(BigInteger)
    fields: Mapped[list] = mapped_column(JSON)  # the agreement direction's fields, in its order
    legal_basis: Mapped[list] = mapped_column(JSON)  # the agreement's, as it stood when the package crossed
    purpose: Mapped[str] = mapped_column(Text)
    record_count: Mapped[int] = mapped_column(BigInteger)  # records indexed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # the manifest's created_at
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # sealed (outbound) or accepted (inbound)


disclosure = Table(
    "disclosure",
    Base.metadata,
    Column("subject", LargeBinary(SUBJECT_BYTES), nullable=False),
    Column("package", Integer, nullable=False),  # disclosure_package.id (no foreign key: checked per row on load)
    Index("ix_disclosure_subject", "subject", "package"),
)


# -- the keyed hash ----------------------------------------------------------------------------------------------


class SubjectHasher:
    """HMAC-SHA256 of personal IDs under one key, with the key's inner and outer states computed once (RFC 2104;
    ``hmac.digest`` costs twice as much a call)."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the disclosure key is empty")
        block = key if len(key) <= 64 else hashlib.sha256(key).digest()
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    def __call__(self, personal_id: str | bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(personal_id.encode("ascii", "replace") if isinstance(personal_id, str) else personal_id)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


# -- sidecars of staged payload files ------------------------------------------------------------------------


def subjects_path(staged: Path | str) -> Path:
    """The sidecar of a staged payload file: its records' subjects, 32 bytes each, in the file's order."""
    staged = Path(staged)
    return staged.with_name(staged.name + SUFFIX)


class SubjectsFile:
    """Writes the subjects of the records of a payload file being written (``tap``, ``add``) to a sidecar file, in
    sorted runs of ``RUN_SUBJECTS`` (the last one shorter): sealing merges the runs of every file of the package, so
    that the index receives its keys in order (a B-tree takes a million sorted keys four times faster than random
    ones), and no more than a run is ever held in memory."""

    def __init__(self, path: Path, hasher: SubjectHasher) -> None:
        self.path, self.hasher = Path(path), hasher
        self.count = 0
        self._handle: BinaryIO | None = None
        self._buffer = bytearray()

    def __enter__(self) -> SubjectsFile:
        self._handle = self.path.open("wb")
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()
        assert self._handle is not None
        self._handle.close()

    def add(self, personal_id: str | bytes | None) -> None:
        if personal_id is None or personal_id == "" or personal_id == b"":
            return  # a record without a personal ID cannot be looked up by one
        self._buffer += self.hasher(personal_id)
        self.count += 1
        if len(self._buffer) >= RUN_SUBJECTS * SUBJECT_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write the run gathered so far, sorted (bytewise, as the database orders ``bytea``)."""
        if self._buffer and self._handle is not None:
            import numpy as np

            self._handle.write(np.sort(np.frombuffer(self._buffer, dtype=f"S{SUBJECT_BYTES}")).tobytes())
            self._buffer = bytearray()

    def tap(self, rows: Iterable[Sequence[Any]], position: int | None) -> Iterator[Sequence[Any]]:
        """The rows, unchanged, each one's subject (the value at ``position``) written on the way; ``position``
        None: the rows carry no personal ID."""
        if position is None:
            yield from rows
            return
        add = self.add
        for row in rows:
            add(row[position])
            yield row


def sorted_subjects(sidecars: Iterable[Path]) -> Iterator[Any]:
    """Every subject of the sidecars in one sorted stream, as numpy arrays of 32-byte strings: the sorted runs of
    every file merged a slice at a time (from each run its next slice; what is at most the smallest of the slices'
    last subjects can go out, sorted; the rest waits for the next round), in memory bounded by the slices."""
    import numpy as np

    kind = np.dtype(f"S{SUBJECT_BYTES}")
    descriptors: list[int] = []
    runs: list[list[int]] = []  # [descriptor, next subject, end]
    try:
        for path in sidecars:
            size = Path(path).stat().st_size
            if size % SUBJECT_BYTES:
                raise ValueError(f"{path} is not a whole number of {SUBJECT_BYTES}-byte subjects")
            descriptors.append(os.open(path, os.O_RDONLY))
            total = size // SUBJECT_BYTES
            runs += [
                [descriptors[-1], start, min(start + RUN_SUBJECTS, total)] for start in range(0, total, RUN_SUBJECTS)
            ]
        per_run = max(256, MERGE_BYTES // SUBJECT_BYTES // max(1, len(runs)))
        pending = [np.empty(0, kind) for _ in runs]
        while True:
            for number, (descriptor, start, end) in enumerate(runs):
                if len(pending[number]) < per_run and start < end:
                    take = min(per_run, end - start)
                    data = os.pread(descriptor, take * SUBJECT_BYTES, start * SUBJECT_BYTES)
                    if len(data) != take * SUBJECT_BYTES:
                        raise ValueError("a sidecar of subjects ended early")
                    pending[number] = np.concatenate([pending[number], np.frombuffer(data, kind)])
                    runs[number][1] = start + take
            unfinished = [pending[n][-1] for n, run in enumerate(runs) if run[1] < run[2]]
            if not unfinished:  # every run read whole: what is pending is the rest
                rest = [p for p in pending if len(p)]
                if rest:
                    yield np.sort(np.concatenate(rest))
                return
            bound = min(unfinished)
            cuts = [int(np.searchsorted(p, bound, side="right")) for p in pending]
            ready = np.concatenate([p[:cut] for p, cut in zip(pending, cuts, strict=True)])
            pending = [p[cut:] for p, cut in zip(pending, cuts, strict=True)]
            if len(ready):
                yield np.sort(ready)
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def subjects_of(block: Any) -> list[bytes]:
    """The 32-byte subjects of a block from ``sorted_subjects`` (whole: numpy drops a string's final NUL bytes)."""
    data = block.tobytes()
    return [data[i : i + SUBJECT_BYTES] for i in range(0, len(data), SUBJECT_BYTES)]


# -- recording a package -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackageDisclosure:
    """What is kept once per package."""

    package_id: str
    agreement: str
    direction: str
    sender: str
    recipient: str
    mode: str
    sequence: int
    fields: tuple[str, ...]
    legal_basis: tuple[str, ...]
    purpose: str
    created_at: datetime


def record_package(session: Session, package: PackageDisclosure, sidecars: Iterable[Path]) -> int:
    """Index a package and its records' subjects (from the sidecars) in the caller's transaction; returns the
    number of records indexed."""
    kept = {**asdict(package), "fields": list(package.fields), "legal_basis": list(package.legal_basis)}
    row = DisclosurePackage(**kept, record_count=0, recorded_at=datetime.now(UTC))
    session.add(row)
    session.flush()
    blocks = sorted_subjects(sidecars)
    if session.get_bind().dialect.name == "postgresql":
        count = _copy_subjects(session, row.id, blocks)
    else:
        count = 0
        for block in blocks:
            session.execute(insert(disclosure), [{"subject": s, "package": row.id} for s in subjects_of(block)])
            count += len(block)
    row.record_count = count
    session.flush()
    return count


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)


def _copy_subjects(session: Session, package: int, blocks: Iterable[Any]) -> int:
    """``COPY disclosure FROM STDIN`` in PostgreSQL's binary format, on the session's own connection (its
    transaction): each tuple two fields, the 32-byte subject and the package's row id, laid out by numpy."""
    import numpy as np

    layout = np.dtype([("fields", ">i2"), ("subject_length", ">i4"), ("subject", f"S{SUBJECT_BYTES}"),
                       ("package_length", ">i4"), ("package", ">i4")])  # fmt: skip
    count = 0
    cursor = session.connection().connection.driver_connection.cursor()
    try:
        with cursor.copy("COPY disclosure (subject, package) FROM STDIN (FORMAT binary)") as copy:
            copy.write(_COPY_HEADER)
            for block in blocks:
                for start in range(0, len(block), BLOCK_SUBJECTS):
                    part = block[start : start + BLOCK_SUBJECTS]
                    rows = np.empty(len(part), layout)
                    rows["fields"], rows["subject_length"], rows["package_length"] = 2, SUBJECT_BYTES, 4
                    rows["subject"], rows["package"] = part, package
                    copy.write(rows.tobytes())
                count += len(block)
            copy.write(_COPY_TRAILER)
    finally:
        cursor.close()
    return count


# -- looking up --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disclosure(PackageDisclosure):
    """One package that carried records of the looked-up citizen (what was kept of it), with its receipt as the
    ledger has it."""

    recorded_at: datetime
    records: int  # of this citizen in the package
    receipt_status: str | None  # accepted | rejected; None while no receipt is recorded
    receipt_at: datetime | None

    @property
    def partner(self) -> str:
        return self.recipient if self.direction == OUTBOUND else self.sender


def disclosures_of(session: Session, subject: bytes, since: datetime | None = None) -> list[Disclosure]:
    """Every indexed package holding ``subject``, oldest first (with ``since``: made at or after it), with the
    receipt that settles each (outbound: the partner's, received; inbound: ours, sent; an accepted one if any, else
    the last), in one query: the index's entries for the subject, their packages, their receipts in the ledger."""
    counted = (
        select(disclosure.c.package, func.count().label("records"))
        .where(disclosure.c.subject == subject)
        .group_by(disclosure.c.package)
        .subquery()
    )
    package = DisclosurePackage.__table__.c
    kind = case((package.direction == OUTBOUND, RECEIPT_KINDS[OUTBOUND]), else_=RECEIPT_KINDS[INBOUND])
    settling = (
        select(LedgerEntry.status)
        .where(LedgerEntry.package_id == package.package_id, LedgerEntry.kind == kind)
        .order_by(case((LedgerEntry.status == "accepted", 0), else_=1), LedgerEntry.position.desc())
        .limit(1)
    )
    receipt_status = settling.scalar_subquery().label("receipt_status")
    receipt_at = settling.with_only_columns(LedgerEntry.recorded_at).scalar_subquery().label("receipt_at")
    query = select(package, counted.c.records, receipt_status, receipt_at).join(
        counted, counted.c.package == package.id
    )
    if since is not None:
        query = query.where(package.created_at >= since)
    rows = session.execute(query.order_by(package.created_at, package.id)).mappings().all()
    return [
        Disclosure(
            row["package_id"],
            row["agreement"],
            row["direction"],
            row["sender"],
            row["recipient"],
            row["mode"],
            row["sequence"],
            tuple(row["fields"]),
            tuple(row["legal_basis"]),
            row["purpose"],
            _utc(row["created_at"]),
            _utc(row["recorded_at"]),
            row["records"],
            row["receipt_status"],
            _utc(row["receipt_at"]) if row["receipt_at"] else None,
        )  # fmt: skip
        for row in rows
    ]


# -- full views by stewards -------------------------------------------------------------------------------------


class StewardView(Base):
    """One citizen's record shown whole to a data steward (their personal ID unmasked): who, when, which record and
    why. Kept under the keyed hash of the personal ID, as the disclosure index, for the citizen's access report."""

    __tablename__ = "steward_view"
    __table_args__ = (Index("ix_steward_view_subject", "subject", "viewed_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[bytes] = mapped_column(LargeBinary(SUBJECT_BYTES))
    steward: Mapped[str] = mapped_column(String(200))
    record: Mapped[str] = mapped_column(String(200))  # which record, e.g. "quarantined record 12 (citizen-extract)"
    purpose: Mapped[str] = mapped_column(String(500))  # what the steward was doing, e.g. "quarantine review"
    viewed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def record_steward_views(session: Session, views: Iterable[tuple[bytes, str]], steward: str, purpose: str) -> int:
    """Log full views (subject, record) by ``steward`` in the caller's transaction; returns how many."""
    now = datetime.now(UTC)
    rows = [StewardView(subject=s, steward=steward, record=r, purpose=purpose, viewed_at=now) for s, r in views]
    session.add_all(rows)
    session.flush()
    return len(rows)


@dataclass(frozen=True)
class FullView:
    """A full view of one of the looked-up citizen's records, as logged."""

    steward: str
    record: str
    purpose: str
    viewed_at: datetime


def steward_views_of(session: Session, subject: bytes, since: datetime | None = None) -> list[FullView]:
    """Every full view of the subject's records by a steward, oldest first (with ``since``: at or after it)."""
    view = StewardView.__table__.c
    query = select(view.steward, view.record, view.purpose, view.viewed_at).where(view.subject == subject)
    if since is not None:
        query = query.where(view.viewed_at >= since)
    rows = session.execute(query.order_by(view.viewed_at, view.id)).all()
    return [FullView(steward, record, purpose, _utc(at)) for steward, record, purpose, at in rows]


def citizen_known(session: Session, personal_id: str) -> bool:
    return session.scalar(select(Citizen.id).where(Citizen.personal_id == personal_id).limit(1)) is not None


def _utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
