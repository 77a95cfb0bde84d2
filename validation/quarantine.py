"""The quarantine: records held back by quarantine-severity expectations, and the stewards' decisions on them.

``QuarantineStore`` is a finding sink for a validation run: it records the run (its feed, figures and scores, for
trends), every held record with the row as it came, its feed and province, and each finding (expectation,
column, value, severity, reason). A held record that also fails a block rule's row test (the share rules on the
personal ID) carries that finding too, at severity ``block``.

A steward then decides, with a reason, and every decision is audited (who, when, why, for which feeds; the
audit table refuses updates and deletes). Decisions are per feed: the four outbound feeds share the dataset
``citizen-extract``, so one person can be held once per feed, and releasing them for the tax feed does not
release them for the land feed unless the steward decides for all feeds.

- **release**: the finding is accepted as it is. The record goes out in its feed's next package, exactly once:
  the feed's next window takes the citizen in (``releases_due``), the release lets the same values pass, and the
  package's manifest names the decisions (``validation.released``); sealing marks the record sent in that
  package (``mark_sent``). Later runs keep letting the same record pass the same expectation while the value
  stays the same (the finding is listed as a warning saying it was released). Releasing a record with a
  block-severity finding takes two stewards (four eyes): the first release leaves it ``awaiting``, a second
  steward's release lets it go.
- **reject**: the record stays out; it will be held again by later runs until it is corrected at the source.

A decision is taken once: a record released or rejected is not decided again (a second steward completes an
awaiting release, or rejects it).
"""

from __future__ import annotations

import getpass
import hashlib
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pandas as pd
from sqlalchemy import ColumnElement, Engine, and_, distinct, exists, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session, aliased, selectinload

from population.admin_units import ward_provinces
from population.db import session_factory
from validation.models import (
    QuarantinedRecord,
    QuarantineFinding,
    StewardDecision,
    ValidationRun,
    releases_due_where,
)
from validation.reports import SCORE_COLUMNS

Decision = Literal["release", "reject"]
STATUS_AFTER = {"release": "released", "reject": "rejected"}
STATUSES = ("held", "awaiting", "released", "rejected")  # awaiting: a four-eyes release, for a second steward
UNDECIDED = ("held", "awaiting")
HELD_SEVERITIES = ("quarantine", "block")  # what a held record's findings are (block: also fails a share rule)
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
    """Records one validation run (for a feed, the agreement's name; None for a file or the database checked by
    hand) and the records it holds back. A finding sink for ``validation.runner``; its ``waivers`` method applies
    earlier releases for the same feed (or for all feeds)."""

    def __init__(self, engine: Engine, dataset: str, suite: str, source: str, agreement: str | None = None):
        self.dataset = dataset
        self.agreement = agreement
        self.engine = engine
        self.sessions = session_factory(engine)
        self._provinces: dict[str, str] | None = None
        with self.sessions.begin() as session:
            run = ValidationRun(dataset=dataset, agreement=agreement, suite=suite, source=source[-250:],
                                started_at=datetime.now(UTC), rows=0, passed=0, quarantined=0, flagged=0,
                                blocked=False)  # fmt: skip
            session.add(run)
            session.flush()
            self.run_id = run.id

    def _fingerprints(self, findings: pd.DataFrame) -> list[str]:
        return [
            fingerprint(self.dataset, pid, rule, value)
            for pid, rule, value in zip(findings["personal_id"], findings["rule"], findings["value"], strict=True)
        ]

    def waivers(self, findings: pd.DataFrame) -> pd.DataFrame:
        """Quarantine (and block) findings a steward has released for this feed, or for all feeds, become
        warnings."""
        quarantine = findings["severity"].isin(HELD_SEVERITIES)
        if not quarantine.any():
            return findings
        prints = pd.Series(self._fingerprints(findings[quarantine]), index=findings.index[quarantine])
        released: set[str] = set()
        for_all_feeds = select(StewardDecision.record_id).where(StewardDecision.scope == "all")
        this_feed = or_(QuarantinedRecord.agreement.is_not_distinct_from(self.agreement),
                        QuarantinedRecord.id.in_(for_all_feeds))  # fmt: skip
        with self.sessions() as session:
            for start in range(0, len(prints), 1000):
                chunk = prints.iloc[start : start + 1000].tolist()
                released.update(
                    session.scalars(
                        select(QuarantineFinding.fingerprint)
                        .join(QuarantinedRecord)
                        .where(
                            QuarantinedRecord.status == "released", this_feed, QuarantineFinding.fingerprint.in_(chunk)
                        )  # fmt: skip
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
        if self._provinces is None:
            self._provinces = ward_provinces(self.engine)
        records = [
            dict(
                run_id=self.run_id,
                dataset=self.dataset,
                agreement=self.agreement,
                province_code=self._provinces.get(str(values.get("permanent_ward_code"))),
                row_number=int(row_number),
                personal_id=_plain(values.get("personal_id")),
                record={k: _plain(v) for k, v in values.items()},
                status="held",
                held_at=now,
            )  # fmt: skip
            for row_number, values in zip(held.index, held.to_dict("records"), strict=True)
        ]
        quarantine = findings[findings["severity"].isin(HELD_SEVERITIES) & findings["row_number"].isin(held.index)]
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
                        severity=severity,
                        reason=reason,
                        fingerprint=print_,
                    )  # fmt: skip
                    for row_number, rule, column, value, dimension, severity, reason, print_ in zip(
                        quarantine["row_number"],
                        quarantine["rule"],
                        quarantine["column"],
                        quarantine["value"],
                        quarantine["dimension"],
                        quarantine["severity"],
                        quarantine["reason"],
                        self._fingerprints(quarantine),
                        strict=True,
                    )  # fmt: skip
                ],
            )

    def held_among(self, personal_ids: Iterable[str]) -> set[str]:
        """Which of these personal IDs this run held back."""
        ids = list(personal_ids)
        if not ids:
            return set()
        with self.sessions() as session:
            held = select(QuarantinedRecord.personal_id).where(
                QuarantinedRecord.run_id == self.run_id, QuarantinedRecord.personal_id.in_(ids)
            )
            return set(session.scalars(held))

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


