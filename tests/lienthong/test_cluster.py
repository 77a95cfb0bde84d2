"""The production topology on this machine (``lienthong.cluster``): docker-compose.yml's components and settings,
two Celery workers each on a host of its own (network namespaces, private working folders), the partners on a
third, everything run through the scheduler."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from lienthong import cluster as topology
from lienthong.cluster import CONTROL, HOST_SETTINGS, SERVICES, Cluster, ComposePlan, host_address, on_host

ROOT = Path(__file__).resolve().parents[2]
CITIZENS = 100_000


def test_the_native_cluster_runs_the_compose_files_components_with_the_compose_files_settings(tmp_path):
    """One source: each Airflow service the launcher starts runs the command docker-compose.yml gives it, with
    every setting docker-compose itself resolves for it (``docker-compose config`` with the cluster's env file),
    but for the folders of the image (``HOST_SETTINGS``)."""
    values = topology.cluster_values(tmp_path)
    compose = ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--env-file", str(tmp_path / "cluster.env")]
    # docker-compose reads the process's environment before the env file: only PATH, as on an operator's shell
    resolved = subprocess.run([*compose, "config"], capture_output=True, text=True, check=True,
                              env={"PATH": os.environ["PATH"]})  # fmt: skip
    services = yaml.safe_load(resolved.stdout)["services"]
    plan = ComposePlan.read(values)
    cluster = Cluster(tmp_path)
    for service in (topology.INIT_SERVICE, *topology.CONTROL_SERVICES, topology.WORKER_SERVICE):
        assert plan.commands[service] == services[service]["command"], service
        compose = {name: str(value) for name, value in services[service]["environment"].items()}
        native = cluster.environment(service, tmp_path / "home", tmp_path / "var")
        differing = sorted(name for name, value in compose.items() if native.get(name) != value)
        assert set(differing) <= set(HOST_SETTINGS), f"{service}: {differing} differ from docker-compose.yml"
        assert {"AIRFLOW__CORE__EXECUTOR", "LIENTHONG_ARTIFACTS", "LIENTHONG_KEYS"} <= compose.keys()
    assert services[topology.WORKER_SERVICE]["environment"]["LIENTHONG_KEYS"] == "airflow"


def test_an_unset_secret_is_refused_by_name():
    with pytest.raises(ValueError, match="AIRFLOW_DB_PASSWORD: set AIRFLOW_DB_PASSWORD in .env"):
        topology.interpolate("postgresql://airflow:${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}@x", {})
    assert topology.interpolate("${AIRFLOW_USERS:-admin:admin}", {}) == "admin:admin"


# -- the cluster, for real -------------------------------------------------------------------------------------------


class Running:
    """The cluster under test: its metadata database, its population database, and its commands."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        values = topology.cluster_values(cluster.root)
        address = host_address(SERVICES)
        self.airflow_db = create_engine(
            f"postgresql+psycopg://airflow:{values['AIRFLOW_DB_PASSWORD']}@{address}:5432/airflow"
        )
        self.population = create_engine(
            f"postgresql+psycopg://lienthong:{values['LIENTHONG_DB_PASSWORD']}@{address}:5432/lienthong"
        )

    def command(self, *arguments: str) -> str:
        """A command on the control host, as an operator runs one there (``airflow …``, ``lienthong …``)."""
        program = str(Path(sys.executable).with_name(arguments[0]))
        env = self.cluster.control_environment("airflow-scheduler")
        done = subprocess.run(on_host(CONTROL, program, *arguments[1:]), env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(arguments)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        return done.stdout

    def query(self, sql: str, **params) -> list:
        with self.airflow_db.connect() as connection:
            return list(connection.execute(text(sql), params))

    def trigger(self, dag_id: str) -> str:
        run_id = f"test__{dag_id}__{time.time_ns()}"
        self.command("airflow", "dags", "trigger", dag_id, "--run-id", run_id)
        return run_id

    def finished(self, dag_id: str, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
            if rows and rows[0][0] in ("success", "failed"):
                return rows[0][0]
            time.sleep(2)
        raise AssertionError(f"{dag_id} {run_id} did not finish within {timeout:.0f} s: {self.tasks(dag_id, run_id)}")

    def tasks(self, dag_id: str, run_id: str) -> list:
        columns = "task_id, map_index, state, hostname, try_number"
        return self.query(f"SELECT {columns} FROM task_instance WHERE dag_id = :d AND run_id = :r "
                          "ORDER BY task_id, map_index", d=dag_id, r=run_id)  # fmt: skip

    def hosts(self, dag_id: str, run_id: str) -> set[str]:
        """The workers a run's tasks ran on, in every try: a retried task's earlier tries are in its history."""
        rows = self.query("SELECT hostname FROM task_instance WHERE dag_id = :d AND run_id = :r UNION "
                          "SELECT hostname FROM task_instance_history WHERE dag_id = :d AND run_id = :r",
                          d=dag_id, r=run_id)  # fmt: skip
        return {hostname for (hostname,) in rows if hostname}

    def close(self) -> None:
        self.airflow_db.dispose()
        self.population.dispose()


@pytest.fixture
def running():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the cluster test makes network namespaces: run it as root with iproute2", pytrace=False)
    root = Path(tempfile.mkdtemp(prefix="lienthong-cluster-"))  # under /tmp: the postgres user reaches it
    cluster = topology.up(root, workers=2, citizens=CITIZENS)
    world = Running(cluster)
    try:
        yield world
    finally:
        world.close()
        topology.down(root)
        shutil.rmtree(root, ignore_errors=True)
        assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                    if ns.startswith("lt-")]  # fmt: skip


def _receipts(running: Running, agreement: str) -> list:
    with running.population.connect() as connection:
        query = text("SELECT package_id FROM ledger_entry WHERE kind = 'receipt_received' AND agreement = :a")
        return list(connection.execute(query, {"a": agreement}))


def deliver_changes(running: Running, seed: int, fault=None) -> None:
    """Commit life events; every outbound feed's run they start succeeds (``fault(running)`` is called once the
    runs are under way), and each feed that had changes to send is at the change log's head."""
    started = running.query("SELECT now()")[0][0]
    running.command("lienthong", "population", "events", "--count", "60", "--seed", str(seed))
    outbound = [dag for (dag,) in running.query("SELECT dag_id FROM dag WHERE dag_id LIKE '%.outbound'")]
    assert len(outbound) >= 4
    with running.population.connect() as connection:
        head = connection.execute(text("SELECT max(sequence) FROM change_log")).scalar()
    deadline, runs = time.monotonic() + 600, {}
    while time.monotonic() < deadline:
        runs = {dag: state for dag, state in running.query(
            "SELECT DISTINCT ON (dag_id) dag_id, state FROM dag_run WHERE dag_id LIKE '%.outbound' "
            "AND queued_at > :t ORDER BY dag_id, queued_at DESC", t=started)}  # fmt: skip
        if fault is not None and runs:
            fault(running)
            fault = None
        if len(runs) == len(outbound) and all(state in ("success", "failed") for state in runs.values()):
            break
        time.sleep(1)
    assert runs == dict.fromkeys(outbound, "success")
    with running.population.connect() as connection:
        heads = dict(connection.execute(text("SELECT agreement, last_change_sequence FROM feed_checkpoint")).all())
    sent = {dag.removesuffix(".outbound") for dag, in running.query(
        "SELECT dag_id FROM task_instance WHERE dag_id LIKE '%.outbound' AND task_id = 'extract' "
        "AND state = 'success' AND start_date > :t", t=started)}  # fmt: skip
    assert sent and all(heads[agreement] == head for agreement in sent), (head, heads, sent)  # the checkpoints moved
    exactly_once(running)


def exactly_once(running: Running) -> None:
    """Each package the population sent is held by its partner once, with each of its records once, and its
    receipt recorded once: nothing lost, nothing twice."""
    with running.population.connect() as connection:
        columns = "agreement, sequence, package_id, record_count"
        sent = set(connection.execute(text(f"SELECT {columns} FROM ledger_entry WHERE kind = 'package_sent'")))
        receipts = list(connection.execute(text("SELECT package_id FROM ledger_entry WHERE kind = 'receipt_received'")))
    assert len(receipts) == len(set(receipts)) == len(sent)
    endpoints = json.loads((running.cluster.root / "partners" / "endpoints.json").read_text("utf-8"))
    held = set()
    for info in endpoints["partners"].values():
        store = create_engine(f"sqlite:///{info['store']}")
        with store.connect() as connection:
            rows = connection.execute(text(
                "SELECT p.agreement, p.sequence, p.package_id, p.record_count, count(r.id), "
                "count(DISTINCT r.personal_id) FROM partner_package p LEFT JOIN partner_record r "
                "ON r.package_id = p.package_id WHERE p.sender = 'population' "
                "GROUP BY p.package_id")).all()  # fmt: skip
        store.dispose()
        for agreement, sequence, package_id, count, records, people in rows:
            assert count == records == people, (agreement, sequence, count, records, people)
            held.add((agreement, sequence, package_id, count))
    assert held == sent


@pytest.mark.slow
@pytest.mark.cluster
def test_the_cluster_delivers_to_every_partner_and_survives_its_faults_then_its_benchmark_runs(running):
    """One test, phase after phase: there is one cluster per machine (its hosts' names are fixed), and tests of one
    module may land on both xdist workers. Each phase asserts that nothing was lost or sent twice."""
    # an incremental feed to every partner: life events committed in the population start them (the change log's
    # asset, watched in the triggerer), each task on whichever worker Celery hands it to
    deliver_changes(running, seed=7)
    a_worker_killed_mid_snapshot(running)
    redis_stopped_and_started_during_a_run(running)
    the_object_store_unreachable_for_30_seconds(running)
    # a life event's latency to every partner through the cluster, bounded (make bench-latency-cluster: the full run)
    latency = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_latency.py"), "--cluster",
                              str(running.cluster.root), "--events", "2", "--burst", "20", "--gap", "1"],
                             capture_output=True, text=True, timeout=900)  # fmt: skip
    assert latency.returncode == 0, latency.stderr[-3000:]
    figures = json.loads(latency.stdout.strip().splitlines()[-1])
    assert figures["executor"] == "CeleryExecutor" and figures["latency"] and figures["burst_result"]["per_agreement"]
    exactly_once(running)
    # the cluster down (its namespaces gone), the benchmark's bounded run brings its own up, runs and takes it down
    running.close()
    topology.down(running.cluster.root)
    assert not [ns for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
                if ns.startswith("lt-")]  # fmt: skip
    bench = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_cluster.py"), "--citizens", "300",
                            "--concurrency", "4"], capture_output=True, text=True, timeout=1200, cwd=ROOT)  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]
    figures = json.loads(bench.stdout.strip().splitlines()[-1])
    assert (
        figures["one_worker"]["state"] == figures["two_workers"]["state"] == figures["dag_test"]["state"] == "success"
    )
    assert figures["one_worker_vs_dag_test"] > 0 and figures["model_hours"]["four machines"]


