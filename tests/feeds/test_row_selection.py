"""Agreements that select rows (``select:``) and say where a new feed starts (``start:``): the selection applied in
SQL to incremental windows and to snapshots on SQLite and PostgreSQL, a deaths-only agreement delivered to the
real health partner beside the identity feed, and a new feed that starts at the change-log head unless its
agreement says ``start: beginning``."""

from __future__ import annotations

import csv
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange.agreements import HEAD, load_agreement, load_agreements
from feeds.checkpoint import read_checkpoint
from feeds.outbound import extract, run_outbound, window_batches
from feeds.snapshot import snapshot_shards, validate_shards
from lienthong.settings import schema_file
from population.changelog import last_sequence
from population.db import session_factory
from population.models import Change
from population.models import Citizen as PopulationCitizen  # the fixtures' star import brings another Citizen
from population.simulation import DaySimulation
from tests.feeds.changes import changed_personal_ids, quarantined_ids
from tests.feeds.test_outbound import held_by_partner
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, partners, partner_agreements …

LAND = schema_file("agreements/land.yaml").read_text(encoding="utf-8")
SELECTION = """    select:
      events: [death, permanent_residence_change, birth_registration]
      where:
        sex: {in: [F]}
        permanent_ward_code: {prefix: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]}
"""


def died_or_moved_women(engine, after: int = 0, up_to: int | None = None) -> set[str]:
    """Worked out apart from the feed's SQL: women with a ward, changed by a death, a move of permanent residence or
    a birth in the window."""
    with session_factory(engine)() as session:
        up_to = last_sequence(session) if up_to is None else up_to
        changes = session.execute(
            select(Change.citizen_id, Change.event_type).where(Change.sequence > after, Change.sequence <= up_to)
        )
        wanted = {"death", "permanent_residence_change", "birth_registration"}
        ids = {citizen for citizen, kind in changes if kind in wanted}
        people = session.scalars(select(PopulationCitizen).where(PopulationCitizen.id.in_(ids)))
        return {p.personal_id for p in people if p.sex == "F" and (p.permanent_ward_code or "x")[0] in "0123456789"}


def died(engine, after: int = 0, up_to: int | None = None) -> set[str]:
    with session_factory(engine)() as session:
        up_to = last_sequence(session) if up_to is None else up_to
        window = Change.sequence > after, Change.sequence <= up_to, Change.event_type == "death"
        return set(session.scalars(select(Change.personal_id).where(*window)))


def selecting_land(tmp_path: Path, name: str):
    """The land agreement (CSV, so that PostgreSQL takes the COPY path) under a name of its own, selecting rows."""
    text = LAND.replace("agreement: land-owners", f"agreement: {name}")
    text = text.replace("    fields:\n", SELECTION + "    fields:\n", 1)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return load_agreement(path)


def test_an_incremental_window_holds_only_the_rows_the_agreement_selects(day_of_events, tmp_path):
    engine = day_of_events
    agreement = selecting_land(tmp_path, f"land-selected-{uuid.uuid4().hex[:8]}")
    expected = died_or_moved_women(engine)
    assert expected and expected != changed_personal_ids(engine, 0)

    window = extract(engine, agreement)
    assert window.after == 0 and window.citizens == len(expected)
    rows = agreement.directions["outbound"].rows
    sent = {pid for batch in window_batches(engine, window, rows=rows) for pid in batch["personal_id"]}
    assert sent == expected


def test_a_snapshot_holds_only_the_rows_the_agreement_selects_on_either_path(day_of_events, tmp_path, sandbox_pki):
    engine = day_of_events
    agreement = selecting_land(tmp_path, f"land-selected-{uuid.uuid4().hex[:8]}")
    expected = died_or_moved_women(engine)

    window = extract(engine, agreement, mode="full")
    assert window.citizens == len(expected)
    shards = snapshot_shards(engine, agreement, window)
    results = validate_shards(engine, agreement, window, shards, tmp_path / "staging", date(2026, 7, 1))
    staged = set()
    for result in results:
        with Path(result.file.path).open(encoding="utf-8", newline="") as handle:
            staged |= {row["personal_id"] for row in csv.DictReader(handle)}
    held = quarantined_ids(engine, agreement.name)
    assert staged and not staged & held
    assert staged | held == expected
    assert {result.path for result in results} == {"copy" if engine.dialect.name == "postgresql" else "python"}


