"""Keys kept the way a data centre keeps them: with ``LIENTHONG_KEYS=airflow`` a worker that has no PKI folder gets
the population's keys and the PKI's certificates from Airflow's secrets backends only (here the environment's, as
``lienthong pki secrets`` prints them), signs and decrypts, and writes no key anywhere."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.keys import FileKeys, SecretKeys, keys_of, pki_secrets, platform_keys
from exchange.package import ENCRYPTED_SUFFIX, MANIFEST, SIGNATURE
from exchange.pki import ENCRYPTION, load_certificate
from lienthong import settings
from lienthong.cli import app
from population.db import create_population_engine
from tests.exchange.conftest import CITIZENS, PASSWORD, build

# The worker: seals a signed package encrypted for health, and decrypts a package health encrypted for the
# population, with nothing but what its environment gives it.
WORKER = """
import json, sys
from pathlib import Path
from exchange.keys import platform_keys
from exchange.package import PackageBuilder, SchemaRef, verify_package
from lienthong import settings
from population.db import create_population_engine

keys = platform_keys()
var = settings.var_dir()
engine = create_population_engine(settings.database_url())
with PackageBuilder(var / "packages", agreement="health-identity", recipient="health", signer=keys.signer(),
                    schema=SchemaRef("citizen-extract", "1"), encrypt_for=keys.certificate("health/encryption.pem")
                    ) as builder:
    builder.add_records("citizens.csv", json.loads(sys.argv[2]))
    sealed = builder.seal(engine)
received = verify_package(Path(sys.argv[1]), keys.trust(), recipient=keys.recipient(),
                          decrypt_to=var / "inbound" / "payload")
print(json.dumps({"keys": type(keys).__name__, "sealed": str(sealed.path),
                  "decrypted": [path.read_text() for path in received.decrypted]}))
"""


@pytest.fixture(scope="module")
def secrets(pki) -> dict[str, str]:
    return pki_secrets(pki.path)


def worker_environment(root: Path, secrets: dict[str, str], template: Path) -> dict[str, str]:
    """No PKI folder, an empty workspace of its own, the keys and certificates only as Airflow's secrets."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LIENTHONG_", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME"))
    }
    var = root / "worker-var"
    (var / "tmp").mkdir(parents=True)
    database = root / "database" / "population.db"
    database.parent.mkdir()
    shutil.copy(template, database)
    return (
        inherited
        | secrets
        | {
            "LIENTHONG_KEYS": "airflow",
            "LIENTHONG_PKI_DIR": str(root / "no-pki-here"),
            "LIENTHONG_VAR_DIR": str(var),
            "LIENTHONG_DB_URL": f"sqlite:///{database}",
            "LIENTHONG_KEY_PASSWORD": PASSWORD.decode(),
            "LIENTHONG_DISCLOSURE_KEY": os.environ["LIENTHONG_DISCLOSURE_KEY"],
            "AIRFLOW_HOME": str(var / "airflow"),  # whatever Airflow writes is searched for keys too
            "TMPDIR": str(var / "tmp"),
        }
    )


def test_a_worker_without_a_pki_folder_signs_and_decrypts(pki, secrets, health_signer, sqlite_template, tmp_path):
    sender = create_population_engine(f"sqlite:///{shutil.copy(sqlite_template, tmp_path / 'health.db')}")
    population = load_certificate(pki.certificate("population", ENCRYPTION))
    inbound = build(sender, tmp_path / "from-health", health_signer, sender="health", recipient="population",
                    encrypt_for=population)  # fmt: skip
    sender.dispose()
    environment = worker_environment(tmp_path, secrets, sqlite_template)

    ran = subprocess.run([sys.executable, "-c", WORKER, str(inbound.path), json.dumps(CITIZENS)], env=environment,
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout.splitlines()[-1])
    assert done["keys"] == "SecretKeys"
    assert not (tmp_path / "no-pki-here").exists()

    # (1) the sealed package's signature verifies with stock OpenSSL against the root CA
    sealed = Path(done["sealed"])
    checked = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(sealed / SIGNATURE),
         "-content", str(sealed / MANIFEST), "-CAfile", str(pki.root_ca), "-purpose", "any"],
        capture_output=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    encrypted = [path for path in sealed.rglob("*") if path.name.endswith(ENCRYPTED_SUFFIX)]
    assert encrypted, "the payload was encrypted for health"

    # (2) what health encrypted for the population is decrypted
    assert CITIZENS[0]["personal_id"] in "".join(done["decrypted"])

    # (3) no private key written anywhere in the worker's workspace (nor its database)
    written = [path for path in [*Path(environment["LIENTHONG_VAR_DIR"]).rglob("*"), tmp_path / "database"]
               if path.is_file()]  # fmt: skip
    assert written
    for path in written:
        data = path.read_bytes()
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                data += b"".join(archive.read(name) for name in archive.namelist())
        assert b"PRIVATE KEY" not in data, path

    # and the same worker told to use files has none to use
    files = subprocess.run([sys.executable, "-c", WORKER, str(inbound.path), "[]"], capture_output=True, text=True,
                           env=environment | {"LIENTHONG_KEYS": "files"}, cwd=tmp_path, timeout=120)  # fmt: skip
    assert files.returncode != 0 and "no-pki-here/population/signing.pem" in files.stderr


