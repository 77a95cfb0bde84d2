"""A burst of life events under an agreement's ``max_package_citizens``: the incremental window is cut where the cap is
reached, on SQLite and PostgreSQL, with and without a row selection; the windows that follow one another cover every
change once, and delivered in turn to the real health partner they give it each changed citizen once per window, the
checkpoint ending at the change-log head."""

from __future__ import annotations

import uuid
from dataclasses import replace

from sqlalchemy import select

from exchange.agreements import load_agreements
from feeds.checkpoint import move_checkpoint, read_checkpoint
from feeds.outbound import changes_waiting, extract, package, run_outbound, validate
from population.changelog import last_sequence
from population.db import session_factory
from population.models import Change
from tests.feeds.changes import changed_personal_ids
from tests.feeds.test_outbound import held_by_partner, latest_validation_run, quarantined_personal_ids
from tests.feeds.test_row_selection import died_or_moved_women, selecting_land
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, partners, partner_agreements …


def capped(agreement, cap: int):
    """The agreement under a name of its own (its feed starts afresh), its packages capped at ``cap`` citizens."""
    outbound = replace(agreement.directions["outbound"], max_package_citizens=cap)
    name = f"{agreement.name}-capped-{uuid.uuid4().hex[:8]}"
    return replace(agreement, name=name, directions=agreement.directions | {"outbound": outbound})


def head_of(engine) -> int:
    with session_factory(engine)() as session:
        return last_sequence(session)


def changes_by_citizen(engine, after: int, up_to: int) -> dict[int, list[int]]:
    """Worked out apart from the feed's SQL: each citizen changed in the window, and the sequences of its changes."""
    with session_factory(engine)() as session:
        rows = session.execute(select(Change.citizen_id, Change.sequence).where(Change.sequence > after,
                                                                                Change.sequence <= up_to))  # fmt: skip
        changed: dict[int, list[int]] = {}
        for citizen, sequence in rows:
            changed.setdefault(citizen, []).append(sequence)
        return changed


def windows_in_turn(engine, agreement) -> list:
    """Open the feed's windows one after another, each closed as a verified receipt would close it, until one has
    nothing to send (the delivery itself is the last test's)."""
    windows = []
    while True:
        window = extract(engine, agreement)
        if not window.citizens:
            return windows
        windows.append(window)
        move_checkpoint(engine, agreement.name, window.up_to, f"package-{len(windows)}")
        assert len(windows) < 100, "the windows do not reach the head"


def test_a_window_over_the_cap_is_cut_into_windows_that_cover_every_change_once(day_of_events):
    engine, cap = day_of_events, 17
    agreement = capped(load_agreements()["health-identity"], cap)  # start: beginning, every row
    head = head_of(engine)
    everyone = changes_by_citizen(engine, 0, head)
    assert len(everyone) > 3 * cap

    windows = windows_in_turn(engine, agreement)
    assert windows[0].after == 0 and windows[-1].up_to == head
    assert all(later.after == earlier.up_to for earlier, later in zip(windows, windows[1:], strict=False))
    first_changes: dict[int, int] = {}
    for window in windows:
        changed = changes_by_citizen(engine, window.after, window.up_to)
        assert window.citizens == len(changed) <= cap
        for citizen, sequences in changed.items():
            first_changes.setdefault(citizen, min(sequences))
    assert all(window.citizens == cap for window in windows[:-1])  # cut where the cap is reached, no sooner
    # each citizen goes out first in the window of its first change, in the order of the change log
    assert first_changes == {citizen: min(sequences) for citizen, sequences in everyone.items()}
    assert read_checkpoint(engine, agreement.name).last_change_sequence == head
    assert not changes_waiting(engine, agreement)


def test_a_selecting_agreement_is_capped_by_the_citizens_it_would_send(day_of_events, tmp_path):
    engine, cap = day_of_events, 5
    agreement = capped(selecting_land(tmp_path, f"land-selected-{uuid.uuid4().hex[:8]}"), cap)
    selected = died_or_moved_women(engine)
    assert len(selected) > 2 * cap
    move_checkpoint(engine, agreement.name, 0, None)  # the land agreement starts at the head: this one at 0

    windows = windows_in_turn(engine, agreement)
    assert windows[0].after == 0 and read_checkpoint(engine, agreement.name).last_change_sequence == head_of(engine)
    assert all(later.after == earlier.up_to for earlier, later in zip(windows, windows[1:], strict=False))
    sent = [died_or_moved_women(engine, window.after, window.up_to) for window in windows]
    assert [window.citizens for window in windows] == [len(each) for each in sent]
    assert all(len(each) == cap for each in sent[:-1]) and 0 < len(sent[-1]) <= cap
    assert set().union(*sent) == selected


def test_a_full_snapshot_and_a_window_under_the_cap_are_not_cut(day_of_events):
    engine = day_of_events
    identity = load_agreements()["health-identity"]
    head = head_of(engine)
    assert extract(engine, capped(identity, 5), mode="full").up_to == head
    whole = extract(engine, capped(identity, len(changes_by_citizen(engine, 0, head))))
    assert (whole.after, whole.up_to) == (0, head)


def test_a_burst_goes_out_in_packages_of_at_most_the_cap_each_change_once(
    partners, sandbox_pki, population, partner_agreements, tmp_path
):
    cap, work = 20, tmp_path / "work"
    agreement = capped(load_agreements()["health-identity"], cap)
    partner_agreements[agreement.name] = agreement  # the partner must know it
    head = head_of(population)
    assert len(changes_by_citizen(population, 0, head)) > 2 * cap

    # the first window, sealed and not acknowledged: the rerun resends that package, its window unchanged
    first = extract(population, agreement)
    assert first.after == 0 and first.up_to < head and first.citizens == cap
    sealed = package(population, agreement, validate(population, agreement, first, work / "staging"), sandbox_pki,
                     work / "packages")  # fmt: skip
    assert extract(population, agreement).pending == sealed.path
    assert extract(population, agreement).up_to == first.up_to

    runs = []
    while not runs or changes_waiting(population, agreement):
        run = run_outbound(population, agreement, sandbox_pki, work)
        runs.append(run)
        delivered = [record["personal_id"] for record in held_by_partner(partners, run.package.package_id)]
        quarantined = quarantined_personal_ids(population, latest_validation_run(population))
        assert len(delivered) == len(set(delivered)) <= cap  # each changed citizen once in each package
        changed = changed_personal_ids(population, run.window.after, run.window.up_to)
        assert set(delivered) == changed - quarantined and run.delivery.status == "accepted"
        assert read_checkpoint(population, agreement.name).last_change_sequence == run.window.up_to
        assert len(runs) < 20, "the packages do not reach the head"
    assert runs[0].package.package_id == sealed.package_id
    assert [run.package.sequence for run in runs] == list(range(1, len(runs) + 1)) and len(runs) > 2
    assert runs[0].window.after == 0 and runs[-1].window.up_to == head
    assert all(later.window.after == earlier.window.up_to for earlier, later in zip(runs, runs[1:], strict=False))
    assert read_checkpoint(population, agreement.name).last_change_sequence == head
