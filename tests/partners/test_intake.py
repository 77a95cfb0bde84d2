"""What a partner does with a package it receives: verify, deduplicate, store, acknowledge."""

from __future__ import annotations

import zipfile

import pytest

from exchange import ledger
from exchange.receipt import verify_receipt
from lienthong_verify import package as package_module  # the reader partners and the intake share
from partners.intake import IntakeRefused, PackageIntake, PartnerKeys
from partners.store import RegistryStore
from population.db import session_factory
from tests.partners.fixtures import PASSWORD, RECORDS


@pytest.fixture
def health_intake(tmp_path, sandbox_pki) -> PackageIntake:
    store = RegistryStore(tmp_path / "health" / "registry.db")
    yield PackageIntake(PartnerKeys.load(sandbox_pki, "health", PASSWORD), store, tmp_path / "work")
    store.dispose()


def check_receipt(result, package, trust, directory):
    (directory / "receipt.json").parent.mkdir(parents=True, exist_ok=True)
    (directory / "receipt.json").write_bytes(result.receipt)
    (directory / "receipt.json.p7s").write_bytes(result.signature)
    return verify_receipt(directory, trust, package.manifest, package.manifest_sha256).receipt


@pytest.mark.parametrize("encrypt", [True, False], ids=["encrypted", "plain"])
def test_a_package_is_verified_stored_and_acknowledged(health_intake, make_package, trust, tmp_path, encrypt):
    package = make_package("health", encrypt=encrypt)
    result = health_intake.receive(package.path)
    assert result.status == "accepted" and not result.duplicate
    assert check_receipt(result, package, trust, tmp_path / "receipt").record_count == 3
    assert health_intake.store.record_count(package.manifest.package_id) == 3


def test_a_package_received_again_is_answered_with_the_same_receipt_and_stored_once(health_intake, make_package):
    package = make_package("health")
    first = health_intake.receive(package.path)
    again = health_intake.receive(package.path)
    assert again.duplicate and (again.receipt, again.signature) == (first.receipt, first.signature)
    assert health_intake.store.package_count() == 1 and health_intake.store.record_count() == 3


def test_the_manifest_is_parsed_only_once_its_signature_holds_and_a_package_received_again_not_at_all(
    health_intake, make_package, monkeypatch
):
    """A package stored already is known by its manifest's SHA-256; any other is parsed after the signature over
    the manifest's bytes is checked."""
    calls: list[str] = []
    parse, check = package_module.Manifest.from_bytes.__func__, package_module.verify_signature

    def parsing(cls, data):
        calls.append("parse")
        return parse(cls, data)

    def checking(*args, **kwargs):
        calls.append("signature")
        return check(*args, **kwargs)

    monkeypatch.setattr(package_module.Manifest, "from_bytes", classmethod(parsing))
    monkeypatch.setattr(package_module, "verify_signature", checking)
    package = make_package("health")
    calls.clear()
    assert health_intake.receive(package.path).status == "accepted"
    assert calls[:2] == ["signature", "parse"]
    calls.clear()
    again = health_intake.receive(package.path)
    assert again.duplicate and again.package_id == package.manifest.package_id and calls == []


def test_a_package_out_of_sequence_is_rejected_until_the_gap_is_filled(health_intake, make_package, trust, tmp_path):
    first, second = make_package("health"), make_package("health")
    early = health_intake.receive(second.path)
    receipt = check_receipt(early, second, trust, tmp_path / "early")
    assert receipt.status == "rejected" and receipt.errors[0].startswith("sequence_gap:")
    assert health_intake.store.package_count() == 0
    assert health_intake.receive(first.path).status == "accepted"
    assert health_intake.receive(second.path).status == "accepted"


def test_a_package_for_another_partner_is_rejected(health_intake, make_package):
    result = health_intake.receive(make_package("tax").path)
    assert result.status == "rejected" and b"recipient" in result.receipt


