"""How to open the population database. Which one is a setting (``lienthong.settings.database_url``);
PostgreSQL URLs use psycopg 3 (``postgresql+psycopg://``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and drive them with psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


SYNCHRONOUS = ("FULL", "NORMAL")


def create_population_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """An engine for the population database (or a partner's store), with SQLite set up for concurrent readers and
    one writer. ``synchronous=FULL``: in WAL mode each commit is on disk before it returns, so a receipt signed and
    sent after a commit survives a power loss (NORMAL may lose the last commits; it is kept for the benchmark that
    measures what FULL costs)."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
    resolved = normalise_url(url)
    if is_sqlite(resolved):
        sqlite_path = make_url(resolved).database
        if sqlite_path and sqlite_path != ":memory:":
            Path(sqlite_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"timeout": 60})
        event.listen(engine, "connect", partial(_configure_sqlite, synchronous=synchronous))
        return engine
    return create_engine(resolved, pool_pre_ping=True)


def _configure_sqlite(dbapi_connection, _record, *, synchronous: str) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")  # one of SYNCHRONOUS
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
