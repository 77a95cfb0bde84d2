"""Stewards' decisions that take effect, per feed (issue 18).

- ``validation_run.agreement`` and ``quarantined_record.agreement``: the feed a run validated for, and so the feed
  a held record belongs to (the four outbound feeds share the dataset ``citizen-extract``);
  ``validation_run.package_id``: the package the run's rows went out in.
- ``quarantined_record.province_code``: the province of the record's permanent ward, a facet of the queue;
  ``quarantined_record.sent_in``: the package that carried a released record (it goes out once).
- ``quarantine_finding.severity``: quarantine, or block (a held record that also fails a block rule's row test:
  its release takes a second steward).
- ``steward_decision.scope``: a release for the record's own feed, or for every feed.
- ``mismatch_resolution``: a steward's resolution of a reconciliation mismatch (the population is right, the
  partner must correct, or escalate), audited like the decisions: triggers refuse UPDATE and DELETE; it is of the
  disagreement (``reconciliation_mismatch.disagreement``: the partner and the row's values, hashed), so the same
  disagreement in a later reconciliation stands resolved.

The queue pages by id under a status, a feed and a province, and counts them: one index for that.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

APPEND_ONLY = "mismatch_resolution is append-only: a resolution is never edited, a later one supersedes it"

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("validation_run", sa.Column("agreement", sa.String(length=60), nullable=True))
    op.add_column("validation_run", sa.Column("package_id", sa.String(length=36), nullable=True))
    op.create_index("ix_validation_run_agreement_started", "validation_run", ["agreement", "started_at"])
    op.add_column("quarantined_record", sa.Column("agreement", sa.String(length=60), nullable=True))
    op.add_column("quarantined_record", sa.Column("province_code", sa.String(length=8), nullable=True))
    op.add_column("quarantined_record", sa.Column("sent_in", sa.String(length=36), nullable=True))
    op.create_index("ix_quarantined_record_queue", "quarantined_record", ["status", "agreement", "province_code", "id"])
    op.add_column(
        "quarantine_finding",
        sa.Column("severity", sa.String(length=10), nullable=False, server_default="quarantine"),
    )
    op.add_column("steward_decision", sa.Column("scope", sa.String(length=10), nullable=False, server_default="feed"))
    op.create_table(
        "mismatch_resolution",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mismatch_id", sa.Integer(), nullable=False),
        sa.Column("disagreement", sa.String(length=64), nullable=False),
        sa.Column("resolution", sa.String(length=30), nullable=False),
        sa.Column("steward", sa.String(length=120), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["mismatch_id"], ["reconciliation_mismatch.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_mismatch_resolution_mismatch_id", "mismatch_resolution", ["mismatch_id"])
    op.create_index("ix_mismatch_resolution_disagreement", "mismatch_resolution", ["disagreement"])
    op.add_column("reconciliation_mismatch", sa.Column("disagreement", sa.String(length=64), nullable=True))
    op.create_index("ix_reconciliation_mismatch_disagreement", "reconciliation_mismatch", ["disagreement"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION mismatch_resolution_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$"
        )
        op.execute(
            "CREATE TRIGGER mismatch_resolution_append_only BEFORE UPDATE OR DELETE ON mismatch_resolution "
            "FOR EACH ROW EXECUTE FUNCTION mismatch_resolution_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER mismatch_resolution_no_{action.lower()} BEFORE {action} ON mismatch_resolution "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER mismatch_resolution_append_only ON mismatch_resolution")
        op.execute("DROP FUNCTION mismatch_resolution_append_only()")
    else:
        op.execute("DROP TRIGGER mismatch_resolution_no_update")
        op.execute("DROP TRIGGER mismatch_resolution_no_delete")
    op.drop_index("ix_reconciliation_mismatch_disagreement", table_name="reconciliation_mismatch")
    op.drop_column("reconciliation_mismatch", "disagreement")
    op.drop_index("ix_mismatch_resolution_disagreement", table_name="mismatch_resolution")
    op.drop_index("ix_mismatch_resolution_mismatch_id", table_name="mismatch_resolution")
    op.drop_table("mismatch_resolution")
    op.drop_column("steward_decision", "scope")
    op.drop_column("quarantine_finding", "severity")
    op.drop_index("ix_quarantined_record_queue", table_name="quarantined_record")
    op.drop_column("quarantined_record", "sent_in")
    op.drop_column("quarantined_record", "province_code")
    op.drop_column("quarantined_record", "agreement")
    op.drop_index("ix_validation_run_agreement_started", table_name="validation_run")
    op.drop_column("validation_run", "package_id")
    op.drop_column("validation_run", "agreement")
