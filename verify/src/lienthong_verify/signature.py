"""Detached CMS signatures (SignedData, DER): made with ``cryptography``, checked here.

``cryptography`` signs CMS but cannot verify it, so ``verify_detached`` does what ``openssl cms -verify`` does,
each step raising its own error: the signed attributes (content type, and the message digest equal to the
digest of the content), the signature over them with the signer's key, the certificate path from the signer
through the CA certificates carried in the signature to a trust root (built by ``cryptography.x509.verification``),
validity dates, the signer's key usage (digitalSignature and nonRepudiation) and revocation (CRL).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509 import verification
from cryptography.x509.oid import ExtensionOID

from lienthong_verify.certificates import (
    PkiDirectory,
    Signer,
    agency_of,
    describe,
    fingerprint,
    load_certificates,
    load_crl,
)
from lienthong_verify.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    ChainInvalid,
    CrlUnusable,
    KeyUsageMissing,
    SignatureInvalid,
    shown,
)

DIGESTS: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
SIGNING_USAGE = frozenset({"digital_signature", "content_commitment"})
USAGE_NAMES = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
}
MAX_PATH = 6  # certificates from the signer to the root, both included
# A signature carries the signer's certificate and its CA certificates (ours: two). Ten leave room for a path of
# MAX_PATH and CA certificates re-keyed under one name; each more costs a parse and a path search.
MAX_CERTIFICATES = 10
# Ours are 1.7 kB (two 2048-bit RSA certificates) to ~3 kB (4096-bit); ten certificates of 6 kB still fit.
MAX_SIGNATURE_BYTES = 64 << 10
# The extensions ``cryptography``'s path validation accounts for: a critical one of any other kind refuses a path.
UNDERSTOOD = frozenset(
    {
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.EXTENDED_KEY_USAGE,
    }
)


@dataclass(frozen=True)
class TrustAnchors:
    """The roots a verifier trusts and the CRLs it checks revocation with. A signer's issuer must have a CRL
    here; an intermediate CA is checked too when its issuer's CRL is given."""

    roots: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...]

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("trust anchors need at least one root certificate")

    @classmethod
    def from_files(cls, roots: Path, crls: Iterable[Path]) -> TrustAnchors:
        return cls(tuple(load_certificates(roots)), tuple(load_crl(path) for path in crls))

    @classmethod
    def from_pki(cls, pki: PkiDirectory) -> TrustAnchors:
        """A PKI directory's root CA and its revocation list."""
        return cls.from_files(pki.root_ca, [pki.crl])


@dataclass(frozen=True)
class VerifiedSignature:
    signer: x509.Certificate
    path: tuple[x509.Certificate, ...]  # the signer first, the trust root last
    signing_time: datetime | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.signer)

    @property
    def agency(self) -> str | None:
        return agency_of(self.signer)


def sign_detached(content: bytes, signer: Signer) -> bytes:
    """A detached CMS SignedData (DER) over ``content``, SHA-256, carrying the signer's certificate and chain."""
    builder = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer.certificate, signer.private_key, hashes.SHA256())
    )
    for certificate in signer.chain:
        builder = builder.add_certificate(certificate)
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCapabilities]
    return builder.sign(serialization.Encoding.DER, options)


def verify_detached(
    content: bytes, signature: bytes, trust: TrustAnchors, *, at: datetime | None = None
) -> VerifiedSignature:
    """Check a detached CMS signature over ``content`` against ``trust`` at time ``at`` (default now)."""
    at = at or datetime.now(UTC)
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise SignatureInvalid(f"the signature is larger than {MAX_SIGNATURE_BYTES >> 10} KiB")
    signed = _parse_signed_data(signature)
    signing_time = _check_signed_attributes(signed, content)
    _check_signature_value(signed)
    path = verify_certificate(signed.signer, signed.certificates, trust, SIGNING_USAGE, at=at)
    return VerifiedSignature(signed.signer, path, signing_time)


def verify_certificate(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustAnchors,
    usage: frozenset[str],
    *,
    at: datetime,
) -> tuple[x509.Certificate, ...]:
    """The checks on a certificate: path to a trust root, validity at ``at``, key usage, revocation."""
    path = certificate_path(certificate, intermediates, trust, usage, at=at)
    check_validity(path, at)
    check_key_usage(certificate, usage)
    check_revocation(path, trust, at)
    return path


# -- the CMS structure -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SignedData:
    """What ``verify_detached`` needs from a SignedData, parsed completely up front."""

    digest: str
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    attributes: dict[str, object]  # signed attribute name → its single value
    to_be_signed: bytes  # the DER of the signed attributes as a SET (RFC 5652 §5.4)
    signature_algorithm: str
    pss: padding.PSS | None
    signature: bytes


