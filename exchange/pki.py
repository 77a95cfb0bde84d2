"""The sandbox PKI: a government root CA, an issuing CA, and the certificates each agency needs (every agency of
``schemas/agencies``, whose file gives the organisation in its certificates' subject).

``init_pki`` writes, under one directory (``var/pki/`` by default)::

    root-ca.pem                     the trust root partners verify against
    issuing-ca.pem                  the CA that issues every agency certificate (carried in each signature)
    crl.pem                         the issuing CA's certificate revocation list
    <agency>/signing.pem            CMS signing: digitalSignature + nonRepudiation (EC P-256)
    <agency>/encryption.pem         CMS key transport: keyEncipherment (RSA, so stock OpenSSL can decrypt)
    <agency>/tls-server.pem         partner servers only: serverAuth, SAN localhost and 127.0.0.1
    <agency>/tls-client.pem         mutual TLS: clientAuth
    …and beside each certificate its key, ``<name>.key.pem``: PKCS#8, encrypted with the key password.

The key password is given by the caller (``lienthong.settings.key_password``). It is never printed or logged. In
Vietnam the real root is run by the Government Cipher Committee (Ban Cơ yếu Chính phủ); this one is a sandbox.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.agencies import POPULATION as POPULATION  # re-exported: most modules take it from here
from exchange.agencies import load_agencies

DEFAULT_RSA_BITS = 3072
CRL_DAYS = 365

SIGNING, ENCRYPTION, TLS_SERVER, TLS_CLIENT = "signing", "encryption", "tls-server", "tls-client"
_KEY_USAGE_FIELDS = (
    "digital_signature",
    "content_commitment",  # nonRepudiation
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


@dataclass(frozen=True)
class Profile:
    """What a certificate is for: its key usage, extended key usage, CA constraints and lifetime."""

    key_usage: frozenset[str]
    days: int
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = ()
    ca: bool = False
    path_length: int | None = None


ROOT_CA = Profile(frozenset({"key_cert_sign", "crl_sign"}), days=20 * 365, ca=True, path_length=1)
ISSUING_CA = Profile(frozenset({"key_cert_sign", "crl_sign"}), days=10 * 365, ca=True, path_length=0)
PROFILES = {
    SIGNING: Profile(frozenset({"digital_signature", "content_commitment"}), days=2 * 365),
    ENCRYPTION: Profile(frozenset({"key_encipherment"}), days=2 * 365),
    TLS_SERVER: Profile(
        frozenset({"digital_signature"}), days=365, extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,)
    ),
    TLS_CLIENT: Profile(
        frozenset({"digital_signature"}), days=365, extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,)
    ),
}


@dataclass(frozen=True)
class CertifiedKey:
    certificate: x509.Certificate
    private_key: PrivateKeyTypes


@dataclass(frozen=True)
class Signer:
    """A signing certificate, its key, and the CA certificates between it and the root (carried in signatures)."""

    certificate: x509.Certificate
    private_key: PrivateKeyTypes
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True)
class PkiDirectory:
    """Where each file of a PKI directory lives."""

    path: Path

    @property
    def root_ca(self) -> Path:
        return self.path / "root-ca.pem"

    @property
    def issuing_ca(self) -> Path:
        return self.path / "issuing-ca.pem"

    @property
    def crl(self) -> Path:
        return self.path / "crl.pem"

    def certificate(self, agency: str, purpose: str) -> Path:
        return self.path / agency / f"{purpose}.pem"

    def key(self, agency: str, purpose: str) -> Path:
        return self.path / agency / f"{purpose}.key.pem"


# -- certificates ----------------------------------------------------------------------------------------------


def agency_subject(agency: str, purpose: str) -> x509.Name:
    """The subject of an agency certificate: O is the organisation of its agency file; OU carries the agency code
    that manifests and receipts name."""
    agencies = load_agencies()
    if agency not in agencies:
        raise ValueError(f"unknown agency {agency!r}: no schemas/agencies/{agency}.yaml")
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, agencies[agency].organisation),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, agency),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Liên thông {agency} {purpose}"),
        ]
    )


def agency_of(certificate: x509.Certificate) -> str | None:
    """The agency code a certificate was issued to (its OU), if any."""
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return str(units[0].value) if units else None


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER, hex: what the ledger records for a signer."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


def describe(certificate: x509.Certificate) -> str:
    """A short name for messages: the certificate's CN and serial."""
    return f"'{common_name(certificate)}' (serial {certificate.serial_number:x})"


