"""Why an exchange package, signature or receipt was rejected: one error type per check.

Every message starts with the name of the check that failed (``signature: …``, ``revoked: …``), so the command
line, the logs and a partner reading a rejected receipt all see the same word. Messages never carry personal
data or key material.
"""

from __future__ import annotations

import zipfile

SHOWN_CHARS = 100  # sender text a message carries, at most (our certificates' names are under 80 characters)


def shown(text: str) -> str:
    """Sender text (a certificate's name, say) as a message may carry it: control and other unprintable characters
    escaped, so that it cannot break or forge a log line, and cut at SHOWN_CHARS."""
    escaped = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
    return escaped if len(escaped) <= SHOWN_CHARS else escaped[: SHOWN_CHARS - 1] + "…"


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


class ZipRefused(FilesMismatch, zipfile.BadZipFile):
    """The package's zip is refused before anything in it is used: not a zip, damaged (CRC, deflate data), an
    entry named outside the package layout, too many entries, too large, or expanding like a zip bomb. It is also
    a ``zipfile.BadZipFile``, so that code catching zipfile's own error still catches it."""


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
