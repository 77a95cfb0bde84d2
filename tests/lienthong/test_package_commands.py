"""The `lienthong pki | package | receipt | ledger` commands, as an operator and a partner run them."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lienthong.cli import app
from lienthong.settings import PASSWORD_ENV
from tests.exchange.conftest import tamper_ledger

SECRET = "cli key password"


@pytest.fixture
def lienthong(tmp_path, sqlite_template, monkeypatch):
    """Run the command line in a working directory with its own database and key password."""
    shutil.copy(sqlite_template, tmp_path / "population.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIENTHONG_DB_URL", f"sqlite:///{tmp_path / 'population.db'}")
    monkeypatch.setenv(PASSWORD_ENV, SECRET)
    runner = CliRunner()

    def run(*args: str, succeed: bool = True):
        result = runner.invoke(app, [str(a) for a in args])
        assert (result.exit_code == 0) == succeed, (result.stdout, result.stderr)
        assert SECRET not in result.stdout + result.stderr
        return result

    run("pki", "init", "--out", "pki", "--rsa-bits", "2048")
    (tmp_path / "citizens.csv").write_text(
        "personal_id,full_name,date_of_birth\n001200012345,Nguyễn Thị Thuỷ,2000-01-02\n079085001234,Trần Văn Bé,\n",
        encoding="utf-8",
    )
    return run


def test_build_verify_receipt_and_ledger(lienthong, tmp_path):
    built = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                      "--input", "citizens.csv", "--out", "out", "--pki", "pki")  # fmt: skip
    package = built.stdout.strip()
    assert package == "out/health-identity-population-outbound-00000001"
    manifest = json.loads((tmp_path / package / "manifest.json").read_text())
    assert manifest["record_count"] == 2

    verified = lienthong("package", "verify", package, "--trust", "pki/root-ca.pem", "--record")
    assert verified.stdout.count("\n") == 1
    assert verified.stdout.startswith(f"package {manifest['package_id']} verified: health-identity #1")
    assert verified.stdout.strip().endswith("recorded as received")

    again = lienthong("package", "verify", package, "--trust", "pki/root-ca.pem", succeed=False)
    assert again.stderr.startswith("error: sequence_replay: package 1")

    receipt = lienthong("receipt", "create", package, "--signer", "health", "--out", "receipt", "--pki", "pki",
                        "--record").stdout.strip()  # fmt: skip
    assert receipt == "receipt"
    checked = lienthong("receipt", "verify", "receipt", "--package", package, "--trust", "pki/root-ca.pem", "--record")
    assert checked.stdout.startswith(f"receipt verified: package {manifest['package_id']} accepted by health")

    intact = lienthong("ledger", "verify")
    assert intact.stdout.startswith("ledger intact: 4 entries, head ")
    shown = lienthong("ledger", "show", "--limit", "10").stdout.splitlines()
    kinds = [line.split()[3] for line in shown]
    assert kinds == ["package_sent", "package_received", "receipt_sent", "receipt_received"]
    assert "health-identity #1 population→health 2 records accepted manifest" in shown[3]

    from population.db import create_population_engine

    engine = create_population_engine(f"sqlite:///{tmp_path / 'population.db'}")
    tamper_ledger(engine, "UPDATE ledger_entry SET record_count = 3 WHERE position = 2")
    engine.dispose()
    broken = lienthong("ledger", "verify", succeed=False)
    assert broken.stderr.startswith("error: ledger: entry 2 (package_received) does not match its hash")


def test_a_tampered_package_fails_with_the_check_named(lienthong, tmp_path):
    package = lienthong("package", "build", "--agreement", "tax-identity", "--recipient", "tax",
                        "--input", "citizens.csv", "--out", "out", "--pki", "pki").stdout.strip()  # fmt: skip
    payload = tmp_path / package / "data" / "citizens.csv"
    payload.write_bytes(payload.read_bytes().replace("Thuỷ".encode(), "Thủy".encode()))
    failed = lienthong("package", "verify", package, "--trust", "pki/root-ca.pem", succeed=False)
    assert failed.exit_code == 1
    assert failed.stderr.startswith("error: file_hash: data/citizens.csv")
    assert failed.stdout == ""


def test_a_population_package_built_by_hand_is_a_disclosure_indexed_for_the_citizens(lienthong):
    """Its records are indexed as a feed's are: the citizen's disclosures list it, with the fields it carried;
    it is refused under no agreement, or for another partner than the agreement's."""
    built = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                      "--input", "citizens.csv", "--out", "out", "--pki", "pki")  # fmt: skip
    manifest = json.loads((Path(built.stdout.strip()) / "manifest.json").read_text())
    document = json.loads(lienthong("disclosures", "001200012345", "--json").stdout)
    (entry,) = document["disclosures"]
    assert entry["package_id"] == manifest["package_id"] and entry["agreement"] == "health-identity"
    assert entry["fields"] == ["personal_id", "full_name", "date_of_birth"] and entry["records"] == 1
    assert entry["partner"] == "health" and entry["receipt"]["status"] is None
    unknown = lienthong("package", "build", "--agreement", "health-everything", "--recipient", "health",
                        "--input", "citizens.csv", "--out", "out", "--pki", "pki", succeed=False)  # fmt: skip
    assert unknown.stderr.startswith("error: --agreement: no agreement 'health-everything'")
    elsewhere = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "tax",
                          "--input", "citizens.csv", "--out", "out", "--pki", "pki", succeed=False)  # fmt: skip
    assert elsewhere.stderr.strip() == "error: --recipient tax: agreement 'health-identity' is with health"


