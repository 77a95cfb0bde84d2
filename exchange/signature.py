"""Detached CMS signatures (SignedData, DER): made with ``cryptography``, checked here.
The code lives in the verification kit that partners install
(``lienthong_verify.signature``): one place for both sides."""

from lienthong_verify.signature import (
    DIGESTS,
    MAX_CERTIFICATES,
    MAX_PATH,
    MAX_SIGNATURE_BYTES,
    SIGNING_USAGE,
    UNDERSTOOD,
    USAGE_NAMES,
    TrustAnchors,
    VerifiedSignature,
    certificate_path,
    check_key_usage,
    check_revocation,
    check_validity,
    sign_detached,
    verify_certificate,
    verify_detached,
)

__all__ = [
    "DIGESTS",
    "MAX_CERTIFICATES",
    "MAX_PATH",
    "MAX_SIGNATURE_BYTES",
    "SIGNING_USAGE",
    "UNDERSTOOD",
    "USAGE_NAMES",
    "TrustAnchors",
    "VerifiedSignature",
    "certificate_path",
    "check_key_usage",
    "check_revocation",
    "check_validity",
    "sign_detached",
    "verify_certificate",
    "verify_detached",
]
