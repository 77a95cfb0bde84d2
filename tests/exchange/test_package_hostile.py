"""Hostile packages, as a partner that means harm would send them: each is refused by its named check, in one
short line that echoes nothing of what the sender wrote, and verifying it records nothing."""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms, core
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

import exchange.package
import lienthong_verify.package
from exchange.errors import ReceiptInvalid, VerificationError
from exchange.package import MANIFEST, SIGNATURE, BuiltPackage, verify_package, zip_package
from exchange.pki import ENCRYPTION, PROFILES, SIGNING, Signer, issue_certificate, load_recipient
from exchange.receipt import Receipt, make_receipt
from exchange.signature import sign_detached
from population.db import create_population_engine, session_factory
from population.models import LedgerEntry, PackageFeed
from tests.exchange.conftest import CITIZENS, PASSWORD, build

PAYLOAD = "data/citizens.csv"
PERSONAL_IDS = [citizen["personal_id"] for citizen in CITIZENS]  # a certificate's hex serial may hold 12 digits


def _has_personal_id(text: str) -> bool:
    return any(personal_id in text for personal_id in PERSONAL_IDS)


def _sealed(folder: Path, sqlite_template: Path, signer: Signer, **settings) -> BuiltPackage:
    """Package 1 of a sending database of its own: sealed once for the module, each test tampers with a copy."""
    shutil.copy(sqlite_template, folder / "sender.db")
    engine = create_population_engine(f"sqlite:///{folder / 'sender.db'}")
    try:
        return build(engine, folder / "out", signer, **settings)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def good(tmp_path_factory, sqlite_template, population_signer) -> BuiltPackage:
    return _sealed(tmp_path_factory.mktemp("good"), sqlite_template, population_signer)


@pytest.fixture(scope="module")
def health(pki):
    return load_recipient(pki.certificate("health", ENCRYPTION), pki.key("health", ENCRYPTION), PASSWORD)


@pytest.fixture(scope="module")
def good_encrypted(tmp_path_factory, sqlite_template, population_signer, health) -> BuiltPackage:
    folder = tmp_path_factory.mktemp("encrypted")
    return _sealed(folder, sqlite_template, population_signer, encrypt_for=health.certificate)


@pytest.fixture
def receiver(tmp_path, sqlite_template):
    """The receiving database, with no feed and an empty ledger."""
    shutil.copy(sqlite_template, tmp_path / "receiver.db")
    engine = create_population_engine(f"sqlite:///{tmp_path / 'receiver.db'}")
    yield engine
    engine.dispose()


def _recorded(engine) -> tuple[int, int]:
    """How many feeds and ledger entries the database holds."""
    with session_factory(engine)() as session:
        feeds = session.scalar(select(func.count()).select_from(PackageFeed))
        entries = session.scalar(select(func.count()).select_from(LedgerEntry))
    return feeds, entries


def _assert_refused(path: Path, check: str, trust, receiver, good: BuiltPackage, **options) -> str:
    """Refused by ``check`` in one short printable line with no personal ID; nothing recorded; the verifier
    still verifies the good package afterwards. Returns the message."""
    with pytest.raises(VerificationError) as refused:
        verify_package(path, trust, engine=receiver, **options)
    message = str(refused.value)
    assert refused.value.check == check, message
    assert message.startswith(f"{check}: ")
    assert message.isprintable() and len(message) <= 300, message  # one line: no newline, no control character
    assert not _has_personal_id(message)
    assert _recorded(receiver) == (0, 0)
    assert verify_package(good.path, trust, engine=receiver).manifest == good.manifest
    return message


def _copy(built: BuiltPackage, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built.path, tmp_path / built.path.name))


def _sign(package: Path, manifest: bytes, signer: Signer) -> None:
    """Write ``manifest`` with a valid signature over it: the sender's key signs hostile content."""
    (package / MANIFEST).write_bytes(manifest)
    (package / SIGNATURE).write_bytes(sign_detached(manifest, signer))


def _manifest_text(package: Path) -> str:
    return (package / MANIFEST).read_text(encoding="utf-8")


# -- a zip written byte by byte, to say what zipfile never writes --------------------------------------------------