def _parse_signed_data(signature: bytes) -> _SignedData:
    try:
        content_info = cms.ContentInfo.load(signature, strict=True)
        if content_info["content_type"].native != "signed_data":
            raise SignatureInvalid("the signature file is not a CMS SignedData")
        signed_data = content_info["content"]
        encapsulated = signed_data["encap_content_info"]
        if encapsulated["content_type"].native != "data" or encapsulated["content"].native is not None:
            raise SignatureInvalid("expected a detached signature over data")
        if len(signed_data["signer_infos"]) != 1:
            raise SignatureInvalid("expected exactly one signer")
        signer_info = signed_data["signer_infos"][0]
        # Versions and algorithm parameters are outside what the signature covers: accept only their one form.
        version = "v1" if signer_info["sid"].name == "issuer_and_serial_number" else "v3"
        if signed_data["version"].native not in ("v1", "v3") or signer_info["version"].native != version:
            raise SignatureInvalid("unexpected CMS version")
        digest = _digest_name(signer_info["digest_algorithm"])
        if [_digest_name(a) for a in signed_data["digest_algorithms"]] != [digest]:
            raise SignatureInvalid("the digest algorithms listed do not match the signer's")
        if len(signed_data["certificates"]) > MAX_CERTIFICATES:  # counted before any of them is parsed
            raise SignatureInvalid(f"the signature carries more than {MAX_CERTIFICATES} certificates")
        certificates = tuple(
            _load_certificate(choice.chosen) for choice in signed_data["certificates"] if choice.name == "certificate"
        )
        # What is checked must be what was sent: a certificate that the parsers normalised on the way (a BER
        # BOOLEAN, a re-sorted SET OF) would re-encode to the bytes its issuer signed and pass.
        if any(c.public_bytes(serialization.Encoding.DER) not in signature for c in certificates):
            raise SignatureInvalid("a certificate carried in the signature is not in the DER that was signed")
        algorithm = signer_info["signature_algorithm"]
        algorithm_name = algorithm["algorithm"].native
        return _SignedData(
            digest=digest,
            signer=_find_signer(signer_info["sid"], certificates),
            certificates=certificates,
            attributes=_signed_attributes(signer_info["signed_attrs"]),
            to_be_signed=b"\x31" + signer_info["signed_attrs"].dump()[1:],
            signature_algorithm=algorithm_name,
            pss=_pss_padding(algorithm["parameters"], digest) if algorithm_name == "rsassa_pss" else None,
            signature=signer_info["signature"].native,
        )
    except SignatureInvalid:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as error:
        # RecursionError: asn1crypto decodes nested values recursively, and any signed attribute may nest
        raise SignatureInvalid(f"the signature file is not valid CMS DER ({type(error).__name__})") from None


def _digest_name(algorithm) -> str:
    name = algorithm["algorithm"].native
    if name not in DIGESTS or algorithm["parameters"].dump() not in (b"", b"\x05\x00"):
        raise SignatureInvalid(f"unsupported digest algorithm {name}")
    return name


def _load_certificate(carried: asn1_x509.Certificate) -> x509.Certificate:
    """Parse a certificate completely now (``cryptography`` parses extensions and keys lazily), refusing a
    signature BIT STRING with unused bits: that byte is the one part of a certificate no signature covers."""
    try:
        if carried["signature_value"].contents[:1] != b"\x00":
            raise ValueError("unused bits in the certificate's signature")
        certificate = x509.load_der_x509_certificate(carried.dump())
        certificate.public_key()
        _ = certificate.extensions, certificate.issuer, certificate.subject
    except (ValueError, UnsupportedAlgorithm, x509.DuplicateExtension, x509.InvalidVersion):
        raise SignatureInvalid("a certificate carried in the signature cannot be parsed") from None
    return certificate


def _find_signer(sid: cms.SignerIdentifier, certificates: Sequence[x509.Certificate]) -> x509.Certificate:
    for certificate in certificates:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                certificate.serial_number == wanted["serial_number"].native
                and certificate.issuer.public_bytes() == wanted["issuer"].dump()
            ):
                return certificate
        elif sid.name == "subject_key_identifier":
            try:
                key_id = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if key_id == sid.chosen.native:
                return certificate
    raise SignatureInvalid("the signer's certificate is not carried in the signature")


def _signed_attributes(attributes: cms.CMSAttributes) -> dict[str, object]:
    if not attributes:
        raise SignatureInvalid("the signature has no signed attributes")
    values: dict[str, object] = {}
    for attribute in attributes:
        name = attribute["type"].native
        if name in values or len(attribute["values"]) != 1:
            raise SignatureInvalid(f"the signed attribute {name} is repeated")
        values[name] = attribute["values"][0].native
    return values


