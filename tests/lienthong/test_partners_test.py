"""``lienthong partners test AGREEMENT``: the agreement's connection looked up as the hooks look it up, and the hook's
``test_connection`` run against the real sandbox partners (REST over OAuth2, REST over mutual TLS, SOAP, SFTP), one
``ok:`` or ``failed:`` line, exit status 1 on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.partners.fixtures import *  # noqa: F403 - the sandbox and its PKI

LIENTHONG = Path(sys.executable).with_name("lienthong")


def partners_test(agreement: str, var: Path, connections: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | connections
    command = [str(LIENTHONG), "partners", "test", agreement, "--var", str(var)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("agreement", "reached"),
    [
        ("health-identity", "reached https://127.0.0.1:"),
        ("business-people", "reached https://127.0.0.1:"),
        ("tax-identity", "answered Ping"),
        ("land-owners", "file(s) in "),
    ],
)
def test_each_sandbox_partner_answers_its_agreements_connection_test(partners, tmp_path, agreement, reached):
    done = partners_test(agreement, tmp_path, partners.connection_environment())
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = done.stdout.splitlines()  # nothing else: the hooks' progress lines are not shown
    assert line.startswith(f"ok: {agreement} (") and reached in line, line


@pytest.mark.slow
def test_a_stopped_partner_fails_the_test_with_the_reason(partners, tmp_path):
    partners.partners["health"].stop()  # started again by the fixture
    done = partners_test("health-identity", tmp_path, partners.connection_environment())
    assert done.returncode == 1
    [line] = done.stdout.splitlines()
    assert line.startswith("failed: health-identity (rest, connection lienthong_health): "), line


@pytest.mark.slow
def test_an_agreement_without_a_connection_fails_naming_the_connection(tmp_path):
    done = partners_test("tax-identity", tmp_path, {})
    assert done.returncode == 1
    assert done.stdout.strip() == (
        "failed: tax-identity (soap, connection lienthong_tax): "
        "AirflowNotFoundException: The conn_id `lienthong_tax` isn't defined"
    )


def test_an_unknown_agreement_is_refused_naming_the_known_ones(tmp_path):
    done = partners_test("health-everything", tmp_path, {})
    assert done.returncode == 1
    assert done.stderr.startswith("error: no agreement 'health-everything'; there are: ")
    assert "health-identity" in done.stderr