@dataclass(frozen=True)
class QueueFilter:
    """Which quarantined records a steward looks at: each given facet narrows the queue (None: any)."""

    status: str | None = "held"
    agreement: str | None = None
    dataset: str | None = None
    run: int | None = None
    package: str | None = None  # the package a run's rows went out in
    dimension: str | None = None  # đúng | đủ | sạch | sống
    severity: str | None = None  # quarantine | block
    rule: str | None = None  # the expectation
    province: str | None = None


RECORD_FACETS = {"status": QuarantinedRecord.status, "agreement": QuarantinedRecord.agreement,
                 "province": QuarantinedRecord.province_code}  # fmt: skip
FINDING_FACETS = {"dimension": QuarantineFinding.dimension, "severity": QuarantineFinding.severity,
                  "rule": QuarantineFinding.rule}  # fmt: skip


def _conditions(where: QueueFilter, leave_out: str | None = None) -> list[ColumnElement[bool]]:
    """The SQL conditions of a filter on quarantined records (``leave_out``: one facet not applied)."""
    conditions = [column == getattr(where, facet) for facet, column in RECORD_FACETS.items()
                  if facet != leave_out and getattr(where, facet) is not None]  # fmt: skip
    if where.dataset is not None:
        conditions.append(QuarantinedRecord.dataset == where.dataset)
    if where.run is not None:
        conditions.append(QuarantinedRecord.run_id == where.run)
    if where.package is not None:
        conditions.append(
            QuarantinedRecord.run_id.in_(select(ValidationRun.id).where(ValidationRun.package_id == where.package))
        )
    # an alias: the facets' own counts read quarantine_finding, which the EXISTS must not correlate to
    finding = aliased(QuarantineFinding)
    on_findings = [getattr(finding, column.key) == getattr(where, facet) for facet, column in FINDING_FACETS.items()
                   if facet != leave_out and getattr(where, facet) is not None]  # fmt: skip
    if on_findings:
        conditions.append(exists().where(finding.record_id == QuarantinedRecord.id, *on_findings))
    return conditions


def _records():
    """A query of quarantined records with their findings and decisions, as they are now in the database (not as
    this session last saw them: a decision just taken must count)."""
    return (
        select(QuarantinedRecord)
        .options(selectinload(QuarantinedRecord.findings), selectinload(QuarantinedRecord.decisions))
        .execution_options(populate_existing=True)
    )


def list_records(
    session: Session, where: QueueFilter | None = None, limit: int = 50, after: int = 0
) -> Sequence[QuarantinedRecord]:
    """A page of quarantined records under a filter, with their findings and decisions, oldest first (paged by
    id: the next page is ``after`` the last id shown)."""
    query = (
        _records()
        .where(QuarantinedRecord.id > after, *_conditions(where or QueueFilter()))
        .order_by(QuarantinedRecord.id)
        .limit(limit)
    )
    return session.scalars(query).all()


