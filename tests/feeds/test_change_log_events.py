"""The change log's trigger, run as the triggerer runs it (its async generator on an event loop) against a real
database: an event at start, one within moments of a committed life event through PostgreSQL's NOTIFY (the poll
set too long to be what finds it), a burst coalesced into few events, and the faults: a lost notification or a
cut listening connection found by the poll, a restarted database, SQLite by the poll alone."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import date

import pytest
from sqlalchemy import select, text

from feeds.change_log_events import ChangeLogTrigger
from population.changelog import last_sequence
from population.db import create_population_engine, session_factory
from population.events import LifeEvents
from population.generator import generate
from population.migrate import upgrade
from population.models import Citizen

NAMES = ("Lương Thị Thu Hà", "Đặng Văn Khoa", "Hồ Ngọc Ánh")


def renamer(engine):
    """Commits one life event (a renaming) each call, as a commune's registrar would."""
    sessions = session_factory(engine)
    with sessions() as session:
        ids = list(session.scalars(select(Citizen.personal_id).where(Citizen.date_of_death.is_(None)).limit(200)))
    events, count = LifeEvents(sessions), [0]

    def rename() -> None:
        count[0] += 1
        turn, index = divmod(count[0], len(ids))  # each citizen renamed at most once per turn, to a new name
        events.change_name(ids[index], NAMES[turn % len(NAMES)], date(2026, 7, 3))

    return rename


def url_of(engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def head(engine) -> int:
    with session_factory(engine)() as session:
        return last_sequence(session)


class Events:
    """The trigger's events, gathered by a loop of their own in a thread, as the triggerer gathers them."""

    def __init__(self, trigger: ChangeLogTrigger) -> None:
        self.heads: list[tuple[float, int]] = []
        self.loop = asyncio.new_event_loop()
        self.stream = trigger.run()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._gather(),), daemon=True)
        self.thread.start()

    async def _gather(self) -> None:
        try:
            async for event in self.stream:
                self.heads.append((time.monotonic(), event.payload["head"]))
        except asyncio.CancelledError:
            pass

    def until(self, reached: int, seconds: float) -> float:
        """When (monotonic) the first event announcing ``reached`` or more came, waiting up to ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [at for at, head in self.heads if head >= reached]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no event for head {reached} within {seconds} s (events: {self.heads})")

    def stop(self) -> None:
        for task in asyncio.all_tasks(self.loop):
            self.loop.call_soon_threadsafe(task.cancel)
        self.thread.join(timeout=30)


@pytest.fixture
def people(engine):
    generate(engine, 120, 7, 0.0)
    return engine


@pytest.mark.postgres
def test_an_event_at_start_then_one_within_moments_of_each_commit_through_notify(postgres_engine):
    generate(postgres_engine, 120, 7, 0.0)
    rename = renamer(postgres_engine)
    events = Events(ChangeLogTrigger(poll_interval=3600, quiet_period=0.2, database_url=url_of(postgres_engine)))
    try:
        events.until(head(postgres_engine), 30)  # at start: a triggerer that was down catches up
        time.sleep(1)  # listening by now
        for _ in range(3):
            rename()
            committed = time.monotonic()
            fired = events.until(head(postgres_engine), 10)  # the poll is an hour: only NOTIFY can do this
            assert fired - committed < 10
    finally:
        events.stop()


@pytest.mark.postgres
def test_a_burst_makes_few_events_and_the_last_announces_the_last_change(postgres_engine):
    generate(postgres_engine, 120, 7, 0.0)
    rename = renamer(postgres_engine)
    events = Events(ChangeLogTrigger(poll_interval=3600, quiet_period=1.0, database_url=url_of(postgres_engine)))
    try:
        events.until(head(postgres_engine), 30)
        started = len(events.heads)
        for _ in range(300):  # one transaction each, as fast as they come
            rename()
        events.until(head(postgres_engine), 15)
        burst = events.heads[started:]
        assert burst[-1][1] == head(postgres_engine)
        assert [h for _, h in burst] == sorted({h for _, h in burst})  # increasing, never the same head twice
        elapsed = burst[-1][0] - events.heads[started - 1][0]
        assert len(burst) <= elapsed / 1.0 + 2  # at most one per quiet period
    finally:
        events.stop()


def test_without_notifications_the_poll_finds_each_change(people):
    """SQLite has no notifications; on PostgreSQL, a change whose notification is lost (the head moved without
    one) is the same case."""
    rename = renamer(people)
    events = Events(ChangeLogTrigger(poll_interval=0.5, quiet_period=0.1, database_url=url_of(people)))
    try:
        events.until(head(people), 30)
        rename()
        events.until(head(people), 10)
        with people.begin() as connection:  # a change numbered without a notification
            connection.execute(text("UPDATE change_log_head SET last_sequence = last_sequence + 1"))
        events.until(head(people), 10)
    finally:
        events.stop()


@pytest.mark.postgres
def test_a_cut_listening_connection_is_made_again_and_nothing_is_missed(postgres_engine):
    generate(postgres_engine, 120, 7, 0.0)
    rename = renamer(postgres_engine)
    events = Events(ChangeLogTrigger(poll_interval=2, quiet_period=0.1, database_url=url_of(postgres_engine)))
    try:
        events.until(head(postgres_engine), 30)
        time.sleep(1)
        with postgres_engine.begin() as connection:
            cut = connection.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' "
                "AND datname = current_database()")).all()  # fmt: skip
        assert cut, "the trigger was not listening"
        rename()  # committed while the listener is away
        events.until(head(postgres_engine), 15)
        time.sleep(3)  # listening again
        rename()
        events.until(head(postgres_engine), 10)
    finally:
        events.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_restarted_database_loses_no_change(tmp_path):
    """A PostgreSQL server of the test's own, restarted (fast shutdown) while the trigger listens."""
    from tests.feeds.fault_matrix import PrivatePostgres

    server = PrivatePostgres()
    server.start()
    engine = None
    try:
        url = server.create_database(f"events_{uuid.uuid4().hex[:8]}")
        engine = create_population_engine(url)
        upgrade(engine)
        generate(engine, 120, 7, 0.0)
        rename = renamer(engine)
        events = Events(ChangeLogTrigger(poll_interval=2, quiet_period=0.1, database_url=url))
        try:
            events.until(head(engine), 30)
            time.sleep(1)
            server.restart()
            engine.dispose()
            rename()
            events.until(head(engine), 20)
            time.sleep(3)
            rename()
            events.until(head(engine), 10)
        finally:
            events.stop()
    finally:
        if engine is not None:
            engine.dispose()
        server.close()


def test_the_trigger_serializes_to_what_the_triggerer_builds_it_from():
    trigger = ChangeLogTrigger(poll_interval=7, quiet_period=0.5, database_url="sqlite:///x.db")
    path, arguments = trigger.serialize()
    assert path == "feeds.change_log_events.ChangeLogTrigger"
    assert ChangeLogTrigger(**arguments).serialize() == (path, arguments)
