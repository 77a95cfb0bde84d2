"""Exchange package v1: the manifest, deterministic payloads, zip, and every rejection by its own check."""

import hashlib
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange import ledger
from exchange.errors import (
    CertificateRevoked,
    ChainInvalid,
    FileHashMismatch,
    FileSizeMismatch,
    FilesMismatch,
    ManifestInvalid,
    RecipientMismatch,
    SequenceFork,
    SequenceGap,
    SequenceReplay,
    SignatureInvalid,
    SignerMismatch,
    VerificationError,
)
from exchange.package import (
    MANIFEST,
    PACKAGE_NAMESPACE,
    SIGNATURE,
    Manifest,
    PackageBuilder,
    Validation,
    accept_package,
    hash_file,
    read_manifest,
    verify_package,
    zip_package,
)
from exchange.pki import ENCRYPTION, init_pki, load_certificate, load_recipient, load_signer, revoke
from exchange.signature import TrustAnchors, sign_detached
from population.db import create_population_engine, session_factory
from population.models import LedgerEntry, PackageFeed
from tests.exchange.conftest import (
    CITIZENS,
    PASSWORD,
    SCHEMA,
    build,
    expired_signer,
    not_yet_valid_signer,
    signature_only_signer,
)

EXPECTED_CSV = (
    "personal_id,full_name,date_of_birth,sex\r\n"
    "001200012345,Nguyễn Thị Thuỷ,2000-01-02,F\r\n"
    '079085001234,"Trần Văn ""Bé"", con",,M\r\n'
    '096191000077,"Đặng Hoà\nPhước",1991-12-31,\r\n'
).encode()


def _resign(package: Path, signer) -> None:
    (package / SIGNATURE).write_bytes(sign_detached((package / MANIFEST).read_bytes(), signer))


def _payload(package: Path) -> Path:
    return next((package / "data").iterdir())


@pytest.fixture
def sender_engine(tmp_path, sqlite_template):
    """A second sending database (a sender that lost its state, or a forger): for forks."""
    path = tmp_path / "other-sender.db"
    shutil.copy(sqlite_template, path)
    engine = create_population_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


# -- the manifest and the payload --------------------------------------------------------------------------------


