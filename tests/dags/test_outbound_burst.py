"""A burst bigger than the agreement's ``max_package_citizens``, through Airflow (``dag.test()``): a run whose window
was cut announces that changes wait on its feed (the feed's own Asset, which its outbound DAG is also scheduled on),
whether the window went out a task a step (``advance``) or in the first task (the fast path, ``extract``); the run
that reaches the change-log head announces nothing."""

from __future__ import annotations

import pytest

from feeds.checkpoint import read_checkpoint
from lienthong.settings import FAST_PATH_ENV, SCHEMAS_ENV, schema_file
from population.changelog import last_sequence
from population.db import session_factory
from tests.dags.conftest import DagWorld
from tests.feeds.changes import changed_personal_ids, quarantined_ids
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

OUTBOUND = "health-identity.outbound"
WAITING = "lienthong://health-identity/outbound-waiting"


@pytest.mark.slow
def test_a_run_that_leaves_changes_behind_asks_for_the_next_run_and_the_last_does_not(tmp_path, sandbox_pki):
    world = exchange_world(tmp_path / "var", sandbox_pki, 37, citizens=150, only=["health"], kind=DagWorld)
    try:
        with session_factory(world.engine)() as session:
            head = last_sequence(session)
        changed = changed_personal_ids(world.engine, 0, head)  # the identity feed starts at the beginning
        cap = -(-len(changed) // 2)  # two windows at least (three if many citizens change twice)
        # the operator's copy of the health agreement (it hides the packaged one), its packages capped
        override = tmp_path / "operator-schemas" / "agreements" / "health.yaml"
        override.parent.mkdir(parents=True)
        text = schema_file("agreements/health.yaml").read_text(encoding="utf-8")
        capped = text.replace("    start: beginning", f"    max_package_citizens: {cap}\n    start: beginning", 1)
        override.write_text(capped, encoding="utf-8")
        world.env[SCHEMAS_ENV] = str(override.parents[1])

        world.env[FAST_PATH_ENV] = "0"  # a task a step: advance closes the window
        try:
            (first,) = world.run_in_turn(OUTBOUND)
        finally:
            del world.env[FAST_PATH_ENV]
        assert first["state"] == "success" and first["tasks"]["advance"] == "success", world.log_tail()
        assert first["assets"] == [WAITING]
        assert read_checkpoint(world.engine, "health-identity").last_change_sequence < head

        runs = world.run_in_turn(OUTBOUND, OUTBOUND, OUTBOUND)  # the fast path: extract closes each window
        assert all(run["state"] == "success" for run in runs), world.log_tail()
        delivering = [run for run in runs if run["tasks"]["extract"] == "success"]
        assert 1 <= len(delivering) <= 2 and runs[len(delivering)]["tasks"]["extract"] == "skipped"
        assert [run["assets"] for run in delivering] == [[WAITING]] * (len(delivering) - 1) + [[]]
        assert read_checkpoint(world.engine, "health-identity").last_change_sequence == head
        held = {record["personal_id"] for record in world.records_held("health", "health-identity")}
        assert held == changed - quarantined_ids(world.engine, "health-identity")
    finally:
        world.sandbox.stop()
        world.engine.dispose()
