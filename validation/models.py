"""Tables of the data-quality work: validation runs (for trends), quarantined records with their findings and
the stewards' decisions on them, and reconciliation runs with their mismatches.

They live on ``population.models.Base`` (one metadata, one Alembic history); migration 0004 creates them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from population.models import Base


class ValidationRun(Base):
    """One validation of a dataset: its figures and the four dimension scores, kept to show trends."""

    __tablename__ = "validation_run"
    __table_args__ = (
        Index("ix_validation_run_dataset_started", "dataset", "started_at"),
        Index("ix_validation_run_agreement_started", "agreement", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(40))
    agreement: Mapped[str | None] = mapped_column(String(60))  # the feed validated for; None for a file's check
    package_id: Mapped[str | None] = mapped_column(String(36))  # the package its passing rows went out in
    suite: Mapped[str] = mapped_column(String(60))
    source: Mapped[str] = mapped_column(String(250))  # a file name, or "database"
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    passed: Mapped[int] = mapped_column(BigInteger, default=0)
    quarantined: Mapped[int] = mapped_column(BigInteger, default=0)
    flagged: Mapped[int] = mapped_column(BigInteger, default=0)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    block_reasons: Mapped[list | None] = mapped_column(JSON)
    score_dung: Mapped[float | None] = mapped_column(Float)  # đúng: correct
    score_du: Mapped[float | None] = mapped_column(Float)  # đủ: complete
    score_sach: Mapped[float | None] = mapped_column(Float)  # sạch: clean
    score_song: Mapped[float | None] = mapped_column(Float)  # sống: live
    expectations: Mapped[list | None] = mapped_column(JSON)  # per rule: dimension, severity, evaluated, unexpected
    report: Mapped[str | None] = mapped_column(String(500))  # where the run's Data Docs are


class QuarantinedRecord(Base):
    """A record held back by a quarantine-severity expectation, until a steward releases or rejects it.
    ``record`` is the row as it came (the steward needs the values; it never goes to logs)."""

    __tablename__ = "quarantined_record"
    __table_args__ = (
        Index("ix_quarantined_record_status", "status", "dataset"),
        Index("ix_quarantined_record_personal_id", "personal_id"),
        Index("ix_quarantined_record_queue", "status", "agreement", "province_code", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("validation_run.id"), index=True)
    dataset: Mapped[str] = mapped_column(String(40))
    agreement: Mapped[str | None] = mapped_column(String(60))  # the feed it was held from
    province_code: Mapped[str | None] = mapped_column(String(8))  # of its permanent ward, for the queue's facets
    row_number: Mapped[int] = mapped_column(BigInteger)
    personal_id: Mapped[str | None] = mapped_column(String(64))  # as given, which may not be a valid ID
    record: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10))  # held | awaiting (a second steward) | released | rejected
    held_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_in: Mapped[str | None] = mapped_column(String(36))  # the package that carried it, once released

    findings: Mapped[list[QuarantineFinding]] = relationship(back_populates="record", order_by="QuarantineFinding.id")
    decisions: Mapped[list[StewardDecision]] = relationship(back_populates="record", order_by="StewardDecision.id")


def releases_due_where(agreement: str, dataset: str) -> tuple:
    """What makes a held record due to go out in its feed's next package: released from this feed's quarantine of
    the dataset it sends, not sent yet, with a citizen to take into the window (``validation.quarantine``)."""
    return (
        QuarantinedRecord.agreement == agreement,
        QuarantinedRecord.dataset == dataset,
        QuarantinedRecord.status == "released",
        QuarantinedRecord.sent_in.is_(None),
        QuarantinedRecord.personal_id.is_not(None),
    )


class QuarantineFinding(Base):
    """Why a record is held: one failed expectation, with the column, the value and the reason."""

    __tablename__ = "quarantine_finding"
    __table_args__ = (Index("ix_quarantine_finding_fingerprint", "fingerprint"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("quarantined_record.id"), index=True)
    rule: Mapped[str] = mapped_column(String(200))
    column_name: Mapped[str] = mapped_column(String(200))
    value: Mapped[str | None] = mapped_column(Text)
    dimension: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(10), server_default="quarantine")  # quarantine | block
    reason: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of dataset, personal ID, rule and value

    record: Mapped[QuarantinedRecord] = relationship(back_populates="findings")


class StewardDecision(Base):
    """The audit of a steward's decision on a quarantined record: who, when, what and why. Never updated."""

    __tablename__ = "steward_decision"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("quarantined_record.id"), index=True)
    decision: Mapped[str] = mapped_column(String(10))  # release | reject
    scope: Mapped[str] = mapped_column(String(10), server_default="feed")  # feed (the record's own) | all (feeds)
    steward: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    record: Mapped[QuarantinedRecord] = relationship(back_populates="decisions")


class ReconciliationRun(Base):
    """One reconciliation of a partner's inbound dataset with the population database."""

    __tablename__ = "reconciliation_run"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner: Mapped[str] = mapped_column(String(20))
    dataset: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(250))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    links_written: Mapped[int] = mapped_column(BigInteger, default=0)
    classes: Mapped[dict | None] = mapped_column(JSON)  # class -> rows


class ReconciliationMismatch(Base):
    """One disagreement between a partner's row and the population database."""

    __tablename__ = "reconciliation_mismatch"
    __table_args__ = (Index("ix_reconciliation_mismatch_run_class", "run_id", "mismatch"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_run.id"))
    row_number: Mapped[int] = mapped_column(BigInteger)
    personal_id: Mapped[str | None] = mapped_column(String(64))  # as the partner gave it
    citizen_id: Mapped[int | None] = mapped_column(ForeignKey("citizen.id"))
    identifier: Mapped[str | None] = mapped_column(String(60))
    mismatch: Mapped[str] = mapped_column(String(30))
    partner_value: Mapped[str | None] = mapped_column(Text)
    population_value: Mapped[str | None] = mapped_column(Text)
    # which disagreement this is, whatever the run: SHA-256 of the partner and the values above (a resolution is of
    # the disagreement: the same row disagreeing the same way in a later run stands resolved)
    disagreement: Mapped[str | None] = mapped_column(String(64), index=True)


class MismatchResolution(Base):
    """The audit of a steward's resolution of a mismatch: the population is right, the partner must correct, or
    escalate; who, when and why. Never updated: a later resolution of the same mismatch supersedes it."""

    __tablename__ = "mismatch_resolution"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mismatch_id: Mapped[int] = mapped_column(ForeignKey("reconciliation_mismatch.id"), index=True)
    disagreement: Mapped[str] = mapped_column(String(64), index=True)  # the mismatch's
    resolution: Mapped[str] = mapped_column(String(30))  # population_right | partner_must_correct | escalate
    steward: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
