"""The verification kit a ministry installs: built as a wheel, installed in a bare venv with its three
dependencies, and run as the partner runs it on packages the platform made."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from exchange.package import read_manifest
from exchange.receipt import verify_receipt
from exchange.signature import TrustAnchors
from tests.verify.conftest import ROOT, partner_files

pytestmark = pytest.mark.slow  # a wheel built and a venv installed once per session: ~20 s


def refused(result: subprocess.CompletedProcess, check: str) -> str:
    """The run failed with one line naming ``check``; returns that line."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lienthong-verify: {check}: "), result.stderr
    return lines[0]


def test_the_wheel_is_under_a_megabyte_and_ships_the_platforms_schemas_byte_for_byte(kit):
    assert kit.wheel.stat().st_size < 1 << 20
    with zipfile.ZipFile(kit.wheel) as wheel:
        shipped = {n.split("/schemas/", 1)[1]: wheel.read(n) for n in wheel.namelist() if "/schemas/" in n}
    platform = {f"{p.parent.name}/{p.name}": p.read_bytes() for folder in ("datasets", "xsd")
                for p in (ROOT / "schemas" / folder).iterdir()}  # fmt: skip
    assert shipped == platform


def test_the_kit_installs_without_airflow_great_expectations_or_a_database(kit):
    script = (
        "import importlib.util as u, json; import lienthong_verify.cli; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in "
        "['airflow', 'sqlalchemy', 'great_expectations', 'yaml', 'jsonschema', 'exchange', 'lienthong']}))"
    )
    found = json.loads(subprocess.check_output([kit.python, "-c", script], cwd=kit.venv, text=True))
    assert not any(found.values()), found
    for module in ("airflow", "sqlalchemy", "great_expectations"):
        failed = subprocess.run([kit.python, "-c", f"import {module}"], capture_output=True, text=True)
        assert failed.returncode == 1 and "ModuleNotFoundError" in failed.stderr


def test_a_partner_verifies_decrypts_validates_and_acknowledges_each_package_in_sequence(kit, sender, pki, tmp_path):
    files = partner_files(pki, "health")
    trust = ["--root", files["root"], "--crl", files["crl"]]
    last = tmp_path / "last-manifest.json"
    packages = [sender("citizen-extract.csv"), sender("citizen-extract.jsonl"), sender("citizen-extract.xml")]
    snapshot = sender("citizen-extract-p001.csv", "citizen-extract-p079.csv", mode="full")
    for built in [*packages, snapshot]:
        out = tmp_path / f"decrypted-{built.manifest.sequence}"
        result = kit.run("package", built.path, *trust, "--cert", files["cert"], "--key", files["key"], "--out", out,
                         "--validate", "--last", last, "--save-last")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "verified" in result.stdout and "payload follows the dataset schema" in result.stdout
        assert last.read_bytes() == (built.path / "manifest.json").read_bytes()
        decrypted = sorted(out.glob("data/*"))
        assert [p.name + ".p7m" for p in decrypted] == sorted(Path(f.path).name for f in built.manifest.files)
        validated = kit.run("validate", "--manifest", built.path / "manifest.json", *decrypted)
        assert validated.returncode == 0 and validated.stdout.count("3 records follow citizen-extract") == len(
            decrypted
        )
        receipt = tmp_path / f"receipt-{built.manifest.sequence}"
        signed = kit.run("receipt", "create", built.path, *trust, "--cert", files["signing"], "--key",
                         files["signing_key"], "--chain", files["chain"], "--out", receipt)  # fmt: skip
        assert signed.returncode == 0, signed.stderr
        checked = kit.run("receipt", "verify", receipt, "--package", built.path, *trust)
        assert checked.returncode == 0 and "accepted by health" in checked.stdout, checked.stderr
        # and the sender's platform takes it: the same contract on both sides
        manifest, manifest_sha256 = read_manifest(built.path)
        assert verify_receipt(receipt, TrustAnchors.from_pki(pki), manifest, manifest_sha256).receipt.record_count
    first_csv = (tmp_path / "decrypted-1" / "data" / "citizen-extract.csv").read_text(encoding="utf-8")
    assert ",2026-07-01T08:30:00+00:00\n" in first_csv  # updated_at: UTC with its offset, SQLite's as any


def test_each_refusal_is_one_named_line_and_a_failing_status(kit, sender, pki, tmp_path):
    health, tax, land = (partner_files(pki, agency) for agency in ("health", "tax", "land"))
    trust = ["--root", health["root"], "--crl", health["crl"]]
    first, second, third = (sender("citizen-extract.csv") for _ in range(3))
    last = tmp_path / "last-manifest.json"

    def check(built, *more):
        return kit.run("package", built.path, *trust, "--last", last, "--save-last", *more)

    assert check(first).returncode == 0
    refused(check(first), "sequence_replay")
    refused(check(third), "sequence_gap")
    refused(kit.run("package", second.path, *trust, "--cert", tax["cert"], "--key", tax["key"]), "recipient")
    as_land = ["--cert", land["signing"], "--key", land["signing_key"], "--chain", land["chain"]]
    line = refused(kit.run("receipt", "create", second.path, *trust, *as_land, "--out", tmp_path / "r"), "signer")
    assert "the package is for health" in line and not (tmp_path / "r").exists()
    payload = second.path / second.manifest.files[0].path
    payload.write_bytes(payload.read_bytes()[:-1] + bytes([payload.read_bytes()[-1] ^ 1]))
    refused(check(second), "file_hash")
    assert json.loads(last.read_text())["sequence"] == 1  # nothing refused moved the partner's sequence on


def test_a_payload_that_breaks_its_dataset_schema_is_named_without_its_values(kit, tmp_path):
    bad = tmp_path / "citizen-extract.csv"
    bad.write_text("personal_id,full_name,updated_at\r\n00120001234X,An,2026-07-01T08:30:00\r\n", encoding="utf-8")
    line = refused(kit.run("validate", "--dataset", "citizen-extract.v1", bad), "validate")
    assert "record 1: field personal_id: does not match the pattern" in line and "00120001234X" not in line
    bad.write_text("personal_id,full_name,updated_at\r\n001200012345,An,2026-07-01 08:30\r\n", encoding="utf-8")
    line = refused(kit.run("validate", "--dataset", "citizen-extract.v1", bad), "validate")
    assert "field updated_at: is not an ISO 8601 date-time" in line


def test_the_kit_publishes_its_schemas(kit, tmp_path):
    assert kit.run("schemas", "--out", tmp_path / "schemas").returncode == 0
    for folder in ("datasets", "xsd"):
        for path in (ROOT / "schemas" / folder).iterdir():
            assert (tmp_path / "schemas" / folder / path.name).read_bytes() == path.read_bytes()
