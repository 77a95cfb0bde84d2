"""Run the exchange DAGs through Airflow, for the demo and the tests: ``python -m lienthong.airflow_runner DAG_ID ...``.

Each DAG runs with ``dag.test()``: a real DAG run in Airflow's metadata database, its tasks executed one by one in
this process, deferred tasks' triggers run in line. The Airflow home (``<var>/airflow``, a SQLite metadata
database) is prepared first: migrated, and a pool per partner made from the agreements. One JSON line per DAG run
(dag id, state, seconds, each task's state) is appended to ``--results``.

Airflow reads its configuration when it is first imported, so ``airflow_environment`` must be in the environment
before that: this module is meant to run as its own process (``run_dags`` starts it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def airflow_environment(var: Path) -> dict[str, str]:
    """The environment that points Airflow at this project's DAGs and plugin, with its home under ``var``."""
    home = Path(var).resolve() / "airflow"
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        # The plugin comes by its entry point (airflow.plugins in pyproject.toml): the source's plugins/ as the
        # plugins folder too would register it twice ("Plugin 'lienthong' already registered", an import error).
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "AIRFLOW__API__HOST": "127.0.0.1",  # the web UI and API on loopback only
        "AIRFLOW__API__BASE_URL": "http://127.0.0.1:8080",
        "LIENTHONG_VAR_DIR": str(Path(var).resolve()),
    }


def prepare_airflow() -> None:
    """Migrate the metadata database and make each partner's pool (in this process's Airflow home)."""
    from airflow.models.pool import Pool
    from airflow.utils.db import initdb

    from exchange.agreements import load_agreements
    from feeds import tasks as feeds

    initdb()
    slots: dict[str, int] = {}
    for agreement in load_agreements().values():
        slots[agreement.partner] = max(slots.get(agreement.partner, 0), agreement.pool_slots)
    for partner, count in sorted(slots.items()):
        description = f"Concurrent tasks against the {partner} partner"
        Pool.create_or_update_pool(feeds.partner_pool(partner), count, description, include_deferred=False)


def run(dag_ids: list[str], results: Path, conf: dict | None = None) -> int:
    """Run each DAG once with ``dag.test()``; returns the number of runs that did not succeed."""
    from airflow.dag_processing.dagbag import DagBag

    prepare_airflow()
    bag = DagBag(str(PROJECT_ROOT / "dags"))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {bag.import_errors}")
    failed = 0
    for dag_id in dag_ids:
        if dag_id not in bag.dags:
            raise SystemExit(f"no DAG {dag_id!r}; there are: {', '.join(sorted(bag.dag_ids))}")
        started = time.monotonic()
        dag_run = bag.dags[dag_id].test(run_conf=conf)
        tasks: dict[str, str] = {}
        for instance in dag_run.get_task_instances():
            key = instance.task_id if instance.map_index < 0 else f"{instance.task_id}[{instance.map_index}]"
            tasks[key] = str(instance.state)
        state = str(dag_run.state)
        failed += state != "success"
        line = {"dag_id": dag_id, "state": state, "seconds": round(time.monotonic() - started, 1), "tasks": tasks}
        with results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line) + "\n")
    return failed


def run_dags(
    dag_ids: list[str],
    var: Path,
    *,
    log: Path,
    results: Path,
    env: dict[str, str] | None = None,
    conf: dict | None = None,
) -> subprocess.Popen:
    """Start ``python -m lienthong.airflow_runner`` for these DAGs in its own process (Airflow configured for ``var``),
    its output to ``log``; poll ``results`` for a JSON line per finished DAG run."""
    environment = {**os.environ, **(env or {}), **airflow_environment(var)}
    command = [sys.executable, "-m", "lienthong.airflow_runner", "--results", str(results), *dag_ids]
    if conf:
        command += ["--conf", json.dumps(conf)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT,
                                cwd=os.getcwd())  # fmt: skip


def read_results(results: Path) -> list[dict]:
    if not results.exists():
        return []
    return [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dag_ids", nargs="*", help="none: only prepare Airflow's home (database, pools)")
    parser.add_argument("--results", type=Path, default=Path(os.devnull))
    parser.add_argument("--conf", type=json.loads, default=None, help="run configuration (JSON)")
    arguments = parser.parse_args()
    if "AIRFLOW_HOME" not in os.environ:
        raise SystemExit("set the Airflow environment first (lienthong.airflow_runner.airflow_environment)")
    if not arguments.dag_ids:
        prepare_airflow()
        return
    sys.exit(1 if run(arguments.dag_ids, arguments.results, arguments.conf) else 0)


if __name__ == "__main__":
    main()
