"""The inbound exchange end to end, against the real partner servers of the sandbox (REST + OAuth2, REST + mutual
TLS, SOAP + WS-Security, SFTP on asyncssh and on OpenSSH): each partner's published package (land: its XML batch
per the XSD) fetched, verified, validated, reconciled with the population its registry was seeded from, and
acknowledged with a receipt the partner verifies and keeps."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
import zipfile
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange import ledger
from exchange.agreements import load_agreements
from exchange.package import SchemaRef
from exchange.receipt import Receipt
from exchange.sequence import RECEIVED, state
from feeds import inbound
from feeds.inbound import REJECTED, VERIFIED, inbound_feed, run_inbound, sequence_of
from partners.base import INBOUND_DATASETS, RECORDED_AT, inbound_row
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.migrate import upgrade
from population.models import Citizen as PopulationCitizen  # the fixtures' star import brings another Citizen
from population.models import RegistryLink
from population.names import fold_name
from population.simulation import DaySimulation
from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures: sandbox_pki, partners …
from tests.partners.fixtures import define_connection, wait_for
from validation.models import QuarantinedRecord, QuarantineFinding
from validation.outcome import DatasetBlocked

AGREEMENTS = {agreement.partner: agreement for agreement in load_agreements().values()}
pytestmark = pytest.mark.usefixtures("outboxes_restored")  # what a test publishes is gone after it


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def population(request, population_engine, tmp_path):
    """The population the partners' registries were seeded from, for this test alone: a copy of the session's
    SQLite database, or the same population generated again (same seeds) in the PostgreSQL test database."""
    if request.param == "postgresql":
        engine = request.getfixturevalue("exchange_postgres")
        generate(engine, 400, 11, 0.0)
        DaySimulation(session_factory(engine), 11, date(2026, 7, 2)).run(120)
        yield engine
        return
    path = tmp_path / "population.db"
    source = sqlite3.connect(population_engine.url.database)
    with sqlite3.connect(path) as target:
        source.backup(target)
    source.close()
    engine = create_population_engine(f"sqlite:///{path}")
    upgrade(engine)
    yield engine
    engine.dispose()


def ledger_kinds(engine) -> list[tuple[str, str | None]]:
    with session_factory(engine)() as session:
        assert ledger.verify(session)
        return [(entry.kind, entry.status) for entry in ledger.entries(session)]


def links_of(engine, partner: str) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(RegistryLink).where(RegistryLink.partner == partner))


def link_statuses(engine, partner: str, personal_ids: set[str]) -> set[str]:
    with session_factory(engine)() as session:
        query = (
            select(RegistryLink.status).join(PopulationCitizen)
            .where(RegistryLink.partner == partner, PopulationCitizen.personal_id.in_(personal_ids))
        )  # fmt: skip
        return set(session.scalars(query))


def last_received(engine, agreement) -> int:
    with session_factory(engine)() as session:
        received = state(session, RECEIVED, inbound_feed(agreement))
        return received.last_sequence if received else 0


def expected_mismatches(partner, held: set[str]) -> dict[str, int]:
    """What the disagreements seeded into the registry imply for the rows that passed validation: a name that
    folds the same (diacritics lost) agrees; a person the registry lacks sends no row."""
    truth = [d for d in partner.store.disagreements() if d.personal_id not in held]
    return {
        "name_differs": sum(
            1 for d in truth if d.kind == "name_differs" and fold_name(d.population_value) != fold_name(d.partner_value)
        ),  # fmt: skip
        "date_of_birth_differs": sum(1 for d in truth if d.kind == "dob_differs"),
        "dead_but_active": sum(1 for d in truth if d.kind == "dead_but_active"),
        "unknown_id": 0,
        "unmatched": 0,
    }


def quarantined_personal_ids(engine, run_id: int) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id == run_id)))


def acknowledgements(partner, package_id: str, count: int):
    """The partner's kept receipts for a package, once it has ``count`` of them (SFTP: the watcher's work)."""
    return wait_for(lambda: (found := partner.store.acknowledgements(package_id)) and len(found) >= count and found,
                    f"{count} receipt(s) at {partner.name}")  # fmt: skip


def publish_csv(partner, agreement_name: str, rows=None) -> None:
    """Publish the partner's registry (or ``rows``) as a CSV package of its inbound dataset under an agreement
    of its own, so that the test's feed starts at package 1 on the session's partner."""
    dataset = INBOUND_DATASETS[partner.name]
    columns = list(AGREEMENTS[partner.name].directions["inbound"].fields)
    rows = rows if rows is not None else [inbound_row(person, columns) for person in partner.store.all_people()]
    partner.intake.publish_outbox(partner.outbox, agreement_name, SchemaRef(dataset, "1"), rows)


@pytest.mark.parametrize("partner_name", ["health", "business", "tax", "land"])
def test_each_partner_is_fetched_verified_reconciled_and_acknowledged_once(
    partners, sandbox_pki, population, tmp_path, partner_name
):
    agreement, partner = AGREEMENTS[partner_name], partners.partners[partner_name]  # land: its XML batch per XSD
    work, reports = tmp_path / "work", tmp_path / "reports"

    run = run_inbound(population, agreement, sandbox_pki, work, reports)

    assert run.fetched.listed == 1 and run.fetched.skipped == 0 and len(run.packages) == 1
    (done,) = run.packages
    assert done.verified.status == VERIFIED and done.verified.sequence == 1
    people = partner.store.all_people()
    rows = len(people)
    assert done.checked.rows == done.verified.record_count == rows
    # held back: people born after the registry's record date (the day of life events came after it)
    held = quarantined_personal_ids(population, done.checked.validation_run)
    assert held == {p.personal_id for p in people if p.date_of_birth and p.date_of_birth > RECORDED_AT[:10]}
    assert done.checked.quarantined == len(held) and done.checked.passed == rows - len(held)
    counts, expected = done.reconciled.counts, expected_mismatches(partner, held)
    assert {c: counts[c] for c in expected} == expected
    assert done.reconciled.rows == rows - len(held)
    assert links_of(population, partner_name) == done.reconciled.links_written > 0
    mismatch_lines = Path(done.reconciled.mismatches).read_text(encoding="utf-8").splitlines()
    assert len(mismatch_lines) - 1 == sum(n for c, n in counts.items() if c != "matched")
    assert done.acknowledged.status == "accepted" and done.acknowledged.record_count == rows  # received, all
    if partner_name == "land":  # the land office's own XML batch: a certificate no longer held links inactive
        assert [Path(file).name for file in done.verified.payload] == ["land-owners.xml"]
        gone = {p.personal_id for p in people if p.status != "active"} - held
        assert gone and link_statuses(population, "land", gone) == {"inactive"}
    assert done.acknowledged.newly_recorded and done.acknowledged.feed_moved
    assert last_received(population, agreement) == 1
    assert ledger_kinds(population) == [("package_received", None), ("receipt_sent", "accepted")]

    # the partner verified the receipt and kept it, once: the one the population side signed, found by its bytes
    # (land takes it from its SFTP folder in its own time; another test's receipt for the same published package,
    # made within the same second, is the very same receipt)
    sent = (Path(done.acknowledged.receipt_dir) / "receipt.json").read_bytes()

    def kept_as_sent():
        return [a for a in partner.store.acknowledgements(done.verified.package_id) if a.receipt == sent]

    (kept,) = wait_for(kept_as_sent, f"the receipt at {partner.name}")
    assert kept.status == "accepted" and Receipt.from_bytes(kept.receipt).record_count == rows
    kept_in_all = len(partner.store.acknowledgements())
    with session_factory(partner.store.engine)() as session:
        assert any(e.kind == "receipt_received" and e.package_id == done.verified.package_id
                   for e in ledger.entries(session))  # fmt: skip

    # a rerun finds nothing new: no second link, ledger entry or receipt
    links = links_of(population, partner_name)
    again = run_inbound(population, agreement, sandbox_pki, work, reports)
    assert again.fetched.listed == 1 and again.fetched.skipped == 1 and again.packages == ()
    assert links_of(population, partner_name) == links
    assert len(ledger_kinds(population)) == 2
    assert len(partner.store.acknowledgements()) == kept_in_all


def test_an_acknowledgement_that_fails_before_its_commit_keeps_nothing_and_the_rerun_finishes_it(
    partners, sandbox_pki, population, tmp_path, monkeypatch
):
    """The package is accepted (the feed moves, ``package_received``) and the receipt recorded (``receipt_sent``) in
    one transaction: the database failing after both were written keeps neither, and the rerun acknowledges the
    package once, with the same receipt, which the partner keeps once."""
    agreement, partner = AGREEMENTS["health"], partners.partners["health"]  # REST: a receipt is kept as it is sent
    written = inbound.record_receipt
    failures = iter([OSError("disk I/O error")])

    def failing_once(*args, **kwargs):
        recorded = written(*args, **kwargs)  # in the acknowledgement's transaction, after the feed moved
        if error := next(failures, None):
            raise error
        return recorded

    monkeypatch.setattr(inbound, "record_receipt", failing_once)
    with pytest.raises(OSError, match="disk I/O error"):
        run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
    assert last_received(population, agreement) == 0 and ledger_kinds(population) == []

    run = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
    (done,) = run.packages
    assert done.acknowledged.feed_moved and done.acknowledged.newly_recorded
    assert last_received(population, agreement) == 1
    assert ledger_kinds(population) == [("package_received", None), ("receipt_sent", "accepted")]
    # sent twice (before the failed commit, and again), kept once; by its bytes, since another test's receipt for
    # the same published package, made within the same second, is the very same receipt
    sent = (Path(done.acknowledged.receipt_dir) / "receipt.json").read_bytes()
    assert [a.receipt for a in partner.store.acknowledgements(done.verified.package_id)].count(sent) == 1


def test_the_land_offices_package_comes_over_openssh_too(partners, openssh_land, sandbox_pki, population,
                                                         monkeypatch, tmp_path):  # fmt: skip
    """The package the land office published, served by OpenSSH's sshd: fetched, verified, validated, reconciled
    and acknowledged as over the sandbox's server; the land intake watching that folder keeps the receipt."""
    land = partners.partners["land"]
    (published,) = [p for p in land.published() if sequence_of(inbound_feed(AGREEMENTS["land"]), p.name)]
    served = openssh_land.root / "outbox" / published.name
    shutil.copyfile(published, served)
    conn_id = define_connection(monkeypatch, "openssh_land", openssh_land.connection())
    agreement = replace(AGREEMENTS["land"], connection_id=conn_id)
    try:
        run = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
        (done,) = run.packages
        assert done.verified.status == VERIFIED and done.checked.rows == len(land.store.all_people())
        held = quarantined_personal_ids(population, done.checked.validation_run)
        expected = expected_mismatches(land, held)
        assert {c: done.reconciled.counts[c] for c in expected} == expected
        assert links_of(population, "land") == done.reconciled.links_written > 0
        assert done.acknowledged.status == "accepted" and last_received(population, agreement) == 1
        openssh_land.watcher.process_once()
        kept = openssh_land.store.acknowledgements(done.verified.package_id)[-1]
        assert kept.receipt == (Path(done.acknowledged.receipt_dir) / "receipt.json").read_bytes()
    finally:
        served.unlink()


