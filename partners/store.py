"""A partner registry's own SQLite store.

One file per partner (``<state>/<partner>/registry.db``) holding:
- the population database's exchange tables (``package_feed``, ``ledger_entry`` …, made by the project's
  migrations), with which ``exchange.package`` checks the sequence of received packages and keeps the
  partner's own ledger, as any receiver would;
- the registry: ``partner_person`` (the partner's identifier linked to a personal ID, with the partner's copy
  of name and date of birth), ``partner_disagreement`` (the ground truth of the disagreements seeded on purpose),
  ``partner_package`` (each package received once, with the signed receipt it was answered with, by package id)
  and ``partner_record`` (the records those packages carried);
- ``partner_acknowledgement``: the population database's signed receipts for the packages this partner
  published (its outbox), each verified and kept once (the same receipt sent again is not kept twice).
"""

from __future__ import annotations

import hashlib
import json
import operator
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from exchange.payload import MAX_COLUMNS
from population.db import create_population_engine
from population.migrate import upgrade

PAGE_BYTES = 16384
metadata = MetaData()
person = Table(
    "partner_person",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("identifier", String(40), nullable=False, unique=True),
    Column("personal_id", String(12), nullable=False, index=True),
    Column("full_name", String(100), nullable=False),
    Column("date_of_birth", String(10)),
    Column("status", String(20), nullable=False),
    Column("details", Text, nullable=False),  # JSON: the partner's other fields
)
disagreement = Table(
    "partner_disagreement",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("personal_id", String(12), nullable=False, index=True),
    Column("kind", String(30), nullable=False),  # missing | name_differs | dob_differs | dead_but_active
    Column("population_value", String(100)),
    Column("partner_value", String(100)),
)
package = Table(
    "partner_package",
    metadata,
    Column("package_id", String(36), primary_key=True),
    Column("manifest_sha256", String(64), nullable=False),
    Column("agreement", String(64), nullable=False),
    Column("sender", String(20), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("record_count", Integer, nullable=False),
    Column("receipt", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("received_at", String(32), nullable=False),
)
record = Table(
    "partner_record",
    metadata,
    Column("id", Integer, primary_key=True),
    # No index beside the row id: a package's records are written once, together, and read back only by audits
    # and tests (a scan); each index costs a million-record package seconds at intake.
    Column("package_id", String(36), ForeignKey("partner_package.package_id"), nullable=False),
    Column("personal_id", String(12)),
    Column("content", Text, nullable=False),  # JSON
)
acknowledgement = Table(
    "partner_acknowledgement",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("package_id", String(36), nullable=False, index=True),
    Column("package_name", String(120), nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("receipt_sha256", String(64), nullable=False, unique=True),
    Column("status", String(10), nullable=False),  # accepted | rejected
    Column("receipt", LargeBinary, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("recorded_at", String(32), nullable=False),
)


@dataclass(frozen=True)
class PersonRow:
    identifier: str
    personal_id: str
    full_name: str
    date_of_birth: str | None
    status: str
    details: dict[str, Any]

    def as_item(self) -> dict[str, Any]:
        return {**self.details, "personal_id": self.personal_id, "full_name": self.full_name,
                "date_of_birth": self.date_of_birth, "status": self.status}  # fmt: skip


@dataclass(frozen=True)
class Disagreement:
    personal_id: str
    kind: str
    population_value: str | None = None
    partner_value: str | None = None


@dataclass(frozen=True)
class StoredPackage:
    package_id: str
    manifest_sha256: str
    receipt: bytes
    signature: bytes


@dataclass(frozen=True)
class StoredAcknowledgement:
    package_id: str
    package_name: str
    status: str
    receipt: bytes
    signature: bytes


# The partner's own faults while storing (a full disk, an I/O error, a store locked or failing): the package or
# receipt being stored is not at fault, so it is never refused for them; the sender is asked to try again later.
STORE_FAULTS = (OSError, sqlite3.OperationalError, OperationalError)


class RegistryStore:
    """The store of one partner. Writes of packages are serialised by ``intake_lock``."""

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        if not path.exists():
            # Pages of 16 KiB instead of SQLite's 4: a package's records (~300 bytes each) come a million at a time,
            # and store about a sixth faster. Set before the first write, which fixes a database's page size.
            with closing(sqlite3.connect(path)) as new:
                new.execute(f"PRAGMA page_size = {PAGE_BYTES}")
                new.execute("PRAGMA journal_mode = WAL")  # as the engine would; writes the header with that page size
        # FULL: a receipt is signed and sent after its commit, so the commit must be on disk when it returns
        self.engine: Engine = create_population_engine(f"sqlite:///{path}", synchronous=synchronous)
        upgrade(self.engine)
        metadata.create_all(self.engine)
        self.intake_lock = threading.Lock()

    def dispose(self) -> None:
        self.engine.dispose()

    # -- registry ---------------------------------------------------------------------------------------------

    def is_seeded(self) -> bool:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(person)) > 0

    def seed(self, people: Iterable[PersonRow], disagreements: Iterable[Disagreement]) -> None:
        rows = [{"identifier": p.identifier, "personal_id": p.personal_id, "full_name": p.full_name,
                 "date_of_birth": p.date_of_birth, "status": p.status,
                 "details": json.dumps(p.details, ensure_ascii=False, sort_keys=True)} for p in people]  # fmt: skip
        truth = [vars(d) for d in disagreements]
        with self.engine.begin() as connection:
            if rows:
                connection.execute(insert(person), rows)
            if truth:
                connection.execute(insert(disagreement), truth)

    def people_page(self, after_id: int, limit: int) -> tuple[list[PersonRow], int | None]:
        """Up to ``limit`` people after row ``after_id``, and the last row id when more may follow."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(person).where(person.c.id > after_id).order_by(person.c.id).limit(limit)
            ).all()
        people = [_person(row) for row in rows]
        return people, (rows[-1].id if len(rows) == limit else None)

    def all_people(self) -> list[PersonRow]:
        with self.engine.connect() as connection:
            return [_person(row) for row in connection.execute(select(person).order_by(person.c.id))]

    def disagreements(self) -> list[Disagreement]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(disagreement).order_by(disagreement.c.id)).all()
        return [Disagreement(r.personal_id, r.kind, r.population_value, r.partner_value) for r in rows]

    # -- received packages --------------------------------------------------------------------------------------

    def stored_package(self, package_id: str) -> StoredPackage | None:
        return self._stored(package.c.package_id == package_id)

    def stored_manifest(self, manifest_sha256: str) -> StoredPackage | None:
        """The package stored with the manifest of this SHA-256: a package received again, known before its
        signature is checked, or its manifest parsed."""
        return self._stored(package.c.manifest_sha256 == manifest_sha256)

    def _stored(self, condition) -> StoredPackage | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(package).where(condition)).first()
        return StoredPackage(row.package_id, row.manifest_sha256, row.receipt, row.signature) if row else None

    def store_rows(
        self, package_id: str, fields: Sequence[str], rows: Iterable[Sequence[str]], *, within: Session
    ) -> int:
        """A package's records given as rows of text under ``fields`` (a CSV payload, read as it is stored), in the
        caller's transaction; how many. SQLite makes each record's JSON (``json_object``, fields sorted as
        ``json.dumps(..., sort_keys=True)`` sorts them) from the row as it comes, its values bound by position
        (``?N``): a million-record snapshot is stored in seconds, with no Python work per record. Store the
        package itself (``store_package``) in the same transaction: its row is checked for at commit. ``fields`` are
        names as the payload readers check them: at most ``MAX_COLUMNS`` (SQLite's json_object takes 127 arguments),
        none twice, no NUL (a ``ValueError`` otherwise: SQLite could not make the JSON)."""
        if len(fields) > MAX_COLUMNS or len(set(fields)) != len(fields) or any("\x00" in f for f in fields):
            raise ValueError(f"record fields: at most {MAX_COLUMNS}, none twice, none holding a NUL")

        def literal(text: str) -> str:
            return "'" + text.replace("'", "''") + "'"

        pairs = ", ".join(f"{literal(field)}, ?{fields.index(field) + 1}" for field in sorted(fields))
        personal_id = f"?{fields.index('personal_id') + 1}" if "personal_id" in fields else "NULL"
        return self._insert_records(within, f"{literal(package_id)}, {personal_id}, json_object({pairs})", rows)

    def store_records(
        self, package_id: str, records: Sequence[dict[str, Any]], *, text_only: bool = False, within: Session
    ) -> int:
        """A package's records given as dicts (JSON Lines, XML), in the caller's transaction; how many. Records of
        text (``text_only``: XML) that all have the same fields go as rows (``store_rows``); any others (numbers,
        booleans, nesting, fields that differ) have their JSON made by Python's encoder."""
        fields = sorted(records[0]) if records else []
        if text_only and 0 < len(fields) <= MAX_COLUMNS and all(map(records[0].keys().__eq__, map(dict.keys, records))):
            take = operator.itemgetter(*fields) if len(fields) > 1 else lambda r: (r[fields[0]],)
            return self.store_rows(package_id, fields, map(take, records), within=within)
        encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode
        return self._insert_records(within, "?, ?, ?", ((package_id, r.get("personal_id"), encode(r)) for r in records))

    def store_package(
        self, manifest: Any, manifest_sha256: str, receipt: bytes, signature: bytes, record_count: int, *,
        within: Session,
    ) -> None:  # fmt: skip
        """The package with the signed receipt it is answered with, in the transaction that stored its records."""
        within.connection().execute(
            insert(package).values(
                package_id=manifest.package_id,
                manifest_sha256=manifest_sha256,
                agreement=manifest.agreement,
                sender=manifest.sender,
                sequence=manifest.sequence,
                record_count=record_count,
                receipt=receipt,
                signature=signature,
                received_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        )

    @staticmethod
    def _insert_records(within: Session, values: str, parameters: Iterable[Sequence]) -> int:
        """Records before their package (the foreign key is checked when the transaction commits); how many.
        ``values``: the SQL of one record's (package_id, personal_id, content), bound to each of ``parameters``."""
        connection = within.connection().connection.driver_connection
        connection.execute("PRAGMA defer_foreign_keys = ON")  # until this transaction ends
        insert_ = f"INSERT INTO {record.name} (package_id, personal_id, content) VALUES ({values})"
        return connection.executemany(insert_, parameters).rowcount

    def package_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(package))

    def record_count(self, package_id: str | None = None) -> int:
        query = select(func.count()).select_from(record)
        if package_id is not None:
            query = query.where(record.c.package_id == package_id)
        with self.engine.connect() as connection:
            return connection.scalar(query)

    # -- acknowledgements of published packages ---------------------------------------------------------------

    def store_acknowledgement(
        self, package_name: str, manifest_sha256: str, receipt: Any, data: bytes, signature: bytes
    ) -> bool:
        """Keep a verified receipt for a published package; False when this very receipt was kept already."""
        receipt_sha256 = hashlib.sha256(data).hexdigest()
        with self.engine.begin() as connection:
            known = connection.scalar(
                select(acknowledgement.c.id).where(acknowledgement.c.receipt_sha256 == receipt_sha256)
            )
            if known is not None:
                return False
            connection.execute(
                insert(acknowledgement).values(
                    package_id=receipt.package_id,
                    package_name=package_name,
                    manifest_sha256=manifest_sha256,
                    receipt_sha256=receipt_sha256,
                    status=receipt.status,
                    receipt=data,
                    signature=signature,
                    recorded_at=datetime.now(UTC).isoformat(timespec="seconds"),
                )
            )
        return True

    def acknowledgements(self, package_id: str | None = None) -> list[StoredAcknowledgement]:
        """The receipts kept for published packages, oldest first."""
        query = select(acknowledgement).order_by(acknowledgement.c.id)
        if package_id is not None:
            query = query.where(acknowledgement.c.package_id == package_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [StoredAcknowledgement(r.package_id, r.package_name, r.status, r.receipt, r.signature) for r in rows]


def _person(row) -> PersonRow:
    return PersonRow(row.identifier, row.personal_id, row.full_name, row.date_of_birth, row.status,
                     json.loads(row.details))  # fmt: skip
