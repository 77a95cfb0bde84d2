"""The disclosure index as the feeds write it: a full snapshot (both validation paths, each backend) indexes every
record it seals and none it quarantines, in the sealing transaction (incremental feeds: tests/lienthong/
test_disclosures.py; inbound packages: test_disclosures_inbound.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from feeds.disclosures import lookup
from feeds.outbound import extract
from feeds.snapshot import seal_snapshot, snapshot_shards, validate_shard
from population.db import session_factory
from population.disclosures import DisclosurePackage, disclosure, subjects_path
from population.models import Citizen as PopulationCitizen  # the fixtures' star import brings another Citizen
from tests.feeds.test_snapshot import AS_OF, land, population  # noqa: F401 - a population with defects, land
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, partners …
from validation.models import QuarantinedRecord


@pytest.mark.parametrize("fast", [None, False], ids=["default-path", "streamed"])
def test_a_snapshot_indexes_what_it_seals_and_nothing_it_holds_back(population, land, sandbox_pki, tmp_path, fast):  # noqa: F811
    engine = population
    window = extract(engine, land, mode="full")
    results = [validate_shard(engine, land, window, s, tmp_path / "staging", AS_OF, fast=fast)
               for s in snapshot_shards(engine, land, window)]  # fmt: skip
    assert {r.path for r in results} == ({"copy"} if fast is None and engine.dialect.name == "postgresql" else
                                         {"python"})  # fmt: skip
    for result in results:  # a sidecar of 32-byte subjects beside each staged file, one per record
        assert subjects_path(result.file.path).stat().st_size == 32 * result.passed
    sealed = seal_snapshot(engine, land, window, results, sandbox_pki, tmp_path / "packages")
    with session_factory(engine)() as session:
        (indexed,) = session.scalars(select(DisclosurePackage)).all()
        assert session.scalar(select(func.count()).select_from(disclosure)) == sealed.record_count > 0
        held = set(session.scalars(select(QuarantinedRecord.personal_id)))
        everyone = set(session.scalars(select(PopulationCitizen.personal_id)))
    assert indexed.package_id == sealed.package_id and indexed.record_count == sealed.record_count
    assert (indexed.mode, indexed.direction, indexed.recipient) == ("full", "outbound", "land")
    assert indexed.fields == list(land.directions["outbound"].fields)
    assert held and len(everyone - held) >= sealed.record_count
    sent = sorted(everyone - held)[0]
    (found,) = lookup(engine, sent).sent
    assert (found.package_id, found.records, found.receipt_status) == (sealed.package_id, 1, None)  # not yet
    for quarantined in sorted(held)[:5]:
        if quarantined and len(quarantined) == 12 and quarantined.isdigit():
            assert lookup(engine, quarantined).sent == ()
