"""The quarantine: records held back by quarantine-severity expectations, and the stewards' decisions on them.

``QuarantineStore`` is a finding sink for a validation run: it records the run (its figures and scores, for
trends), every held record with the row as it came and each finding (expectation, column, value, reason).

A steward then decides, with a reason, and every decision is audited (who, when, why; the audit table refuses
updates and deletes):
- **release**: the finding is accepted as it is. Later runs let the same record pass the same expectation while
  the value stays the same (the finding is still listed, as a warning saying it was released);
- **reject**: the record stays out; it will be held again by later runs until it is corrected at the source.
"""

from __future__ import annotations

import getpass
import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Literal

import pandas as pd
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session, selectinload

from population.db import session_factory
from validation.models import QuarantinedRecord, QuarantineFinding, StewardDecision, ValidationRun
from validation.reports import SCORE_COLUMNS

Decision = Literal["release", "reject"]
STATUS_AFTER = {"release": "released", "reject": "rejected"}
RELEASED_NOTE = " (released by a steward: goes out)"


def fingerprint(dataset: str, personal_id: object, rule: str, value: object) -> str:
    """What a release applies to: this dataset, this person, this expectation, this value."""
    parts = (dataset, "" if personal_id is None or personal_id is pd.NA else str(personal_id), rule, str(value))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _plain(value: object) -> object:
    """A JSON-ready cell: missing values (None, NaN, NA) become None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, str | int | float | bool) else str(value)


class QuarantineStore:
    """Records one validation run and the records it holds back. A finding sink for ``validation.runner``; its
    ``waivers`` method applies earlier releases."""

    def __init__(self, engine: Engine, dataset: str, suite: str, source: str):
        self.dataset = dataset
        self.sessions = session_factory(engine)
        with self.sessions.begin() as session:
            run = ValidationRun(dataset=dataset, suite=suite, source=source[-250:], started_at=datetime.now(UTC),
                                rows=0, passed=0, quarantined=0, flagged=0, blocked=False)  # fmt: skip
            session.add(run)
            session.flush()
            self.run_id = run.id

    def _fingerprints(self, findings: pd.DataFrame) -> list[str]:
        return [
            fingerprint(self.dataset, pid, rule, value)
            for pid, rule, value in zip(findings["personal_id"], findings["rule"], findings["value"], strict=True)
        ]

    def waivers(self, findings: pd.DataFrame) -> pd.DataFrame:
        """Quarantine findings a steward has released become warnings."""
        quarantine = findings["severity"] == "quarantine"
        if not quarantine.any():
            return findings
        prints = pd.Series(self._fingerprints(findings[quarantine]), index=findings.index[quarantine])
        released: set[str] = set()
        with self.sessions() as session:
            for start in range(0, len(prints), 1000):
                chunk = prints.iloc[start : start + 1000].tolist()
                released.update(
                    session.scalars(
                        select(QuarantineFinding.fingerprint)
                        .join(QuarantinedRecord)
                        .where(QuarantinedRecord.status == "released", QuarantineFinding.fingerprint.in_(chunk))
                    )
                )
        if not released:
            return findings
        waived = prints.index[prints.isin(released)]
        findings = findings.copy()
        findings.loc[waived, "severity"] = "warn"
        findings.loc[waived, "reason"] = findings.loc[waived, "reason"] + RELEASED_NOTE
        return findings

    def add(self, findings: pd.DataFrame, held: pd.DataFrame) -> None:
        if held.empty:
            return
        now = datetime.now(UTC)
        records = [
            dict(
                run_id=self.run_id,
                dataset=self.dataset,
                row_number=int(row_number),
                personal_id=_plain(values.get("personal_id")),
                record={k: _plain(v) for k, v in values.items()},
                status="held",
                held_at=now,
            )  # fmt: skip
            for row_number, values in zip(held.index, held.to_dict("records"), strict=True)
        ]
        quarantine = findings[findings["severity"] == "quarantine"]
        with self.sessions.begin() as session:
            # Core inserts of the tables (the ORM's bulk insert spends as long again preparing the rows).
            table = QuarantinedRecord.__table__
            ids = session.execute(
                insert(table).returning(table.c.id, table.c.row_number, sort_by_parameter_order=True), records
            ).all()
            record_of = {row_number: record_id for record_id, row_number in ids}
            session.execute(
                insert(QuarantineFinding.__table__),
                [
                    dict(
                        record_id=record_of[row_number],
                        rule=rule,
                        column_name=column,
                        value=_plain(value),
                        dimension=dimension,
                        reason=reason,
                        fingerprint=print_,
                    )  # fmt: skip
                    for row_number, rule, column, value, dimension, reason, print_ in zip(
                        quarantine["row_number"],
                        quarantine["rule"],
                        quarantine["column"],
                        quarantine["value"],
                        quarantine["dimension"],
                        quarantine["reason"],
                        self._fingerprints(quarantine),
                        strict=True,
                    )  # fmt: skip
                ],
            )

    def finish(self, outcome) -> None:
        scores = outcome.scores
        with self.sessions.begin() as session:
            session.execute(
                update(ValidationRun)
                .where(ValidationRun.id == self.run_id)
                .values(
                    finished_at=outcome.finished_at,
                    rows=outcome.rows,
                    passed=outcome.passed,
                    quarantined=outcome.quarantined,
                    flagged=outcome.flagged,
                    blocked=bool(outcome.blocked),
                    block_reasons=outcome.blocked or None,
                    expectations=[rule.as_dict() for rule in outcome.rules],
                    report=outcome.data_docs,
                    **{SCORE_COLUMNS[d]: score for d, score in scores.items()},
                )
            )
        outcome.run_id = self.run_id


# -- stewards -----------------------------------------------------------------------------------------------------


class DecisionError(ValueError):
    pass


def list_records(
    session: Session, dataset: str | None = None, status: str | None = "held", limit: int = 50, after: int = 0
) -> Sequence[QuarantinedRecord]:
    """Quarantined records with their findings and decisions, oldest first."""
    query = (
        select(QuarantinedRecord)
        .options(selectinload(QuarantinedRecord.findings), selectinload(QuarantinedRecord.decisions))
        .where(QuarantinedRecord.id > after)
        .order_by(QuarantinedRecord.id)
        .limit(limit)
    )
    if dataset:
        query = query.where(QuarantinedRecord.dataset == dataset)
    if status:
        query = query.where(QuarantinedRecord.status == status)
    return session.scalars(query).all()


def steward_identity(steward: str | None = None) -> str:
    """Who a steward's decision or view is recorded under: the identity given, else the OS user."""
    return (steward or getpass.getuser()).strip()


