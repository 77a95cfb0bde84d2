"""Why an exchange package, signature or receipt was rejected: one error type per check.

Every message starts with the name of the check that failed (``signature: …``, ``revoked: …``), so the command
line, the logs and a partner reading a rejected receipt all see the same word. Messages never carry personal
data or key material.
"""

from __future__ import annotations

import zipfile

SHOWN_CHARS = 100  # sender text a message carries, at most (our certificates' names are under 80 characters)
# C0 and C1 controls and DEL, the line and paragraph separators, and the bidirectional overrides and isolates that
# reorder what a terminal shows ("Trojan Source"): escaped wherever something from outside is printed or logged.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    c: f"\\u{c:04x}" for c in (0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
}


def printable(value: object) -> str:
    """``value`` as text on one line, its control characters escaped (a newline as ``\\x0a``): it cannot break or
    forge a log line, a message or a terminal's display."""
    return str(value).translate(_CONTROLS)


def shown(text: str) -> str:
    """Sender text (a certificate's name, say) as a message may carry it: ``printable``, and cut at SHOWN_CHARS."""
    escaped = printable(text)
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


class RecipientMismatch(VerificationError):
    check = "recipient"


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