def payload_offset(path: Path) -> int:
    """Where the first payload file's bytes start inside a zip (after its local header)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.startswith("data/"))
    with path.open("rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = (int.from_bytes(handle.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_length + extra_length


def test_a_tampered_package_gets_a_rejected_receipt_and_nothing_is_linked(partners, sandbox_pki, population,
                                                                           tmp_path):  # fmt: skip
    agreement, partner = AGREEMENTS["health"], partners.partners["health"]
    (package,) = [p for p in partner.published() if p.name.startswith(f"{agreement.name}-health-inbound-")]
    original = package.read_bytes()
    tampered = bytearray(original)
    tampered[payload_offset(package) + 100] ^= 0x01
    package.write_bytes(bytes(tampered))
    try:
        run = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
        (done,) = run.packages
        assert done.verified.status == REJECTED and done.verified.problem.startswith("file_hash: ")
        assert done.checked is None and done.acknowledged is None
        rejected = acknowledgements(partner, done.verified.package_id, 1)[-1]
        assert rejected.status == "rejected"
        assert Receipt.from_bytes(rejected.receipt).errors == (done.verified.problem,)
        assert links_of(population, "health") == 0 and last_received(population, agreement) == 0
        assert ledger_kinds(population) == [("receipt_sent", "rejected")]

        again = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
        assert again.packages[0].verified.status == REJECTED
        assert ledger_kinds(population) == [("receipt_sent", "rejected")]  # the same receipt, recorded once
    finally:
        package.write_bytes(original)

    # the package comes again intact: accepted, and the accepted receipt recorded beside the rejected one
    intact = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
    assert intact.packages[0].acknowledged.status == "accepted"
    assert links_of(population, "health") > 0 and last_received(population, agreement) == 1
    assert ledger_kinds(population) == [("receipt_sent", "rejected"), ("package_received", None),
                                        ("receipt_sent", "accepted")]  # fmt: skip


def publish_with_a_bad_record(partner, agreement_name: str) -> str:
    """Publish, on the health partner, a package of 30 registry records under an agreement of its own, the 7th
    with a social insurance number that is not 10 digits; returns that record's personal ID."""
    columns = list(AGREEMENTS["health"].directions["inbound"].fields)
    rows = [inbound_row(person, columns) for person in partner.store.all_people()[:30]]
    rows[6]["social_insurance_number"] = "12345-ABC"
    publish_csv(partner, agreement_name, rows)
    return rows[6]["personal_id"]