def test_an_encrypted_zip_from_jsonl_is_verified_and_decrypted(lienthong, tmp_path):
    (tmp_path / "links.jsonl").write_text('{"personal_id": "001200012345", "tax_code": "8012345678"}\n\n')
    archive = lienthong("package", "build", "--agreement", "tax-links", "--recipient", "population",
                        "--sender", "tax", "--input", "links.jsonl", "--encrypt", "--zip", "--out", "out",
                        "--pki", "pki").stdout.strip()  # fmt: skip
    assert archive == "out/tax-links-tax-inbound-00000001.zip"
    verified = lienthong("package", "verify", archive, "--trust", "pki/root-ca.pem", "--key",
                         "pki/population/encryption.key.pem", "--cert", "pki/population/encryption.pem")  # fmt: skip
    assert "1 file(s) decrypted" in verified.stdout
    plain = tmp_path / "out" / "tax-links-tax-inbound-00000001.decrypted" / "data" / "links.jsonl"
    assert plain.read_text() == '{"personal_id":"001200012345","tax_code":"8012345678"}\n'


def test_a_revoked_signer_is_refused(lienthong):
    package = lienthong("package", "build", "--agreement", "land-owners", "--recipient", "land",
                        "--input", "citizens.csv", "--out", "out", "--pki", "pki").stdout.strip()  # fmt: skip
    revoked = lienthong("pki", "revoke", "pki/population/signing.pem", "--pki", "pki")
    assert revoked.stdout.startswith("revoked serial ")
    failed = lienthong("package", "verify", package, "--trust", "pki/root-ca.pem", "--no-sequence", succeed=False)
    assert failed.stderr.startswith("error: revoked: certificate 'Liên thông population signing'")


def test_verification_needs_a_crl(lienthong, tmp_path):
    package = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                        "--input", "citizens.csv", "--out", "out", "--pki", "pki").stdout.strip()  # fmt: skip
    (tmp_path / "partner").mkdir()
    shutil.copy(tmp_path / "pki" / "root-ca.pem", tmp_path / "partner" / "root-ca.pem")
    failed = lienthong("package", "verify", package, "--trust", "partner/root-ca.pem", succeed=False)
    assert failed.stderr.startswith("error: crl: no CRL from")
    lienthong("package", "verify", package, "--trust", "partner/root-ca.pem", "--crl", "pki/crl.pem")


def test_commands_that_need_keys_say_where_the_password_comes_from(lienthong, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV)
    failed = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                       "--input", "citizens.csv", "--out", "out", "--pki", "pki", succeed=False)  # fmt: skip
    assert "LIENTHONG_KEY_PASSWORD" in failed.stderr and "lienthong_keys" in failed.stderr
    again = lienthong("pki", "init", "--out", "pki", succeed=False)
    assert again.stderr.startswith("error: no key password")


def test_bad_input_is_refused(lienthong, tmp_path):
    (tmp_path / "citizens.xml").write_text("<x/>")
    failed = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                       "--input", "citizens.xml", "--out", "out", "--pki", "pki", succeed=False)  # fmt: skip
    assert "must be .csv or .jsonl" in failed.stderr
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3\n")
    failed = lienthong("package", "build", "--agreement", "health-identity", "--recipient", "health",
                       "--input", "ragged.csv", "--out", "out", "--pki", "pki", succeed=False)  # fmt: skip
    assert "record 1 has fields outside the columns: <cells beyond the header>" in failed.stderr
