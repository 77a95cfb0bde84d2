"""Held records in the database, stewards' decisions with their audit, and releases honoured by later runs."""

from datetime import date, timedelta

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from population.db import session_factory
from tests.validation.conftest import AS_OF
from tests.validation.test_runner import _citizen, _write_csv
from validation.models import QuarantinedRecord, StewardDecision, ValidationRun
from validation.quarantine import (
    DecisionError,
    QueueFilter,
    decide,
    facet_counts,
    list_records,
    needs_second_steward,
    quarantined_record,
)
from validation.runner import check_file


def _rows():
    return [_citizen("001090000001"), _citizen("001090000002", full_name="Lê Văn Ðức"),
            _citizen("001090000003", full_name="Trần Văn Bình", permanent_ward_code="99999")]  # fmt: skip


def test_held_records_decisions_and_audit(db, tmp_path):
    path = _write_csv(tmp_path / "in.csv", _rows())
    outcome = check_file("citizen-extract", path, tmp_path / "out", db, as_of=AS_OF)
    sessions = session_factory(db)
    with sessions() as session:
        run = session.get(ValidationRun, outcome.run_id)
        assert (run.rows, run.quarantined, run.blocked) == (3, 2, False)
        assert run.score_sach == pytest.approx(2 / 3) and run.expectations
        held = list_records(session, QueueFilter(dataset="citizen-extract"))
        assert [(r.row_number, r.personal_id, r.status) for r in held] == [(2, "001090000002", "held"),
                                                                           (3, "001090000003", "held")]  # fmt: skip
        legacy, ward = held
        assert legacy.record["full_name"] == "Lê Văn Ðức" and legacy.record["updated_at"]
        finding = legacy.findings[0]
        assert (finding.rule, finding.column_name, finding.value, finding.dimension) == (
            "expect_column_values_to_be_free_of_legacy_d(full_name)",
            "full_name",
            "Lê Văn Ðức",
            "sạch",
        )
        with pytest.raises(DecisionError, match="reason"):
            decide(session, [legacy.id], "release", "  ")
        with pytest.raises(DecisionError, match="no quarantined record 999"):
            decide(session, [999], "reject", "typo")
        decide(session, [legacy.id], "release", "the register spells it so", steward="lan.nguyen")
        decide(session, [ward.id], "reject", "ward code must be corrected at source")
        with pytest.raises(DecisionError, match="already rejected"):
            decide(session, [ward.id], "reject", "again")
        audit = session.query(StewardDecision).order_by(StewardDecision.id).all()
        assert [(d.record_id, d.decision) for d in audit] == [(legacy.id, "release"), (ward.id, "reject")]
        assert audit[1].reason == "ward code must be corrected at source"
        assert audit[0].steward == "lan.nguyen" and audit[1].steward and audit[0].decided_at is not None
        assert [r.record["full_name"] for r in list_records(session, QueueFilter("released"))] == ["Lê Văn Ðức"]
        with pytest.raises(DecisionError, match=f"quarantined record {legacy.id} is already released by lan.nguyen"):
            decide(session, [legacy.id], "reject", "changed my mind")  # a decision is taken once
    with pytest.raises(DBAPIError, match="append-only"), db.begin() as connection:  # the audit is never edited
        connection.execute(text("UPDATE steward_decision SET reason = 'changed'"))
    with pytest.raises(DBAPIError, match="append-only"), db.begin() as connection:
        connection.execute(text("DELETE FROM steward_decision"))

    # the next run lets the released value pass (listed as a warning) and holds the rejected record again
    again = check_file("citizen-extract", path, tmp_path / "again", db, as_of=AS_OF)
    assert again.quarantined == 1
    findings = pd.read_csv(tmp_path / "again" / "quarantine.csv", dtype=str)
    released = findings[findings["row_number"] == "2"].iloc[0]
    assert released["severity"] == "warn" and "released by a steward" in released["reason"]
    with sessions() as session:
        assert session.query(QuarantinedRecord).filter_by(run_id=again.run_id).count() == 1


def test_list_filters_by_status(db, tmp_path):
    check_file("citizen-extract", _write_csv(tmp_path / "in.csv", _rows()), tmp_path / "out", db, as_of=AS_OF)
    with session_factory(db)() as session:
        first = list_records(session)[0]
        decide(session, [first.id], "reject", "wrong")
        assert [r.id for r in list_records(session, QueueFilter("rejected"))] == [first.id]
        assert len(list_records(session, QueueFilter(None))) == 2
        assert len(list_records(session, QueueFilter(None), limit=1, after=first.id)) == 1


def test_releasing_a_record_failing_a_block_rule_takes_two_stewards(db, tmp_path):
    # 1 personal ID of 200 fails the 12-digit gate: within the block rule's 1%, so the file goes on, and the row
    # is held (quarantine) with the block rule's finding too
    born = [(date(1990, 1, 1) + timedelta(days=n)).isoformat() for n in range(200)]  # 200 people, not one
    rows = [_citizen(f"0010900{n:05d}", date_of_birth=born[n]) for n in range(1, 200)]
    rows.append(_citizen("00109000001", date_of_birth=born[0]))
    path = _write_csv(tmp_path / "in.csv", rows)
    assert check_file("citizen-extract", path, tmp_path / "out", db, as_of=AS_OF).quarantined == 1
    with session_factory(db)() as session:
        (record,) = list_records(session, QueueFilter(severity="block"))
        assert needs_second_steward(record) and {f.severity for f in record.findings} == {"quarantine", "block"}
        counts = facet_counts(session, QueueFilter())
        assert counts["severity"] == {"block": 1, "quarantine": 1} and counts["status"] == {"held": 1}
        assert counts["dimension"] == {"đúng": 1}
        filtered = facet_counts(session, QueueFilter(severity="block"))  # a facet's own filter is left out of it
        assert filtered["severity"] == {"block": 1, "quarantine": 1} and len(filtered["rule"]) == 2
        assert facet_counts(session, QueueFilter(dimension="sạch"))["severity"] == {}
        (first,) = decide(session, [record.id], "release", "an old 9-digit card number, checked", "lan.nguyen")
        assert session.get(QuarantinedRecord, record.id).status == "awaiting"
        with pytest.raises(DecisionError, match=f"record {record.id} fails a block-severity rule.*not lan.nguyen"):
            decide(session, [record.id], "release", "again", "lan.nguyen")
        decide(session, [record.id], "release", "confirmed with the ward police", "minh.tran")
        assert session.get(QuarantinedRecord, record.id).status == "released"
        assert facet_counts(session, QueueFilter(None))["status"] == {"released": 1}
        assert [d.steward for d in quarantined_record(session, record.id).decisions] == ["lan.nguyen", "minh.tran"]
    # both findings released: the next run lets the row pass
    assert check_file("citizen-extract", path, tmp_path / "again", db, as_of=AS_OF).quarantined == 0