def issue_certificate(
    subject: x509.Name,
    public_key,
    profile: Profile,
    issuer: CertifiedKey | None,
    *,
    signing_key: CertificateIssuerPrivateKeyTypes | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    alternative_names: Iterable[x509.GeneralName] = (),
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``issuer``, or self-signed with ``signing_key`` for a root."""
    not_before = not_before or datetime.now(UTC) - timedelta(minutes=5)
    not_after = not_after or not_before + timedelta(days=profile.days)
    issuer_name = issuer.certificate.subject if issuer else subject
    issuer_public_key = issuer.certificate.public_key() if issuer else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=profile.ca, path_length=profile.path_length), critical=True)
        .add_extension(x509.KeyUsage(**{f: f in profile.key_usage for f in _KEY_USAGE_FIELDS}), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=False)
    alternative_names = list(alternative_names)
    if alternative_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
    key = issuer.private_key if issuer else signing_key
    return builder.sign(key, hashes.SHA256())


def make_root_ca(common_name: str = "Liên thông Sandbox Root CA") -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban Cơ yếu Chính phủ (sandbox)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    return CertifiedKey(issue_certificate(subject, key.public_key(), ROOT_CA, None, signing_key=key), key)


def make_issuing_ca(root: CertifiedKey, common_name: str = "Liên thông Sandbox Issuing CA") -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP384R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ban Cơ yếu Chính phủ (sandbox)"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    return CertifiedKey(issue_certificate(subject, key.public_key(), ISSUING_CA, root), key)


def make_agency_certificate(
    issuer: CertifiedKey,
    agency: str,
    purpose: str,
    *,
    rsa_bits: int = DEFAULT_RSA_BITS,
    profile: Profile | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> CertifiedKey:
    """A fresh key and certificate for one agency and purpose. Encryption keys are RSA (CMS key transport with
    stock OpenSSL); the others EC P-256. ``profile`` and the dates may be overridden, for tests of rejections."""
    key = (
        rsa.generate_private_key(65537, rsa_bits) if purpose == ENCRYPTION else ec.generate_private_key(ec.SECP256R1())
    )
    names = []
    if purpose == TLS_SERVER:
        names = [
            x509.DNSName("localhost"),
            x509.IPAddress(IPv4Address("127.0.0.1")),
            x509.IPAddress(IPv6Address("::1")),
        ]
    certificate = issue_certificate(
        agency_subject(agency, purpose),
        key.public_key(),
        profile or PROFILES[purpose],
        issuer,
        not_before=not_before,
        not_after=not_after,
        alternative_names=names,
    )
    return CertifiedKey(certificate, key)


def make_crl(
    issuer: CertifiedKey, revoked: Iterable[x509.RevokedCertificate] = (), number: int = 1
) -> x509.CertificateRevocationList:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=CRL_DAYS))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.certificate.public_key()), critical=False
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(issuer.private_key, hashes.SHA256())


def init_pki(out: Path, password: bytes, *, rsa_bits: int = DEFAULT_RSA_BITS, force: bool = False) -> PkiDirectory:
    """Make the whole sandbox PKI under ``out``, for every agency of the schema folders (``schemas/agencies``, and
    an operator's on ``LIENTHONG_SCHEMAS_PATH``); partners get a TLS server certificate too. Refuses to overwrite
    one unless ``force``."""
    pki = PkiDirectory(out)
    if pki.root_ca.exists() and not force:
        raise FileExistsError(f"a PKI already exists in {out}")
    agencies = load_agencies()  # a broken agency file refuses the PKI before anything is written
    root = make_root_ca()
    issuing = make_issuing_ca(root)
    write_certified_key(root, pki.root_ca, password)
    write_certified_key(issuing, pki.issuing_ca, password)
    for agency in agencies.values():
        purposes = [SIGNING, ENCRYPTION, TLS_CLIENT] + ([TLS_SERVER] if agency.is_partner else [])
        for purpose in purposes:
            issued = make_agency_certificate(issuing, agency.name, purpose, rsa_bits=rsa_bits)
            write_certified_key(issued, pki.certificate(agency.name, purpose), password)
    write_pem(pki.crl, make_crl(issuing).public_bytes(serialization.Encoding.PEM))
    return pki


def revoke(pki: PkiDirectory, certificate: x509.Certificate, password: bytes) -> x509.CertificateRevocationList:
    """Add ``certificate`` to the issuing CA's CRL and write the CRL again with the next number."""
    issuing = CertifiedKey(load_certificate(pki.issuing_ca), load_private_key(key_path(pki.issuing_ca), password))
    try:
        certificate.verify_directly_issued_by(issuing.certificate)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError("the certificate was not issued by this PKI's issuing CA") from None
    current = load_crl(pki.crl)
    number = current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    revoked = [entry for entry in current if entry.serial_number != certificate.serial_number]
    revoked.append(
        x509.RevokedCertificateBuilder()
        .serial_number(certificate.serial_number)
        .revocation_date(datetime.now(UTC) - timedelta(seconds=1))
        .build()
    )
    crl = make_crl(issuing, revoked, number + 1)
    write_pem(pki.crl, crl.public_bytes(serialization.Encoding.PEM))
    return crl


# -- files -----------------------------------------------------------------------------------------------------


def key_path(certificate_path: Path) -> Path:
    """``signing.pem`` → ``signing.key.pem``."""
    return certificate_path.with_name(certificate_path.name.removesuffix(".pem") + ".key.pem")


def write_pem(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def write_certified_key(issued: CertifiedKey, certificate_path: Path, password: bytes) -> None:
    write_pem(certificate_path, issued.certificate.public_bytes(serialization.Encoding.PEM))
    encrypted = issued.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    write_pem(key_path(certificate_path), encrypted, private=True)


def load_certificate(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (or the one of a DER file)."""
    data = path.read_bytes()
    return x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = path.read_bytes()
    return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)


def load_private_key(path: Path, password: bytes | None) -> PrivateKeyTypes:
    """A PKCS#8 (or traditional) PEM key; the password is used when the key is encrypted."""
    data = path.read_bytes()
    try:
        return serialization.load_pem_private_key(data, password)
    except TypeError:  # the key is not encrypted, or it is and no password was given
        if password is None:
            raise ValueError(f"the key {path} is encrypted: a key password is needed") from None
        return serialization.load_pem_private_key(data, None)
    except ValueError:
        raise ValueError(f"cannot load the key {path}: wrong key password or not a PEM key") from None


def load_signer(pki: PkiDirectory, agency: str, password: bytes) -> Signer:
    """The agency's signing certificate and key, with the issuing CA to carry in signatures."""
    certificate_path = pki.certificate(agency, SIGNING)
    return Signer(
        load_certificate(certificate_path),
        load_private_key(key_path(certificate_path), password),
        (load_certificate(pki.issuing_ca),),
    )


def load_recipient(certificate_path: Path, key: Path, password: bytes | None) -> CertifiedKey:
    """An encryption certificate and its key, for decrypting what was encrypted to it."""
    return CertifiedKey(load_certificate(certificate_path), load_private_key(key, password))
