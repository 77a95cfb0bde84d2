"""Fixtures for the data-quality tests: databases with this issue's tables emptied, and small populations."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from population.db import is_sqlite
from population.generator import generate

AS_OF = date(2026, 7, 1)  # the generator's default as_of: records are fresh on it
VALIDATION_TABLES = ("mismatch_resolution", "steward_decision", "quarantine_finding", "quarantined_record",
                     "validation_run", "reconciliation_mismatch", "reconciliation_run")  # fmt: skip


@pytest.fixture
def db(engine):
    """An upgraded population database (SQLite and PostgreSQL) with no validation or reconciliation rows."""
    if not is_sqlite(engine):
        with engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {', '.join(VALIDATION_TABLES)} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def population(db):
    """3,000 generated citizens with 5% injected defects."""
    generate(db, 3_000, seed=11, defect_rate=0.05, as_of=AS_OF)
    return db
