"""Run the exchange DAGs through Airflow, for the demo and the tests: ``python -m lienthong.airflow_runner DAG_ID ...``.

Each DAG runs with ``dag.test()``: a real DAG run in Airflow's metadata database, its tasks executed one by one in
this process, deferred tasks' triggers run in line. The Airflow home (``<var>/airflow``, a SQLite metadata
database) is prepared first: migrated, and a pool per partner made from the agreements. One JSON line per DAG run
(dag id, state, seconds, each task's state, the Assets its tasks had events for) is appended to ``--results``.

Airflow reads its configuration when it is first imported, so ``airflow_environment`` must be in the environment
before that: this module is meant to run as its own process (``run_dags`` starts it; without ``AIRFLOW_HOME`` it
takes ``airflow_environment`` of the workspace, ``LIENTHONG_VAR_DIR`` or ``var``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from lienthong.task_modules import TASK_MODULES

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
        # the exchange DAGs run as soon as they are parsed: a life event reaches the partners with no click
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connection form's Test button (disabled by default)
        # a task's supervisor looks at its process every second, not every 5 s: it notices a finished task at the
        # next look, and the feed's next run (one at a time) waited for it (docs/BENCHMARKS.md, issues 16 and 17)
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        # the LocalExecutor's workers, and so each task's process, forked from a process that imported what the
        # tasks import (lienthong.task_modules): a task starts without importing Great Expectations afresh
        "AIRFLOW__SCHEDULER__MP_START_METHOD": "forkserver",
        "AIRFLOW__SCHEDULER__MP_FORKSERVER_PRELOAD": ",".join(TASK_MODULES),
        # the DAG processor writes each DAG's "at max_active_runs" flag from the runs it counted as it began: when a
        # feed's run ends meanwhile, the flag stays set and the feed's next run waits for the next parse (Airflow
        # 3.3.2, apache/airflow#56050). Every 10 s rather than 30 bounds that wait (docs/BENCHMARKS.md, issue 17).
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
        "LIENTHONG_VAR_DIR": str(Path(var).resolve()),
    }


def prepare_airflow() -> None:
    """Migrate the metadata database and make each partner's pool (in this process's Airflow home)."""
    from airflow.utils.db import initdb

    from feeds import tasks as feeds

    initdb()
    feeds.make_partner_pools()  # as the plugin's listener makes them when a component of a real deployment starts


# -- the sandbox's connections ---------------------------------------------------------------------------------
# Handed to Airflow's metadata database, never as AIRFLOW_CONN_… variables of the components: Airflow looks in the
# environment (and a secrets backend) before the database, so an engineer's exported connection, or one edited in
# the UI, wins over the sandbox's.

SANDBOX_CONNECTIONS_ENV = "LIENTHONG_SANDBOX_CONNECTIONS"
"""The sandbox's connections, ``{conn_id: Airflow's JSON form}``, as the preparation step receives them."""
CONNECTION_PREFIX = "AIRFLOW_CONN_"
SANDBOX_RECORD = "sandbox-connections.json"
"""In Airflow's home: the fingerprint of each connection as the sandbox last wrote it (no secret in it)."""


