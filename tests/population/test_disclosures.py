"""The disclosure index on each backend: the keyed hash, the sidecars, a package recorded in its transaction and
looked up with its receipt from the ledger."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from exchange import ledger
from population.db import session_factory
from population.disclosures import (
    SUBJECT_BYTES,
    DisclosurePackage,
    PackageDisclosure,
    SubjectHasher,
    SubjectsFile,
    disclosure,
    disclosures_of,
    record_package,
    sorted_subjects,
    subjects_of,
)
from tests.exchange.conftest import reset_exchange_tables

KEY = b"a test disclosure key"
A, B, C = "001200012345", "079085001234", "096191000077"


@pytest.mark.parametrize("key", [KEY, b"k", b"x" * 64, b"long key " * 20])
def test_the_subject_is_the_hmac_sha256_of_the_personal_id(key):
    hasher = SubjectHasher(key)
    assert hasher(A) == hmac.digest(key, A.encode(), "sha256") == hasher(A.encode())
    assert hasher(A) != hasher(B) and len(hasher(A)) == SUBJECT_BYTES
    assert SubjectHasher(key + b"!")(A) != hasher(A)  # another key, another subject: the index needs the key


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="empty"):
        SubjectHasher(b"")


def test_a_sidecar_holds_one_subject_per_record_with_an_id(tmp_path):
    hasher = SubjectHasher(KEY)
    rows = [(A, "x"), (None, "y"), (B, "z"), ("", "w")]
    with SubjectsFile(tmp_path / "s", hasher) as subjects:
        assert list(subjects.tap(rows, 0)) == rows  # the rows go on unchanged
        subjects.add(C.encode())
        subjects.add(b"")
    assert subjects.count == 3
    assert [s for block in sorted_subjects([tmp_path / "s"]) for s in subjects_of(block)] == sorted(
        [hasher(A), hasher(B), hasher(C)]
    )


def test_the_subjects_of_several_files_come_out_in_one_sorted_stream(tmp_path, monkeypatch):
    """Each sidecar is written in sorted runs (here of 1,000); sealing merges every run of every file."""
    from population import disclosures

    monkeypatch.setattr(disclosures, "RUN_SUBJECTS", 1_000)
    monkeypatch.setattr(disclosures, "MERGE_BYTES", 77 * 32)
    hasher = SubjectHasher(KEY)
    expected = []
    for name, count in (("a", 2_500), ("b", 999), ("c", 0), ("d", 1_001)):
        with SubjectsFile(tmp_path / name, hasher) as subjects:
            for n in range(count):
                subjects.add(f"{name}{n:011d}")
                expected.append(hasher(f"{name}{n:011d}"))
        assert (tmp_path / name).stat().st_size == 32 * count
    merged = [s for block in sorted_subjects(tmp_path / n for n in "abcd") for s in subjects_of(block)]
    assert merged == sorted(expected) and len(merged) == 4_500


def package(number: int, created_at: datetime, direction: str = "outbound") -> PackageDisclosure:
    sender, recipient = ("population", "health") if direction == "outbound" else ("health", "population")
    return PackageDisclosure(f"00000000-0000-4000-8000-{number:012d}", "health-identity", direction, sender,
                             recipient, "incremental", number, ("personal_id", "full_name"), ("Law 26/2023",),
                             "keep the cards in line", created_at)  # fmt: skip


def sidecar(path, ids):
    with SubjectsFile(path, SubjectHasher(KEY)) as subjects:
        for personal_id in ids:
            subjects.add(personal_id)
    return path


def receipt(session, package: PackageDisclosure, kind: str, status: str) -> None:
    ledger.append(session, ledger.LedgerRecord(kind, package.agreement, package.direction, package.sender,
                                               package.recipient, package.package_id, package.sequence, "0" * 64,
                                               1, "f" * 64, status))  # fmt: skip


def test_packages_are_indexed_and_looked_up_with_their_receipts(engine, tmp_path):
    reset_exchange_tables(engine)
    hasher = SubjectHasher(KEY)
    day = datetime(2026, 7, 2, 8, tzinfo=UTC)
    first, second, third = package(1, day), package(2, day + timedelta(days=3)), package(3, day, "inbound")
    with session_factory(engine)() as session, session.begin():
        # two files of one package (a snapshot's shards), A in both
        assert record_package(session, first, [sidecar(tmp_path / "1a", [A, B]), sidecar(tmp_path / "1b", [A])]) == 3
        assert record_package(session, second, [sidecar(tmp_path / "2", [B])]) == 1
        assert record_package(session, third, [sidecar(tmp_path / "3", [A, A])]) == 2
        receipt(session, first, "receipt_received", "rejected")
        receipt(session, first, "receipt_received", "accepted")
        receipt(session, third, "receipt_sent", "accepted")
        receipt(session, second, "receipt_sent", "accepted")  # not the receipt that settles an outbound package
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(disclosure)) == 6
        assert session.scalars(select(DisclosurePackage.record_count).order_by(DisclosurePackage.id)).all() == [3, 1, 2]
        of_a = disclosures_of(session, hasher(A))
        assert [(d.package_id, d.direction, d.records, d.receipt_status) for d in of_a] == [
            (first.package_id, "outbound", 2, "accepted"),
            (third.package_id, "inbound", 2, "accepted"),
        ]
        assert of_a[0].partner == of_a[1].partner == "health"
        assert of_a[0].fields == ("personal_id", "full_name") and of_a[0].legal_basis == ("Law 26/2023",)
        assert of_a[0].created_at == day and of_a[0].receipt_at is not None
        of_b = disclosures_of(session, hasher(B))
        assert [(d.sequence, d.receipt_status) for d in of_b] == [(1, "accepted"), (2, None)]
        assert [d.sequence for d in disclosures_of(session, hasher(B), day + timedelta(days=1))] == [2]
        assert disclosures_of(session, hasher(C)) == []
        assert disclosures_of(session, SubjectHasher(b"another key")(A)) == []


def test_a_package_not_committed_leaves_no_disclosure(engine, tmp_path):
    reset_exchange_tables(engine)
    with pytest.raises(RuntimeError), session_factory(engine)() as session, session.begin():
        record_package(session, package(9, datetime(2026, 7, 2, tzinfo=UTC)), [sidecar(tmp_path / "9", [A, B])])
        raise RuntimeError("the seal failed after the index was written")
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(disclosure)) == 0
        assert session.scalar(select(func.count()).select_from(DisclosurePackage)) == 0
