"""Receipt v1 (1.1): the receiver signs, the sender verifies and binds the receipt to its package; an accepted
receipt witnesses the sender's ledger head that the manifest carried; /1 receipts still verify."""

import json
import subprocess
from dataclasses import replace

import pytest
from sqlalchemy import select

from exchange import ledger
from exchange.errors import ReceiptInvalid, ReceiptMismatch, SignatureInvalid, SignerMismatch
from exchange.pki import SIGNING
from exchange.receipt import (
    FORMAT,
    FORMAT_1,
    RECEIPT,
    SIGNATURE,
    Receipt,
    make_receipt,
    record_receipt,
    verify_receipt,
    write_receipt,
)
from population.db import session_factory
from population.models import LedgerEntry
from tests.exchange.conftest import CITIZENS, PASSWORD, build


@pytest.fixture
def sent(exchange_engine, tmp_path, population_signer):
    return build(exchange_engine, tmp_path / "out", population_signer)


@pytest.fixture
def witnessed(exchange_engine, sent, tmp_path, population_signer):
    """A second package: its manifest carries the ledger head, entry 1 (the first package's package_sent)."""
    built = build(exchange_engine, tmp_path / "out", population_signer)
    assert built.manifest.ledger_head.entry == 1
    return built


def test_a_receipt_round_trips(witnessed, tmp_path, health_signer, trust):
    sent = witnessed
    receipt = make_receipt(sent.manifest, sent.manifest_sha256)
    directory = write_receipt(receipt, tmp_path / "receipt", health_signer)
    document = json.loads((directory / RECEIPT).read_bytes())
    assert list(document) == ["format", "package_id", "manifest_sha256", "status", "received_at", "record_count",
                              "errors", "ledger_head"]  # fmt: skip
    assert document["format"] == "lienthong-receipt/1.1"
    assert (document["status"], document["record_count"], document["errors"]) == ("accepted", 3, [])
    head = sent.manifest.ledger_head
    assert document["ledger_head"] == {"entry": 1, "hash": head.hash}  # echoed from the signed manifest
    verified = verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)
    assert verified.receipt == receipt == Receipt.from_bytes(receipt.to_bytes())
    assert verified.signature.agency == "health"
    assert verified.summary().startswith(f"receipt verified: package {sent.manifest.package_id} accepted by health")
    assert "witnesses the sender's ledger up to entry 1" in verified.summary()


def test_the_first_package_witnesses_no_head(sent, tmp_path, health_signer, trust):
    """The ledger was empty when the first package was sealed: the manifest and the receipt carry null."""
    directory = write_receipt(make_receipt(sent.manifest, sent.manifest_sha256), tmp_path / "r", health_signer)
    assert json.loads((directory / RECEIPT).read_bytes())["ledger_head"] is None
    assert verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256).receipt.ledger_head is None


def test_a_rejected_receipt_witnesses_nothing(witnessed, tmp_path, health_signer, trust):
    """A receiver rejecting a package may not have checked its signature: it signs no head."""
    receipt = make_receipt(witnessed.manifest, witnessed.manifest_sha256, status="rejected", errors=["signature: x"])
    assert receipt.ledger_head is None
    directory = write_receipt(receipt, tmp_path / "r", health_signer)
    assert verify_receipt(directory, trust, witnessed.manifest, witnessed.manifest_sha256).receipt.status == "rejected"


@pytest.mark.parametrize("status", ["accepted", "rejected"])
def test_a_receipt_witnessing_another_head_is_rejected(witnessed, tmp_path, health_signer, trust, status):
    manifest, sha256 = witnessed.manifest, witnessed.manifest_sha256
    other = ledger.Head(1, "f" * 64)
    receipt = replace(make_receipt(manifest, sha256, status=status), ledger_head=other)
    directory = write_receipt(receipt, tmp_path / "r", health_signer)
    expected = (r"^receipt_mismatch: the receipt's ledger_head is entry 1 \(ffffffffffff…\), "
                rf"the package's manifest carried entry 1 \({manifest.ledger_head.hash[:12]}…\)$")  # fmt: skip
    with pytest.raises(ReceiptMismatch, match=expected):
        verify_receipt(directory, trust, manifest, sha256)


def test_an_accepted_receipt_must_echo_the_head(witnessed, tmp_path, health_signer, trust):
    receipt = replace(make_receipt(witnessed.manifest, witnessed.manifest_sha256), ledger_head=None)
    directory = write_receipt(receipt, tmp_path / "r", health_signer)
    with pytest.raises(ReceiptMismatch, match="the receipt's ledger_head is null, the package's manifest carried"):
        verify_receipt(directory, trust, witnessed.manifest, witnessed.manifest_sha256)


