"""Indexes for a province's citizens and for a person's earlier records.

- ``ix_citizen_permanent_ward``: a province's citizens (a snapshot shard, a steward's look at one ward) are
  found through the wards' codes instead of a scan of every citizen;
- ``ix_citizen_person_key`` (name_fold, date_of_birth, id) replaces ``ix_citizen_name_fold_dob``: the lookup of
  an earlier citizen with the same name and date of birth (the duplicate-person rule, once per extracted row)
  finds "an earlier id" in the index itself, and a citizen with no earlier namesake costs no table read.

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
    op.create_index("ix_citizen_person_key", "citizen", ["name_fold", "date_of_birth", "id"])
    op.drop_index("ix_citizen_name_fold_dob", table_name="citizen")


def downgrade() -> None:
    op.create_index("ix_citizen_name_fold_dob", "citizen", ["name_fold", "date_of_birth"])
    op.drop_index("ix_citizen_person_key", table_name="citizen")
    op.drop_index("ix_citizen_permanent_ward", table_name="citizen")
