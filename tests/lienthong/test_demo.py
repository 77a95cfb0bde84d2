"""``make airflow``'s Airflow (``lienthong.demo.airflow_running``): the scheduler runs a feed whose tasks
authenticate to the API server and whose receipt wait defers to the triggerer, the API serves the task logs from
their files, and nothing listens beyond loopback."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import psutil
import pytest

from lienthong.demo import AIRFLOW_COMPONENTS, airflow_running
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

DAG = "land-owners.outbound"  # SFTP: its receipt wait is deferred to the triggerer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Api:
    def __init__(self, base: str, password_file) -> None:
        self.base, self.password_file, self.token = base, password_file, None

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body else None
        request = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def log_in(self) -> None:
        password = json.loads(self.password_file.read_text())["admin"]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]


def until(what, seconds: float, step: float = 1.0):
    """``what()`` once it returns something true without raising, within ``seconds``."""
    deadline, last = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        try:
            if result := what():
                return result
        except (OSError, urllib.error.URLError, KeyError, ValueError) as error:
            last = error
        time.sleep(step)
    raise AssertionError(f"not within {seconds} s (last error: {last!r})")


def run_path(run_id: str) -> str:
    return f"/api/v2/dags/{DAG}/dagRuns/{urllib.parse.quote(run_id)}"


def finished(api: Api) -> list[dict]:
    """The DAG's runs once none is queued or running (the one triggered included)."""
    runs = api.call("GET", f"/api/v2/dags/{DAG}/dagRuns")["dag_runs"]
    return runs if runs and all(run["state"] in ("success", "failed") for run in runs) else []


def tasks_of(api: Api, run: dict) -> dict[str, str]:
    found = api.call("GET", f"{run_path(run['dag_run_id'])}/taskInstances")["task_instances"]
    return {task["task_id"]: task["state"] for task in found}


def listening_addresses(processes) -> set[str]:
    found = set()
    for process in processes:
        for each in [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]:
            try:
                found |= {c.laddr.ip for c in each.net_connections("inet") if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:
                continue
    return found


@pytest.mark.slow
def test_make_airflow_runs_a_feed_through_the_scheduler_and_listens_on_loopback_only(tmp_path, sandbox_pki):
    world = exchange_world(tmp_path / "var", sandbox_pki, 47, citizens=120)
    port = free_port()
    env = world.env | {"AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    api = Api(f"http://127.0.0.1:{port}", world.var / "airflow" / "simple_auth_manager_passwords.json.generated")
    try:
        with airflow_running(world.var, env) as components:
            assert set(components) == set(AIRFLOW_COMPONENTS)
            until(lambda: api.log_in() or True, 180)
            until(lambda: api.call("PATCH", f"/api/v2/dags/{DAG}", {"is_paused": False}), 180)
            api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None})
            runs = until(lambda: finished(api), 400, 2)  # with any the scheduler started itself on unpausing
            assert {run["state"] for run in runs} == {"success"}
            tasks = {run["dag_run_id"]: tasks_of(api, run) for run in runs}
            delivered = [run for run, states in tasks.items() if states["deliver"] == "success"]
            assert delivered and all(set(tasks[run].values()) == {"success"} for run in delivered), tasks
            assert listening_addresses(components.values()) <= {"127.0.0.1", "::1"}  # no log server on 0.0.0.0
            log = api.call("GET", f"{run_path(delivered[0])}/taskInstances/deliver/logs/1")["content"]
            assert any("Returned value" in str(line.get("event")) for line in log)  # read from the task's file
        assert all(process.poll() is not None for process in components.values())  # all stopped on the way out
        assert world.records_held("land", "land-owners")  # the partner holds what the scheduler's run sent
    finally:
        world.sandbox.stop()
        world.engine.dispose()
