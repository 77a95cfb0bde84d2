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

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exchange.agencies import POPULATION as POPULATION  # re-exported: most modules take it from here
from exchange.agencies import load_agencies
from lienthong_verify.certificates import (  # noqa: F401 (re-exported: the partners' side of the PKI lives in their kit)
    ENCRYPTION,
    SIGNING,
    TLS_CLIENT,
    TLS_SERVER,
    CertifiedKey,
    PkiDirectory,
    Signer,
    agency_of,
    describe,
    fingerprint,
    key_path,
    load_certificate,
    load_certificates,
    load_crl,
    load_private_key,
    load_recipient,
    load_signer,
)
from lienthong_verify.certificates import common_name as common_name  # re-exported (make_*_ca's parameters shadow it)

DEFAULT_RSA_BITS = 3072
CRL_DAYS = 365
# Where the issuing CA's CRL is published (each certificate it issues names it: crlDistributionPoints). A sandbox
# default: an operator sets the address it really serves the CRL (DER) at with ``lienthong pki init --crl-url``.
DEFAULT_CRL_URL = "http://pki.lienthong.gov.vn/crl/issuing-ca.crl"

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
PURPOSES = tuple(PROFILES)


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
    crl_url: str | None = None,
) -> x509.Certificate:
    """A certificate for ``public_key`` signed by ``issuer``, or self-signed with ``signing_key`` for a root;
    ``crl_url``: where the issuer publishes the CRL that would list it."""
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
    if crl_url:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
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
    crl_url: str | None = DEFAULT_CRL_URL,
    server_addresses: Iterable[str] = (),
) -> CertifiedKey:
    """A fresh key and certificate for one agency and purpose, naming ``crl_url`` as its CRL distribution point.
    Encryption keys are RSA (CMS key transport with stock OpenSSL); the others EC P-256. A TLS server certificate
    names localhost and the loopback addresses, and ``server_addresses`` too. ``profile`` and the dates may be
    overridden, for tests of rejections."""
    key = (
        rsa.generate_private_key(65537, rsa_bits) if purpose == ENCRYPTION else ec.generate_private_key(ec.SECP256R1())
    )
    names = []
    if purpose == TLS_SERVER:
        names = [
            x509.DNSName("localhost"),
            x509.IPAddress(IPv4Address("127.0.0.1")),
            x509.IPAddress(IPv6Address("::1")),
            *(x509.IPAddress(ip_address(address)) for address in server_addresses),
        ]
    certificate = issue_certificate(
        agency_subject(agency, purpose),
        key.public_key(),
        profile or PROFILES[purpose],
        issuer,
        not_before=not_before,
        not_after=not_after,
        alternative_names=names,
        crl_url=crl_url,
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


def init_pki(
    out: Path,
    password: bytes,
    *,
    rsa_bits: int = DEFAULT_RSA_BITS,
    force: bool = False,
    crl_url: str = DEFAULT_CRL_URL,
    server_addresses: Iterable[str] = (),
) -> PkiDirectory:
    """Make the whole sandbox PKI under ``out``, for every agency of the schema folders (``schemas/agencies``, and
    an operator's on ``LIENTHONG_SCHEMAS_PATH``); partners get a TLS server certificate too (for loopback and
    ``server_addresses``); every agency certificate names ``crl_url`` as its CRL distribution point. Refuses to
    overwrite one unless ``force``."""
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
            issued = make_agency_certificate(issuing, agency.name, purpose, rsa_bits=rsa_bits, crl_url=crl_url,
                                             server_addresses=server_addresses)  # fmt: skip
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


def renew(pki: PkiDirectory, agency: str, purpose: str, password: bytes, *, rsa_bits: int = DEFAULT_RSA_BITS) -> Path:
    """A fresh key and certificate for ``agency`` and ``purpose`` from the PKI's issuing CA, written in place of the
    current ones, with the same CRL distribution point. The current certificate is kept beside it as
    ``<purpose>-<serial>.pem`` (it stays valid until it expires or is revoked); returns that path."""
    current_path = pki.certificate(agency, purpose)
    current = load_certificate(current_path)
    issuing = CertifiedKey(load_certificate(pki.issuing_ca), load_private_key(key_path(pki.issuing_ca), password))
    try:
        points = current.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        crl_url = points[0].full_name[0].value
    except x509.ExtensionNotFound:
        crl_url = DEFAULT_CRL_URL
    issued = make_agency_certificate(issuing, agency, purpose, rsa_bits=rsa_bits, crl_url=crl_url)
    previous = current_path.with_name(f"{purpose}-{current.serial_number:x}.pem")
    write_pem(previous, current.public_bytes(serialization.Encoding.PEM))
    write_certified_key(issued, current_path, password)
    return previous


# -- files -----------------------------------------------------------------------------------------------------


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
