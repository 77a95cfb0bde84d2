"""The full snapshot sharded by province (feeds.snapshot): every citizen once, the same records and quarantine
on both paths, one package that verifies with stock OpenSSL, and an end-to-end delivery to the land partner over
a real OpenSSH sshd."""

from __future__ import annotations

import csv
import multiprocessing
import subprocess
import threading
import uuid
import zipfile
from collections import Counter
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange.agreements import load_agreements
from exchange.package import MANIFEST, SIGNATURE, read_manifest, verify_package
from exchange.pki import ENCRYPTION, key_path, load_recipient
from exchange.signature import TrustAnchors
from feeds import snapshot
from feeds.checkpoint import read_checkpoint
from feeds.outbound import extract
from feeds.snapshot import (
    NO_PROVINCE,
    Shard,
    run_snapshot,
    seal_snapshot,
    snapshot_shards,
    task_shares,
    validate_shard,
    validate_shards,
)
from population.db import session_factory
from population.generator import generate
from population.models import Citizen as PopulationCitizen  # the fixtures' star import brings another Citizen
from population.models import InjectedDefect
from population.simulation import DaySimulation
from tests.exchange.conftest import reset_exchange_tables
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, openssh_land, key_password_env …
from tests.partners.fixtures import PASSWORD, define_connection
from validation.models import QuarantinedRecord, QuarantineFinding
from validation.outcome import DatasetBlocked

AS_OF = date(2026, 7, 1)


@pytest.fixture
def population(engine):
    """A generated population with defects (one person under two IDs among them) on each backend."""
    reset_exchange_tables(engine)
    generate(engine, 500, 5, 0.06)
    return engine


@pytest.fixture
def land(partner_agreements):
    """The land agreement (CSV, encrypted, SFTP) under a name of its own: its feed starts at package 1."""
    agreement = replace(load_agreements()["land-owners"], name=f"land-owners-{uuid.uuid4().hex[:8]}")
    partner_agreements[agreement.name] = agreement  # the partner must know it
    return agreement


def personal_ids(engine) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(PopulationCitizen.personal_id)))


def staged_records(result) -> list[dict]:
    with open(result.file.path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def quarantine_of(engine, run_id: int) -> set[tuple[str, str]]:
    """(personal ID, rule) of every finding held back by a validation run."""
    with session_factory(engine)() as session:
        query = (
            select(QuarantinedRecord.personal_id, QuarantineFinding.rule)
            .join(QuarantineFinding, QuarantineFinding.record_id == QuarantinedRecord.id)
            .where(QuarantinedRecord.run_id == run_id)
        )
        return {tuple(row) for row in session.execute(query)}


def held_ids(engine, run_id: int) -> list[str]:
    with session_factory(engine)() as session:
        return list(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id == run_id)))


def test_every_citizen_of_the_window_is_in_one_shard_and_passed_or_quarantined(population, land, tmp_path):
    engine = population
    window = extract(engine, land, mode="full")
    before = personal_ids(engine)
    # life events after the window: births (left to the next incremental run) and moves between provinces
    DaySimulation(session_factory(engine), 5, date(2026, 7, 2)).run(60)
    assert personal_ids(engine) > before  # someone was born meanwhile

    shards = snapshot_shards(engine, land, window)
    assert len(shards) == 35 and shards[-1].code == NO_PROVINCE
    assert sum(s.citizens for s in shards) == window.citizens == len(before)
    results = [validate_shard(engine, land, window, shard, tmp_path / "work", AS_OF, fast=False) for shard in shards]
    assert sum(r.rows for r in results) == window.citizens
    seen: Counter[str] = Counter()
    for result in results:
        assert result.passed + result.quarantined == result.rows == result.shard.citizens
        assert result.file.name == f"citizen-extract-p{result.shard.code}.csv" and result.file.records == result.passed
        records = staged_records(result)
        assert len(records) == result.passed
        assert all(list(r) == list(land.directions["outbound"].fields) for r in records)  # minimised
        seen.update(r["personal_id"] for r in records)
        seen.update(held_ids(engine, result.validation_run))
    assert set(seen) == before and set(seen.values()) == {1}  # every citizen of the window, exactly once
    assert sum(r.quarantined for r in results) > 0