@pytest.fixture
def deaths_agreement(partner_agreements):
    """The deaths-only health agreement under a name of its own: its feed starts at package 1."""
    agreement = replace(load_agreements()["health-deaths"], name=f"health-deaths-{uuid.uuid4().hex[:8]}")
    partner_agreements[agreement.name] = agreement
    return agreement


def test_a_deaths_only_agreement_delivers_only_deaths_to_the_health_partner(
    partners, sandbox_pki, population, deaths_agreement, tmp_path
):
    deaths = died(population)
    assert deaths and deaths != changed_personal_ids(population, 0)

    run = run_outbound(population, deaths_agreement, sandbox_pki, tmp_path / "work")
    assert run.package.sequence == 1 and run.delivery.status == "accepted"
    delivered = held_by_partner(partners, run.package.package_id)
    quarantined = quarantined_ids(population, deaths_agreement.name)
    assert {r["personal_id"] for r in delivered} == deaths - quarantined
    assert all(r["date_of_death"] for r in delivered)
    assert all(set(r) == set(deaths_agreement.directions["outbound"].fields) for r in delivered)


def test_a_window_without_a_selected_change_is_passed_over(
    partners, population, deaths_agreement, sandbox_pki, tmp_path
):
    with session_factory(population)() as session:
        head = last_sequence(session)
    first = run_outbound(population, deaths_agreement, sandbox_pki, tmp_path / "work")  # every death so far
    DaySimulation(session_factory(population), 77, date(2026, 7, 3)).run(1)  # one event: a death or not
    with session_factory(population)() as session:
        new_head = last_sequence(session)
    again = extract(population, deaths_agreement)
    assert first.window.up_to == head and new_head > head
    if died(population, head):
        assert again.after == head and again.citizens
    else:  # nothing to send: the checkpoint moves past the changes no one receives
        assert again.after == new_head and not again.citizens
        assert read_checkpoint(population, deaths_agreement.name).last_change_sequence == new_head


@pytest.fixture
def new_feed(partner_agreements):
    """The identity agreement as a new feed would be written: no ``start``, so the default."""
    identity = load_agreements()["health-identity"]
    outbound = replace(identity.directions["outbound"], start=HEAD)
    agreement = replace(
        identity, name=f"health-new-{uuid.uuid4().hex[:8]}", directions=identity.directions | {"outbound": outbound}
    )
    partner_agreements[agreement.name] = agreement
    return agreement


def test_a_new_feed_starts_at_the_change_log_head_unless_its_agreement_says_beginning(
    partners, sandbox_pki, population, new_feed, tmp_path
):
    with session_factory(population)() as session:
        head = last_sequence(session)
    first = run_outbound(population, new_feed, sandbox_pki, tmp_path / "work")
    assert first.window.after == head and first.package is None  # nothing old goes out by surprise
    assert read_checkpoint(population, new_feed.name).last_change_sequence == head

    DaySimulation(session_factory(population), 78, date(2026, 7, 3)).run(20)
    second = run_outbound(population, new_feed, sandbox_pki, tmp_path / "work")
    assert second.package.sequence == 1 and second.window.after == head
    delivered = {r["personal_id"] for r in held_by_partner(partners, second.package.package_id)}
    assert delivered == changed_personal_ids(population, head) - quarantined_ids(population, new_feed.name)

    # the same agreement saying 'start: beginning': its first window is the whole change log
    beginning = replace(
        new_feed,
        name=f"{new_feed.name}-all",
        directions={"outbound": replace(new_feed.directions["outbound"], start="beginning")},
    )
    assert extract(population, beginning).after == 0