def record_label(record: QuarantinedRecord) -> str:
    """How a held record is named in the logs of full views (no personal data)."""
    return f"quarantined record {record.id} ({record.dataset}, run {record.run_id}, row {record.row_number})"


def decide(
    session: Session, record_ids: Iterable[int], decision: Decision, reason: str, steward: str | None = None
) -> list[StewardDecision]:
    """Release or reject quarantined records, with a reason; each decision is audited. Commits."""
    if decision not in STATUS_AFTER:
        raise DecisionError(f"a decision is 'release' or 'reject', not {decision!r}")
    if not reason or not reason.strip():
        raise DecisionError("a decision needs a reason")
    steward = steward_identity(steward)
    ids = sorted(set(record_ids))
    records = session.scalars(select(QuarantinedRecord).where(QuarantinedRecord.id.in_(ids))).all()
    missing = sorted(set(ids) - {r.id for r in records})
    if missing:
        raise DecisionError(f"no quarantined record {', '.join(map(str, missing))}")
    already = [r.id for r in records if r.status == STATUS_AFTER[decision]]
    if already:
        raise DecisionError(f"already {STATUS_AFTER[decision]}: {', '.join(map(str, already))}")
    now = datetime.now(UTC)
    decisions = []
    for record in records:
        record.status = STATUS_AFTER[decision]
        decisions.append(
            StewardDecision(
                record_id=record.id, decision=decision, steward=steward, reason=reason.strip(), decided_at=now
            )  # fmt: skip
        )
    session.add_all(decisions)
    session.commit()
    return decisions


def released_records(session: Session, dataset: str, after: int = 0) -> Iterator[tuple[int, dict]]:
    """Released records of a dataset as they came (id, record), for a step that sends what stewards let through."""
    query = (
        select(QuarantinedRecord.id, QuarantinedRecord.record)
        .where(
            QuarantinedRecord.dataset == dataset, QuarantinedRecord.status == "released", QuarantinedRecord.id > after
        )
        .order_by(QuarantinedRecord.id)
    )
    yield from (tuple(row) for row in session.execute(query))