def quarantined_record(session: Session, record_id: int) -> QuarantinedRecord:
    """One quarantined record with its findings and decisions; DecisionError when there is none."""
    record = session.scalar(_records().where(QuarantinedRecord.id == record_id))
    if record is None:
        raise DecisionError(f"no quarantined record {record_id}")
    return record


def facet_counts(session: Session, where: QueueFilter | None = None) -> dict[str, dict[str, int]]:
    """For each facet of the queue, how many records each of its values holds under the other facets' filters
    (a record with two findings of one dimension counts once). The finding facets whose filters are the same are
    counted in one pass over the findings (PostgreSQL's grouping sets; one query a facet elsewhere)."""
    where = where or QueueFilter()
    counts: dict[str, dict[str, int]] = {}
    for facet, column in RECORD_FACETS.items():
        rows = session.execute(
            select(column, func.count()).where(*_conditions(where, facet)).group_by(column).order_by(column)
        )
        counts[facet] = {str(value): count for value, count in rows if value is not None}
    # a facet's own filter is left out of its counts: the facets not filtered on share their conditions
    together = [facet for facet in FINDING_FACETS if getattr(where, facet) is None]
    apart = [[facet] for facet in FINDING_FACETS if facet not in together]
    by_pass = [together, *apart] if session.get_bind().dialect.name == "postgresql" and len(together) > 1 else None
    for facets in by_pass or [[facet] for facet in FINDING_FACETS]:
        columns = [FINDING_FACETS[facet] for facet in facets]
        grouping = func.grouping_sets(*(tuple_(column) for column in columns)) if len(columns) > 1 else columns[0]
        rows = session.execute(
            select(*columns, func.count(distinct(QuarantinedRecord.id)))
            .join(QuarantinedRecord, QuarantineFinding.record_id == QuarantinedRecord.id)
            .where(*_conditions(where, facets[0]))
            .group_by(grouping)
        )
        found: dict[str, dict[str, int]] = {facet: {} for facet in facets}
        for *values, count in rows:  # in a grouping set's row, only its own column is not null
            facet, value = next((f, v) for f, v in zip(facets, values, strict=True) if v is not None)
            found[facet][str(value)] = count
        counts |= {facet: dict(sorted(values.items())) for facet, values in found.items()}
    return counts


def steward_identity(steward: str | None = None) -> str:
    """Who a steward's decision or view is recorded under: the signed-in user's name (the workbench), else the
    identity configured for the command line (``LIENTHONG_STEWARD``), else the OS user."""
    return (steward or os.environ.get("LIENTHONG_STEWARD") or getpass.getuser()).strip()


def record_label(record: QuarantinedRecord) -> str:
    """How a held record is named in the logs of full views (no personal data)."""
    return f"quarantined record {record.id} ({record.dataset}, run {record.run_id}, row {record.row_number})"


def needs_second_steward(record: QuarantinedRecord) -> bool:
    """A record with a block-severity finding is released by two stewards (four eyes)."""
    return any(f.severity == "block" for f in record.findings)


def _siblings(session: Session, record: QuarantinedRecord) -> list[QuarantinedRecord]:
    """The same person held by other feeds for the same findings (or fewer): what "all feeds" also decides."""
    prints = {f.fingerprint for f in record.findings}
    candidates = session.scalars(
        _records().where(
            QuarantinedRecord.dataset == record.dataset,
            QuarantinedRecord.personal_id == record.personal_id,
            QuarantinedRecord.id != record.id,
            QuarantinedRecord.status.in_(UNDECIDED),
        )
    ).all()
    return [c for c in candidates if {f.fingerprint for f in c.findings} <= prints]


def _decided(record: QuarantinedRecord) -> str:
    last = record.decisions[-1] if record.decisions else None
    by = f" by {last.steward} on {last.decided_at:%Y-%m-%d %H:%M} UTC" if last else ""
    return f"quarantined record {record.id} is already {record.status}{by}"


def _status_after(record: QuarantinedRecord, decision: Decision, steward: str) -> str:
    """What a decision makes of a record, or DecisionError naming the record and the rule it breaks."""
    if record.status not in UNDECIDED:
        raise DecisionError(_decided(record))
    if decision == "reject" or not needs_second_steward(record):
        return STATUS_AFTER[decision]
    if record.status == "held":
        return "awaiting"
    first = next(d.steward for d in reversed(record.decisions) if d.decision == "release")
    if first == steward:
        raise DecisionError(
            f"quarantined record {record.id} fails a block-severity rule: its release takes a second steward, "
            f"not {steward} again"
        )
    return "released"


