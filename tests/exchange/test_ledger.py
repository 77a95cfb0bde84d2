"""The ledger: one hash chain, append-only, and every kind of tampering named at the first bad entry; one chain
under concurrent appenders (threads and processes on PostgreSQL)."""

import multiprocessing
import threading

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from exchange import ledger
from exchange.errors import LedgerBroken
from exchange.package import verify_package
from population.db import create_population_engine, session_factory
from population.models import LedgerEntry
from tests.exchange.conftest import build, tamper_ledger


def _record(n: int, kind: str = "package_sent") -> ledger.LedgerRecord:
    return ledger.LedgerRecord(
        kind=kind, agreement="health-identity", direction="outbound", sender="population", recipient="health",
        package_id=f"00000000-0000-0000-0000-{n:012d}", sequence=n, manifest_sha256=f"{n:064x}", record_count=n,
        signer_fingerprint="ab" * 32,
    )  # fmt: skip


def _append(engine, count: int, start: int = 1) -> None:
    for n in range(start, start + count):
        with session_factory(engine)() as session, session.begin():
            ledger.append(session, _record(n))


def _verify(engine) -> ledger.LedgerState:
    with session_factory(engine)() as session:
        return ledger.verify(session)


def test_an_empty_ledger_verifies(exchange_engine):
    assert _verify(exchange_engine) == ledger.LedgerState(0, ledger.GENESIS_HASH)


def test_entries_chain_by_hash(exchange_engine):
    _append(exchange_engine, 5)
    state = _verify(exchange_engine)
    with session_factory(exchange_engine)() as session:
        entries = session.scalars(select(LedgerEntry).order_by(LedgerEntry.position)).all()
    assert [e.position for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].previous_hash == ledger.GENESIS_HASH
    assert all(b.previous_hash == a.entry_hash for a, b in zip(entries, entries[1:], strict=False))
    assert all(ledger.entry_hash(e) == e.entry_hash for e in entries)
    assert state == ledger.LedgerState(5, entries[-1].entry_hash)


def test_the_ledger_refuses_updates_and_deletes(exchange_engine):
    _append(exchange_engine, 2)
    for statement in ("UPDATE ledger_entry SET record_count = 0", "DELETE FROM ledger_entry WHERE position = 1"):
        with pytest.raises(DBAPIError, match="append-only"), exchange_engine.begin() as connection:
            connection.execute(text(statement))
    assert _verify(exchange_engine).entries == 2


@pytest.mark.parametrize(
    ("statement", "position", "problem"),
    [
        ("UPDATE ledger_entry SET record_count = 999 WHERE position = 3", 3, "its contents were changed"),
        ("UPDATE ledger_entry SET recorded_at = recorded_at WHERE position = 2", None, None),  # no change: intact
        ("DELETE FROM ledger_entry WHERE position = 3", 3, "is missing: the entry after 2 is 4"),
        ("DELETE FROM ledger_entry WHERE position = 5", 0, "the head says 5 entries"),
        ("UPDATE ledger_entry SET position = position + 10 WHERE position >= 4", 4, "is missing"),
    ],
    ids=["edited", "untouched", "deleted", "deleted-last", "renumbered"],
)
def test_tampering_is_named_at_the_first_bad_entry(exchange_engine, statement, position, problem):
    _append(exchange_engine, 5)
    tamper_ledger(exchange_engine, statement)
    if position is None:
        assert _verify(exchange_engine).entries == 5
        return
    with pytest.raises(LedgerBroken, match=problem) as error:
        _verify(exchange_engine)
    assert error.value.position == position
    assert str(error.value).startswith("ledger: ")


def test_a_reordered_pair_is_found(exchange_engine):
    _append(exchange_engine, 5)
    columns = [c.key for c in LedgerEntry.__table__.columns if c.key != "position"]
    swap = ", ".join(f"{c} = (SELECT {c} FROM ledger_entry o WHERE o.position = 7 - ledger_entry.position)"
                     for c in columns)  # fmt: skip
    tamper_ledger(exchange_engine, f"UPDATE ledger_entry SET {swap} WHERE position IN (3, 4)")
    with pytest.raises(LedgerBroken, match="^ledger: entry 3 .*does not follow entry 2") as error:
        _verify(exchange_engine)
    assert error.value.position == 3


def _copy_of_entry(engine, position: int) -> dict:
    with session_factory(engine)() as session:
        entry = session.get(LedgerEntry, position)
        return {c.key: getattr(entry, c.key) for c in LedgerEntry.__table__.columns}


def test_an_inserted_entry_is_found(exchange_engine):
    _append(exchange_engine, 3)
    values = _copy_of_entry(exchange_engine, 2)
    tamper_ledger(exchange_engine, "UPDATE ledger_entry SET position = position + 1 WHERE position >= 3")
    # positions 3.. moved up; a forged entry 3 with a plausible previous hash goes in between
    values.update(position=3, record_count=12345, previous_hash=values["entry_hash"])
    tamper_ledger(
        exchange_engine,
        f"INSERT INTO ledger_entry ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})",
        values,
    )
    with pytest.raises(LedgerBroken) as error:
        _verify(exchange_engine)
    assert error.value.position == 3


def test_an_entry_appended_behind_the_heads_back_is_found(exchange_engine):
    _append(exchange_engine, 2)
    entry = LedgerEntry(**_copy_of_entry(exchange_engine, 2))
    entry.position, entry.previous_hash = 3, entry.entry_hash
    entry.entry_hash = ledger.entry_hash(entry)
    with session_factory(exchange_engine)() as session, session.begin():
        session.add(entry)
    with pytest.raises(LedgerBroken, match="the head says 2 entries .* but the chain has 3") as error:
        _verify(exchange_engine)
    assert error.value.position == 0


def test_threads_appending_at_once_keep_one_chain(exchange_engine):
    threads = [threading.Thread(target=_append, args=(exchange_engine, 15, 100 * t)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _verify(exchange_engine).entries == 90


def _append_in_process(url: str, start: int) -> None:
    engine = create_population_engine(url)
    _append(engine, 20, start)
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_processes_appending_at_once_keep_one_chain_on_postgres(exchange_postgres):
    url = exchange_postgres.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_in_process, args=(url, 1000 * w)) for w in range(4)]
    for worker in workers:
        worker.start()
    threads = [threading.Thread(target=_append, args=(exchange_postgres, 20, 100 * t)) for t in range(1, 5)]
    for thread in threads:
        thread.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    for thread in threads:
        thread.join()
    assert _verify(exchange_postgres).entries == 160


@pytest.mark.postgres
def test_parallel_builds_number_one_feed_without_gaps(exchange_postgres, tmp_path, population_signer, trust):
    """Parallel tasks packing for the same feed: sequences 1..N, each following the one before, one chain."""
    built = []

    def worker(n: int) -> None:
        for _ in range(3):
            built.append(build(exchange_postgres, tmp_path / f"w{n}", population_signer))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_sequence = sorted(built, key=lambda b: b.manifest.sequence)
    assert [b.manifest.sequence for b in by_sequence] == list(range(1, 13))
    for before, after in zip(by_sequence, by_sequence[1:], strict=False):
        assert after.manifest.previous_manifest_sha256 == before.manifest_sha256
    for package in by_sequence:  # the receiver can take them in order
        from exchange.package import accept_package

        accept_package(exchange_postgres, verify_package(package.path, trust, engine=exchange_postgres))
    assert _verify(exchange_postgres).entries == 24
