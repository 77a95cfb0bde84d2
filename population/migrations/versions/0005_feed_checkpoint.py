"""Feed checkpoints: per outbound agreement, the last change-log sequence delivered and the package pending.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feed_checkpoint",
        sa.Column("agreement", sa.String(length=64), nullable=False),
        sa.Column("last_change_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_package_id", sa.String(length=36), nullable=True),
        sa.Column("pending_up_to", sa.BigInteger(), nullable=True),
        sa.Column("pending_package", sa.String(length=500), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("agreement"),
    )


def downgrade() -> None:
    op.drop_table("feed_checkpoint")
