"""The disclosure index as the inbound feed writes it: an accepted package indexes every record the partner sent
(quarantined ones too), with our receipt, in the transaction that accepts it."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from feeds.disclosures import lookup
from feeds.inbound import run_inbound
from population.db import session_factory
from population.disclosures import disclosure
from tests.feeds.test_inbound import AGREEMENTS, population  # noqa: F401 - the population the partners hold
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, partners …


@pytest.mark.usefixtures("outboxes_restored")
@pytest.mark.parametrize("partner_name", ["health", "land"])  # JSON Lines, and an XML batch
def test_an_accepted_inbound_package_indexes_every_record_the_partner_sent(
    partners,
    sandbox_pki,
    population,  # noqa: F811
    tmp_path,
    partner_name,
):
    engine, agreement = population, AGREEMENTS[partner_name]
    run = run_inbound(engine, agreement, sandbox_pki, tmp_path / "work", tmp_path / "reports")
    (done,) = run.packages
    assert done.acknowledged.feed_moved
    people = partners.partners[partner_name].store.all_people()
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(disclosure)) == done.verified.record_count
    person = people[0].personal_id
    (received,) = lookup(engine, person).received
    assert (received.package_id, received.partner, received.direction) == (done.verified.package_id, partner_name,
                                                                          "inbound")  # fmt: skip
    assert received.receipt_status == "accepted" and received.records >= 1
    assert received.fields == tuple(agreement.directions["inbound"].fields)
    assert lookup(engine, person).sent == ()
