"""Detached CMS signatures: stock OpenSSL accepts ours, we accept OpenSSL's, and every bad signature is
rejected by the check it fails."""

import re
import subprocess
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchange.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    ChainInvalid,
    CrlUnusable,
    KeyUsageMissing,
    SignatureInvalid,
    VerificationError,
)
from exchange.pki import (
    ENCRYPTION,
    SIGNING,
    CertifiedKey,
    Signer,
    agency_subject,
    init_pki,
    key_path,
    load_certificate,
    load_crl,
    load_private_key,
    load_signer,
    make_crl,
    revoke,
)
from exchange.signature import TrustAnchors, sign_detached, verify_detached
from tests.exchange.conftest import (
    PASSWORD,
    expired_signer,
    not_yet_valid_signer,
    signature_only_signer,
    signer_with,
)

CONTENT = '{"note": "Liên thông — dữ liệu dân cư"}\n'.encode()


def _openssl_verify(tmp_path: Path, content: bytes, signature: bytes, ca_file: Path, *extra: str):
    (tmp_path / "content").write_bytes(content)
    (tmp_path / "content.p7s").write_bytes(signature)
    command = ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(tmp_path / "content.p7s"),
               "-content", str(tmp_path / "content"), "-CAfile", str(ca_file), "-purpose", "any", "-out", "/dev/null",
               *extra]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True)


def test_openssl_verifies_our_signature_with_the_chain_it_carries(tmp_path, pki, population_signer):
    signature = sign_detached(CONTENT, population_signer)
    result = _openssl_verify(tmp_path, CONTENT, signature, pki.root_ca)
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr
    # and with revocation checked against the CRL (OpenSSL 3.0 reads CRLs from the CA file)
    bundle = tmp_path / "root-and-crl.pem"
    bundle.write_bytes(pki.root_ca.read_bytes() + pki.crl.read_bytes())
    result = _openssl_verify(tmp_path, CONTENT, signature, bundle, "-crl_check")
    assert result.returncode == 0, result.stderr


def test_openssl_rejects_a_changed_content(tmp_path, pki, population_signer):
    signature = sign_detached(CONTENT, population_signer)
    result = _openssl_verify(tmp_path, CONTENT + b" ", signature, pki.root_ca)
    assert result.returncode != 0


def test_we_verify_our_signature(trust, population_signer):
    verified = verify_detached(CONTENT, sign_detached(CONTENT, population_signer), trust)
    assert verified.agency == "population"
    assert verified.signer == population_signer.certificate
    assert len(verified.path) == 3
    assert abs(verified.signing_time - datetime.now(UTC)) < timedelta(minutes=5)
    assert len(verified.fingerprint) == 64


def test_we_verify_what_openssl_signs(tmp_path, pki, trust):
    """A partner signing with stock OpenSSL (as docs/partners.md says) is accepted: ECDSA here."""
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "pkey", "-in", str(pki.key("health", SIGNING)), "-passin",
                    f"pass:{PASSWORD.decode()}", "-out", str(key)], check=True)  # fmt: skip
    (tmp_path / "receipt.json").write_bytes(CONTENT)
    subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-in", str(tmp_path / "receipt.json"),
         "-signer", str(pki.certificate("health", SIGNING)), "-inkey", str(key), "-certfile", str(pki.issuing_ca),
         "-md", "sha256", "-out", str(tmp_path / "receipt.json.p7s")],
        check=True,
    )  # fmt: skip
    verified = verify_detached(CONTENT, (tmp_path / "receipt.json.p7s").read_bytes(), trust)
    assert verified.agency == "health"