def test_a_quarantined_record_names_the_record_the_field_and_the_rule(partners, sandbox_pki, population, tmp_path):
    partner = partners.partners["health"]
    agreement = replace(AGREEMENTS["health"], name=f"health-test-{uuid.uuid4().hex[:8]}")
    personal_id = publish_with_a_bad_record(partner, agreement.name)

    run = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")

    (done,) = run.packages
    assert (done.checked.rows, done.checked.passed, done.checked.quarantined) == (30, 29, 1)
    assert done.reconciled.rows == 29 and done.acknowledged.status == "accepted"
    assert done.acknowledged.record_count == 30  # received: the quarantined record is the population side's to hold
    with session_factory(population)() as session:
        held = session.scalars(select(QuarantinedRecord).where(QuarantinedRecord.run_id == done.checked.validation_run))
        (record,) = held.all()
        assert (record.row_number, record.personal_id, record.dataset) == (7, personal_id, "health-insured")
        findings = session.scalars(select(QuarantineFinding).where(QuarantineFinding.record_id == record.id)).all()
        assert {(f.column_name, f.value) for f in findings} == {("social_insurance_number", "12345-ABC")}
        assert all(f.rule and f.reason for f in findings)
        linked = session.scalar(
            select(func.count()).select_from(RegistryLink).join(PopulationCitizen)
            .where(PopulationCitizen.personal_id == personal_id, RegistryLink.partner == "health")
        )  # fmt: skip
        assert linked == 0
    report = Path(done.checked.quarantine_report).read_text(encoding="utf-8")
    assert "social_insurance_number" in report and "12345-ABC" in report


