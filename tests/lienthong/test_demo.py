"""``make airflow``'s Airflow (``lienthong.demo.airflow_running``): the scheduler runs a feed whose tasks
authenticate to the API server and whose receipt wait defers to the triggerer, the API serves the task logs from
their files, and nothing listens beyond loopback. ``lienthong demo`` runs every DAG through Airflow. Neither writes
a personal ID of the population in any log (Law 91/2025: IDs are masked, ``population.log_masking``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select, text

from lienthong.demo import AIRFLOW_COMPONENTS, airflow_running, dag_order
from population.identity import mask_personal_id
from population.models import Citizen as PopulationCitizen  # the fixtures' star import brings another Citizen
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

DAG = "land-owners.outbound"  # SFTP: its receipt wait is deferred to the triggerer


TWELVE_DIGITS = re.compile(rb"(?<![0-9])[0-9]{12}(?![0-9])")


def population_ids(engine) -> set[bytes]:
    with engine.connect() as connection:
        return {pid.encode() for (pid,) in connection.execute(select(PopulationCitizen.personal_id)) if pid}


def log_files(var: Path) -> list[Path]:
    """Every log the run wrote under the workspace: Airflow's (its components' and the demo's logs, the task logs
    under its home) and any other ``*.log`` (the partners')."""
    found = {p for p in (var / "airflow").rglob("*") if p.is_file() and (p.suffix == ".log" or "logs" in p.parts)}
    found |= {p for p in var.rglob("*.log") if p.is_file()}
    return sorted(found)


def unmasked_ids(ids: set[bytes], named: dict[str, bytes]) -> dict[str, list[str]]:
    """Where a personal ID of the population is written whole: {log: [the IDs, masked]}."""
    found = {}
    for name, content in named.items():
        leaked = sorted({m.group() for m in TWELVE_DIGITS.finditer(content)} & ids)
        if leaked:
            found[name] = [mask_personal_id(pid.decode()) for pid in leaked]
    return found


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

    def page(self, path: str) -> str:
        """A page of the plugin's, as the signed-in user (HTML)."""
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read().decode()

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
            # retried: on SQLite the API server's write can meet the scheduler's (unpaused just now) and answer 500
            until(lambda: api.call("POST", f"/api/v2/dags/{DAG}/dagRuns", {"logical_date": None}), 60, 2)
            runs = until(lambda: finished(api), 400, 2)  # with any the scheduler started itself on unpausing
            assert {run["state"] for run in runs} == {"success"}
            tasks = {run["dag_run_id"]: tasks_of(api, run) for run in runs}
            # a small window goes out in the first task (the fast path: the rest skipped), a big one a task a step
            delivering = {run: "deliver" if states["deliver"] == "success" else "extract"
                          for run, states in tasks.items() if states["extract"] == "success"}  # fmt: skip
            assert delivering and all("failed" not in tasks[run].values() for run in delivering), tasks
            assert listening_addresses(components.values()) <= {"127.0.0.1", "::1"}  # no log server on 0.0.0.0
            # every component still up: the triggerer reads the change log watcher's arguments with the instance's key
            assert {name: process.poll() for name, process in components.items()} == dict.fromkeys(components)
            run, task = next(iter(delivering.items()))
            log = api.call("GET", f"{run_path(run)}/taskInstances/{task}/logs/1")["content"]
            assert any("Returned value" in str(line.get("event")) for line in log)  # read from the task's file
            # the stewards' workbench shows what the scheduler's run held back
            with world.engine.connect() as connection:
                held = connection.execute(text("SELECT min(id) FROM quarantined_record WHERE status = 'held'"))
                first = held.scalar()
            assert first is not None and f"quarantine/{first}" in api.page("/lienthong/quarantine?lang=en")
            for page in ("mismatches", "trends", "operators"):
                assert "Liên thông" in api.page(f"/lienthong/{page}?lang=en")
        assert all(process.poll() is not None for process in components.values())  # all stopped on the way out
        assert world.records_held("land", "land-owners")  # the partner holds what the scheduler's run sent
        logs = log_files(world.var)  # the scheduler's task runner: the task logs, each component's log
        assert any("dag_id=" in str(p) for p in logs) and any(p.name == "scheduler.log" for p in logs)
        # the scheduler's workers forked from a process that imported what the tasks import (lienthong.task_modules)
        assert "Set forkserver preload modules for scheduler" in (world.var / "airflow" / "scheduler.log").read_text()
        assert unmasked_ids(population_ids(world.engine), {str(p): p.read_bytes() for p in logs}) == {}
    finally:
        world.sandbox.stop()
        world.engine.dispose()


@pytest.mark.slow
def test_the_demo_runs_every_dag_and_writes_no_personal_id_in_any_log(tmp_path, sandbox_pki):
    """``lienthong demo`` on a small population (the embedded default's layout: the database, ``pki/`` and the
    partners' state under its folder), then every log it wrote and its own output grepped for the population's
    personal IDs."""
    world = exchange_world(tmp_path / "var", sandbox_pki, 59, citizens=200)
    world.sandbox.stop()  # the demo starts the partners itself, from their state under var/partners
    shutil.copytree(sandbox_pki.path, world.var / "pki")
    settings = {k: v for k, v in world.env.items() if k.startswith("LIENTHONG_") and k != "LIENTHONG_PKI_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LIENTHONG_"))} | settings
    lienthong = Path(sys.executable).with_name("lienthong")
    try:
        done = subprocess.run([str(lienthong), "demo", "--var", str(world.var)], env=env, cwd=tmp_path,
                              capture_output=True, timeout=1200)  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, output.decode(errors="replace")[-3000:]
        results = [json.loads(line) for line in (world.var / "airflow" / "demo-results.jsonl").read_text().splitlines()]
        assert [r["dag_id"] for r in results] == dag_order() and {r["state"] for r in results} == {"success"}
        logs = log_files(world.var)
        assert world.var / "airflow" / "demo.log" in logs
        assert b"[DAG TEST]" in (world.var / "airflow" / "demo.log").read_bytes()  # the task logs are there
        named = {str(p): p.read_bytes() for p in logs} | {"the demo's output": output}
        assert unmasked_ids(population_ids(world.engine), named) == {}
        disclosures_follow_a_life_event(world, lienthong, env, tmp_path)
    finally:
        world.engine.dispose()