def _pss_padding(parameters, digest: str) -> padding.PSS:
    if parameters["hash_algorithm"]["algorithm"].native != digest:
        raise SignatureInvalid("the RSA-PSS hash differs from the digest algorithm")
    mgf_hash = DIGESTS.get(parameters["mask_gen_algorithm"]["parameters"]["algorithm"].native)
    if mgf_hash is None:
        raise SignatureInvalid("unsupported RSA-PSS mask generation hash")
    return padding.PSS(mgf=padding.MGF1(mgf_hash()), salt_length=parameters["salt_length"].native)


def _check_signed_attributes(signed: _SignedData, content: bytes) -> datetime | None:
    """The content type must be data and the message digest that of ``content``; returns the signing time."""
    if signed.attributes.get("content_type") != "data":
        raise SignatureInvalid("the signed content type is not data")
    expected = signed.attributes.get("message_digest")
    actual = hashlib.new(signed.digest, content).digest()
    if not isinstance(expected, bytes) or not hmac.compare_digest(expected, actual):
        raise SignatureInvalid("the content does not match the signed message digest (the content was changed)")
    signing_time = signed.attributes.get("signing_time")
    return signing_time if isinstance(signing_time, datetime) else None


def _check_signature_value(signed: _SignedData) -> None:
    """The signature over the signed attributes, with the signer's key."""
    name, digest, key = signed.signature_algorithm, DIGESTS[signed.digest](), signed.signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and name in ("ecdsa", f"{signed.digest}_ecdsa"):
            key.verify(signed.signature, signed.to_be_signed, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey) and name in ("rsassa_pkcs1v15", f"{signed.digest}_rsa"):
            key.verify(signed.signature, signed.to_be_signed, padding.PKCS1v15(), digest)
        elif isinstance(key, rsa.RSAPublicKey) and signed.pss is not None:
            key.verify(signed.signature, signed.to_be_signed, signed.pss, digest)
        else:
            raise SignatureInvalid(f"unsupported signature algorithm {name} for the signer's key")
    except InvalidSignature:
        raise SignatureInvalid("the signature does not verify with the signer's key") from None


# -- certificates ------------------------------------------------------------------------------------------------


def certificate_path(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustAnchors,
    usage: frozenset[str],
    *,
    at: datetime,
) -> tuple[x509.Certificate, ...]:
    """The path from ``certificate`` to a trust root, built by ``cryptography`` (issuers matched by name and key
    identifier, with backtracking, so a CA re-keyed under the same name chains), valid at ``at``, with ``usage``."""
    path = _library_path(certificate, intermediates, trust, usage, at)
    if path is None:
        _refuse(certificate, intermediates, trust, usage, at)
    if len(path) < 2:  # a trust root used as a signer would escape the revocation check
        raise ChainInvalid(f"certificate {_describe(certificate)} is a trust root, not a certificate issued under one")
    return path


def _refuse(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustAnchors,
    usage: frozenset[str],
    at: datetime,
) -> NoReturn:
    """Name the check a path refused by the library fails (it says only that it found none): the key usage when a
    path is found without it; else the dates, the key usage or the chain along the path walked by names."""
    if _library_path(certificate, intermediates, trust, frozenset(), at) is None:
        check_validity(_walk(certificate, intermediates, trust, at), at)
    check_key_usage(certificate, usage)
    raise ChainInvalid(
        f"no path of at most {MAX_PATH} certificates from {_describe(certificate)} to the trust root that this "
        "verifier accepts (CA constraints, algorithms)"
    )


def _library_path(
    certificate: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: TrustAnchors,
    usage: frozenset[str],
    at: datetime,
) -> tuple[x509.Certificate, ...] | None:
    """The path ``cryptography`` builds, or None when it refuses (its reasons are text, and name certificates)."""
    # The web-PKI defaults would want a subjectAltName on every signer: ours have none, like most CMS signers.
    ca_policy = (
        verification.ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, verification.Criticality.AGNOSTIC, None)  # cA is then enforced
        .may_be_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _may_sign_certificates)
    )
    ee_policy = verification.ExtensionPolicy.permit_all()
    if usage:
        ee_policy = ee_policy.require_present(x509.KeyUsage, verification.Criticality.AGNOSTIC, _allows(usage))
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trust.roots)))
        .time(at)
        .max_chain_depth(MAX_PATH - 2)  # the CA certificates between the signer and the root
        .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
        .build_client_verifier()
    )
    try:
        return tuple(verifier.verify(certificate, list(intermediates)).chain)
    except verification.VerificationError:
        return None


def _may_sign_certificates(
    policy: verification.Policy, certificate: x509.Certificate, key_usage: x509.KeyUsage | None
) -> None:
    if key_usage is not None and not key_usage.key_cert_sign:
        raise ValueError("a CA without keyCertSign")


