"""No personal ID in Airflow's task logs: in a process whose logging Airflow configured as it does for a task
(structlog, JSON lines to the supervisor), the DAG file's parse masks what the project's loggers, structlog and the
tracebacks write; when Airflow configures logging again, the plugin's listener masks again as the task starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lienthong.airflow_runner import PROJECT_ROOT, airflow_environment
from population.identity import mask_personal_id

ID = "001200012345"
TASK_PROCESS = f"""
import importlib.util, io, json, logging, sys
import structlog
from airflow.sdk.log import configure_logging

parsed, started = io.BytesIO(), io.BytesIO()
configure_logging(json_output=True, output=parsed, sending_to_supervisor=True)  # as in a task's process
spec = importlib.util.spec_from_file_location("exchange_dags", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))  # the DAG file parsed
logging.getLogger("feeds.outbound").info("citizen %s changed", "{ID}")
structlog.get_logger("task").info("event", personal_id="{ID}", nested={{"ids": ["{ID}"]}})
try:
    raise ValueError("no citizen {ID}")
except ValueError:
    logging.getLogger("feeds.inbound").exception("failed")

configure_logging.cache_clear()  # Airflow configures logging again for the task ...
configure_logging(json_output=True, output=started, sending_to_supervisor=True, log_level="DEBUG")
from airflow.sdk.listener import get_listener_manager

get_listener_manager().hook.on_task_instance_running(previous_state=None, task_instance=None)  # ... and starts it
structlog.get_logger("task").info("started", personal_id="{ID}")
logging.getLogger("connectors.rest").warning("GET persons/%s", "{ID}")
print(json.dumps({{"parsed": parsed.getvalue().decode(), "started": started.getvalue().decode()}}))
"""


def test_task_logs_are_masked_from_the_dag_parse_and_again_when_a_task_starts(tmp_path):
    env = {"PATH": str(Path(sys.executable).parent)} | airflow_environment(tmp_path / "var")
    done = subprocess.run([sys.executable, "-c", TASK_PROCESS, str(PROJECT_ROOT / "dags" / "exchange_dags.py")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    logs = json.loads(done.stdout.splitlines()[-1])
    parsed = [json.loads(line) for line in logs["parsed"].splitlines()]
    started = [json.loads(line) for line in logs["started"].splitlines()]
    masked = mask_personal_id(ID)
    assert ID not in logs["parsed"] + logs["started"] + done.stderr
    assert [e["event"] for e in parsed] == [f"citizen {masked} changed", "event", "failed"]
    assert parsed[1]["personal_id"] == masked and parsed[1]["nested"] == {"ids": [masked]}
    assert parsed[2]["exception"][0]["exc_value"] == f"no citizen {masked}"
    assert any("PersonalIdMasking" in e["event"] for e in started)  # the plugin's listener ran
    assert {e["event"]: e.get("personal_id") for e in started}["started"] == masked
    assert f"GET persons/{masked}" in [e["event"] for e in started]
