"""The sandbox PKI: what `init_pki` makes, how keys are protected, revocation."""

import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange.agencies import load_agencies, partner_agencies
from exchange.pki import (
    ENCRYPTION,
    SIGNING,
    TLS_CLIENT,
    TLS_SERVER,
    PkiDirectory,
    agency_of,
    init_pki,
    load_certificate,
    load_crl,
    load_private_key,
    revoke,
)
from tests.exchange.conftest import PASSWORD


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage:
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


def test_every_agency_gets_signing_encryption_and_tls_certificates(pki):
    for agency in load_agencies():
        signing = load_certificate(pki.certificate(agency, SIGNING))
        assert agency_of(signing) == agency
        usage = _key_usage(signing)
        assert usage.digital_signature and usage.content_commitment and not usage.key_encipherment
        encryption = load_certificate(pki.certificate(agency, ENCRYPTION))
        assert isinstance(encryption.public_key(), rsa.RSAPublicKey)
        assert _key_usage(encryption).key_encipherment and not _key_usage(encryption).digital_signature
        client = load_certificate(pki.certificate(agency, TLS_CLIENT))
        eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    for partner in partner_agencies():
        server = load_certificate(pki.certificate(partner, TLS_SERVER))
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in names.get_values_for_type(x509.DNSName)
        assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)][:1] == ["127.0.0.1"]
    assert not pki.certificate("population", TLS_SERVER).exists()


def test_cas_are_constrained_and_openssl_accepts_every_chain(pki):
    root, issuing = load_certificate(pki.root_ca), load_certificate(pki.issuing_ca)
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert issuing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert _key_usage(issuing).key_cert_sign and _key_usage(issuing).crl_sign
    leaves = [str(p) for p in sorted(pki.path.glob("*/*.pem")) if not p.name.endswith(".key.pem")]
    assert len(leaves) == 3 * len(load_agencies()) + len(partner_agencies())
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", str(pki.root_ca), "-untrusted", str(pki.issuing_ca), *leaves],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": OK") == len(leaves)


def test_keys_are_encrypted_pkcs8_readable_only_by_the_owner(pki):
    key_file = pki.key("health", SIGNING)
    assert key_file.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert isinstance(load_private_key(key_file, PASSWORD), ec.EllipticCurvePrivateKey)
    with pytest.raises(ValueError, match="wrong key password") as error:
        load_private_key(key_file, b"not the password")
    assert "not the password" not in str(error.value)
    with pytest.raises(ValueError, match="a key password is needed"):
        load_private_key(key_file, None)
    # stock OpenSSL reads the same key with the password
    result = subprocess.run(
        ["openssl", "pkey", "-in", str(key_file), "-passin", f"pass:{PASSWORD.decode()}", "-noout"],
        capture_output=True,
    )
    assert result.returncode == 0, result.stderr


def test_init_refuses_to_overwrite_a_pki(pki):
    with pytest.raises(FileExistsError):
        init_pki(pki.path, PASSWORD, rsa_bits=2048)


def test_revoke_adds_the_certificate_to_a_new_crl(tmp_path):
    pki = init_pki(tmp_path / "pki", PASSWORD, rsa_bits=2048)
    certificate = load_certificate(pki.certificate("tax", SIGNING))
    before = load_crl(pki.crl)
    assert len(before) == 0
    revoke(pki, certificate, PASSWORD)
    after = load_crl(pki.crl)
    assert after.get_revoked_certificate_by_serial_number(certificate.serial_number) is not None
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    assert after.is_signature_valid(load_certificate(pki.issuing_ca).public_key())


def test_revoke_refuses_a_certificate_of_another_ca(pki, other_pki, tmp_path):
    with pytest.raises(ValueError, match="not issued by this PKI"):
        revoke(pki, load_certificate(other_pki.certificate("tax", SIGNING)), PASSWORD)


def test_pki_directory_layout(tmp_path):
    pki = PkiDirectory(tmp_path)
    assert pki.certificate("land", ENCRYPTION) == tmp_path / "land" / "encryption.pem"
    assert pki.key("land", ENCRYPTION) == tmp_path / "land" / "encryption.key.pem"
