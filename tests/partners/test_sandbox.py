"""The sandbox as integration engineers use it: endpoints.json, connections, the admin endpoint, the command."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import jsonschema
import pytest

from connectors.rest import RestHook
from exchange.agreements import load_agreements
from exchange.documents import dataset_schema_path
from exchange.package import verify_package
from partners.intake import read_records
from tests.partners.fixtures import PASSWORD, wait_for


def test_endpoints_json_says_where_each_partner_is_and_holds_no_secret(partners):
    text = (partners.state_dir / "endpoints.json").read_text()
    endpoints = json.loads(text)
    assert endpoints["format"] == "lienthong-partners/1"
    assert set(endpoints["partners"]) == {"health", "tax", "land", "business"}
    assert Path(endpoints["ca_file"]).is_file()
    assert endpoints["partners"]["land"]["host_key"].startswith("ssh-ed25519 ")
    assert endpoints["partners"]["health"]["token_url"].startswith("https://127.0.0.1:")
    secrets = [partners.credentials["health"]["client_secret"], partners.credentials["tax"]["password"],
               PASSWORD.decode()]  # fmt: skip
    assert not any(secret in text for secret in secrets)


def test_the_files_holding_secrets_are_private(partners):
    for name in ("credentials.json", "connections.env", "admin-token"):
        assert stat.S_IMODE((partners.state_dir / name).stat().st_mode) == 0o600, name


def test_connections_env_defines_one_airflow_connection_per_partner(partners):
    lines = (partners.state_dir / "connections.env").read_text().splitlines()
    found = {}
    for line in lines:
        name, _, value = line.partition("=")
        found[name] = json.loads(shlex.split(value)[0])
    assert found["AIRFLOW_CONN_LIENTHONG_HEALTH"]["conn_type"] == "lienthong_rest"
    assert found["AIRFLOW_CONN_LIENTHONG_TAX"]["conn_type"] == "lienthong_soap"
    assert found["AIRFLOW_CONN_LIENTHONG_LAND"]["conn_type"] == "lienthong_sftp"
    assert found["AIRFLOW_CONN_LIENTHONG_BUSINESS"]["extra"]["client_cert"]


def test_the_admin_endpoint_sets_faults_and_stops_and_starts_partners(partners):
    admin = json.loads((partners.state_dir / "endpoints.json").read_text())["admin"]
    token = Path(admin["token_file"]).read_text().strip()
    with httpx.Client(base_url=admin["url"], headers={"Authorization": f"Bearer {token}"}) as client:
        assert httpx.get(admin["url"] + "/faults").status_code == 401
        fault = {"kind": "status", "operation": "records", "status": 503, "times": 2}
        assert client.post("/faults/health", json={"faults": [fault]}).status_code == 200
        assert partners.partners["health"].faults.pending()[0]["times"] == 2
        assert client.post("/faults/health", json={"faults": [{"kind": "explode"}]}).status_code == 400
        # the body is read bounded and strictly, like every other body a server here takes
        assert client.post("/faults/health", content=b"[" * 70_000).status_code == 413
        twice = b'{"faults": [], "faults": [{"kind": "status"}]}'
        assert client.post("/faults/health", content=twice).status_code == 400
        assert client.post("/faults/health", content=b"[" * 60_000).status_code == 400
        assert client.delete("/faults/health").json() == {"pending": []}
        assert client.post("/partners/health/stop").json()["state"] == "stopped"
        hook = RestHook("lienthong_health")
        hook.sleep = lambda _s: client.post("/partners/health/start")
        assert hook.get_json("health")["status"] == "up"


def test_registries_hold_their_seeded_disagreements(partners):
    for name, partner in partners.partners.items():
        assert partner.store.all_people(), name
        assert {d.kind for d in partner.store.disagreements()} & {"missing", "name_differs", "dob_differs"}, name


@pytest.mark.parametrize("partner", ["health", "tax", "land", "business"])  # land: an XML batch per its XSD
def test_outbox_packages_carry_the_inbound_dataset_validation_expects(partners, partner, trust, population_key,
                                                                      tmp_path):  # fmt: skip
    registry = partners.partners[partner]
    (package,) = registry.outbox.glob("*.zip")
    verified = verify_package(package, trust, recipient=population_key, decrypt_to=tmp_path / "plain")
    manifest = verified.manifest
    assert (manifest.sender, manifest.recipient, manifest.direction) == (partner, "population", "inbound")
    schema = json.loads(dataset_schema_path(manifest.schema.name, int(manifest.schema.version)).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    records = read_records(package, manifest, tmp_path / "plain")
    assert len(records) == manifest.record_count == len(registry.store.all_people())
    fields = load_agreements()[manifest.agreement].directions["inbound"].fields
    assert all(set(fields) <= set(record) for record in records)  # every field the agreement takes in
    for record in records:
        validator.validate({key: value for key, value in record.items() if value != ""})


@pytest.mark.slow
def test_the_serve_command_runs_the_partners_until_interrupted(sandbox_pki, tmp_path):
    """``lienthong partners serve`` in its own process, a fault set through ``lienthong partners fault``."""
    lienthong = [str(Path(sys.executable).with_name("lienthong"))]
    environment = dict(os.environ, LIENTHONG_KEY_PASSWORD=PASSWORD.decode())
    state = tmp_path / "state"
    command = [*lienthong, "partners", "serve", "--state-dir", str(state), "--pki", str(sandbox_pki.path),
               "--db", f"sqlite:///{tmp_path / 'empty.db'}", "--citizens", "60", "--only", "health,land"]  # fmt: skip
    server = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        endpoints = state / "endpoints.json"
        wait_for(lambda: endpoints.exists() or server.poll() is not None, "the partners to start", 120)
        assert server.poll() is None, server.stdout.read()
        assert set(json.loads(endpoints.read_text())["partners"]) == {"health", "land"}
        fault = [*lienthong, "partners", "fault", "health", "--kind", "status", "--status", "429", "--state-dir",
                 str(state)]  # fmt: skip
        assert "1 fault(s) pending" in subprocess.run(fault, env=environment, capture_output=True, text=True,
                                                      check=True).stdout  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "health    rest  https://127.0.0.1:" in output and "stopped" in output
