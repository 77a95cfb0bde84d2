"""The population record and what hangs off it, as SQLAlchemy 2.x models.

Tables are created and changed only by the Alembic migrations in ``population/migrations``; these models
describe them for the code. Field names follow the population record of the Law on Identification 2023, art. 9.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class AdministrativeUnit(Base):
    """A province or ward code with the dates it is in force. Codes were reused across the 2025 reform, so the
    same (level, code) can appear twice with different names and effective periods."""

    __tablename__ = "administrative_unit"
    __table_args__ = (UniqueConstraint("level", "code", "effective_from"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    level: Mapped[str] = mapped_column(String(16))  # province | ward
    code: Mapped[str] = mapped_column(String(8))
    name: Mapped[str] = mapped_column(String(120))
    division_type: Mapped[str] = mapped_column(String(40))
    province_code: Mapped[str | None] = mapped_column(String(8))  # parent of a ward
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)  # last day in force; None while in force


class Household(Base):
    __tablename__ = "household"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household_code: Mapped[str] = mapped_column(String(20), unique=True)
    head_personal_id: Mapped[str | None] = mapped_column(String(12))
    ward_code: Mapped[str | None] = mapped_column(String(8))
    address: Mapped[str | None] = mapped_column(String(250))


class Citizen(Base):
    __tablename__ = "citizen"
    __table_args__ = (
        Index("ix_citizen_person_key", "name_fold", "date_of_birth", "id"),
        Index("ix_citizen_household", "household_id"),
        Index("ix_citizen_permanent_ward", "permanent_ward_code"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    personal_id: Mapped[str] = mapped_column(String(12), unique=True)
    full_name: Mapped[str] = mapped_column(String(100))
    name_fold: Mapped[str] = mapped_column(String(100))
    other_names: Mapped[str | None] = mapped_column(String(250))
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(1))  # M | F
    place_of_birth: Mapped[str | None] = mapped_column(String(250))
    birth_registration_province: Mapped[str | None] = mapped_column(String(3))  # legacy code, as in the ID
    hometown: Mapped[str | None] = mapped_column(String(250))
    ethnicity_code: Mapped[str | None] = mapped_column(String(2))
    religion: Mapped[str | None] = mapped_column(String(60))
    nationality: Mapped[str] = mapped_column(String(2), default="VN")
    blood_type: Mapped[str | None] = mapped_column(String(3))
    former_id_number: Mapped[str | None] = mapped_column(String(9))
    father_personal_id: Mapped[str | None] = mapped_column(String(12))
    father_name: Mapped[str | None] = mapped_column(String(100))
    mother_personal_id: Mapped[str | None] = mapped_column(String(12))
    mother_name: Mapped[str | None] = mapped_column(String(100))
    spouse_personal_id: Mapped[str | None] = mapped_column(String(12))
    spouse_name: Mapped[str | None] = mapped_column(String(100))
    representative_personal_id: Mapped[str | None] = mapped_column(String(12))
    representative_name: Mapped[str | None] = mapped_column(String(100))
    permanent_ward_code: Mapped[str | None] = mapped_column(String(8))
    permanent_address: Mapped[str | None] = mapped_column(String(250))
    temporary_ward_code: Mapped[str | None] = mapped_column(String(8))
    temporary_address: Mapped[str | None] = mapped_column(String(250))
    current_ward_code: Mapped[str | None] = mapped_column(String(8))
    current_address: Mapped[str | None] = mapped_column(String(250))
    marital_status: Mapped[str | None] = mapped_column(String(10))  # single | married | divorced | widowed
    household_id: Mapped[int | None] = mapped_column(ForeignKey("household.id"))
    relation_to_head: Mapped[str | None] = mapped_column(String(20))
    date_of_death: Mapped[date | None] = mapped_column(Date)
    date_missing: Mapped[date | None] = mapped_column(Date)
    phone: Mapped[str | None] = mapped_column(String(15))
    email: Mapped[str | None] = mapped_column(String(120))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    household: Mapped[Household | None] = relationship()
    id_cards: Mapped[list[IdCard]] = relationship(back_populates="citizen", order_by="IdCard.issued_on")


class IdCard(Base):
    """A chip ID card (căn cước). Its number is the personal ID number."""

    __tablename__ = "id_card"
    __table_args__ = (Index("ix_id_card_citizen", "citizen_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"))
    card_number: Mapped[str] = mapped_column(String(12))
    issued_on: Mapped[date] = mapped_column(Date)
    expires_on: Mapped[date | None] = mapped_column(Date)  # None: valid for life (issued at 58 or older)
    status: Mapped[str] = mapped_column(String(10))  # active | replaced | expired | cancelled

    citizen: Mapped[Citizen] = relationship(back_populates="id_cards")


class RegistryLink(Base):
    """A citizen's identifier in a partner registry: social insurance number, tax code, land certificate,
    enterprise code. The partner registry is the source of truth for the identifier."""

    __tablename__ = "registry_link"
    __table_args__ = (UniqueConstraint("partner", "identifier", "citizen_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), index=True)
    partner: Mapped[str] = mapped_column(String(20))  # health | tax | land | business
    identifier_kind: Mapped[str] = mapped_column(String(40))
    identifier: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(12))  # active | inactive | disputed
    last_verified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ChangeLogHead(Base):
    """One row holding the last sequence number handed out. Writers take it under a row lock at the end of
    their transaction, so change numbers become visible in the order they were given."""

    __tablename__ = "change_log_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger)


class Change(Base):
    """One entry of the ordered change log: what a life event changed on one citizen."""

    __tablename__ = "change_log"

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), index=True)
    personal_id: Mapped[str] = mapped_column(String(12))
    event_type: Mapped[str] = mapped_column(String(30))
    changes: Mapped[dict] = mapped_column(JSON)  # {field: {"old": ..., "new": ...}}
    event_date: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InjectedDefect(Base):
    """Ground truth of the synthetic population: which record carries which deliberate defect."""

    __tablename__ = "injected_defect"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    citizen_id: Mapped[int] = mapped_column(ForeignKey("citizen.id"), index=True)
    personal_id: Mapped[str] = mapped_column(String(12))
    defect_type: Mapped[str] = mapped_column(String(40))
    field: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str | None] = mapped_column(String(250))


class PackageFeed(Base):
    """Where one feed of exchange packages stands: the last package numbered on the sending side, or the last
    package accepted on the receiving side. A feed is one sender's packages for one agreement and direction."""

    __tablename__ = "package_feed"
    __table_args__ = (UniqueConstraint("side", "sender", "agreement", "direction"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    side: Mapped[str] = mapped_column(String(8))  # sent | received
    sender: Mapped[str] = mapped_column(String(20))
    agreement: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # outbound | inbound
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_package_id: Mapped[str | None] = mapped_column(String(36))
    last_manifest_sha256: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class LedgerHead(Base):
    """One row: the position and hash of the last ledger entry. Appenders update it first, so its row lock
    serialises them and the ledger stays one chain."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_position: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class LedgerEntry(Base):
    """One entry of the tamper-evident exchange ledger: a package sent or received, or a receipt. Each entry
    carries the hash of the entry before it; its own hash covers its fields and that previous hash."""

    __tablename__ = "ledger_entry"

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))  # package_sent | package_received | receipt_sent | receipt_received
    agreement: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))
    sender: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(20))
    package_id: Mapped[str] = mapped_column(String(36), index=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    record_count: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str | None] = mapped_column(String(10))  # of a receipt: accepted | rejected
    signer_fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the signer's certificate (DER)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    previous_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class FeedCheckpoint(Base):
    """Where one outbound feed stands in the change log: the last change delivered (acknowledged by the partner's
    verified receipt), and the package sealed for the next window while it waits for its receipt."""

    __tablename__ = "feed_checkpoint"

    agreement: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_change_sequence: Mapped[int] = mapped_column(BigInteger)
    last_package_id: Mapped[str | None] = mapped_column(String(36))
    pending_up_to: Mapped[int | None] = mapped_column(BigInteger)  # the change the pending package covers up to
    pending_package: Mapped[str | None] = mapped_column(String(500))  # path of the sealed, zipped package
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RetentionHold(Base):
    """A legal hold: while it is in force (not released), retention deletes nothing of one agreement's packages
    and staging (``agreement``), or nothing that holds one citizen's record (``personal_id``)."""

    __tablename__ = "retention_hold"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agreement: Mapped[str | None] = mapped_column(String(64))
    personal_id: Mapped[str | None] = mapped_column(String(12))
    reason: Mapped[str] = mapped_column(String(500))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    release_reason: Mapped[str | None] = mapped_column(String(500))
