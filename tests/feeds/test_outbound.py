"""The outbound pipeline of one agreement end to end, against the real health partner (REST, OAuth2, TLS) of the
sandbox, from a generated SQLite population with defects and a day of life events."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.errors import ConnectorError
from exchange import ledger
from exchange.agreements import load_agreements
from exchange.package import read_manifest
from feeds.checkpoint import read_checkpoint
from feeds.outbound import check_quarantine_limit, deliver, extract, package, run_outbound, validate
from partners.store import record as partner_record
from population.changelog import last_sequence
from population.db import session_factory
from population.simulation import DaySimulation
from tests.feeds.changes import changed_personal_ids
from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures: sandbox_pki, partners …
from tests.partners.fixtures import connection_like, define_connection
from validation.models import QuarantinedRecord, ValidationRun
from validation.outcome import DatasetBlocked, ValidationOutcome


@pytest.fixture
def health_agreement(partner_agreements):
    """The real health agreement under a name of its own, so that this test's feed starts at package 1 on the
    session's health partner."""
    agreement = replace(load_agreements()["health-identity"], name=f"health-identity-{uuid.uuid4().hex[:8]}")
    partner_agreements[agreement.name] = agreement  # the partner must know it
    return agreement


def last_sequence_of(engine) -> int:
    with session_factory(engine)() as session:
        return last_sequence(session)


def latest_validation_run(engine) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.max(ValidationRun.id)))


def quarantined_personal_ids(engine, run_id: int) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id == run_id)))


def held_by_partner(partners, package_id: str) -> list[dict]:
    with partners.partners["health"].store.engine.connect() as connection:
        rows = connection.execute(select(partner_record.c.content).where(partner_record.c.package_id == package_id))
        return [json.loads(content) for (content,) in rows]


def test_an_outbound_feed_delivers_each_change_once_and_moves_only_on_a_verified_receipt(
    partners, sandbox_pki, population, health_agreement, tmp_path, monkeypatch
):
    agreement = health_agreement
    fields = set(agreement.directions["outbound"].fields)
    work = tmp_path / "work"
    health = partners.partners["health"]
    packages_before = health.store.package_count()

    # the first run: the day's changed citizens, minus the quarantined, with the agreement's fields only
    changed = changed_personal_ids(population, 0)
    first = run_outbound(population, agreement, sandbox_pki, work)
    quarantined = quarantined_personal_ids(population, latest_validation_run(population))
    assert first.window.after == 0 and first.window.up_to == last_sequence_of(population)
    assert first.package.quarantined == len(quarantined) > 0
    assert quarantined <= changed
    delivered = held_by_partner(partners, first.package.package_id)
    assert {r["personal_id"] for r in delivered} == changed - quarantined
    assert len(delivered) == len(changed - quarantined) == first.package.record_count
    assert all(set(r) == fields for r in delivered)
    manifest, _ = read_manifest(Path(first.package.path))
    assert all(f.encrypted for f in manifest.files) and manifest.validation.quarantined == len(quarantined)
    assert first.delivery.status == "accepted" and first.delivery.record_count == len(delivered)
    assert read_checkpoint(population, agreement.name).last_change_sequence == first.window.up_to
    with session_factory(population)() as session:
        kinds = [e.kind for e in ledger.entries(session)]
        assert ledger.verify(session).entries == len(kinds)
    assert kinds.count("package_sent") == 1 and kinds.count("receipt_received") == 1

    # no new changes: nothing is packaged or delivered, the checkpoint stays
    again = run_outbound(population, agreement, sandbox_pki, work)
    assert again.window.citizens == 0 and again.package is None and again.delivery is None
    assert health.store.package_count() == packages_before + 1

    # another day of changes, and the partner is down: the checkpoint stays where it was
    DaySimulation(session_factory(population), 24, date(2026, 7, 3)).run(30)
    changed = changed_personal_ids(population, first.window.up_to)
    quick_retries = {"retries": 1, "backoff_initial": 0.01, "backoff_max": 0.02}
    connection = connection_like(partners, agreement.connection_id, extra=quick_retries)
    define_connection(monkeypatch, agreement.connection_id, connection)
    health.stop()
    with pytest.raises(ConnectorError):
        run_outbound(population, agreement, sandbox_pki, work)
    stalled = read_checkpoint(population, agreement.name)
    assert stalled.last_change_sequence == first.window.up_to and stalled.pending_package is not None

    # the partner is back: the rerun resends the sealed package, delivered once
    health.start()
    rerun = run_outbound(population, agreement, sandbox_pki, work)
    assert rerun.package.sequence == 2 and str(stalled.pending_package) == rerun.package.path
    assert rerun.package.quarantined == len(quarantined_personal_ids(population, latest_validation_run(population)))
    assert read_checkpoint(population, agreement.name).last_change_sequence == last_sequence_of(population)
    assert read_checkpoint(population, agreement.name).pending_package is None
    deliver(agreement, rerun.package)  # once more: the partner answers with the receipt it stored
    second = held_by_partner(partners, rerun.package.package_id)
    quarantined = quarantined_personal_ids(population, latest_validation_run(population))
    assert sorted(r["personal_id"] for r in second) == sorted(changed - quarantined)
    assert health.store.package_count() == packages_before + 2
    with session_factory(population)() as session:
        assert ledger.verify(session).entries == 4