def _allows(usage: frozenset[str]) -> Callable[[verification.Policy, x509.Certificate, x509.KeyUsage], None]:
    def validate(policy: verification.Policy, certificate: x509.Certificate, key_usage: x509.KeyUsage) -> None:
        if not all(getattr(key_usage, name) for name in usage):
            raise ValueError("key usage missing")

    return validate


def _walk(
    certificate: x509.Certificate, intermediates: Sequence[x509.Certificate], trust: TrustAnchors, at: datetime
) -> tuple[x509.Certificate, ...]:
    """Up from ``certificate`` by issuer names and signatures alone, preferring certificates valid at ``at``, to say
    why there is no path: a critical extension not understood, an issuer not at hand, a signature that does not
    verify. Only ever used to word a refusal, never to accept."""
    path = [certificate]
    while len(path) <= MAX_PATH:
        current = path[-1]
        unknown = [e.oid.dotted_string for e in current.extensions if e.critical and e.oid not in UNDERSTOOD]
        if unknown:
            raise ChainInvalid(f"certificate {_describe(current)} has an unknown critical extension ({unknown[0]})")
        if current in trust.roots:
            return tuple(path)
        named = [c for c in (*trust.roots, *intermediates) if c.subject == current.issuer and c not in path]
        if not named:
            raise ChainInvalid(
                f"certificate {_describe(current)} was issued by '{_dn(current.issuer)}', "
                "which is not the trust root nor a CA certificate leading to it"
            )
        issuers = [c for c in named if _issued_by(current, c)]
        if not issuers:
            raise ChainInvalid(f"the signature on certificate {_describe(current)} by its issuer does not verify")
        path.append(min(issuers, key=lambda c: not c.not_valid_before_utc <= at <= c.not_valid_after_utc))
    raise ChainInvalid(f"no path of at most {MAX_PATH} certificates to the trust root")


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def check_validity(path: Sequence[x509.Certificate], at: datetime) -> None:
    for certificate in path:
        if at < certificate.not_valid_before_utc:
            raise CertificateNotYetValid(
                f"certificate {_describe(certificate)} is valid only from {_stamp(certificate.not_valid_before_utc)}"
            )
        if at > certificate.not_valid_after_utc:
            raise CertificateExpired(
                f"certificate {_describe(certificate)} expired on {_stamp(certificate.not_valid_after_utc)}"
            )


def check_key_usage(certificate: x509.Certificate, usage: frozenset[str]) -> None:
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise KeyUsageMissing(f"certificate {_describe(certificate)} has no key usage extension") from None
    missing = sorted(USAGE_NAMES[name] for name in usage if not getattr(key_usage, name))
    if missing:
        raise KeyUsageMissing(f"certificate {_describe(certificate)} lacks {' and '.join(missing)}")


def check_revocation(path: Sequence[x509.Certificate], trust: TrustAnchors, at: datetime) -> None:
    """The end certificate must be checked against its issuer's CRL; CA certificates are when a CRL from their
    issuer is at hand."""
    for position, (certificate, issuer) in enumerate(zip(path, path[1:], strict=False)):
        crl = _current_crl(issuer, trust.crls, at)
        if crl is None:
            if position == 0:
                raise CrlUnusable(f"no CRL from '{_dn(issuer.subject)}' to check {_describe(certificate)}")
            continue
        entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
        if entry is not None and entry.revocation_date_utc <= at:  # a signature made before the revocation holds
            raise CertificateRevoked(
                f"certificate {_describe(certificate)} was revoked on {_stamp(entry.revocation_date_utc)}"
            )


def _current_crl(
    issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList], at: datetime
) -> x509.CertificateRevocationList | None:
    """The newest CRL signed by ``issuer``'s key (a CA re-keyed under the same name signs one with each key), not
    past its next update."""
    mine = [crl for crl in crls if crl.issuer == issuer.subject]
    if not mine:
        return None
    signed = [crl for crl in mine if crl.is_signature_valid(issuer.public_key())]
    if not signed:
        raise CrlUnusable(f"the CRL of '{_dn(issuer.subject)}' has an invalid signature")
    crl = max(signed, key=lambda c: c.last_update_utc)
    if crl.next_update_utc is not None and at > crl.next_update_utc:
        raise CrlUnusable(f"the CRL of '{_dn(issuer.subject)}' was due for renewal on {_stamp(crl.next_update_utc)}")
    return crl


def _describe(certificate: x509.Certificate) -> str:
    """``describe``, escaped: the certificates carried in a signature are the sender's, checked or not."""
    return shown(describe(certificate))


def _dn(name: x509.Name) -> str:
    return shown(name.rfc4514_string())


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
