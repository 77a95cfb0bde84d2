"""Certificates and keys as a partner holds them: reading PEM and DER files, the names an agency certificate
carries, and where each file of a PKI folder lives (``lienthong pki init`` writes that layout; a partner keeps the
same names for its own files). Issuing certificates is the platform's (``exchange.pki``)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

SIGNING, ENCRYPTION, TLS_SERVER, TLS_CLIENT = "signing", "encryption", "tls-server", "tls-client"


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


def key_path(certificate_path: Path) -> Path:
    """``signing.pem`` → ``signing.key.pem``."""
    return certificate_path.with_name(certificate_path.name.removesuffix(".pem") + ".key.pem")


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
