"""Legal holds on retention: ``retention_hold``, one row per hold on an agreement or on a citizen, kept after it
is released (``released_at``) as the record of when deletion was stopped and why.

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retention_hold",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("agreement", sa.String(64)),
        sa.Column("personal_id", sa.String(12)),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True)),
        sa.Column("release_reason", sa.String(500)),
        sa.CheckConstraint("(agreement IS NULL) <> (personal_id IS NULL)", name="ck_retention_hold_one_target"),
    )
    op.create_index("ix_retention_hold_agreement", "retention_hold", ["agreement"])
    op.create_index("ix_retention_hold_personal_id", "retention_hold", ["personal_id"])


def downgrade() -> None:
    op.drop_index("ix_retention_hold_personal_id", table_name="retention_hold")
    op.drop_index("ix_retention_hold_agreement", table_name="retention_hold")
    op.drop_table("retention_hold")
