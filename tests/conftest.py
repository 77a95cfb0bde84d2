"""Databases for the tests: a SQLite file per test, and a PostgreSQL database per test session.

PostgreSQL is the machine's own server (``LIENTHONG_TEST_PG_URL``, default the local server with trust auth).
Without one the PostgreSQL tests fail with a message saying how to point them at a server; they are never
skipped silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from population.db import create_population_engine, normalise_url
from population.migrate import upgrade

# Airflow, when a test imports it, reads its configuration from a home of the test run's own, never ~/airflow.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="lienthong-test-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The disclosure index's HMAC key, which every feed that seals or accepts a package needs (tests of its absence
# remove it with monkeypatch).
os.environ.setdefault("LIENTHONG_DISCLOSURE_KEY", "tests' disclosure key")

PG_SERVER_URL = normalise_url(os.environ.get("LIENTHONG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
POPULATION_TABLES = ("change_log", "injected_defect", "registry_link", "id_card", "citizen", "household",
                     "disclosure", "disclosure_package", "retention_hold", "steward_view")  # fmt: skip


@pytest.fixture(scope="session")
def postgres_server() -> str:
    admin = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means no server to test against
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER_URL} ({type(error).__name__}). The PostgreSQL tests need a "
            "server: start the local one (.ci/run does) or set LIENTHONG_TEST_PG_URL to a server where this user "
            "may create databases.",
            pytrace=False,
        )
    finally:
        admin.dispose()
    return PG_SERVER_URL


@pytest.fixture(scope="session")
def postgres_url(postgres_server: str) -> str:
    """A database created for this test session (and this xdist worker), upgraded, dropped at the end."""
    name = f"lienthong_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres_server.rsplit("/", 1)[0] + "/" + name
    engine = create_population_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "population.db"
    engine = create_population_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _empty_postgres(url: str):
    engine = create_population_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(POPULATION_TABLES)} RESTART IDENTITY CASCADE"))
        connection.execute(text("UPDATE change_log_head SET last_sequence = 0"))
    return engine


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path, sqlite_template):
    """An upgraded, empty population database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "population.db"
        shutil.copy(sqlite_template, path)
        created = create_population_engine(f"sqlite:///{path}")
    else:
        created = _empty_postgres(request.getfixturevalue("postgres_url"))
    yield created
    created.dispose()


@pytest.fixture
def postgres_engine(postgres_url):
    """An upgraded, empty PostgreSQL population database."""
    created = _empty_postgres(postgres_url)
    yield created
    created.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The native cluster's test first (marked ``cluster``): the suite's longest (about 9 minutes), it would be the
    run's tail if it started last, as xdist hands tests out in collection order."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is None)
