"""Migration 0004 creates this issue's tables on SQLite and PostgreSQL and removes them cleanly."""

from sqlalchemy import inspect

from population.migrate import current_revision, downgrade, head_revision, upgrade
from tests.validation.conftest import VALIDATION_TABLES


def test_0004_upgrades_and_downgrades(db):
    assert set(VALIDATION_TABLES) <= set(inspect(db).get_table_names())
    downgrade(db, "0003")
    assert current_revision(db) == "0003"
    assert not set(VALIDATION_TABLES) & set(inspect(db).get_table_names())
    upgrade(db)
    assert current_revision(db) == head_revision()
    assert set(VALIDATION_TABLES) <= set(inspect(db).get_table_names())
