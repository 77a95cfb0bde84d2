"""The change log as an event source (issue 17): the outbound feeds start seconds after a life event is committed,
not at the next tick of a five-minute DAG.

``ChangeLogTrigger`` is the trigger of an ``AssetWatcher`` on the change log's Asset: it runs in Airflow's
triggerer and fires an asset event each time the change log's head moves past the head it last announced, and
once when it starts (a triggerer that was down catches up: each feed's run takes everything after its own
checkpoint, so an event too many costs an empty run, never a change).

Why PostgreSQL ``LISTEN/NOTIFY`` rather than a message queue: the notification is raised by the transaction that
numbers the change (``population.changelog.append``) and is delivered only if it commits, so there is no second
system to keep consistent with the database, nothing to lose between a commit and a publish, and nothing more to
run. What a notification can still miss (a dropped connection, a database restart, SQLite, which has no
notifications) is covered by reading the head itself every ``poll_interval`` seconds and after each reconnection.

A burst makes few events: after each event the trigger waits ``quiet_period`` seconds before it looks again, and
the notifications that arrive meanwhile come to one look at the head. The feeds run one at a time each, so the
events of a burst make a handful of runs, each taking what has accumulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from sqlalchemy import make_url

from population.changelog import CHANGE_LOG_CHANNEL

log = logging.getLogger(__name__)


def _conninfo(url: str) -> str | None:
    """The libpq connection string of a PostgreSQL URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeLogListener:
    """``LISTEN`` to the change log's channel on PostgreSQL, connecting again whenever the connection is lost;
    on another database only the poll. ``wait`` returns when a notification arrives, after ``timeout`` seconds,
    or at once after a (re)connection (notifications may have been missed meanwhile)."""

    def __init__(self, url: str) -> None:
        self.conninfo = _conninfo(url)
        self.connection: Any = None

    async def wait(self, timeout: float) -> None:
        if self.conninfo is None:
            await asyncio.sleep(timeout)
            return
        import psycopg

        try:
            if self.connection is None or self.connection.closed:
                self.connection = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                await self.connection.execute(f"LISTEN {CHANGE_LOG_CHANNEL}")
                return
            async for _ in self.connection.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error as error:
            log.warning(
                "the change log's notifications are cut (%s); polling until they are back", type(error).__name__
            )
            await self.close()
            await asyncio.sleep(timeout)

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):  # a connection already broken closes as it can
                await self.connection.close()
            self.connection = None


class ChangeLogTrigger(BaseEventTrigger):
    """Fires ``{"head": N}`` when the change log's head reaches N, past the last head it fired for."""

    def __init__(self, poll_interval: float = 2.0, quiet_period: float = 1.0, database_url: str | None = None):
        super().__init__()
        self.poll_interval, self.quiet_period, self.database_url = poll_interval, quiet_period, database_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        arguments = {"poll_interval": self.poll_interval, "quiet_period": self.quiet_period,
                     "database_url": self.database_url}  # fmt: skip
        return f"{type(self).__module__}.{type(self).__qualname__}", arguments

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # the imports and the engine in a thread, as every read: the triggerer's loop serves every trigger
        url, engine, head = await asyncio.to_thread(self._database)
        listener, announced = ChangeLogListener(url), None
        try:
            while True:
                try:
                    now = await asyncio.to_thread(head)
                except Exception as error:  # noqa: BLE001 - the database is away: look again after the poll interval
                    log.warning("cannot read the change log's head (%s); trying again", type(error).__name__)
                    await asyncio.sleep(self.poll_interval)
                    continue
                if announced is None or now > announced:
                    announced = now
                    yield TriggerEvent({"head": now})
                    await asyncio.sleep(self.quiet_period)
                    continue
                await listener.wait(self.poll_interval)
        finally:
            await listener.close()
            engine.dispose()

    def _database(self):
        """The database's URL, an engine on it and a function reading the change log's head."""
        from lienthong.settings import database_url
        from population.changelog import last_sequence
        from population.db import create_population_engine, session_factory

        url = self.database_url or database_url()
        engine = create_population_engine(url)
        sessions = session_factory(engine)

        def head() -> int:
            with sessions() as session:
                return last_sequence(session)

        return url, engine, head
