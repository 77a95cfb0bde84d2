"""Stewards' decisions take effect through the DAGs (issue 18): a release goes out in its feed's next package,
exactly once, named in the package's manifest; a rejected record never goes out; a release is for its own feed
unless the steward decides for all feeds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from sqlalchemy import select

from exchange.package import read_manifest
from feeds.checkpoint import read_checkpoint
from population.db import session_factory
from validation.models import QuarantinedRecord, ValidationRun
from validation.quarantine import QueueFilter, decide, list_records, needs_second_steward

TAX, LAND = "tax-identity", "land-owners"


def held(world, agreement: str) -> list[QuarantinedRecord]:
    with session_factory(world.engine)() as session:
        return list(list_records(session, QueueFilter(agreement=agreement), limit=10_000))


def sent_to(world, partner: str, agreement: str) -> Counter[str]:
    return Counter(r["personal_id"] for r in world.records_held(partner, agreement))


def manifest_of(world, agreement: str, sequence: int):
    for path in sorted((world.var / "packages" / agreement).glob("*.zip")):
        manifest, _ = read_manifest(Path(path))
        if manifest.sequence == sequence:
            return manifest
    raise AssertionError(f"no package {sequence} of {agreement}")


def test_a_release_goes_out_once_in_its_feeds_next_package_and_a_rejection_never(dag_world):
    world = dag_world
    first = world.run("population.change-log", f"{TAX}.outbound", f"{LAND}.outbound")
    assert all(run["state"] == "success" for run in first.values()), world.log_tail()
    tax_held, land_held = held(world, TAX), held(world, LAND)
    in_both = {r.personal_id for r in tax_held} & {r.personal_id for r in land_held}
    singles = [r for r in tax_held if r.personal_id in in_both and not needs_second_steward(r)]
    assert len(singles) >= 2, "the world must hold at least two people from both feeds"
    released, everywhere = singles[:2]
    # the same person, decided per feed: released for the tax feed, rejected for the land feed
    rejected = next(r for r in land_held if r.personal_id == released.personal_id)
    land_of_everywhere = next(r for r in land_held if r.personal_id == everywhere.personal_id)
    tax_sent, land_sent = sent_to(world, "tax", TAX), sent_to(world, "land", LAND)
    assert not {released.personal_id, everywhere.personal_id} & (set(tax_sent) | set(land_sent))

    with session_factory(world.engine)() as session:
        (release,) = decide(session, [released.id], "release", "spelled so in the register", "lan.nguyen")
        decide(session, [rejected.id], "reject", "the land registry needs the corrected spelling", "lan.nguyen")
        # decided from the land feed's record, for every feed that holds the person for the same findings
        both = decide(session, [land_of_everywhere.id], "release", "checked with the ward", "minh.tran",
                      all_feeds=True)  # fmt: skip
        assert {d.record_id for d in both} == {land_of_everywhere.id, everywhere.id}
        assert {d.scope for d in both} == {"all"}

    # no change since: the feeds' next runs carry the releases only
    tax_head = read_checkpoint(world.engine, TAX).last_change_sequence
    second = world.run(f"{TAX}.outbound", f"{LAND}.outbound")
    assert all(run["state"] == "success" for run in second.values()), world.log_tail()
    tax_now, land_now = sent_to(world, "tax", TAX), sent_to(world, "land", LAND)
    assert tax_now - tax_sent == Counter({released.personal_id: 1, everywhere.personal_id: 1})
    assert land_now - land_sent == Counter({everywhere.personal_id: 1})  # rejected for land: never sent there
    assert rejected.personal_id not in land_now
    assert read_checkpoint(world.engine, TAX).last_change_sequence == tax_head

    manifest = manifest_of(world, TAX, 2)
    named = {entry["record"]: entry for entry in manifest.validation.released}
    assert set(named) == {released.id, everywhere.id}
    assert named[released.id]["decisions"] == [release.id] and named[released.id]["rules"]
    with session_factory(world.engine)() as session:
        sent_in = dict(session.execute(select(QuarantinedRecord.id, QuarantinedRecord.sent_in)).all())
        assert sent_in[released.id] == sent_in[everywhere.id] == manifest.package_id
        assert sent_in[rejected.id] is None
        run = session.scalar(select(ValidationRun).where(ValidationRun.package_id == manifest.package_id))
        assert run is not None and run.agreement == TAX
        report = Path(run.report)  # every outbound run keeps its report, per feed
        assert report.name == "index.html" and report.parent.parent == world.var / "reports" / TAX / f"run-{run.id}"
        assert report.exists() and (report.parent.parent / "summary.json").exists()
        by_package = list_records(session, QueueFilter(None, package=manifest.package_id), limit=10_000)
        assert all(r.run_id == run.id for r in by_package)
    assert manifest_of(world, LAND, 2).validation.released[0]["record"] == land_of_everywhere.id

    # once: the next runs have nothing to send
    third = world.run(f"{TAX}.outbound", f"{LAND}.outbound")
    for name in (TAX, LAND):
        assert third[f"{name}.outbound"]["state"] == "success", world.log_tail()
        assert third[f"{name}.outbound"]["tasks"]["extract"] == "skipped"
    assert sent_to(world, "tax", TAX) == tax_now and sent_to(world, "land", LAND) == land_now

    # a snapshot carries every citizen: a release decided before it goes out in it, once, and is settled
    first_snapshot = world.run(f"{LAND}.snapshot")
    assert first_snapshot[f"{LAND}.snapshot"]["state"] == "success", world.log_tail()
    held_by_snapshot = [r for r in held(world, LAND) if not needs_second_steward(r)]
    assert held_by_snapshot, "the snapshot holds the world's defects"
    with session_factory(world.engine)() as session:
        (by_snapshot,) = decide(session, [held_by_snapshot[0].id], "release", "verified at the ward", "lan.nguyen")
    second_snapshot = world.run(f"{LAND}.snapshot", f"{LAND}.outbound")
    assert second_snapshot[f"{LAND}.snapshot"]["state"] == "success", world.log_tail()
    snapshot = max(
        (read_manifest(path)[0] for path in (world.var / "packages" / LAND).glob("*.zip")), key=lambda m: m.sequence
    )
    assert snapshot.mode == "full"
    assert [entry["record"] for entry in snapshot.validation.released] == [held_by_snapshot[0].id]
    assert [entry["decisions"] for entry in snapshot.validation.released] == [[by_snapshot.id]]
    assert second_snapshot[f"{LAND}.outbound"]["tasks"]["extract"] == "skipped"  # settled: nothing due
