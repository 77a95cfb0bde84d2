"""Load the administrative-unit catalogue: the 63 legacy provinces and the units in force since 2025-07-01.

A later territorial change is a new data migration that closes the old codes (effective_to) and adds new ones.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from population.admin_units import catalogue_rows

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

administrative_unit = sa.table(
    "administrative_unit",
    sa.column("level", sa.String),
    sa.column("code", sa.String),
    sa.column("name", sa.String),
    sa.column("division_type", sa.String),
    sa.column("province_code", sa.String),
    sa.column("effective_from", sa.Date),
    sa.column("effective_to", sa.Date),
)


def upgrade() -> None:
    op.bulk_insert(administrative_unit, catalogue_rows())
    op.create_index("ix_administrative_unit_lookup", "administrative_unit", ["level", "code"])


def downgrade() -> None:
    op.drop_index("ix_administrative_unit_lookup", "administrative_unit")
    op.execute(administrative_unit.delete())
