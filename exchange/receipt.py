"""Receipt v1 (DESIGN.md) in the ledger. The receipt itself — its form, making, signing and verifying — is the
partners' kit's (``lienthong_verify.receipt``, re-exported here); this module records receipts sent and received in
the tamper-evident ledger.
"""

from __future__ import annotations

from cryptography import x509
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exchange import ledger
from exchange.package import Manifest, ledger_record
from lienthong_verify.receipt import (  # noqa: F401 (re-exported: the partners' kit makes and checks receipts)
    FORMAT,
    FORMAT_1,
    FORMATS,
    RECEIPT,
    SIGNATURE,
    STATUSES,
    Receipt,
    VerifiedReceipt,
    make_receipt,
    sign_receipt,
    verify_receipt,
    write_receipt,
)
from population.db import session_factory


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