def _staged_provinces(cluster: Cluster, host: str) -> list[Path]:
    """The provinces' files a worker has staged so far, in its private folder."""
    staging = cluster.private(int(host.removeprefix("worker-"))) / "staging" / "land-owners"
    return [path for path in staging.glob("full-*/*") if path.suffix not in (".partial", ".subjects")]


def a_worker_killed_mid_snapshot(running: Running) -> None:

    # the 100,000-citizen snapshot to the land partner; a worker killed (SIGKILL: its host gone) while its share
    # of the provinces is validated (a province staged already, others not)
    run_id = running.trigger("land-owners.snapshot")
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:
        busy = running.query("SELECT hostname FROM task_instance WHERE dag_id = 'land-owners.snapshot' AND run_id = :r "
                             "AND task_id = 'validate_provinces' AND state = 'running'", r=run_id)  # fmt: skip
        staged = [host for (host,) in busy if _staged_provinces(running.cluster, host)]
        if staged:
            victim = staged[0]
        time.sleep(0.5)
    assert victim in ("worker-1", "worker-2")
    running.cluster.stop(victim, signal.SIGKILL)
    assert running.finished("land-owners.snapshot", run_id, timeout=900) == "success", running.tasks(
        "land-owners.snapshot", run_id
    )
    tasks = running.tasks("land-owners.snapshot", run_id)
    assert running.hosts("land-owners.snapshot", run_id) == {"worker-1", "worker-2"}
    retried = [row for row in tasks if row[4] > 1]
    assert retried, "a task of the killed worker was retried"
    survivor = ({"worker-1", "worker-2"} - {victim}).pop()
    assert all(row[3] == survivor for row in retried)
    # the wait for the SFTP receipt was the triggerer's, on its first try (the trigger has the partner's connection)
    assert [row[4] for row in tasks if row[0] == "wait_for_receipt"] == [1]

    # every receipt verified and recorded once, the ledger intact, the land partner holds each record once
    assert running.command("lienthong", "ledger", "verify")
    snapshot = running.query("SELECT value FROM xcom WHERE dag_id = 'land-owners.snapshot' AND run_id = :r "
                             "AND task_id = 'package' AND key = 'return_value'", r=run_id)  # fmt: skip
    sealed = json.loads(snapshot[0][0]) if isinstance(snapshot[0][0], str) else snapshot[0][0]
    assert sealed["record_count"] > 50_000
    receipts = _receipts(running, "land-owners")
    assert len(receipts) == len({r[0] for r in receipts}) and sealed["package_id"] in {r[0] for r in receipts}
    endpoints = json.loads((running.cluster.root / "partners" / "endpoints.json").read_text("utf-8"))
    land_store = create_engine(f"sqlite:///{endpoints['partners']['land']['store']}")
    with land_store.connect() as connection:
        query = text("SELECT count(*), count(DISTINCT personal_id) FROM partner_record WHERE package_id = :p")
        held = connection.execute(query, {"p": sealed["package_id"]}).one()
    land_store.dispose()
    assert held[0] == held[1] == sealed["record_count"]
    exactly_once(running)
    running.cluster.start_worker(int(victim.removeprefix("worker-")))  # the host back, for the phases after this one