def decide(
    session: Session,
    record_ids: Iterable[int],
    decision: Decision,
    reason: str,
    steward: str | None = None,
    *,
    all_feeds: bool = False,
) -> list[StewardDecision]:
    """Release or reject quarantined records, with a reason, for their own feed or (``all_feeds``) for every feed
    that holds the same person for the same findings; each decision is audited. All or nothing. Commits."""
    if decision not in STATUS_AFTER:
        raise DecisionError(f"a decision is 'release' or 'reject', not {decision!r}")
    if not reason or not reason.strip():
        raise DecisionError("a decision needs a reason")
    steward = steward_identity(steward)
    ids = sorted(set(record_ids))
    records = session.scalars(_records().where(QuarantinedRecord.id.in_(ids)).order_by(QuarantinedRecord.id)).all()
    missing = sorted(set(ids) - {r.id for r in records})
    if missing:
        raise DecisionError(f"no quarantined record {', '.join(map(str, missing))}")
    if all_feeds:
        chosen = {r.id for r in records}
        records = [*records, *{s.id: s for r in records for s in _siblings(session, r) if s.id not in chosen}.values()]
    now = datetime.now(UTC)
    after = {record.id: _status_after(record, decision, steward) for record in records}  # every check first
    decisions = []
    for record in records:
        record.status = after[record.id]
        decisions.append(
            StewardDecision(
                record_id=record.id,
                decision=decision,
                scope="all" if all_feeds else "feed",
                steward=steward,
                reason=reason.strip(),
                decided_at=now,
            )  # fmt: skip
        )
    session.add_all(decisions)
    session.commit()
    return decisions


# -- releases going out ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueRelease:
    """A released record its feed has not sent yet: the citizen goes out in the feed's next package."""

    record: int
    personal_id: str | None
    decisions: tuple[int, ...]
    rules: tuple[str, ...]
    released_at: datetime  # when the release took effect (the last steward's decision)

    def manifest_entry(self) -> dict:
        """How the package's manifest names the release (``validation.released``): no personal data."""
        return {"record": self.record, "decisions": list(self.decisions), "rules": list(self.rules)}


MAX_RELEASES_PER_PACKAGE = 1024  # what a manifest's validation.released holds; the rest go in the next one


def releases_due(
    session: Session, agreement: str, dataset: str, limit: int = MAX_RELEASES_PER_PACKAGE
) -> list[DueRelease]:
    """The feed's released records of the dataset it sends, not yet sent, oldest first, as many as one package
    names."""
    records = session.scalars(
        _records().where(*releases_due_where(agreement, dataset)).order_by(QuarantinedRecord.id).limit(limit)
    ).all()
    return [
        DueRelease(
            r.id,
            r.personal_id,
            tuple(d.id for d in r.decisions if d.decision == "release"),
            tuple(sorted({f.rule for f in r.findings})),
            r.decisions[-1].decided_at,
        )  # fmt: skip
        for r in records
    ]


def releases_carried(session: Session, agreement: str, dataset: str, runs: Iterable[int]) -> list[DueRelease]:
    """The feed's due releases that these validation runs carried: released before the first of them started
    (so its waivers let the record pass), and not held again by any of them (changed since, and failing anew)."""
    runs = list(runs)
    if not runs:
        return []
    started = session.scalar(select(func.min(ValidationRun.started_at)).where(ValidationRun.id.in_(runs)))
    due = [d for d in releases_due(session, agreement, dataset) if _aware(d.released_at) < _aware(started)]
    held = select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id.in_(runs))
    held_again = set(session.scalars(held.where(QuarantinedRecord.personal_id.in_([d.personal_id for d in due]))))
    return [d for d in due if d.personal_id not in held_again]


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive times (stored as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def mark_sent(session: Session, record_ids: Iterable[int], package_id: str) -> None:
    """Released records carried by a package (in the package's sealing transaction): they are not due again."""
    ids = list(record_ids)
    if ids:
        session.execute(
            update(QuarantinedRecord)
            .where(and_(QuarantinedRecord.id.in_(ids), QuarantinedRecord.sent_in.is_(None)))
            .values(sent_in=package_id)
        )
