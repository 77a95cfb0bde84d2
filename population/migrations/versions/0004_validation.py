"""Data quality: validation runs (scores kept for trends), quarantined records with their findings, the stewards'
decisions on them, and reconciliation runs with their mismatches (models in ``validation/models.py``).

The decisions are the audit trail: triggers refuse UPDATE and DELETE on ``steward_decision``.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "steward_decision is append-only"


def upgrade() -> None:
    op.create_table(
        "validation_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=40), nullable=False),
        sa.Column("suite", sa.String(length=60), nullable=False),
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("passed", sa.BigInteger(), nullable=False),
        sa.Column("quarantined", sa.BigInteger(), nullable=False),
        sa.Column("flagged", sa.BigInteger(), nullable=False),
        sa.Column("blocked", sa.Boolean(), nullable=False),
        sa.Column("block_reasons", sa.JSON(), nullable=True),
        sa.Column("score_dung", sa.Float(), nullable=True),
        sa.Column("score_du", sa.Float(), nullable=True),
        sa.Column("score_sach", sa.Float(), nullable=True),
        sa.Column("score_song", sa.Float(), nullable=True),
        sa.Column("expectations", sa.JSON(), nullable=True),
        sa.Column("report", sa.String(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_validation_run_dataset_started", "validation_run", ["dataset", "started_at"])
    op.create_table(
        "quarantined_record",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("dataset", sa.String(length=40), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("personal_id", sa.String(length=64), nullable=True),
        sa.Column("record", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["validation_run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantined_record_run_id", "quarantined_record", ["run_id"])
    op.create_index("ix_quarantined_record_status", "quarantined_record", ["status", "dataset"])
    op.create_index("ix_quarantined_record_personal_id", "quarantined_record", ["personal_id"])
    op.create_table(
        "quarantine_finding",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("column_name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("dimension", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["quarantined_record.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quarantine_finding_record_id", "quarantine_finding", ["record_id"])
    op.create_index("ix_quarantine_finding_fingerprint", "quarantine_finding", ["fingerprint"])
    op.create_table(
        "steward_decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("steward", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["quarantined_record.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_steward_decision_record_id", "steward_decision", ["record_id"])
    op.create_table(
        "reconciliation_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner", sa.String(length=20), nullable=False),
        sa.Column("dataset", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=250), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("links_written", sa.BigInteger(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reconciliation_mismatch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("row_number", sa.BigInteger(), nullable=False),
        sa.Column("personal_id", sa.String(length=64), nullable=True),
        sa.Column("citizen_id", sa.Integer(), nullable=True),
        sa.Column("identifier", sa.String(length=60), nullable=True),
        sa.Column("mismatch", sa.String(length=30), nullable=False),
        sa.Column("partner_value", sa.Text(), nullable=True),
        sa.Column("population_value", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["citizen_id"], ["citizen.id"]),
        sa.ForeignKeyConstraint(["run_id"], ["reconciliation_run.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_reconciliation_mismatch_run_class", "reconciliation_mismatch", ["run_id", "mismatch"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION steward_decision_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER steward_decision_append_only BEFORE UPDATE OR DELETE ON steward_decision "
            "FOR EACH ROW EXECUTE FUNCTION steward_decision_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER steward_decision_no_{action.lower()} BEFORE {action} ON steward_decision "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER steward_decision_append_only ON steward_decision")
        op.execute("DROP FUNCTION steward_decision_append_only()")
    else:
        op.execute("DROP TRIGGER steward_decision_no_update")
        op.execute("DROP TRIGGER steward_decision_no_delete")
    op.drop_index("ix_reconciliation_mismatch_run_class", "reconciliation_mismatch")
    op.drop_table("reconciliation_mismatch")
    op.drop_table("reconciliation_run")
    op.drop_index("ix_steward_decision_record_id", "steward_decision")
    op.drop_table("steward_decision")
    op.drop_index("ix_quarantine_finding_fingerprint", "quarantine_finding")
    op.drop_index("ix_quarantine_finding_record_id", "quarantine_finding")
    op.drop_table("quarantine_finding")
    op.drop_index("ix_quarantined_record_personal_id", "quarantined_record")
    op.drop_index("ix_quarantined_record_status", "quarantined_record")
    op.drop_index("ix_quarantined_record_run_id", "quarantined_record")
    op.drop_table("quarantined_record")
    op.drop_index("ix_validation_run_dataset_started", "validation_run")
    op.drop_table("validation_run")