def test_one_person_under_two_ids_is_found_across_shards(population, land, tmp_path):
    engine = population
    window = extract(engine, land, mode="full")
    results = [validate_shard(engine, land, window, s, tmp_path, AS_OF, fast=False)
               for s in snapshot_shards(engine, land, window)]  # fmt: skip
    shard_of = {pid: r.shard.code for r in results for pid in [x["personal_id"] for x in staged_records(r)]}
    shard_of |= {pid: r.shard.code for r in results for pid in held_ids(engine, r.validation_run)}
    duplicates = set()
    for r in results:
        duplicates |= {pid for pid, rule in quarantine_of(engine, r.validation_run) if rule.endswith("(duplicate_of)")}
    with session_factory(engine)() as session:
        injected = session.execute(
            select(InjectedDefect.personal_id, InjectedDefect.detail).where(
                InjectedDefect.defect_type == "duplicate_person"
            )
        ).all()
        original = {c.id: c.personal_id for c in session.scalars(select(PopulationCitizen))}
    assert injected and {pid for pid, _ in injected} <= duplicates
    pairs = [(original[int(detail.rsplit(" ", 1)[1])], pid) for pid, detail in injected]
    assert any(shard_of[first] != shard_of[second] for first, second in pairs)  # the pair spans two provinces


def test_the_shards_are_dealt_to_the_tasks_balanced_by_citizens_each_once():
    shards = [Shard(f"{n:02}", f"province {n}", citizens) for n, citizens in enumerate([900, 50, 400, 300, 300, 60])]
    shares = task_shares(shards, 3)
    assert [[s.code for s in share] for share in shares] == [["00"], ["01", "02", "05"], ["03", "04"]]
    assert [sum(s.citizens for s in share) for share in shares] == [900, 510, 600]
    assert task_shares(shards, 1) == [shards]  # one task: every shard, in shard order
    assert task_shares(shards, 64) == [[shard] for shard in sorted(shards, key=lambda s: -s.citizens)]  # none empty
    assert task_shares([], 4) == []


def test_a_rerun_of_a_shard_rewrites_an_identical_file(population, land, tmp_path):
    engine = population
    window = extract(engine, land, mode="full")
    shard = max(snapshot_shards(engine, land, window), key=lambda s: s.citizens)
    first = validate_shard(engine, land, window, shard, tmp_path, AS_OF)
    content = Path(first.file.path).read_bytes()
    again = validate_shard(engine, land, window, shard, tmp_path, AS_OF)
    assert again.file == first.file and Path(again.file.path).read_bytes() == content
    assert again.validation_run != first.validation_run  # each run is recorded
    assert quarantine_of(engine, again.validation_run) == quarantine_of(engine, first.validation_run)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_shards_validated_in_worker_processes_give_the_same_files_and_quarantine(
    population, land, tmp_path, monkeypatch, start
):
    monkeypatch.setattr(snapshot, "worker_context", lambda: multiprocessing.get_context(start))
    engine = population
    window = extract(engine, land, mode="full")
    shards = snapshot_shards(engine, land, window)[::3]  # a dozen shards: each is validated the same way
    alone = validate_shards(engine, land, window, shards, tmp_path / "alone", AS_OF, fast=False)
    parallel = validate_shards(engine, land, window, shards, tmp_path / "parallel", AS_OF, fast=False, workers=2)
    assert [r.shard for r in parallel] == shards  # in shard order, whichever finished first
    for one, other in zip(alone, parallel, strict=True):
        assert (one.rows, one.passed, one.quarantined) == (other.rows, other.passed, other.quarantined)
        assert Path(one.file.path).read_bytes() == Path(other.file.path).read_bytes(), one.shard.code
        assert quarantine_of(engine, one.validation_run) == quarantine_of(engine, other.validation_run)


def test_workers_are_forked_only_from_a_process_running_one_thread(monkeypatch):
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert snapshot.worker_context().get_start_method() == "spawn"
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert snapshot.worker_context().get_start_method() == "fork"


@pytest.mark.postgres
def test_the_copy_path_and_the_python_path_give_the_same_records_and_quarantine(postgres_engine, land, tmp_path):
    engine = postgres_engine
    reset_exchange_tables(engine)
    generate(engine, 500, 5, 0.06)
    DaySimulation(session_factory(engine), 5, date(2026, 7, 2)).run(40)  # renamed, moved, dead: timestamps too
    window = extract(engine, land, mode="full")
    for shard in snapshot_shards(engine, land, window):
        fast = validate_shard(engine, land, window, shard, tmp_path / "copy", AS_OF, fast=True)
        python = validate_shard(engine, land, window, shard, tmp_path / "python", AS_OF, fast=False)
        assert (fast.path, python.path) == ("copy", "python")
        assert (fast.rows, fast.passed, fast.quarantined) == (python.rows, python.passed, python.quarantined)
        assert staged_records(fast) == staged_records(python), shard.code
        assert quarantine_of(engine, fast.validation_run) == quarantine_of(engine, python.validation_run)