@dataclass
class Entry:
    name: bytes
    data: bytes
    method: int = 8  # deflate; 0: stored
    flags: int = 0x800  # UTF-8 names
    crc: int | None = None  # default: the data's
    packed: bytes | None = None  # default: the data, deflated with method 8
    packed_size: int | None = None  # default: the packed data's
    local_name: bytes | None = None  # default: the name


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _raw_zip(path: Path, entries: list[Entry]) -> Path:
    body, directory = bytearray(), bytearray()
    for e in entries:
        packed = e.packed if e.packed is not None else _deflate(e.data) if e.method == 8 else e.data
        crc = zlib.crc32(e.data) if e.crc is None else e.crc
        size = len(packed) if e.packed_size is None else e.packed_size
        local = e.name if e.local_name is None else e.local_name
        fields = (e.flags, e.method, 0, 0x21, crc, size, len(e.data))
        extra = (len(e.name), 0, 0, 0, 0, 0o644 << 16, len(body))  # name, extra, comment, disk, attributes, offset
        directory += struct.pack("<IHH" + "HHHHIII" + "HHHHHII", 0x02014B50, 20, 20, *fields, *extra) + e.name
        body += struct.pack("<IH" + "HHHHIII" + "HH", 0x04034B50, 20, *fields, len(local), 0) + local + packed
    count = min(len(entries), 0xFFFF)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), len(body), 0)
    path.write_bytes(bytes(body + directory + end))
    return path


def _entries(package: Path) -> list[Entry]:
    return [Entry(name.encode(), (package / name).read_bytes()) for name in (MANIFEST, SIGNATURE, PAYLOAD)]


def _zip_with(package: Path, change: Callable[[list[Entry]], object]) -> Path:
    entries = _entries(package)
    change(entries)
    return _raw_zip(package.with_name(package.name + ".zip"), entries)


def _renamed(name: bytes) -> Callable[[list[Entry]], None]:
    def change(entries: list[Entry]) -> None:
        entries[2].name = name

    return change


# -- the manifest: signed by the sender's own key, and still refused ---------------------------------------------