def test_the_manifest_is_exchange_package_v1(exchange_engine, tmp_path, population_signer):
    first = build(exchange_engine, tmp_path, population_signer)
    document = json.loads((first.path / MANIFEST).read_bytes())
    assert list(document) == [
        "format", "package_id", "agreement", "sender", "recipient", "direction", "mode", "sequence",
        "previous_manifest_sha256", "created_at", "schema", "record_count", "files", "validation", "ledger_head",
    ]  # fmt: skip
    assert document["format"] == "lienthong-package/1.1"
    assert document["ledger_head"] is None  # the ledger was empty: the package's own package_sent is entry 1
    assert document["package_id"] == str(uuid.uuid5(PACKAGE_NAMESPACE, "population/health-identity/outbound/1"))
    assert [document[k] for k in ("agreement", "sender", "recipient")] == ["health-identity", "population", "health"]
    assert (document["direction"], document["mode"], document["sequence"]) == ("outbound", "full", 1)
    assert document["previous_manifest_sha256"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", document["created_at"])
    assert document["schema"] == {"name": "citizen-extract", "version": "1"}
    assert document["record_count"] == 3
    assert document["validation"] is None  # filled in by the data-quality step (validation/)
    payload = first.path / "data" / "citizens.csv"
    assert document["files"] == [
        {
            "path": "data/citizens.csv",
            "media_type": "text/csv; charset=utf-8; header=present",
            "bytes": payload.stat().st_size,
            "sha256": hashlib.sha256(payload.read_bytes()).hexdigest(),
            "encrypted": False,
        }
    ]
    assert payload.read_bytes() == EXPECTED_CSV
    assert first.manifest_sha256 == hashlib.sha256((first.path / MANIFEST).read_bytes()).hexdigest()

    second = build(exchange_engine, tmp_path, population_signer)
    assert second.manifest.sequence == 2
    assert second.manifest.previous_manifest_sha256 == first.manifest_sha256
    assert second.path.name == "health-identity-population-outbound-00000002"


def test_the_manifest_carries_the_ledger_head_before_its_own_entry(exchange_engine, tmp_path, population_signer):
    """``ledger_head`` is the sender's last ledger entry when the package was sealed: the package's own
    ``package_sent`` entry chains right after it."""
    first = build(exchange_engine, tmp_path, population_signer)
    second = build(exchange_engine, tmp_path, population_signer, agreement="tax-identity", recipient="tax")
    with session_factory(exchange_engine)() as session:
        entries = list(ledger.entries(session))
    assert second.manifest.ledger_head == ledger.Head(1, entries[0].entry_hash)
    written = json.loads((second.path / MANIFEST).read_bytes())["ledger_head"]
    assert written == {"entry": 1, "hash": entries[0].entry_hash}
    assert (entries[1].kind, entries[1].package_id) == ("package_sent", second.manifest.package_id)
    assert entries[1].previous_hash == second.manifest.ledger_head.hash
    assert first.manifest.ledger_head is None


def test_a_package_v1_manifest_without_ledger_head_still_verifies(exchange_engine, tmp_path, population_signer,
                                                                   trust):  # fmt: skip
    """A package sealed before the ledger head was added (``lienthong-package/1``) reads and verifies as before,
    and writes back byte for byte."""
    built = build(exchange_engine, tmp_path, population_signer)
    document = json.loads((built.path / MANIFEST).read_bytes())
    document["format"] = "lienthong-package/1"
    del document["ledger_head"]
    v1 = (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()
    (built.path / MANIFEST).write_bytes(v1)
    _resign(built.path, population_signer)
    verified = verify_package(built.path, trust)
    assert (verified.manifest.format, verified.manifest.ledger_head) == ("lienthong-package/1", None)
    assert verified.manifest.to_bytes() == v1
    document["ledger_head"] = None  # a /1 manifest has exactly the v1 fields
    with pytest.raises(ManifestInvalid, match="unexpected or missing fields"):
        Manifest.from_bytes(json.dumps(document).encode())


@pytest.mark.parametrize(
    "head",
    [{"entry": 0, "hash": "a" * 64}, {"entry": 1, "hash": "A" * 64}, {"entry": 1}, {"entry": True, "hash": "a" * 64},
     {"entry": 2**53, "hash": "a" * 64}, {"entry": 1, "hash": "a" * 64, "more": 1}, [1, "a" * 64], "a" * 64],
)  # fmt: skip
def test_a_malformed_ledger_head_is_refused(exchange_engine, tmp_path, population_signer, trust, head):
    built = build(exchange_engine, tmp_path, population_signer)
    document = json.loads((built.path / MANIFEST).read_bytes())
    document["ledger_head"] = head
    (built.path / MANIFEST).write_text(json.dumps(document))
    _resign(built.path, population_signer)
    with pytest.raises(ManifestInvalid, match=r"^manifest: ledger_head must be null or \{entry, hash\}"):
        verify_package(built.path, trust)


def test_the_same_rows_give_the_same_payload_bytes(exchange_engine, tmp_path, population_signer):
    for name in ("citizens.csv", "citizens.jsonl"):
        one = build(exchange_engine, tmp_path / "one", population_signer, name=name)
        two = build(exchange_engine, tmp_path / "two", population_signer, name=name)
        assert (one.path / "data" / name).read_bytes() == (two.path / "data" / name).read_bytes()
        assert one.manifest.files == two.manifest.files
        assert one.manifest.package_id != two.manifest.package_id


def test_jsonl_payload_keeps_types_and_vietnamese_text(exchange_engine, tmp_path, population_signer):
    built = build(exchange_engine, tmp_path, population_signer, name="citizens.jsonl")
    lines = (built.path / "data" / "citizens.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == CITIZENS
    assert "Nguyễn Thị Thuỷ" in lines[0]  # UTF-8, not \\u escapes


def test_validation_outcome_goes_into_the_manifest(exchange_engine, tmp_path, population_signer):
    validation = Validation(suite="citizen-extract.v1", passed=True, quarantined=2, report="reports/1.html")
    built = build(exchange_engine, tmp_path, population_signer, validation=validation)
    assert json.loads((built.path / MANIFEST).read_bytes())["validation"] == {
        "suite": "citizen-extract.v1", "passed": True, "quarantined": 2, "report": "reports/1.html",
    }  # fmt: skip
    assert read_manifest(built.path)[0].validation == validation


def test_a_package_from_record_batches_and_several_files(exchange_engine, tmp_path, population_signer):
    with PackageBuilder(tmp_path, agreement="tax-identity", recipient="tax", schema=SCHEMA,
                        signer=population_signer) as builder:  # fmt: skip
        builder.add_batches("part-1.csv", [CITIZENS[:2], CITIZENS[2:]])
        builder.add_rows("part-2.jsonl", ["personal_id", "n"], [("001200012345", 1), ("079085001234", 2)])
        built = builder.seal(exchange_engine)
    assert built.manifest.record_count == 5
    assert [f.path for f in built.manifest.files] == ["data/part-1.csv", "data/part-2.jsonl"]
    assert (built.path / "data" / "part-1.csv").read_bytes() == EXPECTED_CSV


@pytest.mark.parametrize("link", [False, True], ids=["copied", "linked"])
def test_an_existing_file_is_packed_as_is(exchange_engine, tmp_path, population_signer, trust, link):
    source = tmp_path / "ready.csv"
    source.write_bytes(EXPECTED_CSV)
    with PackageBuilder(tmp_path / "out", agreement="health-identity", recipient="health", schema=SCHEMA,
                        signer=population_signer) as builder:  # fmt: skip
        builder.add_file("citizens.csv", source, record_count=3, link=link)
        built = builder.seal(exchange_engine)
    packed = built.path / "data" / "citizens.csv"
    assert packed.read_bytes() == EXPECTED_CSV
    assert packed.samefile(source) == link
    assert verify_package(built.path, trust).manifest.record_count == 3


def test_the_builder_refuses_what_it_must_not_pack(exchange_engine, tmp_path, population_signer, issuing_ca, pki):
    out = tmp_path / "out"

    def attempt(records=CITIZENS, **settings):
        build(exchange_engine, out, population_signer, records, **settings)

    with pytest.raises(ValueError, match="fields outside the columns: email"):
        attempt([CITIZENS[0], {**CITIZENS[1], "email": "a@b.vn"}])
    with pytest.raises(ValueError, match="agreement name"):
        attempt(agreement="../health")
    with pytest.raises(ValueError, match="two of"):
        attempt(recipient="population")
    with pytest.raises(ValueError, match="between the population database and one partner"):
        attempt(sender="tax", recipient="health")
    with pytest.raises(ValueError, match="payload file name"):
        attempt(name="citizens.parquet")
    with pytest.raises(VerificationError, match="^expired"):
        build(exchange_engine, out, expired_signer(issuing_ca))
    with pytest.raises(VerificationError, match="^key_usage: .* lacks keyEncipherment"):
        attempt(encrypt_for=load_certificate(pki.certificate("health", "signing")))
    assert list(out.iterdir()) == []  # no half-built package left behind
    with session_factory(exchange_engine)() as session:
        assert session.scalars(select(PackageFeed)).all() == []  # no sequence number used


# -- verification ------------------------------------------------------------------------------------------------


def test_verify_accepts_a_good_package_and_says_so_in_one_line(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    verified = verify_package(built.path, trust, engine=exchange_engine)
    assert verified.manifest == built.manifest
    assert verified.signature.agency == "population"
    summary = verified.summary()
    assert "\n" not in summary
    assert summary.startswith(f"package {built.manifest.package_id} verified: health-identity #1 from population")


def test_stock_openssl_verifies_the_manifest_and_decrypts_the_payload(
    exchange_engine, tmp_path, population_signer, pki
):
    """The steps of docs/partners.md, with the openssl binary."""
    health_certificate = load_certificate(pki.certificate("health", ENCRYPTION))
    built = build(exchange_engine, tmp_path, population_signer, encrypt_for=health_certificate)
    verify = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(built.path / SIGNATURE),
         "-content", str(built.path / MANIFEST), "-CAfile", str(pki.root_ca), "-purpose", "any"],
        capture_output=True,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout == (built.path / MANIFEST).read_bytes()
    (entry,) = built.manifest.files
    assert entry.path == "data/citizens.csv.p7m" and entry.encrypted
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r", str(built.path / entry.path)],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert digest.stdout.split()[0] == entry.sha256
    decrypted = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-in", str(built.path / entry.path),
         "-recip", str(pki.certificate("health", ENCRYPTION)), "-inkey", str(pki.key("health", ENCRYPTION)),
         "-passin", f"pass:{PASSWORD.decode()}"],
        capture_output=True,
    )  # fmt: skip
    assert decrypted.returncode == 0, decrypted.stderr
    assert decrypted.stdout == EXPECTED_CSV


def test_verify_decrypts_with_the_recipients_key(exchange_engine, tmp_path, population_signer, pki, trust):
    recipient = load_recipient(pki.certificate("health", ENCRYPTION), pki.key("health", ENCRYPTION), PASSWORD)
    built = build(exchange_engine, tmp_path / "out", population_signer, encrypt_for=recipient.certificate)
    verified = verify_package(built.path, trust, recipient=recipient, decrypt_to=tmp_path / "plain")
    assert verified.decrypted == (tmp_path / "plain" / "data" / "citizens.csv",)
    assert verified.decrypted[0].read_bytes() == EXPECTED_CSV
    assert not (built.path / "data" / "citizens.csv").exists()  # only ciphertext was shipped


def test_a_package_for_another_recipient_is_refused_by_name_before_anything_is_decrypted(
    exchange_engine, tmp_path, population_signer, pki, trust
):
    tax = load_recipient(pki.certificate("tax", ENCRYPTION), pki.key("tax", ENCRYPTION), PASSWORD)
    built = build(exchange_engine, tmp_path / "out", population_signer)  # for health, in the clear
    with pytest.raises(RecipientMismatch, match=r"^recipient: the package is for health$"):
        verify_package(built.path, trust, recipient=tax, decrypt_to=tmp_path / "plain")
    assert not (tmp_path / "plain").exists()


@pytest.mark.slow
def test_every_changed_byte_of_the_manifest_is_rejected(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    original = (built.path / MANIFEST).read_bytes()
    for position in range(len(original)):
        changed = bytearray(original)
        changed[position] ^= 0x20 if 0x40 < changed[position] < 0x7B else 0x01
        (built.path / MANIFEST).write_bytes(bytes(changed))
        with pytest.raises(SignatureInvalid, match="^signature: the content does not match the signed message digest"):
            verify_package(built.path, trust)


def test_every_changed_byte_of_the_payload_is_rejected(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    payload = _payload(built.path)
    original = payload.read_bytes()
    for position in range(len(original)):
        changed = bytearray(original)
        changed[position] ^= 0x01
        payload.write_bytes(bytes(changed))
        with pytest.raises(FileHashMismatch, match="^file_hash: data/citizens.csv does not have the SHA-256"):
            verify_package(built.path, trust)


def test_changed_bytes_of_the_signature_file_are_rejected(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    original = (built.path / SIGNATURE).read_bytes()
    for position in range(0, len(original), 7):  # every byte is covered in test_signature.py
        changed = bytearray(original)
        changed[position] ^= 0x01
        (built.path / SIGNATURE).write_bytes(bytes(changed))
        with pytest.raises(VerificationError) as error:
            verify_package(built.path, trust)
        assert error.value.check in ("signature", "chain")
    (built.path / SIGNATURE).write_bytes(original + b"\x00")
    with pytest.raises(SignatureInvalid, match="not valid CMS DER"):
        verify_package(built.path, trust)


def test_a_payload_of_the_wrong_size_fails_the_size_check(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    payload = _payload(built.path)
    payload.write_bytes(payload.read_bytes() + "079085001235,Kẻ Gian,,M\r\n".encode())
    with pytest.raises(FileSizeMismatch, match=r"^file_size: data/citizens.csv has \d+ bytes, the manifest says"):
        verify_package(built.path, trust)


def test_missing_and_unlisted_files_are_rejected(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    (built.path / "data" / "extra.csv").write_text("x\n")
    with pytest.raises(FilesMismatch, match="^files: data/extra.csv in the package but not in the manifest"):
        verify_package(built.path, trust)
    (built.path / "data" / "extra.csv").unlink()
    _payload(built.path).unlink()
    with pytest.raises(FilesMismatch, match="^files: data/citizens.csv is in the manifest but not in the package"):
        verify_package(built.path, trust)
    (built.path / SIGNATURE).unlink()
    with pytest.raises(SignatureInvalid, match="^signature: the package has no manifest.json.p7s"):
        verify_package(built.path, trust)
    (built.path / MANIFEST).write_bytes(b" " * (16 << 20) + b"{}")
    with pytest.raises(ManifestInvalid, match="^manifest: manifest.json is larger than 16 MiB"):
        verify_package(built.path, trust)
    (built.path / MANIFEST).unlink()
    with pytest.raises(ManifestInvalid, match="^manifest: the package has no manifest.json"):
        verify_package(built.path, trust)


def test_the_signer_must_be_the_sender(exchange_engine, tmp_path, population_signer, health_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    _resign(built.path, health_signer)
    with pytest.raises(SignerMismatch, match="^signer: the manifest's sender is population, but 'Liên thông health"):
        verify_package(built.path, trust)


@pytest.mark.parametrize(
    ("make_signer", "check"),
    [(expired_signer, "expired"), (not_yet_valid_signer, "not_yet_valid"), (signature_only_signer, "key_usage")],
    ids=["expired", "not-yet-valid", "no-non-repudiation"],
)
def test_a_package_signed_with_a_bad_certificate_is_rejected(
    exchange_engine, tmp_path, population_signer, issuing_ca, trust, make_signer, check
):
    built = build(exchange_engine, tmp_path, population_signer)
    _resign(built.path, make_signer(issuing_ca))
    with pytest.raises(VerificationError, match=f"^{check}: certificate 'Liên thông population signing'"):
        verify_package(built.path, trust)


def test_a_package_signed_under_another_ca_is_rejected(exchange_engine, tmp_path, population_signer, other_pki, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    _resign(built.path, load_signer(other_pki, "population", PASSWORD))
    with pytest.raises(ChainInvalid, match="^chain: "):
        verify_package(built.path, trust)


def test_a_package_signed_with_a_revoked_certificate_is_rejected(exchange_engine, tmp_path):
    pki = init_pki(tmp_path / "pki", PASSWORD, rsa_bits=2048)
    signer = load_signer(pki, "population", PASSWORD)
    built = build(exchange_engine, tmp_path / "out", signer)
    revoke(pki, signer.certificate, PASSWORD)
    with pytest.raises(CertificateRevoked, match="^revoked: certificate 'Liên thông population signing'"):
        verify_package(built.path, TrustAnchors.from_pki(pki))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.update(extra=1), "unexpected or missing fields"),
        (lambda d: d.update(format="lienthong-package/2"), "format is not"),
        (lambda d: d.update(sequence=0), "sequence must be a positive integer"),
        (lambda d: d.update(previous_manifest_sha256="ab" * 32), "null at sequence 1"),
        (lambda d: d.update(direction="inbound"), "direction does not match"),
        (lambda d: d["files"][0].update(path="../etc/passwd"), "is not data/<name>"),
        (lambda d: d["files"][0].update(encrypted=True), "encrypted files end in .p7m"),
        (lambda d: d.update(record_count=-1), "record_count must be a count"),
        (lambda d: d.update(created_at="2026-11-28 10:00:00"), "created_at must be RFC 3339 in UTC"),
        (lambda d: d.update(package_id="package-1"), "package_id must be a UUID"),
    ],
)
def test_a_signed_but_malformed_manifest_is_rejected(
    exchange_engine, tmp_path, population_signer, trust, change, problem
):
    built = build(exchange_engine, tmp_path, population_signer)
    document = json.loads((built.path / MANIFEST).read_bytes())
    change(document)
    (built.path / MANIFEST).write_text(json.dumps(document))
    _resign(built.path, population_signer)
    with pytest.raises(ManifestInvalid, match=f"^manifest: .*{re.escape(problem)}"):
        verify_package(built.path, trust)


def test_manifest_parsing_round_trips(exchange_engine, tmp_path, population_signer):
    built = build(exchange_engine, tmp_path, population_signer)
    assert Manifest.from_bytes(built.manifest.to_bytes()) == built.manifest
    with pytest.raises(ManifestInvalid, match="not UTF-8 JSON"):
        Manifest.from_bytes(b"\xff{}")


# -- the zip form ------------------------------------------------------------------------------------------------


def test_the_zip_form_verifies_and_is_deterministic(exchange_engine, tmp_path, population_signer, pki, trust):
    recipient = load_recipient(pki.certificate("health", ENCRYPTION), pki.key("health", ENCRYPTION), PASSWORD)
    built = build(exchange_engine, tmp_path, population_signer, encrypt_for=recipient.certificate)
    first = zip_package(built.path).read_bytes()
    archive = zip_package(built.path)
    assert archive.read_bytes() == first
    verified = verify_package(archive, trust, recipient=recipient)
    assert verified.decrypted[0] == tmp_path / f"{built.path.name}.decrypted" / "data" / "citizens.csv"
    assert verified.decrypted[0].read_bytes() == EXPECTED_CSV


def test_a_tampered_zip_is_rejected(exchange_engine, tmp_path, population_signer, trust):
    import zipfile

    built = build(exchange_engine, tmp_path, population_signer)
    payload = _payload(built.path)
    payload.write_bytes(payload.read_bytes().replace(b",F\r\n", b",M\r\n"))
    archive = zip_package(built.path)
    with pytest.raises(FileHashMismatch):
        verify_package(archive, trust)
    with zipfile.ZipFile(archive, "a") as extended, pytest.warns(UserWarning, match="Duplicate name"):
        extended.writestr("data/citizens.csv", b"a second member of the same name")
    with pytest.raises(FilesMismatch, match="the same name twice"):
        verify_package(archive, trust)


# -- sequence ----------------------------------------------------------------------------------------------------


def test_an_accepted_package_moves_the_feed_and_is_ledgered(exchange_engine, tmp_path, population_signer, trust):
    built = build(exchange_engine, tmp_path, population_signer)
    accept_package(exchange_engine, verify_package(built.path, trust, engine=exchange_engine))
    with session_factory(exchange_engine)() as session:
        received = session.scalars(select(PackageFeed).where(PackageFeed.side == "received")).one()
        assert (received.sender, received.last_sequence) == ("population", 1)
        assert received.last_manifest_sha256 == built.manifest_sha256
        kinds = session.scalars(select(LedgerEntry.kind).order_by(LedgerEntry.position)).all()
    assert kinds == ["package_sent", "package_received"]


def test_a_replayed_package_is_rejected(exchange_engine, tmp_path, population_signer, trust):
    first = build(exchange_engine, tmp_path, population_signer)
    accept_package(exchange_engine, verify_package(first.path, trust, engine=exchange_engine))
    with pytest.raises(SequenceReplay, match="^sequence_replay: package 1 of population's outbound packages on agree"):
        verify_package(first.path, trust, engine=exchange_engine)
    second = build(exchange_engine, tmp_path, population_signer)
    accept_package(exchange_engine, verify_package(second.path, trust, engine=exchange_engine))
    with pytest.raises(SequenceReplay, match="package 1 .* already accepted \\(the last accepted is 2\\)"):
        verify_package(first.path, trust, engine=exchange_engine)


def test_a_skipped_package_is_rejected(exchange_engine, tmp_path, population_signer, trust):
    first, second, third = (build(exchange_engine, tmp_path, population_signer) for _ in range(3))
    with pytest.raises(SequenceGap, match="^sequence_gap: expected package 1 of .*, got 2: 1 missing"):
        verify_package(second.path, trust, engine=exchange_engine)
    accept_package(exchange_engine, verify_package(first.path, trust, engine=exchange_engine))
    with pytest.raises(SequenceGap, match="expected package 2 .*, got 3: 1 missing"):
        verify_package(third.path, trust, engine=exchange_engine)


def test_a_forked_sequence_is_rejected(exchange_engine, sender_engine, tmp_path, population_signer, trust):
    """Another sending database numbers its own packages 1, 2: the receiver has accepted the first 1."""
    ours = build(exchange_engine, tmp_path / "ours", population_signer)
    accept_package(exchange_engine, verify_package(ours.path, trust, engine=exchange_engine))
    other_first = build(sender_engine, tmp_path / "other", population_signer, CITIZENS[:1])
    other_second = build(sender_engine, tmp_path / "other", population_signer, CITIZENS[:2])
    with pytest.raises(SequenceFork, match="^sequence_fork: package 2 of .* follows manifest .*, but the package"):
        verify_package(other_second.path, trust, engine=exchange_engine)
    with pytest.raises(SequenceFork, match="^sequence_fork: package 1 of .* differs from the package 1 accepted"):
        verify_package(other_first.path, trust, engine=exchange_engine)
    # a fork further back is found through the ledger
    accept_package(exchange_engine, verify_package(build(exchange_engine, tmp_path / "ours", population_signer).path,
                                                   trust, engine=exchange_engine))  # fmt: skip
    with pytest.raises(SequenceFork, match="package 1 of .* differs"):
        verify_package(other_first.path, trust, engine=exchange_engine)


def test_accepting_twice_is_refused_under_the_lock(exchange_engine, tmp_path, population_signer, trust):
    """Two workers verified the same package before either accepted it: only one acceptance counts."""
    built = build(exchange_engine, tmp_path, population_signer)
    first = verify_package(built.path, trust, engine=exchange_engine)
    second = verify_package(built.path, trust, engine=exchange_engine)
    accept_package(exchange_engine, first)
    with pytest.raises(SequenceReplay):
        accept_package(exchange_engine, second)


def test_a_retry_resends_the_same_package(exchange_engine, tmp_path, population_signer, trust):
    """The receiver deduplicates by package id: a delivery retried is the same bytes and the same id."""
    built = build(exchange_engine, tmp_path, population_signer)
    copy = tmp_path / "retry" / built.path.name
    shutil.copytree(built.path, copy)
    assert read_manifest(copy) == (built.manifest, built.manifest_sha256)
    assert hash_file(copy / MANIFEST) == hash_file(built.path / MANIFEST)
