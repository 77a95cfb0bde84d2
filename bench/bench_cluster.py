"""Benchmark (issue 16): the full snapshot to the land partner through the native cluster (``lienthong.cluster``:
docker-compose.yml's components, Celery workers each on a host of its own) with one worker and then two, and
through ``dag.test()`` in one process, all in the same run, on the same population and the same partners; then a
model of the national snapshot (100 million citizens) on one 16-core machine and on four.

The cluster is brought up once with a generated population (``--citizens``, default 1,000,000); the snapshot
runs with its first worker alone, then with both. Each worker runs ``--concurrency`` tasks at once (default 1: a
worker is one core's worth, so that the second worker adds capacity on this 2-core machine). ``dag.test()`` then
runs the same DAG in one process on the control host, the workers stopped, against the cluster's population
database and partners, with the workspace folder as its artifact store (the embedded default). Per step, the wall
time comes from the task instances; the CPU time of PostgreSQL, of the workers and of the partners from their
processes (``psutil``, children included).

    .venv/bin/python bench/bench_cluster.py                      # about 25 minutes on 2 cores
    .venv/bin/python bench/bench_cluster.py --citizens 100000    # a quick run

Prints its figures and, last, one JSON line. Root only (network namespaces).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAG = "land-owners.snapshot"
NATIONAL, CORES = 100_000_000, 16


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


def cpu_seconds(pid: int) -> float:
    """CPU time of a process tree: the live processes' own, and what their waited-for children used."""
    import psutil

    try:
        top = psutil.Process(pid)
        total = 0.0
        for process in [top, *top.children(recursive=True)]:
            with_children = process.cpu_times()
            total += with_children.user + with_children.system + with_children.children_user
            total += with_children.children_system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def postmaster(cluster) -> int:
    return int((cluster.postgres_data / "postmaster.pid").read_text().split()[0])


def usage(cluster) -> dict[str, float]:
    """CPU seconds so far of PostgreSQL, the workers, the partners and Airflow's control components."""
    figures = {"postgresql": cpu_seconds(postmaster(cluster)), "partners": cpu_seconds(cluster.processes["partners"])}
    figures["workers"] = sum(cpu_seconds(pid) for name, pid in cluster.processes.items() if name.startswith("worker-"))
    figures["airflow control"] = sum(cpu_seconds(pid) for name, pid in cluster.processes.items()
                                     if name.startswith("airflow-"))  # fmt: skip
    return figures


def steps(query, run_id: str) -> dict:
    rows = query("SELECT task_id, start_date, end_date FROM task_instance WHERE dag_id = :d AND run_id = :r "
                 "AND state = 'success'", d=DAG, r=run_id)  # fmt: skip
    by_task: dict[str, list] = {}
    for task_id, start, end in rows:
        by_task.setdefault(task_id, []).append((start, end))
    return {task: {"wall_s": round((max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds(), 2),
                   "task_s": round(sum((e - s).total_seconds() for s, e in spans), 2), "tasks": len(spans)}
            for task, spans in by_task.items()}  # fmt: skip


def timeline(query, run_id: str, started) -> list:
    """Each task's scheduled, queued, start and end times, in seconds from the run's start: where the waits are."""
    rows = query("SELECT task_id, map_index, scheduled_dttm, queued_dttm, start_date, end_date FROM task_instance "
                 "WHERE dag_id = :d AND run_id = :r ORDER BY start_date", d=DAG, r=run_id)  # fmt: skip

    def offset(moment):
        return None if moment is None else round((moment - started).total_seconds(), 2)

    return [[task, index, *(offset(moment) for moment in moments)] for task, index, *moments in rows]


def quiet(running, timeout: float = 600) -> None:
    """Wait until no DAG run is queued or running."""
    deadline = time.monotonic() + timeout
    while running.query("SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running')")[0][0]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"DAG runs still going after {timeout:.0f} s")
        time.sleep(2)


def through_cluster(running, label: str) -> dict:
    """One snapshot through the scheduler and the workers that are up."""
    from sqlalchemy import text

    cluster = running.cluster
    before = usage(cluster)
    run_id = running.trigger(DAG)
    state = running.finished(DAG, run_id, timeout=7200)
    if state != "success":
        raise RuntimeError(f"{label}: {DAG} {state}: {running.tasks(DAG, run_id)}")
    after = usage(cluster)
    (start, end), = running.query("SELECT start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r",
                                  d=DAG, r=run_id)  # fmt: skip
    sealed = running.query("SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND task_id = 'package' "
                           "AND key = 'return_value'", d=DAG, r=run_id)[0][0]  # fmt: skip
    sealed = json.loads(sealed) if isinstance(sealed, str) else sealed
    with running.population.connect() as connection:
        total = connection.execute(text("SELECT count(*) FROM citizen")).scalar()
    figures = {"state": state, "seconds": round((end - start).total_seconds(), 1), "citizens": total,
               "records": sealed["record_count"], "steps": steps(running.query, run_id),
               "timeline": timeline(running.query, run_id, start),
               "cpu_s": {name: round(after[name] - before[name], 1) for name in after}}  # fmt: skip
    log(f"  {label}: {DAG} {state} in {figures['seconds']} s; CPU {figures['cpu_s']}")
    return figures