def test_the_secrets_hold_the_population_keys_only_and_every_certificate(pki, secrets):
    assert sorted(secrets) == [
        "AIRFLOW_CONN_LIENTHONG_KEY_POPULATION_ENCRYPTION",
        "AIRFLOW_CONN_LIENTHONG_KEY_POPULATION_SIGNING",
        "AIRFLOW_VAR_LIENTHONG_PKI_CERTIFICATES",
    ]
    certificates = json.loads(secrets["AIRFLOW_VAR_LIENTHONG_PKI_CERTIFICATES"])
    assert {"root-ca.pem", "issuing-ca.pem", "crl.pem", "health/encryption.pem", "population/signing.pem"} <= set(
        certificates
    )
    assert not any("PRIVATE KEY" in pem for pem in certificates.values())  # no CA key, no partner's key
    key = json.loads(secrets["AIRFLOW_CONN_LIENTHONG_KEY_POPULATION_SIGNING"])
    assert key["password"] == pki.key("population", "signing").read_text()  # still encrypted, as pki init wrote it
    assert "BEGIN ENCRYPTED PRIVATE KEY" in key["password"]


def test_pki_secrets_prints_lines_a_shell_reads_and_json(pki, secrets):
    runner = CliRunner()
    lines = runner.invoke(app, ["pki", "secrets", "--pki", str(pki.path)])
    assert lines.exit_code == 0, lines.output
    parsed = dict(shlex.split(line)[0].split("=", 1) for line in lines.output.splitlines())
    assert parsed == secrets
    as_json = runner.invoke(app, ["pki", "secrets", "--json", "--pki", str(pki.path)])
    assert json.loads(as_json.output) == secrets
    missing = runner.invoke(app, ["pki", "secrets", "--pki", str(pki.path / "nowhere")])
    assert missing.exit_code == 1 and "no PKI in" in missing.output


@pytest.fixture
def airflow_keys(secrets, monkeypatch) -> None:
    """This process as a worker with LIENTHONG_KEYS=airflow."""
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(settings.KEYS_ENV, "airflow")
    monkeypatch.setenv(settings.PASSWORD_ENV, PASSWORD.decode())


def test_the_same_keys_either_way(pki, airflow_keys):
    secret, files = platform_keys(), keys_of(pki)
    assert isinstance(secret, SecretKeys) and isinstance(files, FileKeys)
    assert secret.signer().certificate == files.signer().certificate
    assert secret.signer().chain == files.signer().chain
    assert secret.recipient().certificate == files.recipient().certificate
    assert secret.trust() == files.trust()
    assert secret.public_files() == files.public_files()


def test_a_missing_key_connection_is_named_on_one_line(airflow_keys, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_LIENTHONG_KEY_POPULATION_SIGNING")
    with pytest.raises(settings.KeysMissing) as caught:
        platform_keys().signer()
    message = str(caught.value)
    assert message == (
        "no signing key for population: the Airflow connection 'lienthong_key_population_signing' "
        "(LIENTHONG_KEYS=airflow) cannot be read (AirflowNotFoundException)"
    )
    assert platform_keys().recipient().certificate  # the other key is still there


def test_a_missing_certificate_or_variable_is_named(airflow_keys, monkeypatch):
    with pytest.raises(settings.KeysMissing, match=r"^no stranger/encryption\.pem: not in the Airflow Variable "):
        platform_keys().certificate("stranger/encryption.pem")  # an agreement naming a certificate not issued
    with pytest.raises(settings.KeysMissing, match="^no signing key for land: .* 'lienthong_key_land_signing'"):
        platform_keys().signer("land")  # a partner's key is never a worker's
    monkeypatch.delenv("AIRFLOW_VAR_LIENTHONG_PKI_CERTIFICATES")
    with pytest.raises(settings.KeysMissing) as caught:
        platform_keys().trust()
    assert str(caught.value).startswith("no certificates: the Airflow Variable 'lienthong_pki_certificates'")


def test_a_wrong_key_password_names_the_connection_not_the_key(airflow_keys, monkeypatch):
    monkeypatch.setenv(settings.PASSWORD_ENV, "not the password")
    with pytest.raises(ValueError) as caught:
        platform_keys().recipient()
    message = str(caught.value)
    assert "'lienthong_key_population_encryption'" in message and "wrong key password" in message
    assert "BEGIN" not in message and "\n" not in message


def test_an_unknown_keys_source_is_refused(monkeypatch):
    monkeypatch.setenv(settings.KEYS_ENV, "hsm")
    with pytest.raises(ValueError, match="LIENTHONG_KEYS must be files or airflow, not 'hsm'"):
        platform_keys()
