"""The change log's order under concurrent writers, on PostgreSQL.

A reader that has consumed everything up to N must never later find a change numbered N or less. These tests
cause the hazard for real: writers that hold their transaction open after taking a number.
"""

import random
import threading
import time
from datetime import date

import pytest
from sqlalchemy import create_engine, event, select, text

from population.changelog import changes_after
from population.db import session_factory
from population.events import LifeEvents
from population.generator import generate
from population.models import Citizen

pytestmark = pytest.mark.postgres
DAY = date(2026, 8, 1)
WARDS = ("00070", "00004")  # Phường Hoàn Kiếm, Phường Ba Đình


def _citizens(engine, n: int) -> list[str]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(Citizen.personal_id).order_by(Citizen.id).limit(n)))


def _backend_waiting_on_lock(engine, application_name: str) -> bool:
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n AND wait_event_type = 'Lock'"),
                {"n": application_name},
            ).scalar()
        )


def test_a_later_writer_waits_for_an_earlier_uncommitted_one(postgres_engine):
    """Deterministic interleaving: A takes number 1 and holds its transaction open; B must wait; a reader sees
    nothing until A commits; then it sees 1 and 2 in order."""
    generate(postgres_engine, 200, seed=1)
    first, second = _citizens(postgres_engine, 2)
    url = postgres_engine.url.render_as_string(hide_password=False)
    engine_a = create_engine(url, connect_args={"application_name": "writer_a"})
    engine_b = create_engine(url, connect_args={"application_name": "writer_b"})
    sessions_a, sessions_b = session_factory(engine_a), session_factory(engine_b)
    a_numbered, release_a = threading.Event(), threading.Event()

    @event.listens_for(sessions_a, "before_commit")
    def hold(_session):
        a_numbered.set()
        assert release_a.wait(30)

    a = threading.Thread(
        target=LifeEvents(sessions_a).change_residence, args=(first, "temporary", WARDS[0], "Số 1", DAY)
    )
    b = threading.Thread(
        target=LifeEvents(sessions_b).change_residence, args=(second, "temporary", WARDS[1], "Số 2", DAY)
    )
    a.start()
    assert a_numbered.wait(30)
    b.start()
    deadline = time.monotonic() + 30
    while not _backend_waiting_on_lock(postgres_engine, "writer_b"):
        assert time.monotonic() < deadline, "writer B never waited for writer A"
        time.sleep(0.01)
    reader = session_factory(postgres_engine)
    with reader() as session:
        assert changes_after(session, 0) == [], "nothing is visible while number 1 is uncommitted"
    release_a.set()
    a.join(30)
    b.join(30)
    with reader() as session:
        seen = [(c.sequence, c.personal_id) for c in changes_after(session, 0)]
    assert seen == [(1, first), (2, second)]
    engine_a.dispose()
    engine_b.dispose()


def test_a_database_sequence_would_lose_changes(postgres_engine):
    """The control: numbers drawn from a plain sequence become visible out of order, and a reader that moved
    past N misses the late commit. This is the hazard the head row prevents."""
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS naive_log; DROP SEQUENCE IF EXISTS naive_seq"))
        connection.execute(text("CREATE SEQUENCE naive_seq; CREATE TABLE naive_log (sequence bigint PRIMARY KEY)"))
    slow, fast = postgres_engine.connect(), postgres_engine.connect()
    slow.begin()
    slow.execute(text("INSERT INTO naive_log VALUES (nextval('naive_seq'))"))  # takes 1, commits late
    with fast.begin():
        fast.execute(text("INSERT INTO naive_log VALUES (nextval('naive_seq'))"))  # takes 2, commits now
    with postgres_engine.connect() as reader:
        cursor = reader.execute(text("SELECT max(sequence) FROM naive_log")).scalar()
    slow.commit()
    with postgres_engine.connect() as reader:
        missed = reader.execute(text("SELECT sequence FROM naive_log WHERE sequence <= :c ORDER BY 1"), {"c": cursor})
        late = [n for (n,) in missed if n != cursor]
    assert cursor == 2 and late == [1], "the reader at 2 never sees change 1"
    slow.close()
    fast.close()
    with postgres_engine.begin() as connection:
        connection.execute(text("DROP TABLE naive_log; DROP SEQUENCE naive_seq"))


@pytest.mark.slow
def test_concurrent_writers_never_hide_a_change_behind_a_reader(postgres_engine):
    """Six writers, random delays between taking a number and committing, one reader polling all along: every
    page the reader gets continues exactly where it left off, and it ends with every change."""
    generate(postgres_engine, 600, seed=2)
    people = _citizens(postgres_engine, 240)
    sessions = session_factory(postgres_engine)
    rng_lock = threading.Lock()
    rng = random.Random(4)

    @event.listens_for(sessions, "before_commit")
    def dawdle(_session):
        with rng_lock:
            pause = rng.uniform(0, 0.01)
        time.sleep(pause)

    def write(batch: list[str]) -> None:
        events = LifeEvents(sessions)
        for i, personal_id in enumerate(batch):
            events.change_residence(personal_id, "temporary", WARDS[i % 2], f"Số {i}", DAY)

    writers = [threading.Thread(target=write, args=(people[k::6],)) for k in range(6)]
    problems: list[str] = []
    seen: list[int] = []
    reader_sessions = session_factory(postgres_engine)

    def read() -> None:
        cursor = 0
        while any(w.is_alive() for w in writers) or cursor < len(people):
            with reader_sessions() as session:
                page = [c.sequence for c in changes_after(session, cursor, limit=50)]
            if page and page != list(range(cursor + 1, cursor + 1 + len(page))):
                problems.append(f"after {cursor} the reader got {page[:5]}…: a change was skipped")
            if page:
                cursor = page[-1]
                seen.extend(page)

    for w in writers:
        w.start()
    reader = threading.Thread(target=read)
    reader.start()
    for w in writers:
        w.join(120)
    reader.join(120)
    assert not problems
    assert seen == list(range(1, len(people) + 1))