def test_a_changed_payload_is_rejected(health_intake, make_package, tmp_path):
    package = make_package("health", encrypt=False)
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(package.path) as source, zipfile.ZipFile(tampered, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data.replace("Thuỷ".encode(), "Thủy".encode()) if item.filename.startswith("data/")
                            else data)  # fmt: skip
    result = health_intake.receive(tampered)
    assert result.status == "rejected" and b"file_hash" in result.receipt
    assert health_intake.store.package_count() == 0


def test_a_package_signed_under_another_root_is_rejected(health_intake, make_package, stranger_pki):
    from exchange.pki import load_signer

    package = make_package("health", signer=load_signer(stranger_pki, "population", PASSWORD))
    result = health_intake.receive(package.path)
    assert result.status == "rejected" and b"chain" in result.receipt


def test_something_that_is_not_a_package_is_refused_without_a_receipt(health_intake, tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(IntakeRefused):
        health_intake.receive(junk)


def test_the_records_are_stored_as_sent(health_intake, make_package):
    import json

    from sqlalchemy import select

    from partners.store import record

    package = make_package("health")
    health_intake.receive(package.path)
    with health_intake.store.engine.connect() as connection:
        stored = [json.loads(row.content) for row in connection.execute(select(record).order_by(record.c.id))]
    assert [r["full_name"] for r in stored] == [r["full_name"] for r in RECORDS]


def test_a_package_whose_storing_failed_is_accepted_when_sent_again(health_intake, make_package, monkeypatch):
    """The feed moves on, the package and its records are stored and the receipt is recorded together: a store
    that fails half-way (here its disk, made to fail on the first package) leaves nothing behind, so the sender's
    retry of the same package is accepted, not answered "already accepted" with nothing stored."""
    package, store = make_package("health"), health_intake.store
    stored = RegistryStore.store_package
    failures = iter([OSError("disk I/O error")])

    def failing_once(*args, **kwargs):
        stored(*args, **kwargs)  # written in the intake's transaction, then the disk fails
        if error := next(failures, None):
            raise error

    monkeypatch.setattr(RegistryStore, "store_package", failing_once)
    with pytest.raises(OSError):
        health_intake.receive(package.path)
    assert store.package_count() == 0 and store.record_count() == 0
    with session_factory(store.engine)() as session:
        assert list(ledger.entries(session)) == []  # neither package_received nor receipt_sent
    again = health_intake.receive(package.path)
    assert again.status == "accepted" and not again.duplicate
    assert store.package_count() == 1 and store.record_count() == 3
    with session_factory(store.engine)() as session:
        assert [e.kind for e in ledger.entries(session)] == ["package_received", "receipt_sent"]


@pytest.mark.parametrize(
    ("tail", "problem"),
    [
        (b"079085009999,Tr\xe1\xba\xa7n,1985-03-04,,x\n", "citizens.csv line 3002: 5 fields where the header has 4"),
        (b"079085009999,Tr\xe1\xba\n", "citizens.csv: not UTF-8, after line"),
    ],
    ids=["fields", "utf8"],
)
def test_a_broken_csv_line_deep_in_the_file_is_rejected_by_name_and_nothing_is_kept(
    health_intake, make_package, trust, tmp_path, tail, problem
):
    """The CSV is stored as it is read: a line that breaks the file after 3,000 good ones rolls back the records
    stored before it, the feed does not move (the next package is out of sequence) and the receipt names the
    file and the line."""
    good = b"".join(b"%012d,Nguy\xe1\xbb\x85n Th\xe1\xbb\x8b \xc3\x81nh,2000-01-02,\n" % n for n in range(3000))
    broken = make_package("health", csv=b"personal_id,full_name,date_of_birth,died\n" + good + tail)
    receipt = check_receipt(health_intake.receive(broken.path), broken, trust, tmp_path / "broken")
    assert receipt.status == "rejected" and receipt.errors[0].startswith(f"payload: {problem}")
    store = health_intake.store
    assert store.package_count() == 0 and store.record_count() == 0
    with session_factory(store.engine)() as session:
        assert list(ledger.entries(session)) == []
    next_one = make_package("health")
    after = check_receipt(health_intake.receive(next_one.path), next_one, trust, tmp_path / "after")
    assert after.status == "rejected" and after.errors[0].startswith("sequence_gap:")