def sandbox_connections_apart(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split the sandbox's environment into what Airflow's components get (no ``AIRFLOW_CONN_…``) and what the
    preparation step gets to write the connections into the metadata database (``SANDBOX_CONNECTIONS_ENV``)."""
    rest = {name: value for name, value in env.items() if not name.startswith(CONNECTION_PREFIX)}
    offered = {
        name.removeprefix(CONNECTION_PREFIX).lower(): json.loads(value)
        for name, value in env.items()
        if name.startswith(CONNECTION_PREFIX)
    }
    return rest, {SANDBOX_CONNECTIONS_ENV: json.dumps(offered)}


def _fingerprint(connection) -> str:
    fields = [
        connection.conn_type,
        connection.host,
        connection.port,
        connection.schema,
        connection.login,
        connection.password,
        connection.extra_dejson,
    ]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def _sandbox_connection(conn_id: str, document: Mapping):
    from airflow.models.connection import Connection

    extra = document.get("extra")
    return Connection(
        conn_id=conn_id,
        conn_type=document.get("conn_type"),
        host=document.get("host"),
        port=document.get("port"),
        schema=document.get("schema"),
        login=document.get("login"),
        password=document.get("password"),
        extra=json.dumps(extra) if extra else None,
        description="written by the Liên thông sandbox (make airflow); edit it and it is kept",
    )


def hand_over_connections(offered: Mapping[str, Mapping]) -> list[str]:
    """Write the sandbox's connections into the metadata database where none with that id is there yet, or where
    the one there is still what the sandbox wrote last time (its ports change on each start); a connection edited
    since (UI, CLI) is kept. Returns one line per connection: the one Airflow uses and where it comes from."""
    from airflow.configuration import ensure_secrets_loaded
    from airflow.models.connection import Connection
    from airflow.secrets.metastore import MetastoreBackend
    from airflow.utils.session import create_session
    from sqlalchemy import select

    record_file = Path(os.environ["AIRFLOW_HOME"]) / SANDBOX_RECORD
    written = json.loads(record_file.read_text(encoding="utf-8")) if record_file.exists() else {}
    states: dict[str, str] = {}
    with create_session() as session:
        for conn_id, document in sorted(offered.items()):
            found = session.scalar(select(Connection).where(Connection.conn_id == conn_id))
            fresh = _sandbox_connection(conn_id, document)
            if found is not None and _fingerprint(found) != written.get(conn_id):
                states[conn_id] = "kept as edited there (the sandbox's is not written)"
                continue
            if found is None:
                session.add(fresh)
                states[conn_id] = "the sandbox's, written now"
            elif _fingerprint(found) == _fingerprint(fresh):
                states[conn_id] = "the sandbox's"
            else:
                for field in ("conn_type", "host", "port", "schema", "login", "password", "extra"):
                    setattr(found, field, getattr(fresh, field))
                states[conn_id] = "the sandbox's, updated to where it listens now"
            written[conn_id] = _fingerprint(fresh)
    record_file.write_text(json.dumps(written, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lines = []
    for conn_id in sorted(offered):
        for backend in ensure_secrets_loaded():  # Airflow's own order: secrets backend, environment, database
            if backend.get_connection(conn_id) is None:
                continue
            if isinstance(backend, MetastoreBackend):
                lines.append(f"connection {conn_id}: the metadata database, {states[conn_id]}")
            elif type(backend).__name__ == "EnvironmentVariablesBackend":
                lines.append(
                    f"connection {conn_id}: the environment ({CONNECTION_PREFIX}{conn_id.upper()}); "
                    "the sandbox's, in the metadata database, is not used"
                )
            else:
                lines.append(
                    f"connection {conn_id}: the secrets backend {type(backend).__name__}; the sandbox's, "
                    "in the metadata database, is not used"
                )
            break
    return lines


def assets_announced(dag_run) -> list[str]:
    """The URIs of the Assets the run's tasks had events for, in order (through an alias too)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (select(AssetModel.uri).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
                 .where(AssetEvent.source_dag_id == dag_run.dag_id, AssetEvent.source_run_id == dag_run.run_id)
                 .order_by(AssetEvent.id))  # fmt: skip
        return list(session.scalars(query))


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
        line = {"dag_id": dag_id, "state": state, "seconds": round(time.monotonic() - started, 1), "tasks": tasks,
                "assets": assets_announced(dag_run)}  # fmt: skip
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
    if "AIRFLOW_HOME" not in os.environ:  # Airflow's home under the workspace, as make demo has it
        from lienthong.settings import var_dir

        os.environ.update(airflow_environment(var_dir()))
    if not arguments.dag_ids:
        prepare_airflow()
        if SANDBOX_CONNECTIONS_ENV in os.environ:
            for line in hand_over_connections(json.loads(os.environ[SANDBOX_CONNECTIONS_ENV])):
                print(line, flush=True)
        return
    sys.exit(1 if run(arguments.dag_ids, arguments.results, arguments.conf) else 0)


if __name__ == "__main__":
    main()