def test_a_receipt_v1_still_verifies(witnessed, tmp_path, health_signer, trust):
    """A receipt written before ``ledger_head`` (``lienthong-receipt/1``, exactly the v1 fields) reads and verifies,
    for a package of either format; it witnesses nothing."""
    receipt = replace(make_receipt(witnessed.manifest, witnessed.manifest_sha256), ledger_head=None, format=FORMAT_1)
    directory = write_receipt(receipt, tmp_path / "r", health_signer)
    document = json.loads((directory / RECEIPT).read_bytes())
    assert document["format"] == "lienthong-receipt/1" and "ledger_head" not in document
    verified = verify_receipt(directory, trust, witnessed.manifest, witnessed.manifest_sha256)
    assert verified.receipt == receipt and verified.receipt.ledger_head is None
    assert "witnesses" not in verified.summary()
    with pytest.raises(ValueError, match="a lienthong-receipt/1 receipt has no ledger_head"):
        replace(receipt, ledger_head=witnessed.manifest.ledger_head).to_bytes()
    with pytest.raises(ReceiptInvalid, match="not a lienthong-receipt/1.1 \\(or lienthong-receipt/1\\) document"):
        Receipt.from_bytes(json.dumps(document | {"ledger_head": None}).encode())  # /1 has exactly the v1 fields


def test_a_receipt_v1_1_verifies_with_stock_openssl(witnessed, tmp_path, pki, health_signer):
    """What the sender and anyone else checks of a 1.1 receipt with the stock tool: the signature holds."""
    directory = write_receipt(make_receipt(witnessed.manifest, witnessed.manifest_sha256), tmp_path / "r",
                              health_signer)  # fmt: skip
    assert json.loads((directory / RECEIPT).read_bytes())["format"] == "lienthong-receipt/1.1"
    checked = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(directory / SIGNATURE),
         "-content", str(directory / RECEIPT), "-CAfile", str(pki.root_ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "Verification successful" in checked.stderr


def test_a_rejection_receipt_carries_the_reasons(sent, tmp_path, health_signer, trust):
    receipt = make_receipt(sent.manifest, sent.manifest_sha256, status="rejected", errors=["file_hash: data/x"])
    directory = write_receipt(receipt, tmp_path / "receipt", health_signer)
    verified = verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)
    assert (verified.receipt.status, verified.receipt.record_count) == ("rejected", 0)
    assert verified.receipt.errors == ("file_hash: data/x",)


def test_a_receipt_for_another_package_is_rejected(exchange_engine, sent, tmp_path, population_signer, health_signer,
                                                   trust):  # fmt: skip
    other = build(exchange_engine, tmp_path / "out", population_signer, CITIZENS)
    directory = write_receipt(make_receipt(other.manifest, other.manifest_sha256), tmp_path / "r", health_signer)
    with pytest.raises(
        ReceiptMismatch, match=f"^receipt_mismatch: the receipt is for package {other.manifest.package_id}"
    ):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)


def test_a_receipt_with_the_right_id_but_another_manifest_is_rejected(sent, tmp_path, health_signer, trust):
    receipt = make_receipt(sent.manifest, "0" * 64)
    directory = write_receipt(receipt, tmp_path / "receipt", health_signer)
    with pytest.raises(ReceiptMismatch, match="manifest 000000000000"):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)


def test_an_accepted_receipt_must_count_every_record(sent, tmp_path, health_signer, trust):
    receipt = make_receipt(sent.manifest, sent.manifest_sha256, record_count=2)
    directory = write_receipt(receipt, tmp_path / "receipt", health_signer)
    with pytest.raises(ReceiptMismatch, match="accepted 2 records of the 3 sent"):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)


def test_only_the_recipient_may_sign_the_receipt(sent, tmp_path, population_signer, trust):
    directory = write_receipt(make_receipt(sent.manifest, sent.manifest_sha256), tmp_path / "r", population_signer)
    with pytest.raises(SignerMismatch, match="^signer: the package went to health, but 'Liên thông population"):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)


def test_a_changed_receipt_is_rejected(sent, tmp_path, health_signer, trust):
    directory = write_receipt(make_receipt(sent.manifest, sent.manifest_sha256), tmp_path / "r", health_signer)
    text = (directory / RECEIPT).read_text()
    (directory / RECEIPT).write_text(text.replace('"accepted"', '"rejected"'))
    with pytest.raises(SignatureInvalid, match="^signature: the content does not match"):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)
    (directory / SIGNATURE).unlink()
    with pytest.raises(SignatureInvalid, match="no receipt.json.p7s"):
        verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)


