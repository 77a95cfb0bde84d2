"""An index on the citizen's permanent ward: a province's citizens (a snapshot shard, a steward's look at one
ward) are found through the wards' codes instead of a scan of every citizen.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_citizen_permanent_ward", "citizen", ["permanent_ward_code"])


def downgrade() -> None:
    op.drop_index("ix_citizen_permanent_ward", table_name="citizen")