def test_a_run_stopped_after_sealing_resends_the_package_it_sealed(partners, sandbox_pki, population, health_agreement,
                                                                   tmp_path):  # fmt: skip
    agreement, work = health_agreement, tmp_path / "work"
    window = extract(population, agreement)
    checked = validate(population, agreement, window, work / "staging")
    sealed = package(population, agreement, checked, sandbox_pki, work / "packages")
    assert package(population, agreement, checked, sandbox_pki, work / "packages") == sealed  # a retry
    Path(sealed.path).unlink()  # as if the task was killed after sealing, before zipping

    resumed = run_outbound(population, agreement, sandbox_pki, work)
    assert (resumed.package.package_id, resumed.package.sequence) == (sealed.package_id, 1)
    assert resumed.delivery.status == "accepted"
    assert read_checkpoint(population, agreement.name).last_change_sequence == window.up_to


def test_more_quarantined_rows_than_the_agreement_allows_block_the_feed(sandbox_pki, population, health_agreement,
                                                                        tmp_path):  # fmt: skip
    outbound = health_agreement.directions["outbound"]
    limits = {**outbound.validation, "max_quarantined_share": 0.0, "min_rows_for_share": 1}  # any window
    agreement = replace(health_agreement, directions={"outbound": replace(outbound, validation=limits)})
    with pytest.raises(DatasetBlocked, match="more than the agreement's 0%"):
        run_outbound(population, agreement, sandbox_pki, tmp_path / "work")
    checkpoint = read_checkpoint(population, agreement.name)
    assert (checkpoint.last_change_sequence, checkpoint.pending_package) == (0, None)


def test_the_share_is_not_judged_on_a_window_smaller_than_the_agreement_says(
    partners, sandbox_pki, population, health_agreement, tmp_path
):
    outbound = health_agreement.directions["outbound"]
    validation = {**outbound.validation, "max_quarantined_share": 0.0, "min_rows_for_share": 1_000}
    agreement = replace(health_agreement, directions={"outbound": replace(outbound, validation=validation)})
    run = run_outbound(population, agreement, sandbox_pki, tmp_path / "work")  # 300 citizens, some defective
    assert run.delivery.status == "accepted" and run.package.quarantined > 0
    assert run.delivery.record_count == run.package.record_count > 0
    assert read_checkpoint(population, agreement.name).last_change_sequence == run.window.up_to
    with session_factory(population)() as session:
        held = session.scalar(
            select(func.count()).select_from(QuarantinedRecord).where(QuarantinedRecord.status == "held")
        )
    assert held == run.package.quarantined  # the defective rows wait for stewards, the rest went out


@pytest.mark.parametrize(("rows", "blocked"), [(199, False), (200, True), (10_000, True)])
def test_the_share_is_judged_from_the_agreements_minimum_of_rows(health_agreement, rows, blocked):
    outbound = health_agreement.directions["outbound"]
    limits = {**outbound.validation, "max_quarantined_share": 0.05, "min_rows_for_share": 200}
    direction = replace(outbound, validation=limits)
    outcome = ValidationOutcome("citizen-extract", "citizen-extract", "test", datetime.now(UTC), rows=rows,
                                quarantined=rows // 10)  # fmt: skip
    if blocked:
        with pytest.raises(
            DatasetBlocked, match=f"{rows // 10} of {rows} rows quarantined, more than the agreement's 5%"
        ):
            check_quarantine_limit(direction, outcome)
    else:
        check_quarantine_limit(direction, outcome)
        assert outcome.blocked == []
