"""The exchange DAGs: generated from the agreements, and run for real through Airflow (``dag.test()``) against the
four partners on loopback."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from sqlalchemy import func, select

from exchange import ledger
from exchange.agreements import load_agreements
from feeds.checkpoint import read_checkpoint
from lienthong.settings import FAST_PATH_ENV, SNAPSHOT_TASKS_ENV
from population.changelog import last_sequence
from population.db import session_factory
from population.models import Citizen, RegistryLink
from tests.feeds.changes import changed_personal_ids, quarantined_ids, selected_personal_ids
from validation.models import QuarantinedRecord, ValidationRun

AGREEMENTS = load_agreements()
OUTBOUND = sorted(name for name, a in AGREEMENTS.items() if "outbound" in a.directions)


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    from lienthong.airflow_runner import PROJECT_ROOT

    bag = DagBag(str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors
    return bag


def test_every_agreement_gets_its_dags_with_a_pool_per_partner_and_retries(dag_bag):
    from airflow.sdk import AssetOrTimeSchedule

    for name in OUTBOUND:
        agreement = AGREEMENTS[name]
        dag = dag_bag.dags[f"{name}.outbound"]
        assert isinstance(dag.timetable, AssetOrTimeSchedule) or "AssetOrTime" in type(dag.timetable).__name__
        assert dag.max_active_runs == 1 and not dag.catchup
        # woken by the change log, and by its own runs when a window cut at the agreement's cap left changes waiting
        waking = {asset.uri for asset in dag.timetable.asset_condition.objects}
        assert waking == {"lienthong://population/change-log", f"lienthong://{name}/outbound-waiting"}
        assert {t.task_id for t in dag.tasks if t.outlets} == {"extract", "advance"}  # the steps that close a window
        partner_tasks = [t for t in dag.tasks if t.task_id in ("deliver", "wait_for_receipt", "extract")]
        assert len(partner_tasks) >= 2 and all(t.pool == f"partner-{agreement.partner}" for t in partner_tasks)
        assert all(t.retries == 3 and t.retry_exponential_backoff for t in dag.tasks)
        order = [t.task_id for t in dag.topological_sort()]
        # a small window all in the first task (the fast path), a big one a task a step: extract chooses, and
        # on the fast path skips every later step at once, whatever its trigger rule
        assert order[:3] == ["extract", "validate", "package"] and order[-2:] == ["verify_receipt", "advance"]
        extract = dag.get_task("extract")
        assert extract.ignore_downstream_trigger_rules and {"validate", "package", "advance"} == {
            t.task_id for t in extract.downstream_list
        }
        if agreement.transport == "sftp":  # the partner answers later: a deferred wait, no worker slot held
            wait = dag.get_task("wait_for_receipt")
            assert wait.deferrable and wait.timeout == agreement.directions["outbound"].delivery_deadline_hours * 3600
    assert "population.change-log" in dag_bag.dags
    assert [t.task_id for t in dag_bag.dags["lienthong.retention"].tasks] == ["apply_retention"]


@pytest.mark.slow
def test_the_outbound_dags_deliver_each_change_once_over_each_transport(dag_world):
    world = dag_world
    with session_factory(world.engine)() as session:
        head = last_sequence(session)
    runs = world.run("population.change-log", *(f"{name}.outbound" for name in OUTBOUND))
    assert all(run["state"] == "success" for run in runs.values()), world.log_tail()
    assert runs["population.change-log"]["tasks"] == {"announce": "success"}
    for name in OUTBOUND:
        agreement = AGREEMENTS[name]
        tasks = runs[f"{name}.outbound"]["tasks"]  # a day's changes: a small window, the fast path
        assert {t for t, state in tasks.items() if state == "success"} == {"extract"}
        assert set(tasks.values()) == {"success", "skipped"}
        held = world.records_held(agreement.partner, name)
        sent = {r["personal_id"] for r in held}
        assert len(held) == len(sent), f"{name}: a citizen delivered twice"
        selected = selected_personal_ids(world.engine, agreement, 0, head)  # every change, or deaths only …
        assert sent == selected - quarantined_ids(world.engine, name) and sent
        assert all(set(r) == set(agreement.directions["outbound"].fields) for r in held)
        assert read_checkpoint(world.engine, name).last_change_sequence == head
    with session_factory(world.engine)() as session:
        kinds = Counter(e.kind for e in ledger.entries(session))
        assert ledger.verify(session).entries == sum(kinds.values())
    assert kinds == {"package_sent": len(OUTBOUND), "receipt_received": len(OUTBOUND)}
    # two agreements with the health partner, each its own feed: the deaths-only one sent only deaths
    assert {"health-identity", "health-deaths"} <= set(OUTBOUND)
    deaths = world.records_held("health", "health-deaths")
    assert deaths and all(r["date_of_death"] for r in deaths)
    assert len(world.records_held("health", "health-identity")) > len(deaths)

    # nothing changed since: the change log is not announced again, and the feeds have nothing to send
    again = world.run("population.change-log", "health-identity.outbound")
    assert again["population.change-log"]["tasks"] == {"announce": "skipped"}
    assert again["health-identity.outbound"]["state"] == "success"
    assert again["health-identity.outbound"]["tasks"]["extract"] == "skipped"

    # another day: only the new changes go out, as package 2 of each feed
    world.new_day(2)
    with session_factory(world.engine)() as session:
        new_head = last_sequence(session)
    newly_changed = changed_personal_ids(world.engine, head, new_head)
    before = len(world.records_held("land", "land-owners"))
    world.env[FAST_PATH_ENV] = "0"  # a task a step, as a window over the fast path's size goes
    try:
        runs = world.run("population.change-log", "land-owners.outbound")
    finally:
        del world.env[FAST_PATH_ENV]
    assert runs["population.change-log"]["tasks"] == {"announce": "success"}
    assert runs["land-owners.outbound"]["state"] == "success", world.log_tail()
    steps = runs["land-owners.outbound"]["tasks"]
    assert set(steps.values()) == {"success"} and steps["wait_for_receipt"] == "success"
    after = world.records_held("land", "land-owners")
    assert len(after) - before == len(newly_changed - quarantined_ids(world.engine, "land-owners"))
    assert read_checkpoint(world.engine, "land-owners").last_change_sequence == new_head


@pytest.mark.slow
def test_snapshot_inbound_and_audit_dags_run_through_airflow(dag_world):
    world = dag_world
    with session_factory(world.engine)() as session:
        head = last_sequence(session)
        citizens = session.scalar(select(func.count()).select_from(Citizen))
    inbound = sorted(f"{name}.inbound" for name, a in AGREEMENTS.items() if "inbound" in a.directions)
    held_before = len(world.records_held("land", "land-owners"))
    world.env[SNAPSHOT_TASKS_ENV] = "3"
    try:
        runs = world.run("land-owners.snapshot", *inbound, "ledger.audit", "lienthong.retention")
    finally:
        del world.env[SNAPSHOT_TASKS_ENV]
    assert all(run["state"] == "success" for run in runs.values()), world.log_tail()

    # the snapshot: the provinces dealt to a mapped task per slot (LIENTHONG_SNAPSHOT_TASKS), one package of them all
    snapshot = runs["land-owners.snapshot"]["tasks"]
    shares = [task for task in snapshot if task.startswith("validate_provinces[")]
    assert len(shares) == 3 and all(snapshot[task] == "success" for task in shares)
    sent = len(world.records_held("land", "land-owners")) - held_before
    assert sent == citizens - len(snapshot_quarantined(world.engine, "land-owners"))
    assert read_checkpoint(world.engine, "land-owners").last_change_sequence == head

    # each partner's published package: verified, validated, reconciled, acknowledged; links written
    for dag_id in inbound:
        assert set(runs[dag_id]["tasks"].values()) == {"success", "skipped"}, runs[dag_id]
        assert runs[dag_id]["tasks"]["acknowledge"] == "success"
    with session_factory(world.engine)() as session:
        received = Counter(e.agreement for e in ledger.entries(session) if e.kind == "package_received")
        links = Counter(session.scalars(select(RegistryLink.partner)))
    assert received == {a.name: 1 for a in AGREEMENTS.values() if "inbound" in a.directions}
    assert set(links) == {"health", "tax", "land", "business"} and all(links.values()), links
    assert all(world.sandbox.partners[a.partner].store.acknowledgements() for a in AGREEMENTS.values())

    # nothing new in the outboxes: the inbound DAGs skip; the audit verified the chain, a sample and the heads the
    # partners signed
    again = world.run(*inbound)
    assert all(run["tasks"]["fetch"] == "skipped" for run in again.values())
    assert runs["ledger.audit"]["tasks"] == {"verify_chain": "success", "verify_signatures": "success",
                                             "verify_witnesses": "success", "anchor_head": "success",
                                             "certificates_expiring": "success"}  # fmt: skip
    with session_factory(world.engine)() as session:
        state = ledger.verify(session)  # the head the audit verified is anchored, signed, outside the database
    # the daily retention ran: nothing is older than an agreement's retention_days yet, so every package stays
    assert runs["lienthong.retention"]["tasks"] == {"apply_retention": "success"}
    assert list(world.var.glob("packages/*/*.zip")) and not list(world.var.glob("packages/*/*.expired.json"))
    anchor = world.var / "ledger-anchors" / f"ledger-{state.entries:08d}.json"
    assert json.loads(anchor.read_bytes())["head_hash"] == state.head_hash
    assert anchor.with_name(anchor.name + ".p7s").is_file()


def snapshot_quarantined(engine, agreement: str) -> set[str]:
    """The citizens the agreement's full snapshot held back (its validation runs' sources say "(full)")."""
    with session_factory(engine)() as session:
        runs = select(ValidationRun.id).where(ValidationRun.source.like(f"{agreement}:%full%"))
        return set(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id.in_(runs))))
