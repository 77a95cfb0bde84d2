"""Held records in the database, stewards' decisions with their audit, and releases honoured by later runs."""

import pandas as pd
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from population.db import session_factory
from tests.validation.conftest import AS_OF
from tests.validation.test_runner import _citizen, _write_csv
from validation.models import QuarantinedRecord, StewardDecision, ValidationRun
from validation.quarantine import DecisionError, decide, list_records, released_records
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
        held = list_records(session, "citizen-extract")
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
        assert [record for _, record in released_records(session, "citizen-extract")][0]["full_name"] == "Lê Văn Ðức"
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
        assert [r.id for r in list_records(session, status="rejected")] == [first.id]
        assert len(list_records(session, status=None)) == 2
        assert len(list_records(session, limit=1, status=None, after=first.id)) == 1