def redis_stopped_and_started_during_a_run(running: Running) -> None:
    """The broker goes down while the feeds run (its queue is kept on disk); the workers and the scheduler reconnect."""

    def restart_redis(running: Running) -> None:
        running.cluster.stop("redis")
        time.sleep(5)
        topology.start_redis(running.cluster)

    deliver_changes(running, seed=8, fault=restart_redis)


def the_object_store_unreachable_for_30_seconds(running: Running) -> None:
    """The object store's host is cut off the network for 30 s while the feeds run: a step that hands on its files
    fails and its task is retried, a sealed package's publication waits for the store (its sequence is spent), and
    nothing is lost or sent twice."""
    link, since = topology.outside_link(topology.OBJECTS), running.query("SELECT now()")[0][0]

    def cut(running: Running) -> None:
        subprocess.run(["ip", "link", "set", link, "down"], check=True)
        time.sleep(30)
        subprocess.run(["ip", "link", "set", link, "up"], check=True)

    deliver_changes(running, seed=9, fault=cut)
    waited = "try_number > 1 OR end_date - start_date > interval '20 seconds'"
    felt = running.query("SELECT count(*) FROM task_instance WHERE dag_id LIKE '%.outbound' AND start_date > :t "
                         f"AND ({waited})", t=since)[0][0]  # fmt: skip
    assert felt >= 1  # a task retried, or waited out the outage
