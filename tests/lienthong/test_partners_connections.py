"""``make airflow``'s preparation step hands the sandbox's connections to Airflow's metadata database, where the UI
can edit them, and never as ``AIRFLOW_CONN_…`` variables: an exported connection wins, an edited one is kept across
restarts, and each connection's line says which one Airflow uses and where it comes from. Real Airflow, each step
in its own process (Airflow reads its configuration when it is imported)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lienthong.airflow_runner import SANDBOX_CONNECTIONS_ENV, airflow_environment, sandbox_connections_apart
from tests.partners.fixtures import *  # noqa: F403 - the sandbox and its PKI

HEALTH = "lienthong_health"


def in_airflow(var, code: str | None = None, *, offered: dict | None = None, **extra_env: str) -> str:
    """Run the preparation step (``code`` None) or a bit of Python in an Airflow process homed in ``var``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LIENTHONG_SANDBOX"))}
    env |= airflow_environment(var) | extra_env
    if offered is not None:
        env[SANDBOX_CONNECTIONS_ENV] = json.dumps(offered)
    command = [sys.executable, "-m", "lienthong.airflow_runner"] if code is None else [sys.executable, "-c", code]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def lines_by_connection(output: str) -> dict[str, str]:
    found = [line.split(": ", 1) for line in output.splitlines() if line.startswith("connection ")]
    return {name.removeprefix("connection "): where for name, where in found}


def stored(var, conn_id: str) -> dict:
    code = (
        "import json; from airflow.models.connection import Connection; from airflow.utils.session import "
        "create_session; from sqlalchemy import select\n"
        "with create_session() as s:\n"
        f"    c = s.scalar(select(Connection).where(Connection.conn_id == {conn_id!r}))\n"
        "    print(json.dumps({'host': c.host, 'port': c.port}))"
    )
    return json.loads(in_airflow(var, code).splitlines()[-1])


def edit_in_database(var, conn_id: str, host: str) -> None:
    """What an edit in the UI does: the row in the metadata database changes."""
    in_airflow(
        var,
        "from airflow.models.connection import Connection; from airflow.utils.session import "
        "create_session; from sqlalchemy import select\n"
        "with create_session() as s:\n"
        f"    s.scalar(select(Connection).where(Connection.conn_id == {conn_id!r})).host = {host!r}",
    )


def test_the_sandbox_environment_is_split_so_no_component_gets_its_connections(sandbox):
    rest, handed = sandbox_connections_apart(sandbox.connection_environment() | {"LIENTHONG_DB_URL": "sqlite://"})
    assert rest == {"LIENTHONG_DB_URL": "sqlite://"}
    assert json.loads(handed[SANDBOX_CONNECTIONS_ENV]) == sandbox.connections()


@pytest.mark.slow
def test_the_sandbox_connections_go_to_the_database_and_yield_to_the_engineers(tmp_path, sandbox):
    var, offered = tmp_path / "var", sandbox.connections()
    first = lines_by_connection(in_airflow(var, offered=offered))
    assert set(first) == set(offered)
    assert all(line == "the metadata database, the sandbox's, written now" for line in first.values()), first
    # lienthong partners test finds it there too (make airflow's home under --var), and the partner answers
    lienthong = Path(sys.executable).with_name("lienthong")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        [str(lienthong), "partners", "test", "tax-identity", "--var", str(var)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.startswith("ok: tax-identity"), done.stdout + done.stderr
    edit_in_database(var, HEALTH, "health.edited.example")

    # make airflow again: the sandbox listens elsewhere now; the edited connection stays, the others follow it
    moved = {conn_id: document | {"port": document["port"] + 1} for conn_id, document in offered.items()}
    second = lines_by_connection(in_airflow(var, offered=moved))
    assert second[HEALTH] == "the metadata database, kept as edited there (the sandbox's is not written)"
    others = {line for conn_id, line in second.items() if conn_id != HEALTH}
    assert others == {"the metadata database, the sandbox's, updated to where it listens now"}
    assert stored(var, HEALTH)["host"] == "health.edited.example"
    tax = next(conn_id for conn_id, document in offered.items() if document["conn_type"] == "lienthong_soap")
    assert stored(var, tax)["port"] == moved[tax]["port"]

    # an exported AIRFLOW_CONN_LIENTHONG_HEALTH wins, as Airflow's own lookup says (the hooks' get_connection)
    exported = {"AIRFLOW_CONN_LIENTHONG_HEALTH": json.dumps(offered[HEALTH] | {"host": "health.exported.example"})}
    third = lines_by_connection(in_airflow(var, offered=moved, **exported))
    assert third[HEALTH] == (
        "the environment (AIRFLOW_CONN_LIENTHONG_HEALTH); the sandbox's, in the metadata database, is not used"
    )
    looked_up = "from airflow.sdk import BaseHook; print(BaseHook.get_connection('lienthong_health').host)"
    server = {"_AIRFLOW_PROCESS_CONTEXT": "server"}  # as in the API server and scheduler: the database is read too
    assert in_airflow(var, looked_up, **exported, **server).splitlines()[-1] == "health.exported.example"
    assert in_airflow(var, looked_up, **server).splitlines()[-1] == "health.edited.example"


@pytest.mark.slow
def test_make_airflow_enables_the_connection_forms_test_button(tmp_path):
    asked = "from airflow.configuration import conf; print(conf.get('core', 'test_connection'))"
    assert in_airflow(tmp_path / "var", asked).splitlines()[-1] == "Enabled"