def disclosures_follow_a_life_event(world, lienthong: Path, env: dict[str, str], cwd: Path) -> None:
    """After the demo, ``lienthong disclosures`` on a citizen its life events changed lists exactly the packages
    that carried their record to a partner, as the partners' own stores hold them, each with its agreement, its
    fields and the partner's accepted receipt."""
    with world.engine.connect() as connection:
        changed = connection.execute(text("SELECT personal_id FROM change_log ORDER BY sequence DESC")).scalars()
        changed = list(dict.fromkeys(changed))
    held: dict[str, set[tuple[str, str]]] = {}  # personal ID -> (partner, package) that the partners hold
    for store in sorted((world.var / "partners").glob("*/registry.db")):
        with sqlite3.connect(store) as partner:
            query = "SELECT r.personal_id, r.package_id FROM partner_record r JOIN partner_package p USING (package_id)"
            for pid, package in partner.execute(query + " WHERE p.sender = 'population'"):
                held.setdefault(pid, set()).add((store.parent.name, package))
    citizen = next(pid for pid in changed if pid in held)
    listed = subprocess.run([str(lienthong), "disclosures", citizen, "--json"], env=env, cwd=cwd, capture_output=True,
                            timeout=300)  # fmt: skip
    assert listed.returncode == 0, listed.stderr.decode(errors="replace")
    document = json.loads(listed.stdout)
    assert {(d["partner"], d["package_id"]) for d in document["disclosures"]} == held[citizen]
    for entry in document["disclosures"]:
        assert entry["agreement"] and "personal_id" in entry["fields"] and entry["legal_basis"]
        assert entry["receipt"]["status"] == "accepted" and entry["receipt"]["at"] >= entry["sent_at"]
