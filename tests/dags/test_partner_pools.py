"""The partners' pools come from the agreements wherever Airflow runs: the plugin's listener makes them as an
Airflow component starts its job (``Job()``, what the scheduler, triggerer and DAG processor do first), in a fresh
Airflow home of its own, not only when the demo prepares one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from feeds.tasks import partner_pools
from lienthong.airflow_runner import airflow_environment

STARTING = """
import json
from airflow.models.pool import Pool
from airflow.utils.db import initdb

initdb()
before = sorted(p.pool for p in Pool.get_pools())
from airflow.jobs.job import Job

Job()  # as a component starts: the listeners' on_starting
print(json.dumps({"before": before, "after": {p.pool: p.slots for p in Pool.get_pools()}}))
"""


def test_an_airflow_component_starting_makes_each_partners_pool_from_the_agreements(tmp_path):
    environment = {**os.environ, **airflow_environment(tmp_path / "var")}
    started = subprocess.run(
        [sys.executable, "-c", STARTING], env=environment, capture_output=True, text=True, timeout=600, check=True
    )
    pools = json.loads(started.stdout.strip().splitlines()[-1])
    assert pools["before"] == ["default_pool"]
    expected = partner_pools()
    assert expected == {"partner-health": 2, "partner-tax": 1, "partner-land": 1, "partner-business": 2}
    assert {name: slots for name, slots in pools["after"].items() if name != "default_pool"} == expected