def test_the_snapshot_is_one_package_that_verifies(population, land, sandbox_pki, tmp_path):
    engine = population
    window = extract(engine, land, mode="full")
    results = [validate_shard(engine, land, window, s, tmp_path / "staging", AS_OF)
               for s in snapshot_shards(engine, land, window)]  # fmt: skip
    with pytest.raises(ValueError, match="missing"):
        seal_snapshot(engine, land, window, results[1:], sandbox_pki, tmp_path / "packages")
    sealed = seal_snapshot(engine, land, window, list(reversed(results)), sandbox_pki, tmp_path / "packages")
    assert sealed.sequence == 1 and sealed.record_count == sum(r.passed for r in results)
    assert sealed.quarantined == sum(r.quarantined for r in results)

    trust = TrustAnchors.from_files(sandbox_pki.root_ca, [sandbox_pki.crl])
    certificate = sandbox_pki.certificate("land", ENCRYPTION)
    land_key = load_recipient(certificate, key_path(certificate), PASSWORD)
    verified = verify_package(Path(sealed.path), trust, recipient=land_key, decrypt_to=tmp_path / "decrypted")
    assert [f.path for f in verified.manifest.files] == [f"data/{r.file.name}.p7m" for r in results]
    assert verified.manifest.mode == "full" and verified.manifest.record_count == sealed.record_count
    for result, plain in zip(results, verified.decrypted, strict=True):
        assert plain.read_bytes() == Path(result.file.path).read_bytes()

    with zipfile.ZipFile(sealed.path) as archive:  # the partner's stock tools
        archive.extract(MANIFEST, tmp_path / "unzipped")
        archive.extract(SIGNATURE, tmp_path / "unzipped")
    checked = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "unzipped" / SIGNATURE),
         "-content", str(tmp_path / "unzipped" / MANIFEST), "-CAfile", str(sandbox_pki.root_ca), "-purpose", "any"],
        capture_output=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


def test_more_quarantined_rows_than_the_agreement_allows_block_the_snapshot(population, land, sandbox_pki, tmp_path):
    engine = population
    outbound = land.directions["outbound"]
    validation = {**outbound.validation, "max_quarantined_share": 0.0}
    strict = replace(land, directions={"outbound": replace(outbound, validation=validation)})
    window = extract(engine, strict, mode="full")
    results = [validate_shard(engine, strict, window, s, tmp_path, AS_OF) for s in snapshot_shards(engine, strict)]
    with pytest.raises(DatasetBlocked, match="more than the agreement's 0%"):
        seal_snapshot(engine, strict, window, results, sandbox_pki, tmp_path / "packages")
    assert read_checkpoint(engine, strict.name).pending_package is None


def test_a_snapshot_to_the_land_partner_over_openssh_is_acknowledged(population, land, sandbox_pki, openssh_land,
                                                                     monkeypatch, tmp_path):  # fmt: skip
    engine = population
    agreement = replace(
        land, connection_id=define_connection(monkeypatch, "openssh_snapshot", openssh_land.connection())
    )
    openssh_land.watcher.start()
    try:
        run = run_snapshot(engine, agreement, sandbox_pki, tmp_path / "work", as_of=AS_OF, receipt_timeout=60)
    finally:
        openssh_land.watcher.stop()
    assert run.window.mode == "full" and run.window.citizens == len(personal_ids(engine))
    assert run.delivery.status == "accepted" and run.delivery.newly_recorded
    assert run.delivery.record_count == run.package.record_count == openssh_land.store.record_count(
        run.package.package_id
    )  # fmt: skip
    assert run.package.record_count + run.package.quarantined == run.window.citizens
    checkpoint = read_checkpoint(engine, agreement.name)
    assert checkpoint.last_change_sequence == run.window.up_to and checkpoint.pending_package is None
    manifest, _ = read_manifest(Path(run.package.path))
    assert len(manifest.files) == 35 and all(f.encrypted for f in manifest.files)
    receipt = Path(run.package.path).with_name(Path(run.package.path).stem + ".receipt")
    assert (receipt / "receipt.json").exists() and (receipt / "receipt.json.p7s").exists()
