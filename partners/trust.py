"""What a running partner trusts, kept current: the CRL read again whenever its file changes, and the checks on a
mutual-TLS client that the handshake does not make."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from exchange.errors import ChainInvalid, CrlUnusable, KeyUsageMissing, SignerMismatch
from exchange.pki import agency_of, describe, load_certificates, load_crl
from exchange.signature import TrustAnchors, verify_certificate

TLS_CLIENT_USAGE = frozenset({"digital_signature"})  # the key usage of exchange.pki's tls-client profile


class ReloadingTrust(TrustAnchors):
    """Trust anchors whose CRLs are what their files hold now: read again when a file's time, size or inode has
    changed since the last look (one ``stat`` per file per use), so that a certificate revoked while a partner runs
    is refused at once, as ``package verify`` refuses it. A CRL file that cannot be read refuses every certificate
    (``crl``) until it can. The roots are read once."""

    def __init__(self, roots: Path, crls: Iterable[Path]) -> None:
        # not the dataclass __init__: ``roots`` and ``crls`` are properties here
        object.__setattr__(self, "_roots", tuple(load_certificates(roots)))
        object.__setattr__(self, "_crl_files", tuple(crls))
        object.__setattr__(self, "_loaded", (None, ()))  # (the files' stamps, their CRLs)
        self.__post_init__()
        _ = self.crls  # a CRL that cannot be read fails the start, as TrustAnchors.from_files does

    @classmethod
    def from_files(cls, roots: Path, crls: Iterable[Path]) -> ReloadingTrust:  # from_pki comes through here
        return cls(roots, crls)

    @property
    def roots(self) -> tuple[x509.Certificate, ...]:
        return self._roots

    @property
    def crls(self) -> tuple[x509.CertificateRevocationList, ...]:
        try:
            # stamped before reading: a file changed during the read is read again next time
            stamps = tuple(_stamp(path) for path in self._crl_files)
            if stamps != self._loaded[0]:
                object.__setattr__(self, "_loaded", (stamps, tuple(load_crl(path) for path in self._crl_files)))
        except (OSError, ValueError):
            raise CrlUnusable("a CRL file of this partner cannot be read") from None
        return self._loaded[1]


def _stamp(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size, status.st_ino


def check_client_certificate(
    der: bytes | None, agency: str, intermediates: Sequence[x509.Certificate], trust: TrustAnchors
) -> x509.Certificate:
    """The mutual-TLS client certificate (DER, from the handshake), checked as the handshake does not: its path and
    dates again, its key usage, revocation by the current CRL, the clientAuth extended key usage, and that it is
    ``agency``'s (its OU). Checked on each request, so that a revocation holds for connections already open."""
    if der is None:
        raise ChainInvalid("no client certificate was presented")
    try:
        certificate = x509.load_der_x509_certificate(der)
    except ValueError:
        raise ChainInvalid("the client certificate cannot be parsed") from None
    verify_certificate(certificate, intermediates, trust, TLS_CLIENT_USAGE, at=datetime.now(UTC))
    try:
        purposes = list(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        purposes = []
    if ExtendedKeyUsageOID.CLIENT_AUTH not in purposes:
        raise KeyUsageMissing(f"certificate {describe(certificate)} lacks the clientAuth extended key usage")
    if agency_of(certificate) != agency:
        raise SignerMismatch(f"certificate {describe(certificate)} is not one of the {agency} agency's")
    return certificate