@pytest.mark.parametrize("version", ["1.1", "1"])
def test_a_receipt_signed_with_stock_openssl_is_accepted(witnessed, tmp_path, pki, trust, version):
    """What docs/partners.md tells a partner to do, step by step (1.1: ``ledger_head`` copied from the manifest);
    and what it told them before (/1)."""
    sent = witnessed
    receipt = tmp_path / "receipt"
    receipt.mkdir()
    document = {
        "format": f"lienthong-receipt/{version}", "package_id": sent.manifest.package_id,
        "manifest_sha256": sent.manifest_sha256, "status": "accepted", "received_at": "2026-11-28T10:00:00Z",
        "record_count": 3, "errors": [],
    }  # fmt: skip
    if version == "1.1":
        document["ledger_head"] = json.loads((sent.path / "manifest.json").read_bytes())["ledger_head"]
    (receipt / RECEIPT).write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    subprocess.run(
        ["openssl", "cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
         "-in", str(receipt / RECEIPT), "-out", str(receipt / SIGNATURE),
         "-signer", str(pki.certificate("health", SIGNING)), "-inkey", str(pki.key("health", SIGNING)),
         "-passin", f"pass:{PASSWORD.decode()}", "-certfile", str(pki.issuing_ca)],
        check=True,
    )  # fmt: skip
    verified = verify_receipt(receipt, trust, sent.manifest, sent.manifest_sha256)
    assert verified.receipt.record_count == 3
    assert verified.receipt.ledger_head == (sent.manifest.ledger_head if version == "1.1" else None)


def test_a_malformed_receipt_is_rejected(sent, tmp_path, health_signer, trust):
    with pytest.raises(ReceiptInvalid, match="not a lienthong-receipt/1.1 \\(or lienthong-receipt/1\\) document"):
        Receipt.from_bytes(b'{"format": "lienthong-receipt/1"}')
    with pytest.raises(ReceiptInvalid, match="^receipt: no receipt.json"):
        verify_receipt(tmp_path, trust, sent.manifest, sent.manifest_sha256)
    with pytest.raises(ValueError, match="status must be"):
        make_receipt(sent.manifest, sent.manifest_sha256, status="maybe")


def test_receipts_are_ledgered_once(exchange_engine, sent, tmp_path, health_signer, trust):
    directory = write_receipt(make_receipt(sent.manifest, sent.manifest_sha256), tmp_path / "r", health_signer)
    verified = verify_receipt(directory, trust, sent.manifest, sent.manifest_sha256)
    fingerprint, signer = verified.signature.fingerprint, verified.signature.signer
    assert record_receipt(exchange_engine, "receipt_received", sent.manifest, verified.receipt, signer)
    assert not record_receipt(exchange_engine, "receipt_received", sent.manifest, verified.receipt, signer)
    with session_factory(exchange_engine)() as session:
        entries = session.scalars(select(LedgerEntry).order_by(LedgerEntry.position)).all()
    assert [e.kind for e in entries] == ["package_sent", "receipt_received"]
    assert (entries[1].status, entries[1].signer_fingerprint) == ("accepted", fingerprint)
    assert entries[1].manifest_sha256 == sent.manifest_sha256


def test_a_receipt_counting_past_what_the_ledger_stores_is_malformed():
    """As a manifest's counts: a receipt's record_count stops at 2^53 - 1, so 2^63 never reaches the ledger."""
    document = {
        "format": "lienthong-receipt/1",
        "package_id": "p",
        "manifest_sha256": "0" * 64,
        "status": "accepted",
        "received_at": "2026-12-05T00:00:00Z",
        "errors": [],
    }
    assert Receipt.from_bytes(json.dumps(document | {"record_count": 2**53 - 1}).encode()).record_count == 2**53 - 1
    with pytest.raises(ReceiptInvalid, match="not a lienthong-receipt/1.1 \\(or lienthong-receipt/1\\) document"):
        Receipt.from_bytes(json.dumps(document | {"record_count": 2**63}).encode())
    with pytest.raises(ReceiptInvalid, match="^receipt: receipt.json: ledger_head must be null or"):
        head = {"entry": 2**63, "hash": "0" * 64}
        Receipt.from_bytes(json.dumps(document | {"record_count": 1, "format": FORMAT, "ledger_head": head}).encode())
