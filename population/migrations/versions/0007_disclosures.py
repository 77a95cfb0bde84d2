"""The disclosure index (issue 19): per package that crossed the boundary, what it carried and why
(``disclosure_package``); per record, the keyed hash of the citizen's personal ID and the package (``disclosure``),
looked up by the hash.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "disclosure_package",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.String(length=36), nullable=False),
        sa.Column("agreement", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("sender", sa.String(length=20), nullable=False),
        sa.Column("recipient", sa.String(length=20), nullable=False),
        sa.Column("mode", sa.String(length=12), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("legal_basis", sa.JSON(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id"),
    )
    op.create_table(
        "disclosure",
        sa.Column("subject", sa.LargeBinary(length=32), nullable=False),
        sa.Column("package", sa.Integer(), nullable=False),
    )
    op.create_index("ix_disclosure_subject", "disclosure", ["subject", "package"])


def downgrade() -> None:
    op.drop_index("ix_disclosure_subject", table_name="disclosure")
    op.drop_table("disclosure")
    op.drop_table("disclosure_package")
