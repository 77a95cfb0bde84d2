"""Full views of a citizen's record by data stewards (issue 19): ``steward_view``, one row per record shown whole
to a steward, under the keyed hash of the citizen's personal ID (as the disclosure index), so that the citizen's
access report can list them.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "steward_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.LargeBinary(length=32), nullable=False),
        sa.Column("steward", sa.String(length=200), nullable=False),
        sa.Column("record", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.String(length=500), nullable=False),
        sa.Column("viewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_steward_view_subject", "steward_view", ["subject", "viewed_at"])


def downgrade() -> None:
    op.drop_index("ix_steward_view_subject", table_name="steward_view")
    op.drop_table("steward_view")
