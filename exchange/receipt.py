"""Receipt v1 (DESIGN.md): the receiver's signed word that it got a package, and what it made of it.

A receipt is two files: ``receipt.json`` — {format, package_id, manifest_sha256, status, received_at,
record_count, errors} — and ``receipt.json.p7s``, a detached CMS signature over its exact bytes by the
receiver's signing certificate. The sender verifies the signature like a package's, checks that the receiver
(the manifest's recipient) signed it, and binds it to the package it sent by the manifest's SHA-256: a receipt
for another package is rejected. An accepted receipt must count every record the package carried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exchange import ledger
from exchange.errors import ReceiptInvalid, ReceiptMismatch, SignatureInvalid, SignerMismatch
from exchange.package import MAX_COUNT, Manifest, document_bytes, ledger_record, load_document
from exchange.pki import Signer, common_name, describe
from exchange.signature import TrustAnchors, VerifiedSignature, sign_detached, verify_detached
from population.db import session_factory

FORMAT = "lienthong-receipt/1"
RECEIPT = "receipt.json"
SIGNATURE = "receipt.json.p7s"
STATUSES = ("accepted", "rejected")
_KEYS = ("format", "package_id", "manifest_sha256", "status", "received_at", "record_count", "errors")


@dataclass(frozen=True)
class Receipt:
    package_id: str
    manifest_sha256: str
    status: str
    received_at: str
    record_count: int
    errors: tuple[str, ...]

    def to_bytes(self) -> bytes:
        return document_bytes({"format": FORMAT, **asdict(self), "errors": list(self.errors)})

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        document = load_document(data, RECEIPT, ReceiptInvalid)
        valid = (
            isinstance(document, dict)
            and set(document) == set(_KEYS)
            and document["format"] == FORMAT
            and all(isinstance(document[k], str) for k in ("package_id", "manifest_sha256", "received_at"))
            and document["status"] in STATUSES
            and isinstance(document["record_count"], int)
            and not isinstance(document["record_count"], bool)
            and 0 <= document["record_count"] <= MAX_COUNT  # as a manifest's counts: the ledger stores it
            and isinstance(document["errors"], list)
            and all(isinstance(e, str) for e in document["errors"])
        )
        if not valid:
            raise ReceiptInvalid(f"receipt.json is not a {FORMAT} document")
        return cls(**{key: document[key] for key in _KEYS[1:6]}, errors=tuple(document["errors"]))


def make_receipt(
    manifest: Manifest,
    manifest_sha256: str,
    *,
    status: str = "accepted",
    errors: Sequence[str] = (),
    record_count: int | None = None,
) -> Receipt:
    """The receiver's receipt for a package; ``record_count`` defaults to the manifest's when accepted."""
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
        return (
            f"receipt verified: package {r.package_id} {r.status} by {self.signature.agency} "
            f"({r.record_count:,} records, received {r.received_at}), signed by '{common_name(self.signature.signer)}'"
            f"{errors}"
        )


def verify_receipt(
    directory: Path, trust: TrustAnchors, manifest: Manifest, manifest_sha256: str, *, at: datetime | None = None
) -> VerifiedReceipt:
    """Check a receipt for the package with this manifest: signature and certificates (as for a package), the
    recipient as signer, the binding to the package, and a full count when accepted."""
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
    return VerifiedReceipt(receipt, signed)


def record_receipt(
    engine: Engine,
    kind: str,
    manifest: Manifest,
    receipt: Receipt,
    signer: x509.Certificate,
    *,
    within: Session | None = None,
) -> bool:
    """Append ``receipt_sent`` (receiving side) or ``receipt_received`` (sending side) to the ledger, once per
    receipt and package; returns False when it was recorded already. ``within``: in the caller's transaction."""
    if kind not in ("receipt_sent", "receipt_received"):
        raise ValueError("a receipt is either sent or received")
    if within is None:
        with session_factory(engine)() as session, session.begin():
            return record_receipt(engine, kind, manifest, receipt, signer, within=session)
    record = ledger_record(kind, manifest, receipt.manifest_sha256, signer, record_count=receipt.record_count,
                           status=receipt.status)  # fmt: skip
    return ledger.append(within, record, once=True) is not None
