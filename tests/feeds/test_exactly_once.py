"""Exactly-once effect, proven by killing: an outbound feed is run step by step as the DAG runs it, in a process
that is sent SIGKILL at each step in turn (``tests.feeds.feed_steps``); the feed is then resumed from the killed
step with the finished steps' XComs, as Airflow retries a task (or, for some kills, started again from scratch, as
the next DAG run would). After each kill and rerun, the partner holds each change exactly once, the ledger chain
verifies and the checkpoint is at the end of the window. One test per transport, each against its real partner."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter

import pytest

from exchange import ledger
from exchange.agreements import load_agreements
from feeds.checkpoint import read_checkpoint
from population.changelog import last_sequence
from population.db import session_factory
from tests.feeds import feed_steps
from tests.feeds.changes import changed_personal_ids, quarantined_ids
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

# (where the task dies, how it is run again): "retry" resumes at the killed step, "new run" starts over
KILLS_BEFORE_DELIVERY = [
    ("feeds.outbound:extract:after", "retry"),
    ("validation.quarantine:QuarantineStore.add:after", "retry"),  # mid-validation: quarantine partly written
    ("feeds.outbound:hold_pending:after", "retry"),  # the package's name is held, nothing sealed yet
    ("feeds.outbound:zip_package:before", "retry"),  # sealed and signed, not zipped
    ("feeds.outbound:package:after", "new run"),  # sealed and zipped, a new DAG run comes instead
]
KILLS_AFTER_DELIVERY = [
    ("feeds.outbound:record_receipt:after", "retry"),  # receipt in the ledger, the task died before returning
    ("feeds.outbound:move_checkpoint:after", "retry"),  # the checkpoint moved, the task died before returning
]
DELIVERY_KILLS = {
    # the partner has stored the package; the answer with its receipt is lost with the task
    "rest": [("connectors.base:DeliveredReceipt.write_to:before", "retry"),
             ("connectors.base:DeliveredReceipt.write_to:before", "new run")],
    "soap": [("connectors.base:DeliveredReceipt.write_to:before", "retry"),
             ("connectors.base:DeliveredReceipt.write_to:before", "new run")],
    # uploaded into the partner's inbox, the task died before the sensor waited
    "sftp": [("connectors.sftp:SftpHook.deliver_package:after", "retry"),
             ("connectors.sftp:SftpHook.deliver_package:after", "new run"),
             ("feeds.tasks:keep_receipt:before", "retry")],
}  # fmt: skip
AGREEMENTS = {"rest": "health-identity", "soap": "tax-identity", "sftp": "land-owners"}


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["rest", "soap", "sftp"])
def test_a_feed_killed_at_each_step_delivers_each_change_exactly_once(transport, tmp_path, sandbox_pki, monkeypatch):
    name = AGREEMENTS[transport]
    agreement = load_agreements()[name]
    # few defects: a small window with a few quarantined rows would pass the agreement's limit (tested elsewhere)
    world = exchange_world(tmp_path / "var", sandbox_pki, 40 + len(transport), citizens=300, defects=0.003)
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    # the steps before delivery do not depend on the transport: every kill there once (REST), one elsewhere
    before = KILLS_BEFORE_DELIVERY if transport == "rest" else KILLS_BEFORE_DELIVERY[-1:]
    kills = before + DELIVERY_KILLS[transport] + KILLS_AFTER_DELIVERY
    expected: Counter[str] = Counter()  # personal ID -> windows it changed in (and passed validation)
    try:
        for day, (kill, rerun) in enumerate(kills, start=1):
            with session_factory(world.engine)() as session:
                after, head = read_checkpoint(world.engine, name).last_change_sequence, last_sequence(session)
            changed = changed_personal_ids(world.engine, after, head)
            assert changed, "each round delivers a window with changes"

            xcom_file = tmp_path / f"xcoms-{day}.json"
            command = [sys.executable, "-m", "tests.feeds.feed_steps", name, str(xcom_file), "--kill", kill]
            killed = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert killed.returncode == -signal.SIGKILL, f"{kill}: {killed.returncode}\n{killed.stderr[-3000:]}"

            xcoms = json.loads(xcom_file.read_text()) if xcom_file.exists() and rerun == "retry" else {}
            finished = feed_steps.run_feed(name, xcoms)
            assert finished["extract"]["up_to"] == head and finished["verify"]["status"] == "accepted"

            expected.update(changed - quarantined_ids(world.engine, name))
            held = Counter(record["personal_id"] for record in world.records_held(agreement.partner, name))
            assert held == expected, f"after a kill at {kill} ({rerun}): the partner holds {held - expected} too " \
                                     f"many, misses {expected - held}"  # fmt: skip
            checkpoint = read_checkpoint(world.engine, name)
            assert (checkpoint.last_change_sequence, checkpoint.pending_package) == (head, None), kill
            with session_factory(world.engine)() as session:
                kinds = Counter(entry.kind for entry in ledger.entries(session))
                assert ledger.verify(session).entries == kinds.total()
            assert kinds == {"package_sent": day, "receipt_received": day}, f"{kill}: {kinds}"
            assert world.sandbox.partners[agreement.partner].store.package_count() == day
            world.new_day(day, events=60)
    finally:
        world.sandbox.stop()
        world.engine.dispose()
