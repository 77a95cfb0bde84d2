"""What the platform's PKI issues, as a partner's stock OpenSSL sees it: the CRL distribution point, renewal."""

from __future__ import annotations

import subprocess

from exchange.pki import DEFAULT_CRL_URL, ENCRYPTION, SIGNING, init_pki, load_certificate, renew
from exchange.signature import TrustAnchors, verify_certificate
from tests.verify.conftest import PASSWORD


def test_every_agency_certificate_names_the_crl_that_would_list_it_for_openssl(pki):
    for agency in ("population", "health", "tax"):
        for purpose in (SIGNING, ENCRYPTION):
            command = [
                "openssl",
                "x509",
                "-noout",
                "-ext",
                "crlDistributionPoints",
                "-in",
                pki.certificate(agency, purpose),
            ]
            shown = subprocess.run(command, capture_output=True, text=True, check=True)
            assert "X509v3 CRL Distribution Points" in shown.stdout and f"URI:{DEFAULT_CRL_URL}" in shown.stdout


def test_an_operator_chooses_the_crl_address_and_a_renewed_certificate_keeps_it(tmp_path):
    url = "http://crl.example.gov.vn/lienthong/issuing-ca.crl"
    pki = init_pki(tmp_path / "pki", PASSWORD, rsa_bits=2048, crl_url=url)
    before = load_certificate(pki.certificate("health", SIGNING))
    previous = renew(pki, "health", SIGNING, PASSWORD)
    after = load_certificate(pki.certificate("health", SIGNING))
    assert after.serial_number != before.serial_number and load_certificate(previous) == before
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", pki.certificate("health", SIGNING)],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"URI:{url}" in text
    trust = TrustAnchors.from_pki(pki)
    usage = frozenset({"digital_signature", "content_commitment"})
    assert verify_certificate(after, [load_certificate(pki.issuing_ca)], trust, usage, at=after.not_valid_before_utc)


def test_the_operator_issues_renews_and_revokes_as_the_partners_page_says(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lienthong.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LIENTHONG_KEY_PASSWORD", PASSWORD.decode())
    url = "http://pki.lienthong.gov.vn/crl/issuing-ca.crl"
    made = CliRunner().invoke(app, ["pki", "init", "--out", "pki", "--rsa-bits", "2048", "--crl-url", url])
    assert made.exit_code == 0, made.output
    old = load_certificate(tmp_path / "pki" / "health" / "signing.pem")
    renewed = CliRunner().invoke(app, ["pki", "renew", "health", "signing", "--pki", "pki"])
    assert renewed.exit_code == 0, renewed.output
    previous = f"pki/health/signing-{old.serial_number:x}.pem"
    assert previous in renewed.output.replace("\n", "")
    revoked = CliRunner().invoke(app, ["pki", "revoke", previous, "--pki", "pki"])
    assert revoked.exit_code == 0, revoked.output

    def openssl_verify(certificate: str) -> subprocess.CompletedProcess:
        return subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", "pki/root-ca.pem", "-untrusted",
                               "pki/issuing-ca.pem", "-CRLfile", "pki/crl.pem", certificate], capture_output=True,
                              text=True)  # fmt: skip

    assert openssl_verify("pki/health/signing.pem").returncode == 0
    refused = openssl_verify(previous)
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    wrong = CliRunner().invoke(app, ["pki", "renew", "health", "stamping", "--pki", "pki"])
    assert wrong.exit_code != 0 and "purpose must be one of" in wrong.output