def through_dag_test(cluster, root: Path) -> dict:
    """``dag.test()`` on the control host against the cluster's population and partners, its workers stopped: the
    DAG runs in this one process, with its own SQLite metadata database and the workspace as artifact store."""
    from lienthong import cluster as topology

    # the worker's settings (keys and partners' connections through the environment), without the cluster's
    # Airflow: airflow_runner makes its own home with SQLite under the workspace; the files stay in it
    dropped = ("AIRFLOW_HOME", "AIRFLOW__DATABASE", "AIRFLOW__CELERY", "AIRFLOW__CORE__EXECUTOR",
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "LIENTHONG_ARTIFACTS")  # fmt: skip
    env = {k: v for k, v in cluster.worker_environment().items() if not k.startswith(dropped)}
    env["LIENTHONG_VAR_DIR"] = str(root / "dag-test")
    results = root / "dag-test.jsonl"
    before = usage(cluster)
    started = time.perf_counter()
    command = [sys.executable, "-m", "lienthong.airflow_runner", "--results", str(results), DAG]
    subprocess.run(topology.on_host(topology.CONTROL, *command), env=env, check=True, cwd=ROOT)
    seconds = time.perf_counter() - started
    after = usage(cluster)
    run = json.loads(results.read_text().splitlines()[-1])
    log(f"  dag.test(): {DAG} {run['state']} in {seconds:.1f} s (run {run.get('seconds')} s)")
    return {"state": run["state"], "seconds": round(float(run.get("seconds") or seconds), 1),
            "process_seconds": round(seconds, 1),
            "cpu_s": {name: round(after[name] - before[name], 1) for name in ("postgresql", "partners")}}  # fmt: skip


def model(run: dict, citizens: int) -> dict:
    """The national snapshot from one run's measured seconds per citizen (the two-worker run: warm caches, as a
    service runs), in hours: on one machine of ``CORES`` cores everything shares them; on four, the workers spread
    over three machines' cores while PostgreSQL has the fourth, and the sealing task and the partner's intake stay
    one process each, as they do not spread."""
    scale = NATIONAL / citizens
    cpu, step = run["cpu_s"], run["steps"]
    validation = step["validate_provinces"]["task_s"] * scale  # the mapped tasks' seconds, one core each
    postgres = cpu["postgresql"] * scale  # the server's CPU while the snapshot ran: extraction, COPY, quarantine
    sealing = step["package"]["task_s"] * scale  # one task, one core: signing, encrypting, zipping
    intake = cpu["partners"] * scale  # the partner's own CPU: decrypt, parse, store (one process)
    one = {"validation and extraction": (validation + postgres) / CORES, "sealing": sealing, "partner intake": intake}
    four = {"validation": validation / (3 * CORES), "PostgreSQL extraction": postgres / CORES, "sealing": sealing,
            "partner intake": intake}  # fmt: skip
    return {
        "one machine": {k: round(v / 3600, 2) for k, v in one.items()},
        "four machines": {k: round(v / 3600, 2) for k, v in four.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--concurrency", type=int, default=1)
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lienthong-bench-cluster-"))  # under /tmp: the postgres user reaches it
    from lienthong import cluster as topology
    from tests.lienthong.test_cluster import Running

    log(f"cluster: {arguments.citizens:,} citizens, workers of concurrency {arguments.concurrency}")
    started = time.perf_counter()
    cluster = topology.up(root, workers=2, citizens=arguments.citizens, concurrency=arguments.concurrency)
    log(f"  up in {time.perf_counter() - started:.1f} s")
    running, measured = Running(cluster), False
    try:
        # the snapshot alone on the cluster: the runs the other DAGs' schedules started with the cluster over, then
        # those DAGs paused (a paused DAG's tasks are not queued, so they are paused only once their runs are done)
        quiet(running)
        running.command("airflow", "dags", "pause", "--treat-dag-id-as-regex", "--yes", rf"^(?!{DAG}$)")
        cluster.stop("worker-2")  # one worker first
        one = through_cluster(running, "one worker")
        cluster.start_worker(2)
        two = through_cluster(running, "two workers")
        cluster.stop("worker-1")
        cluster.stop("worker-2")
        baseline = through_dag_test(cluster, root)
        measured = True
    finally:
        running.close()
        topology.down(root)
        if measured:
            subprocess.run(["rm", "-rf", str(root)], check=False)
        else:
            log(f"the cluster's logs are kept in {root / 'logs'}")
    result = {"machine": machine(), "citizens": arguments.citizens, "concurrency": arguments.concurrency,
              "one_worker": one, "two_workers": two, "dag_test": baseline,
              "one_worker_vs_dag_test": round(one["seconds"] / baseline["seconds"], 2),
              "two_vs_one": round(two["seconds"] / one["seconds"], 2),
              "model_hours": model(two, two["citizens"])}  # fmt: skip
    log(
        f"one worker {one['seconds']} s, two {two['seconds']} s, dag.test() {baseline['seconds']} s: "
        f"{result['one_worker_vs_dag_test']}x dag.test(), two/one {result['two_vs_one']}"
    )
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
