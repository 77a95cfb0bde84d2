"""Where the population database lives and how to open it.

The URL comes from ``--db`` on the command line, else ``LIENTHONG_DB_URL``, else the embedded default: a SQLite
file under ``var/`` of the working directory. PostgreSQL URLs use psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DB_PATH = Path("var") / "lienthong.db"
ENV_VAR = "LIENTHONG_DB_URL"


def database_url(url: str | None = None) -> str:
    """The database URL to use: the one given, else the environment's, else the embedded SQLite default."""
    chosen = url or os.environ.get(ENV_VAR)
    if chosen:
        return normalise_url(chosen)
    DEFAULT_DB_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DB_PATH}"


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and drive them with psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def create_population_engine(url: str | None = None) -> Engine:
    """An engine for the population database, with SQLite set up for concurrent readers and one writer."""
    resolved = database_url(url)
    if is_sqlite(resolved):
        sqlite_path = make_url(resolved).database
        if sqlite_path and sqlite_path != ":memory:":
            Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"timeout": 60})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(resolved, pool_pre_ping=True)


def _configure_sqlite(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
