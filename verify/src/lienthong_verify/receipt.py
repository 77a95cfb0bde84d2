"""Receipt v1 (DESIGN.md): the receiver's signed word that it got a package, and what it made of it.

A receipt is two files: ``receipt.json`` — {format, package_id, manifest_sha256, status, received_at,
record_count, errors, ledger_head} — and ``receipt.json.p7s``, a detached CMS signature over its exact bytes by the
receiver's signing certificate. The sender verifies the signature like a package's, checks that the receiver
(the manifest's recipient) signed it, and binds it to the package it sent by the manifest's SHA-256: a receipt
for another package is rejected. An accepted receipt must count every record the package carried.

Receipts are written as ``lienthong-receipt/1.1``: ``ledger_head`` echoes the head of the sender's ledger that the
package's signed manifest carried (``exchange.package``), so the receiver signs a point of the sender's chain
and holds it outside the sender's reach: a chain rewritten since contradicts it (``feeds.audit.audit_witnesses``).
The receiver echoes it only when it accepts the package (it has then checked the manifest's signature); a
rejected receipt has null. ``lienthong-receipt/1`` receipts (no ``ledger_head``) still read and verify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from lienthong_verify.certificates import Signer, agency_of, common_name, describe
from lienthong_verify.errors import ReceiptInvalid, ReceiptMismatch, SignatureInvalid, SignerMismatch, shown
from lienthong_verify.package import MAX_COUNT, Head, Manifest, document_bytes, ledger_head_of, load_document
from lienthong_verify.signature import TrustAnchors, VerifiedSignature, sign_detached, verify_detached

FORMAT = "lienthong-receipt/1.1"  # what is written: v1 and ledger_head
FORMAT_1 = "lienthong-receipt/1"  # still read and verified: no ledger_head
FORMATS = (FORMAT_1, FORMAT)
RECEIPT = "receipt.json"
SIGNATURE = "receipt.json.p7s"
STATUSES = ("accepted", "rejected")
_KEYS_1 = ("format", "package_id", "manifest_sha256", "status", "received_at", "record_count", "errors")
_KEYS = (*_KEYS_1, "ledger_head")


@dataclass(frozen=True)
class Receipt:
    package_id: str
    manifest_sha256: str
    status: str
    received_at: str
    record_count: int
    errors: tuple[str, ...]
    ledger_head: Head | None = None  # the head the package's manifest carried, witnessed (1.1)
    format: str = FORMAT

    def to_bytes(self) -> bytes:
        fields = asdict(self)
        version = fields.pop("format")
        if version == FORMAT_1:
            if fields.pop("ledger_head") is not None:
                raise ValueError(f"a {FORMAT_1} receipt has no ledger_head")
        elif version != FORMAT:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        return document_bytes({"format": version, **fields, "errors": list(self.errors)})

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        """Parse and check a receipt strictly: exactly the fields of its format (1.1: v1's and ``ledger_head``;
        1: v1's), each of its type and within its bounds."""
        document = load_document(data, RECEIPT, ReceiptInvalid)
        version = document.get("format") if isinstance(document, dict) else None
        valid = (
            isinstance(document, dict)
            and version in FORMATS
            and set(document) == set(_KEYS_1 if version == FORMAT_1 else _KEYS)
            and all(isinstance(document[k], str) for k in ("package_id", "manifest_sha256", "received_at"))
            and document["status"] in STATUSES
            and isinstance(document["record_count"], int)
            and not isinstance(document["record_count"], bool)
            and 0 <= document["record_count"] <= MAX_COUNT  # as a manifest's counts: the ledger stores it
            and isinstance(document["errors"], list)
            and all(isinstance(e, str) for e in document["errors"])
        )
        if not valid:
            raise ReceiptInvalid(f"receipt.json is not a {FORMAT} (or {FORMAT_1}) document")
        try:
            head = ledger_head_of(document.get("ledger_head"))
        except ValueError as error:
            raise ReceiptInvalid(f"receipt.json: {error}") from None
        return cls(**{key: document[key] for key in _KEYS[1:6]}, errors=tuple(document["errors"]), ledger_head=head,
                   format=version)  # fmt: skip


def make_receipt(
    manifest: Manifest,
    manifest_sha256: str,
    *,
    status: str = "accepted",
    errors: Sequence[str] = (),
    record_count: int | None = None,
) -> Receipt:
    """The receiver's receipt for a package; ``record_count`` defaults to the manifest's when accepted. An accepted
    receipt echoes the manifest's ``ledger_head`` (the receiver checked the manifest's signature before accepting);
    a rejected one carries null, since the manifest it names may not be the sender's."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    if record_count is None:
        record_count = manifest.record_count if status == "accepted" else 0
    return Receipt(
        package_id=manifest.package_id,
        manifest_sha256=manifest_sha256,
        status=status,
        received_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        record_count=record_count,
        errors=tuple(errors),
        ledger_head=manifest.ledger_head if status == "accepted" else None,
    )


def write_receipt(receipt: Receipt, directory: Path, signer: Signer) -> Path:
    """Write ``receipt.json`` and its signature into ``directory``; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    data = receipt.to_bytes()
    (directory / SIGNATURE).write_bytes(sign_detached(data, signer))
    (directory / RECEIPT).write_bytes(data)
    return directory


@dataclass(frozen=True)
class VerifiedReceipt:
    receipt: Receipt
    signature: VerifiedSignature

    def summary(self) -> str:
        r = self.receipt
        errors = f"; errors: {'; '.join(r.errors)}" if r.errors else ""
        head = f"; witnesses the sender's ledger up to entry {r.ledger_head.entry:,}" if r.ledger_head else ""
        return (
            f"receipt verified: package {r.package_id} {r.status} by {self.signature.agency} "
            f"({r.record_count:,} records, received {r.received_at}), signed by '{common_name(self.signature.signer)}'"
            f"{head}{errors}"
        )


def verify_receipt(
    directory: Path, trust: TrustAnchors, manifest: Manifest, manifest_sha256: str, *, at: datetime | None = None
) -> VerifiedReceipt:
    """Check a receipt for the package with this manifest: signature and certificates (as for a package), the
    recipient as signer, the binding to the package, and a full count when accepted. A 1.1 receipt must echo the
    manifest's ``ledger_head`` when it accepts, and may carry no other; a /1 receipt (a receiver that does not
    know the field yet) witnesses nothing and is otherwise checked the same."""
    receipt_path, signature_path = directory / RECEIPT, directory / SIGNATURE
    if not receipt_path.is_file():
        raise ReceiptInvalid(f"no {RECEIPT} in {directory}")
    if not signature_path.is_file():
        raise SignatureInvalid(f"no {SIGNATURE} in {directory}")
    data = receipt_path.read_bytes()
    signed = verify_detached(data, signature_path.read_bytes(), trust, at=at)
    receipt = Receipt.from_bytes(data)
    if signed.agency != manifest.recipient:
        raise SignerMismatch(
            f"the package went to {manifest.recipient}, but {describe(signed.signer)} signed the receipt"
        )
    if receipt.manifest_sha256 != manifest_sha256 or receipt.package_id != manifest.package_id:
        raise ReceiptMismatch(
            f"the receipt is for package {receipt.package_id} (manifest {receipt.manifest_sha256[:12]}…), "
            f"not for package {manifest.package_id} (manifest {manifest_sha256[:12]}…)"
        )
    if receipt.status == "accepted" and receipt.record_count != manifest.record_count:
        raise ReceiptMismatch(
            f"the receiver accepted {receipt.record_count:,} records of the {manifest.record_count:,} sent"
        )
    echoed = receipt.ledger_head
    if receipt.format != FORMAT_1 and echoed != manifest.ledger_head and (echoed or receipt.status == "accepted"):
        raise ReceiptMismatch(
            f"the receipt's ledger_head is {_head_text(receipt.ledger_head)}, "
            f"the package's manifest carried {_head_text(manifest.ledger_head)}"
        )
    return VerifiedReceipt(receipt, signed)


def _head_text(head: Head | None) -> str:
    return f"entry {head.entry:,} ({head.hash[:12]}…)" if head else "null"


def sign_receipt(
    manifest: Manifest,
    manifest_sha256: str,
    directory: Path,
    signer: Signer,
    *,
    status: str = "accepted",
    errors: Sequence[str] = (),
    record_count: int | None = None,
) -> Receipt:
    """The recipient's receipt for a package, written and signed into ``directory``: refused (``SignerMismatch``)
    when the signing certificate is not the package's recipient's, since the sender would refuse it anyway."""
    if agency_of(signer.certificate) != manifest.recipient:
        raise SignerMismatch(
            f"the package is for {manifest.recipient}; {shown(describe(signer.certificate))} cannot sign its receipt"
        )
    receipt = make_receipt(manifest, manifest_sha256, status=status, errors=errors, record_count=record_count)
    write_receipt(receipt, directory, signer)
    return receipt