def test_more_quarantined_records_than_the_agreement_allows_block_the_package(partners, sandbox_pki, population,
                                                                              tmp_path):  # fmt: skip
    partner = partners.partners["health"]
    base = AGREEMENTS["health"]
    strict = replace(base.directions["inbound"], validation={"suite": "health-insured", "max_quarantined_share": 0.0})
    agreement = replace(base, name=f"health-test-{uuid.uuid4().hex[:8]}", directions={"inbound": strict})
    publish_with_a_bad_record(partner, agreement.name)

    with pytest.raises(DatasetBlocked, match="more than the agreement's 0%"):
        run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
    assert last_received(population, agreement) == 0 and ledger_kinds(population) == []
    assert links_of(population, "health") == 0


def test_a_package_in_the_clear_where_the_agreement_asks_for_encryption_is_rejected(
    partners, sandbox_pki, population, tmp_path
):
    partner = partners.partners["health"]
    agreement = replace(AGREEMENTS["health"], name=f"health-test-{uuid.uuid4().hex[:8]}")
    assert agreement.directions["inbound"].encryption
    columns = list(agreement.directions["inbound"].fields)
    rows = [inbound_row(person, columns) for person in partner.store.all_people()[:5]]
    partner.intake.publish_outbox(partner.outbox, agreement.name, SchemaRef(INBOUND_DATASETS["health"], "1"), rows,
                                  encrypt=False)  # fmt: skip

    (done,) = run_inbound(population, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports").packages

    assert done.verified.status == REJECTED and "is not encrypted" in done.verified.problem
    assert acknowledgements(partner, done.verified.package_id, 1)[-1].status == "rejected"
    assert links_of(population, "health") == 0 and last_received(population, agreement) == 0
