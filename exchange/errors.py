"""Why an exchange package, signature or receipt was rejected: one error type per check.

Every message starts with the name of the check that failed (``signature: …``, ``revoked: …``), so the command
line, the logs and a partner reading a rejected receipt all see the same word. Messages never carry personal
data or key material.
"""

from __future__ import annotations


class VerificationError(Exception):
    """A check failed. ``check`` names it; ``str(error)`` is ``"<check>: <detail>"``."""

    check = "verification"

    def __init__(self, detail: str) -> None:
        super().__init__(f"{self.check}: {detail}")
        self.detail = detail


class ManifestInvalid(VerificationError):
    check = "manifest"


class SignatureInvalid(VerificationError):
    check = "signature"


class ChainInvalid(VerificationError):
    check = "chain"


class CertificateExpired(VerificationError):
    check = "expired"


class CertificateNotYetValid(VerificationError):
    check = "not_yet_valid"


class CertificateRevoked(VerificationError):
    check = "revoked"


class CrlUnusable(VerificationError):
    check = "crl"


class KeyUsageMissing(VerificationError):
    check = "key_usage"


class SignerMismatch(VerificationError):
    check = "signer"


class FilesMismatch(VerificationError):
    """A file listed in the manifest is missing, or the package holds one the manifest does not list."""

    check = "files"


class FileSizeMismatch(VerificationError):
    check = "file_size"


class FileHashMismatch(VerificationError):
    check = "file_hash"


class DecryptionFailed(VerificationError):
    check = "decrypt"


class SequenceGap(VerificationError):
    check = "sequence_gap"


class SequenceReplay(VerificationError):
    check = "sequence_replay"


class SequenceFork(VerificationError):
    check = "sequence_fork"


class ReceiptMismatch(VerificationError):
    check = "receipt_mismatch"


class ReceiptInvalid(VerificationError):
    check = "receipt"


class LedgerBroken(VerificationError):
    """The ledger's hash chain does not hold at ``position`` (0 for the head row)."""

    check = "ledger"

    def __init__(self, position: int, detail: str) -> None:
        super().__init__(f"entry {position} {detail}" if position else detail)
        self.position = position