def _with(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return change


def _at_sequence(text: str, sequence: int) -> str:
    """The manifest moved to ``sequence``, following some package (so that only the number is wrong)."""
    text = _with('"sequence": 1', f'"sequence": {sequence}')(text)
    return _with('"previous_manifest_sha256": null', f'"previous_manifest_sha256": "{"ab" * 32}"')(text)


def _validation(released: str) -> str:
    return (
        '"validation": {"suite": "citizen-extract.v1", "passed": true, "quarantined": 0, "report": null, '
        f'"released": {released}}}'
    )


def _released(record: str = "7", decisions: str = "[12]", rules: str = '["rule"]', extra: str = "") -> str:
    return f'{{"record": {record}, "decisions": {decisions}, "rules": {rules}{extra}}}'


MANIFESTS = {
    "a key twice": _with('"mode": "full",', '"mode": "full",\n  "mode": "incremental",'),
    "a 5,000-digit number": _with('"record_count": 3', '"record_count": ' + "9" * 5000),
    "50,000 levels of nesting": _with('"validation": null', '"validation": ' + "[" * 50_000 + "]" * 50_000),
    "nesting deeper than a manifest's": _with('"validation": null', '"validation": ' + "[" * 12 + "]" * 12),
    "more items than a manifest holds": _with('"validation": null', '"validation": [' + "0," * 100_000 + "0]"),
    "NaN for a number": _with('"record_count": 3', '"record_count": NaN'),
    "sequence 2^63": lambda text: _at_sequence(text, 2**63),
    "record_count 2^63": _with('"record_count": 3', f'"record_count": {2**63}'),
    "a file's bytes 2^53": lambda text: re.sub(r'"bytes": \d+', f'"bytes": {2**53}', text),
    "a control character in free text": _with('"name": "citizen-extract"', '"name": "citizen\\u001b[2Jextract"'),
    "a path with a dot segment": _with(f'"path": "{PAYLOAD}"', '"path": "data/./citizens.csv"'),
    # validation.released, the stewards' releases a package carries: {record, decisions, rules} each, or absent
    "released: an empty list": _with('"validation": null', _validation("[]")),
    "released: three decisions": _with('"validation": null', _validation(_released(decisions="[1, 2, 3]"))),
    "released: a personal ID slipped in": _with(
        '"validation": null', _validation(_released(extra=', "personal_id": "001090000001"'))
    ),
    "released: a negative record": _with('"validation": null', _validation(_released(record="-1"))),
    "released: no rules": _with('"validation": null', _validation(_released(rules="[]"))),
    "released: 1,025 entries": _with('"validation": null', _validation("[" + ", ".join([_released()] * 1025) + "]")),
}


@pytest.mark.parametrize("change", MANIFESTS.values(), ids=MANIFESTS.keys())
def test_a_signed_hostile_manifest_is_refused_by_the_manifest_check(
    good, tmp_path, population_signer, trust, receiver, change
):
    package = _copy(good, tmp_path)
    _sign(package, change(_manifest_text(package)).encode(), population_signer)
    _assert_refused(package, "manifest", trust, receiver, good)


def test_a_sequence_past_the_ledgers_integers_is_refused_before_the_database(
    good, tmp_path, population_signer, trust, exchange_engine
):
    """2^63 overflowed the ledger's BIGINT after the rejected receipt went out; now it never reaches a query."""
    package = _copy(good, tmp_path)
    _sign(package, _at_sequence(_manifest_text(package), 2**63).encode(), population_signer)
    before = _recorded(exchange_engine)
    with pytest.raises(VerificationError, match=r"^manifest: sequence must be a positive integer up to"):
        verify_package(package, trust, engine=exchange_engine)
    assert _recorded(exchange_engine) == before


def test_an_unsigned_garbage_manifest_is_refused_by_the_signature_before_any_parse(
    good, tmp_path, trust, receiver, monkeypatch
):
    package = _copy(good, tmp_path)
    garbage = b"[" * 50_000 + b"9" * 5000 + b"]" * 50_000
    (package / MANIFEST).write_bytes(garbage)
    parsed = []
    load_document = lienthong_verify.package.load_document  # the reader partners and the platform share
    monkeypatch.setattr(
        lienthong_verify.package, "load_document", lambda data, *rest: parsed.append(data) or load_document(data, *rest)
    )
    message = _assert_refused(package, "signature", trust, receiver, good)
    assert "does not match the signed message digest" in message
    assert garbage not in parsed


# -- the signature ---------------------------------------------------------------------------------------------


def _nested_signed_attribute(signature: bytes) -> bytes:
    """The signature with one more signed attribute nesting 10,000 SEQUENCEs, within the size a signature may have
    (its signature value no longer holds: the structure is refused before that is checked)."""
    nested = b"\x05\x00"
    for _ in range(10_000):
        length = len(nested)
        size = (length.bit_length() + 7) // 8
        nested = (
            b"\x30"
            + (bytes([length]) if length < 0x80 else bytes([0x80 | size]) + length.to_bytes(size, "big"))
            + nested
        )
    content_info = cms.ContentInfo.load(signature)
    signer_info = content_info["content"]["signer_infos"][0]
    attribute = cms.CMSAttribute({"type": "1.2.3.4", "values": [core.Any.load(nested)]})
    signer_info["signed_attrs"] = cms.CMSAttributes([*signer_info["signed_attrs"], attribute])
    return content_info.dump(force=True)


SIGNATURES = {
    "eleven certificates carried": (
        lambda manifest, signer: sign_detached(
            manifest, Signer(signer.certificate, signer.private_key, signer.chain * 10)
        ),
        "carries more than 10 certificates",
    ),
    "a signature larger than any signature": (lambda manifest, signer: b"\x30" * (65 << 10), "larger than 64 KiB"),
    "a signed attribute nested 10,000 deep": (
        lambda manifest, signer: _nested_signed_attribute(sign_detached(manifest, signer)),
        "not valid CMS DER",
    ),
}


@pytest.mark.parametrize(("make", "problem"), SIGNATURES.values(), ids=SIGNATURES.keys())
def test_a_hostile_signature_is_refused_by_the_signature_check(
    good, tmp_path, population_signer, trust, receiver, make, problem
):
    package = _copy(good, tmp_path)
    (package / SIGNATURE).write_bytes(make((package / MANIFEST).read_bytes(), population_signer))
    assert problem in _assert_refused(package, "signature", trust, receiver, good)


def test_a_certificate_named_with_a_line_break_is_refused_by_the_chain_check_escaped(good, tmp_path, trust, receiver):
    """Names of certificates carried in a signature are the sender's text until the chain holds."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "population signing\nrevoked: forged\x1b[2J")])
    certificate = issue_certificate(name, key.public_key(), PROFILES[SIGNING], None, signing_key=key)
    package = _copy(good, tmp_path)
    (package / SIGNATURE).write_bytes(sign_detached((package / MANIFEST).read_bytes(), Signer(certificate, key, ())))
    message = _assert_refused(package, "chain", trust, receiver, good)
    assert "population signing\\x0arevoked: forged\\x1b[2J" in message


def test_receipts_are_read_by_the_same_bounded_reader(good):
    receipt = make_receipt(good.manifest, good.manifest_sha256).to_bytes()
    twice = receipt.replace(b'"status": "accepted",', b'"status": "accepted",\n  "status": "rejected",')
    with pytest.raises(ReceiptInvalid, match="^receipt: receipt.json has the same key twice in one object$"):
        Receipt.from_bytes(twice)


# -- the zip ---------------------------------------------------------------------------------------------------


def _flip_stored_byte(entries: list[Entry]) -> None:
    entries[0].method = 0
    entries[0].crc = zlib.crc32(entries[0].data)
    entries[0].data = entries[0].data.replace(b'"mode": "full"', b'"mode": "fulL"')


def _damage_deflate(entries: list[Entry]) -> None:
    packed = _deflate(entries[2].data)
    entries[2].packed = packed[:4] + bytes(b ^ 0xFF for b in packed[4:12]) + packed[12:]


ZIPS = {
    "not a zip": lambda package: _write(package, b"PK\x03\x04 this is not a zip at all"),
    "a zip cut short": lambda package: _write(package, zip_package(package).read_bytes()[:-30]),
    "a stored entry failing its CRC": lambda package: _zip_with(package, _flip_stored_byte),
    "a NUL in an entry's name": lambda package: _zip_with(package, _renamed(b"data/citizens.csv\x00.exe")),
    "a newline in an entry's name": lambda package: _zip_with(
        package, _renamed(b"data/x.csv\nfiles: forged log line 001200012345")
    ),
    "an escape sequence in an entry's name": lambda package: _zip_with(package, _renamed(b"data/\x1b[2Jcitizens.csv")),
    "an absolute entry name": lambda package: _zip_with(package, _renamed(b"/etc/passwd")),
    "a '..' entry name": lambda package: _zip_with(package, _renamed(b"data/../../etc/passwd")),
    "a backslash entry name": lambda package: _zip_with(package, _renamed(b"data\\..\\citizens.csv")),
    "a name that is not UTF-8": lambda package: _zip_with(package, _renamed(b"data/\xff\xfe.csv")),
    "a local header naming another file": lambda package: _zip_with(
        package, lambda entries: setattr(entries[2], "local_name", b"data/other.csv")
    ),
    "the same name twice": lambda package: _zip_with(package, lambda entries: entries.append(entries[2])),
    "2,000 entries": lambda package: _zip_with(
        package, lambda entries: entries.extend(Entry(f"data/{n}.csv".encode(), b"") for n in range(2000))
    ),
    "100,000 entries": lambda package: _zip_with(
        package, lambda entries: entries.extend(Entry(f"data/{n}.csv".encode(), b"") for n in range(100_000))
    ),
    "an entry expanding 1,000-fold (a zip bomb)": lambda package: _zip_with(
        package, lambda entries: setattr(entries[2], "data", b"0" * (8 << 20))
    ),
    "entries overlapping": lambda package: _zip_with(
        package, lambda entries: setattr(entries[2], "packed_size", 1 << 20)
    ),
    "an entry encrypted by the zip": lambda package: _zip_with(
        package, lambda entries: setattr(entries[2], "flags", 0x801)
    ),
    "an entry compressed by bzip2": lambda package: _zip_with(
        package, lambda entries: setattr(entries[2], "method", 12)
    ),
}


def _write(package: Path, data: bytes) -> Path:
    target = package.with_name(package.name + ".zip")
    target.write_bytes(data)
    return target


@pytest.mark.parametrize("make", ZIPS.values(), ids=ZIPS.keys())
def test_a_hostile_zip_is_refused_by_the_files_check_in_a_short_line(good, tmp_path, trust, receiver, caplog, make):
    archive = make(_copy(good, tmp_path))
    message = _assert_refused(archive, "files", trust, receiver, good)
    for raw in ("forged", "passwd", "exe", "other.csv"):
        assert raw not in message  # the sender's names are never echoed
    assert not _has_personal_id(caplog.text)


# -- CMS EnvelopedData -----------------------------------------------------------------------------------------


def _recipient_infos_at(data: bytes) -> int:
    """Where the RecipientInfos SET starts in a .p7m: after ContentInfo, its OID, [0], EnvelopedData, version."""

    def header(at: int) -> int:
        return 2 if data[at + 1] < 0x80 else 2 + (data[at + 1] & 0x7F)

    at = header(0)
    at += 2 + data[at + 1]
    at += header(at)
    at += header(at)
    at += 2 + data[at + 1]
    assert data[at] == 0x31
    return at


def test_a_p7m_with_a_huge_der_length_is_refused_by_the_decrypt_check_without_reading_it(
    good, good_encrypted, tmp_path, population_signer, trust, receiver, health
):
    """Signed by the sender over the changed file (so that its hash holds), the length claims 2 GiB."""
    package = _copy(good_encrypted, tmp_path)
    (entry,) = good_encrypted.manifest.files
    encrypted = package / entry.path
    data = encrypted.read_bytes()
    at = _recipient_infos_at(data)
    end = at + (2 if data[at + 1] < 0x80 else 2 + (data[at + 1] & 0x7F))
    hostile = data[:at] + b"\x31\x84\x7f\xff\xff\xff" + data[end:]
    encrypted.write_bytes(hostile)
    document = json.loads(_manifest_text(package))
    document["files"][0].update(bytes=len(hostile), sha256=exchange.package.hash_file(encrypted)[0])
    _sign(package, exchange.package.document_bytes(document), population_signer)
    message = _assert_refused(package, "decrypt", trust, receiver, good, recipient=health, decrypt_to=tmp_path / "out")
    assert "claims more than the file holds" in message
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # nothing half-decrypted left behind


# -- what stays as it was --------------------------------------------------------------------------------------


def test_a_payload_failing_the_zips_crc_or_deflate_is_refused_as_changed(good, tmp_path, trust, receiver):
    """The zip's own check finds the changed byte first; it is the finding of the hash check all the same."""
    archive = _zip_with(_copy(good, tmp_path), _damage_deflate)
    message = _assert_refused(archive, "file_hash", trust, receiver, good)
    assert message == f"file_hash: {PAYLOAD} does not have the SHA-256 the manifest says (the file was changed)"


def test_a_zip_from_another_tool_with_a_folder_entry_still_verifies(good, tmp_path, trust):
    """Stock zip tools add ``data/`` as an entry of its own and deflate the manifest: still a package."""
    package = _copy(good, tmp_path)
    entries = [*_entries(package), Entry(b"data/", b"", method=0)]
    verified = verify_package(_raw_zip(tmp_path / "other-tool.zip", entries), trust)
    assert verified.summary() == verify_package(good.path, trust).summary()


def test_many_unlisted_files_give_one_short_line(good, tmp_path, trust, receiver):
    package = _copy(good, tmp_path)
    for n in range(500):
        (package / "data" / f"extra-{n:03d}.csv").write_bytes(b"")
    message = _assert_refused(package, "files", trust, receiver, good)
    assert message == (
        "files: data/extra-000.csv, data/extra-001.csv, data/extra-002.csv and 497 more in the package but not in "
        "the manifest"
    )


@pytest.mark.parametrize("name", ["notes\nfiles: forged.txt", "data/\x1b[2J.csv", ".hidden"])
def test_a_folder_package_with_a_file_outside_the_layout_is_refused_without_its_name(
    good, tmp_path, trust, receiver, name
):
    package = _copy(good, tmp_path)
    (package / name).write_bytes(b"x")
    message = _assert_refused(package, "files", trust, receiver, good)
    assert "forged" not in message and "hidden" not in message