@pytest.mark.parametrize("padding", ["pkcs1", "pss"])
def test_we_verify_rsa_signatures_made_by_openssl(tmp_path, issuing_ca, trust, padding):
    """Real agency certificates are often RSA: PKCS#1 v1.5 and PSS signers are accepted."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from exchange.pki import PROFILES, agency_subject, issue_certificate

    key = rsa.generate_private_key(65537, 2048)
    certificate = issue_certificate(agency_subject("tax", SIGNING), key.public_key(), PROFILES[SIGNING], issuing_ca)
    (tmp_path / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (tmp_path / "ca.pem").write_bytes(issuing_ca.certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "content").write_bytes(CONTENT)
    options = ["-keyopt", "rsa_padding_mode:pss"] if padding == "pss" else []
    subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-in", str(tmp_path / "content"),
         "-signer", str(tmp_path / "cert.pem"), "-inkey", str(tmp_path / "key.pem"), *options,
         "-certfile", str(tmp_path / "ca.pem"), "-md", "sha256", "-out", str(tmp_path / "sig")],
        check=True,
    )  # fmt: skip
    assert verify_detached(CONTENT, (tmp_path / "sig").read_bytes(), trust).agency == "tax"
    if padding == "pkcs1":  # and ours with an RSA key
        signer = Signer(certificate, key, (issuing_ca.certificate,))
        assert verify_detached(CONTENT, sign_detached(CONTENT, signer), trust).agency == "tax"


def test_a_changed_content_fails_the_signature_check(trust, population_signer):
    signature = sign_detached(CONTENT, population_signer)
    with pytest.raises(SignatureInvalid, match="^signature: the content does not match"):
        verify_detached(CONTENT.replace(b"d", b"D", 1), signature, trust)


@pytest.mark.slow
def test_every_changed_byte_of_a_signature_is_rejected(trust, population_signer):
    """Flip each byte of the DER in turn: the structure, the signed attributes, the signature value and the
    certificates carried are all covered. Each rejection names the signature or the chain."""
    signature = sign_detached(CONTENT, population_signer)
    checks = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns about some mangled serial numbers
        for position in range(len(signature)):
            changed = bytearray(signature)
            changed[position] ^= 0x01
            with pytest.raises(VerificationError) as error:
                verify_detached(CONTENT, bytes(changed), trust)
            checks.add(error.value.check)
    assert checks == {"signature", "chain"}


def test_an_expired_certificate_is_rejected(trust, issuing_ca):
    with pytest.raises(CertificateExpired, match="^expired: certificate 'Liên thông population signing'"):
        verify_detached(CONTENT, sign_detached(CONTENT, expired_signer(issuing_ca)), trust)


def test_a_certificate_not_yet_valid_is_rejected(trust, issuing_ca):
    with pytest.raises(CertificateNotYetValid, match="^not_yet_valid: certificate .* is valid only from"):
        verify_detached(CONTENT, sign_detached(CONTENT, not_yet_valid_signer(issuing_ca)), trust)


def test_a_certificate_without_non_repudiation_is_rejected(trust, issuing_ca):
    with pytest.raises(KeyUsageMissing, match="^key_usage: certificate .* lacks nonRepudiation"):
        verify_detached(CONTENT, sign_detached(CONTENT, signature_only_signer(issuing_ca)), trust)


def test_an_encryption_certificate_cannot_sign(pki, trust):
    encryption = CertifiedKey(load_certificate(pki.certificate("tax", ENCRYPTION)), None)
    key = load_private_key(pki.key("tax", ENCRYPTION), PASSWORD)
    signer = Signer(encryption.certificate, key, (load_certificate(pki.issuing_ca),))
    with pytest.raises(KeyUsageMissing, match="lacks digitalSignature and nonRepudiation"):
        verify_detached(CONTENT, sign_detached(CONTENT, signer), trust)


def test_a_certificate_of_another_ca_is_rejected(trust, other_pki):
    signature = sign_detached(CONTENT, load_signer(other_pki, "population", PASSWORD))
    with pytest.raises(ChainInvalid, match="^chain: the signature on certificate .* does not verify"):
        verify_detached(CONTENT, signature, trust)


def test_a_signature_without_the_issuing_ca_does_not_chain(trust, population_signer):
    alone = Signer(population_signer.certificate, population_signer.private_key, ())
    with pytest.raises(ChainInvalid, match="^chain: certificate .* was issued by .*Issuing CA"):
        verify_detached(CONTENT, sign_detached(CONTENT, alone), trust)


def test_a_revoked_certificate_is_rejected(tmp_path):
    pki = init_pki(tmp_path / "pki", PASSWORD, rsa_bits=2048)
    signer = load_signer(pki, "population", PASSWORD)
    signature = sign_detached(CONTENT, signer)
    revoke(pki, signer.certificate, PASSWORD)
    trust = TrustAnchors.from_files(pki.root_ca, [pki.crl])
    with pytest.raises(CertificateRevoked, match="^revoked: certificate 'Liên thông population signing' .* revoked on"):
        verify_detached(CONTENT, signature, trust)
    # stock OpenSSL agrees when given the CRL
    bundle = tmp_path / "root-and-crl.pem"
    bundle.write_bytes(pki.root_ca.read_bytes() + pki.crl.read_bytes())
    assert _openssl_verify(tmp_path, CONTENT, signature, bundle, "-crl_check").returncode != 0


def test_without_a_crl_revocation_cannot_be_checked(pki, population_signer):
    trust = TrustAnchors.from_files(pki.root_ca, [])
    with pytest.raises(CrlUnusable, match="^crl: no CRL from .*Issuing CA"):
        verify_detached(CONTENT, sign_detached(CONTENT, population_signer), trust)


def test_a_crl_signed_by_someone_else_or_out_of_date_is_refused(pki, other_pki, issuing_ca, population_signer):
    signature = sign_detached(CONTENT, population_signer)
    forged = load_crl(other_pki.crl)  # same issuer name, other key
    with pytest.raises(CrlUnusable, match="invalid signature"):
        verify_detached(CONTENT, signature, TrustAnchors.from_files(pki.root_ca, [other_pki.crl]))
    assert forged.issuer == issuing_ca.certificate.subject
    later = datetime.now(UTC) + timedelta(days=400)  # past the CRL's next update, within the certificate's life
    with pytest.raises(CrlUnusable, match="due for renewal"):
        verify_detached(CONTENT, signature, TrustAnchors.from_files(pki.root_ca, [pki.crl]), at=later)
    fresh = make_crl(issuing_ca)
    assert verify_detached(CONTENT, signature, TrustAnchors((load_certificate(pki.root_ca),), (fresh,))).agency


def test_a_signer_from_the_wrong_issuer_name_is_reported_by_name(trust, other_pki):
    """A CA with another name altogether: the message names the issuer the path stopped at."""
    from exchange.pki import make_issuing_ca, make_root_ca

    root = make_root_ca("Some Other Root")
    issuing = make_issuing_ca(root, "Some Other Issuing CA")
    signer = signer_with(issuing)
    with pytest.raises(ChainInvalid, match="Some Other Root"):
        verify_detached(CONTENT, sign_detached(CONTENT, signer), trust)


# -- paths built by the library: re-keyed CAs, unknown critical extensions, impostors ------------------------------

UNKNOWN_CRITICAL = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")


def _issue(
    subject: x509.Name,
    issuer: CertifiedKey | None,
    *,
    ca: bool,
    extra: Sequence[x509.ExtensionType] = (),
) -> CertifiedKey:
    """A fresh EC key and its certificate, shaped as exchange/pki.py shapes a CA or signing certificate, signed by
    ``issuer`` (self-signed without one); ``extra`` extensions are added as critical."""
    key = ec.generate_private_key(ec.SECP384R1() if ca else ec.SECP256R1())
    signing_key = issuer.private_key if issuer else key
    now = datetime.now(UTC)
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=not ca,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    for extension in extra:
        builder = builder.add_extension(extension, critical=True)
    return CertifiedKey(builder.sign(signing_key, hashes.SHA256()), key)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _signer(issuer: CertifiedKey, *chain: x509.Certificate, extra: Sequence[x509.ExtensionType] = ()) -> Signer:
    issued = _issue(agency_subject("tax", SIGNING), issuer, ca=False, extra=extra)
    return Signer(issued.certificate, issued.private_key, chain)


def _pem_bundle(path: Path, *objects: x509.Certificate | x509.CertificateRevocationList) -> Path:
    path.write_bytes(b"".join(item.public_bytes(serialization.Encoding.PEM) for item in objects))
    return path


def _sandbox_root(pki) -> CertifiedKey:
    return CertifiedKey(load_certificate(pki.root_ca), load_private_key(key_path(pki.root_ca), PASSWORD))


def test_a_root_re_keyed_under_the_same_name_verifies_signers_under_either_key(tmp_path):
    old_root = _issue(_name("Liên thông Re-keyed Root CA"), None, ca=True)
    new_root = _issue(_name("Liên thông Re-keyed Root CA"), None, ca=True)
    trust = TrustAnchors((old_root.certificate, new_root.certificate), (make_crl(old_root), make_crl(new_root)))
    bundle = _pem_bundle(tmp_path / "roots-and-crls.pem", *trust.roots, *trust.crls)
    for root in (old_root, new_root):
        signer = _signer(root)
        signature = sign_detached(CONTENT, signer)
        assert verify_detached(CONTENT, signature, trust).path == (signer.certificate, root.certificate)
        result = _openssl_verify(tmp_path, CONTENT, signature, bundle, "-crl_check")  # stock OpenSSL agrees
        assert result.returncode == 0, result.stderr


def test_an_issuing_ca_re_keyed_under_the_same_name_chains_whichever_generation_is_carried_first(pki, issuing_ca):
    """A partner carrying both generations of its issuing CA: the path goes through the one whose key signed."""
    new_issuing = _issue(issuing_ca.certificate.subject, _sandbox_root(pki), ca=True)
    trust = TrustAnchors((load_certificate(pki.root_ca),), (load_crl(pki.crl), make_crl(new_issuing)))
    generations = (issuing_ca.certificate, new_issuing.certificate)
    for issuer in (issuing_ca, new_issuing):
        for chain in (generations, generations[::-1]):
            signer = _signer(issuer, *chain)
            verified = verify_detached(CONTENT, sign_detached(CONTENT, signer), trust)
            assert verified.path[1] == issuer.certificate


@pytest.mark.parametrize(("where", "named"), [("signer", "tax signing"), ("issuing CA", "Test Issuing CA")])
def test_an_unknown_critical_extension_is_refused_as_chain(tmp_path, pki, where, named):
    root, name = _sandbox_root(pki), _name("Liên thông Test Issuing CA")
    plain = _issue(name, root, ca=True)  # without the extension, these shapes verify
    trust = TrustAnchors((root.certificate,), (make_crl(plain),))
    assert verify_detached(CONTENT, sign_detached(CONTENT, _signer(plain, plain.certificate)), trust).agency == "tax"

    issuing = _issue(name, root, ca=True, extra=[UNKNOWN_CRITICAL] if where == "issuing CA" else [])
    signer = _signer(issuing, issuing.certificate, extra=[UNKNOWN_CRITICAL] if where == "signer" else [])
    trust = TrustAnchors((root.certificate,), (make_crl(issuing),))
    signature = sign_detached(CONTENT, signer)
    oid = re.escape(UNKNOWN_CRITICAL.oid.dotted_string)
    with pytest.raises(
        ChainInvalid, match=f"^chain: certificate 'Liên thông {named}' .* unknown critical extension \\({oid}\\)"
    ):
        verify_detached(CONTENT, signature, trust)
    result = _openssl_verify(tmp_path, CONTENT, signature, pki.root_ca)  # stock OpenSSL agrees
    assert result.returncode != 0 and "unhandled critical extension" in result.stderr


def test_an_issuer_with_the_right_name_but_another_key_is_refused_as_chain(tmp_path, pki, trust, issuing_ca):
    impostor = _issue(issuing_ca.certificate.subject, None, ca=True)  # the issuing CA's name, its own key
    for chain in [(issuing_ca.certificate,), (impostor.certificate, issuing_ca.certificate)]:
        signature = sign_detached(CONTENT, _signer(impostor, *chain))
        with pytest.raises(ChainInvalid, match="^chain: the signature on certificate .* by its issuer does not verify"):
            verify_detached(CONTENT, signature, trust)
        assert _openssl_verify(tmp_path, CONTENT, signature, pki.root_ca).returncode != 0  # stock OpenSSL agrees
