"""Exchange package v1 (DESIGN.md) as a receiver reads it: the manifest, the zip or folder, and every check on a
received package. Manifests are written as ``lienthong-package/1.1`` (v1 and ``ledger_head``: the sender's ledger
head at sealing, which the receiver's receipt echoes); ``lienthong-package/1`` manifests are still read.

A package is a directory (or a ``.zip`` of it for transports that carry one file)::

    manifest.json         what is in the package, which feed and place it has, the SHA-256 of every file
    manifest.json.p7s     detached CMS signature over the exact bytes of manifest.json, with the signer's chain
    data/<name>           payload: CSV, JSON Lines or XML batch, UTF-8; ``data/<name>.p7m`` when encrypted

Building and sealing packages is the platform's (``exchange.package``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

from lienthong_verify.certificates import CertifiedKey, agency_of, common_name, describe
from lienthong_verify.envelope import decrypt
from lienthong_verify.errors import (
    FileHashMismatch,
    FileSizeMismatch,
    FilesMismatch,
    ManifestInvalid,
    RecipientMismatch,
    SignatureInvalid,
    SignerMismatch,
    VerificationError,
    ZipRefused,
    shown,
)
from lienthong_verify.sequence import Feed, check_next, direction_of
from lienthong_verify.signature import MAX_SIGNATURE_BYTES, TrustAnchors, VerifiedSignature
from lienthong_verify.signature import verify_detached as verify_signature

FORMAT = "lienthong-package/1.1"  # what is written: v1 and ledger_head
FORMAT_1 = "lienthong-package/1"  # still read: a manifest without ledger_head
FORMATS = (FORMAT_1, FORMAT)
MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.p7s"
DATA = "data"
ENCRYPTED_SUFFIX = ".p7m"
MODES = ("full", "incremental")
BLOCK = 1 << 20
MAX_DOCUMENT_BYTES = 16 << 20  # a manifest larger than this is not one
# The one JSON reader of signed documents (manifest, receipt) is bounded, because it also reads them before their
# signature is checked (a receiver answers a rejected receipt with the package's id):
MAX_JSON_ITEMS = 100_000  # commas and brackets: a manifest of 1,024 files has ~8,000; bounds the objects made
MAX_JSON_DEPTH = 8  # a manifest nests 3 deep (document, files, file), a receipt 2
MAX_NUMBER_CHARS = 24  # 2^53 has 16 digits, a double at most ~24 characters; Python refuses ints over 4,300
# Counts (sequence, record_count, bytes, quarantined) stop at the largest integer every JSON parser reads exactly
# (I-JSON, RFC 7493), far under the ledger's BIGINT: beyond it, parsers disagree on what a signed manifest says.
MAX_COUNT = 2**53 - 1
MAX_TEXT_CHARS = 1024  # free text (media type, schema, suite, report path); the longest we write is ~100
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
FILE_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_MANIFEST_KEYS = (
    "format", "package_id", "agreement", "sender", "recipient", "direction", "mode", "sequence",
    "previous_manifest_sha256", "created_at", "schema", "record_count", "files", "validation", "ledger_head",
)  # fmt: skip
_MANIFEST_KEYS_1 = _MANIFEST_KEYS[:-1]  # lienthong-package/1: no ledger_head
# Limits on a zip, checked before anything in it is read. A full snapshot is the largest package the platform
# makes: 35 shard files (34 provinces and "none"), the manifest and its signature.
MAX_ENTRIES = 1024  # 37 in the largest package
# zipfile reads the central directory whole: 46 bytes a record, a name of the layout at most 105, extra fields
# (zip64 32, other tools' timestamps and owners ~24)
MAX_CENTRAL_DIRECTORY_BYTES = MAX_ENTRIES * 256
# A national snapshot: ~100 M citizens × ~300 bytes a row ≈ 30 GB in 35 shards, the largest province ~5 GB.
MAX_MEMBER_BYTES = 32 << 30
MAX_TOTAL_BYTES = 128 << 30
# Payloads compress 3 to 9-fold (synthetic citizens: CSV 3.3, JSON Lines 7.0, XML 9.0); deflate's best, ~1030-fold,
# comes only from long runs of one byte, which is what a zip bomb is made of.
MAX_RATIO = 100


@dataclass(frozen=True)
class Head:
    """A point of the sender's ledger as a manifest carries it and a receipt witnesses it: entry ``entry`` (its
    position, from 1) has the hash ``hash``. Since each entry's hash covers the one before, it pins every entry up
    to it."""

    entry: int
    hash: str


# -- the manifest ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchemaRef:
    name: str
    version: str


@dataclass(frozen=True)
class PayloadFile:
    """One file of the package as shipped: for an encrypted file, bytes and sha256 are of the ``.p7m``;
    media_type is always the type of the content."""

    path: str
    media_type: str
    bytes: int
    sha256: str
    encrypted: bool


@dataclass(frozen=True)
class Validation:
    """The data-quality outcome the sender attaches: the suite, whether it passed, how many rows were held back,
    where the report is, and, only when the package carries records a data steward released from the quarantine,
    ``released``: one entry per such record, ``{record, decisions, rules}`` (the sender's quarantine record and
    decision numbers, and the rules the release waived; no personal data)."""

    suite: str
    passed: bool
    quarantined: int
    report: str | None
    released: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Manifest:
    package_id: str
    agreement: str
    sender: str
    recipient: str
    direction: str
    mode: str
    sequence: int
    previous_manifest_sha256: str | None
    created_at: str
    schema: SchemaRef
    record_count: int
    files: tuple[PayloadFile, ...]
    validation: Validation | None
    ledger_head: Head | None = None  # the sender's ledger at sealing (1.1); None: empty, or a /1 manifest
    format: str = FORMAT

    @property
    def feed(self) -> Feed:
        return Feed(self.sender, self.agreement, self.direction)

    def to_bytes(self) -> bytes:
        fields = asdict(self)
        version = fields.pop("format")
        if fields["validation"] is not None and not fields["validation"]["released"]:
            del fields["validation"]["released"]  # only a package carrying released records names them
        if version == FORMAT_1:
            if fields.pop("ledger_head") is not None:
                raise ValueError(f"a {FORMAT_1} manifest has no ledger_head")
        elif version != FORMAT:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        return document_bytes({"format": version, **fields})

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        """Parse and check a manifest strictly: exactly the fields of its format (1.1: v1's and ``ledger_head``;
        1: v1's), each of its type and within its bounds."""
        document = load_document(data, MANIFEST, ManifestInvalid)
        version = document.get("format") if isinstance(document, dict) else None
        keys = _MANIFEST_KEYS_1 if version == FORMAT_1 else _MANIFEST_KEYS
        _require(isinstance(document, dict) and tuple(document) == keys, "unexpected or missing fields")
        _require(version in FORMATS, f"format is not {FORMAT} (or {FORMAT_1})")
        for key in ("package_id", "agreement", "sender", "recipient", "direction", "mode", "created_at"):
            _require(isinstance(document[key], str), f"{key} must be a string")
        _require(_is_uuid(document["package_id"]), "package_id must be a UUID")
        _require(bool(NAME_PATTERN.fullmatch(document["agreement"])), "agreement is not a valid agreement name")
        _require(bool(_RFC3339_UTC.fullmatch(document["created_at"])), "created_at must be RFC 3339 in UTC")
        # Whether an agency is known is the trust anchors' word: only theirs hold certificates naming it (OU)
        _require(
            all(NAME_PATTERN.fullmatch(document[k]) for k in ("sender", "recipient")), "unknown sender or recipient"
        )
        _require(document["direction"] == direction_of(document["sender"]), "direction does not match the sender")
        _require(document["mode"] in MODES, "mode must be full or incremental")
        sequence, previous = document["sequence"], document["previous_manifest_sha256"]
        _require(_is_count(sequence) and sequence >= 1, f"sequence must be a positive integer up to {MAX_COUNT:,}")
        _require(
            previous is None if sequence == 1 else isinstance(previous, str) and bool(_SHA256.fullmatch(previous)),
            "previous_manifest_sha256 must be null at sequence 1 and a SHA-256 after",
        )
        _require(_is_count(document["record_count"]), f"record_count must be a count up to {MAX_COUNT:,}")
        schema = document["schema"]
        _require(
            isinstance(schema, dict) and set(schema) == {"name", "version"} and all(map(_is_text, schema.values())),
            "schema must be {name, version}",
        )
        files = document["files"]
        _require(
            isinstance(files, list) and 0 < len(files) <= MAX_ENTRIES,
            f"files must be a list of 1 to {MAX_ENTRIES:,} entries",
        )
        validation = document["validation"]
        _require(validation is None or _is_validation(validation), "validation must be null or {suite, passed, …}")
        try:
            head = ledger_head_of(document.get("ledger_head"))
        except ValueError as error:
            raise ManifestInvalid(str(error)) from None
        return cls(
            **{key: document[key] for key in _MANIFEST_KEYS[1:10]},
            schema=SchemaRef(**schema),
            record_count=document["record_count"],
            files=tuple(_payload_file(position, entry) for position, entry in enumerate(files)),
            validation=Validation(**(validation | {"released": tuple(validation.get("released", ()))}))
            if validation
            else None,
            ledger_head=head,
            format=version,
        )


def ledger_head_of(value: object) -> Head | None:
    """A ``ledger_head`` as a manifest carries it and a receipt echoes it: null, or {entry, hash} — the position
    (a count from 1) and the SHA-256 of the sender's last ledger entry. ValueError when it is neither."""
    if value is None:
        return None
    if not (
        isinstance(value, dict)
        and set(value) == {"entry", "hash"}
        and _is_count(value["entry"])
        and value["entry"] >= 1
        and isinstance(value["hash"], str)
        and bool(_SHA256.fullmatch(value["hash"]))
    ):
        raise ValueError("ledger_head must be null or {entry, hash}: a position from 1 and a SHA-256")
    return Head(value["entry"], value["hash"])


def document_bytes(document: dict) -> bytes:
    """The signed form of a manifest or receipt: UTF-8 JSON, indented, non-ASCII as is, a final newline."""
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def load_document(data: bytes, name: str, invalid: type[VerificationError]) -> Any:
    """The one reader of signed JSON documents: UTF-8 JSON within the bounds above, each object's keys once (other
    parsers keep the first of two equal keys, Python the last: a signed document must mean one thing). Every
    refusal is ``invalid`` and says where, never what."""

    def refuse(problem: str) -> NoReturn:
        raise invalid(f"{name} {problem}")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) != len(pairs):
            refuse("has the same key twice in one object")
        return document

    def number(parse: Callable[[str], Any]) -> Callable[[str], Any]:
        def bounded(text: str) -> Any:
            if len(text) > MAX_NUMBER_CHARS:
                refuse(f"has a number longer than {MAX_NUMBER_CHARS} characters")
            return parse(text)

        return bounded

    def constant(text: str) -> NoReturn:
        refuse(f"holds {text}, which is not JSON")

    if sum(map(data.count, (b",", b"[", b"{"))) > MAX_JSON_ITEMS:
        refuse(f"holds more than {MAX_JSON_ITEMS:,} items")
    try:
        document = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=unique,
            parse_int=number(int),
            parse_float=number(float),
            parse_constant=constant,
        )
    except UnicodeDecodeError as error:
        refuse(f"is not UTF-8 JSON (not UTF-8 at byte {error.start})")
    except json.JSONDecodeError as error:
        refuse(f"is not UTF-8 JSON ({error.msg} at line {error.lineno} column {error.colno})")
    except RecursionError:  # the parser's own bound, far past ours
        refuse(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if _depth(document) > MAX_JSON_DEPTH:
        refuse(f"nests deeper than {MAX_JSON_DEPTH} levels")
    return document


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed document (walked without recursion)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ManifestInvalid(problem)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _is_text(value: object) -> bool:
    """Free text of a bounded length, without control characters (it reaches logs and stores)."""
    return isinstance(value, str) and len(value) <= MAX_TEXT_CHARS and value.isprintable()


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _is_validation(value: object) -> bool:
    return (
        isinstance(value, dict)
        and set(value) in ({"suite", "passed", "quarantined", "report"}, {*VALIDATION_KEYS})
        and _is_text(value["suite"])
        and isinstance(value["passed"], bool)
        and _is_count(value["quarantined"])
        and (value["report"] is None or _is_text(value["report"]))
        and ("released" not in value or _is_releases(value["released"]))
    )


VALIDATION_KEYS = ("suite", "passed", "quarantined", "report", "released")


def _is_releases(value: object) -> bool:
    """``validation.released``: 1 to MAX_ENTRIES records, each ``{record, decisions, rules}``: its number, the
    one or two decisions that released it (four eyes), the rules waived."""
    return (
        isinstance(value, list)
        and 0 < len(value) <= MAX_ENTRIES
        and all(
            isinstance(entry, dict)
            and set(entry) == {"record", "decisions", "rules"}
            and _is_count(entry["record"])
            and isinstance(entry["decisions"], list)
            and 0 < len(entry["decisions"]) <= 2
            and all(map(_is_count, entry["decisions"]))
            and isinstance(entry["rules"], list)
            and 0 < len(entry["rules"]) <= MAX_ENTRIES
            and all(map(_is_text, entry["rules"]))
            for entry in value
        )
    )


def _payload_file(position: int, entry: object) -> PayloadFile:
    """One entry of ``files``; refusals name it by its position (files[0] is the first)."""
    at = f"files[{position}]"
    _require(
        isinstance(entry, dict) and set(entry) == {"path", "media_type", "bytes", "sha256", "encrypted"},
        f"{at} must be {{path, media_type, bytes, sha256, encrypted}}",
    )
    path = entry["path"]
    _require(isinstance(path, str) and _is_data_path(path), f"{at}.path is not data/<name>")
    _require(_is_text(entry["media_type"]), f"{at}.media_type must be a string")
    _require(_is_count(entry["bytes"]), f"{at}.bytes must be a count up to {MAX_COUNT:,}")
    _require(isinstance(entry["sha256"], str) and bool(_SHA256.fullmatch(entry["sha256"])), f"{at}.sha256 must be hex")
    _require(isinstance(entry["encrypted"], bool), f"{at}.encrypted must be true or false")
    _require(entry["encrypted"] == path.endswith(ENCRYPTED_SUFFIX), f"{path}: encrypted files end in .p7m")
    return PayloadFile(**entry)


def _is_data_path(path: str) -> bool:
    """``data/<name>``, spelled exactly so (no ``data//x``, ``data/./x``: one file has one name)."""
    folder, _, name = path.partition("/")
    return folder == DATA and bool(FILE_NAME_PATTERN.fullmatch(name))


# -- reading and verifying ---------------------------------------------------------------------------------------


class _PackageFiles:
    """The files of a package, whether a directory or a zip: names, sizes and readable streams. A zip is checked
    whole (``_open_zip``) before anything in it is read. Refusals name an entry by its position, never by a name
    that failed the layout: that is the sender's text, and could forge a log line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.archive: zipfile.ZipFile | None = None
        self.position: dict[str, int] = {}  # a zip entry's place in its central directory, from 1
        if path.is_file():
            self._handle = path.open("rb")
            try:
                self.archive = _open_zip(self._handle)
            except BaseException:
                self._handle.close()
                raise
            self.position = {info.filename: n for n, info in enumerate(self.archive.infolist(), 1)}
            self.names = {info.filename for info in self.archive.infolist() if not info.is_dir()}
        elif path.is_dir():
            names = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() or p.is_symlink())
            for position, name in enumerate(names, 1):
                if not _in_layout(name):
                    raise FilesMismatch(f"file {position} of the folder (by name) is {_OUTSIDE_LAYOUT}")
            self.names = set(names)
        else:
            raise FilesMismatch(f"{path} is neither a package directory nor a zip")

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()
            self._handle.close()

    def size(self, name: str) -> int:
        if self.archive is not None:
            return self.archive.getinfo(name).file_size
        if (self.path / name).is_symlink():
            raise FilesMismatch(f"{name} is a symbolic link")
        return (self.path / name).stat().st_size

    def open(self, name: str) -> BinaryIO:
        if self.archive is not None:
            entry = f"entry {self.position[name]}"
            try:
                return _ZipMember(self.archive.open(name), entry)  # type: ignore[return-value]
            except (zipfile.BadZipFile, ValueError, NotImplementedError):
                raise ZipRefused(f"{entry}: its local header does not match the zip's directory") from None
        try:
            return os.fdopen(os.open(self.path / name, os.O_RDONLY | os.O_NOFOLLOW), "rb")
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise FilesMismatch(f"{name} is a symbolic link") from None
            raise

    def read(self, name: str, invalid: type[VerificationError], limit: int = MAX_DOCUMENT_BYTES) -> bytes:
        """A small file (manifest, signature) read whole, refusing one too large to be what it claims."""
        if name not in self.names:
            raise invalid(f"the package has no {name}")
        too_large = f"{name} is larger than " + (f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit >> 10} KiB")
        if self.size(name) > limit:
            raise invalid(too_large)
        with self.open(name) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:  # a file that grew since
            raise invalid(too_large)
        return data


_OUTSIDE_LAYOUT = f"named outside the package layout ({MANIFEST}, {SIGNATURE}, {DATA}/<name>)"
# General-purpose flags of a zip entry that zipfile cannot read without a password, or at all.
_LOCKED = 0x01 | 0x20 | 0x40  # encrypted, compressed patch data, strong encryption
# What zipfile raises on a file that is not a zip, or one that lies about its structure.
_NOT_A_ZIP = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, ValueError, EOFError, OverflowError)


def _in_layout(name: str) -> bool:
    return name in (MANIFEST, SIGNATURE) or _is_data_path(name)


def _open_zip(handle: BinaryIO) -> zipfile.ZipFile:
    """The zip read from ``handle``, refused (``ZipRefused``) unless each entry is in the package layout, once,
    readable without a password, within the size limits, expanding no more than ``MAX_RATIO``-fold, and the entries
    do not overlap (together they fit in the file)."""
    # zipfile reads the central directory whole and makes an object of each record: its size is bounded first,
    # read from the end record by zipfile's own function, so that both see the same directory
    try:
        end = zipfile._EndRecData(handle)
    except (OSError, *_NOT_A_ZIP):
        end = None
    if end is None:
        raise ZipRefused("the package is not a readable zip")
    if end[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY_BYTES:
        raise ZipRefused(f"the zip's directory is larger than {MAX_ENTRIES:,} entries take")
    try:
        archive = zipfile.ZipFile(handle)
    except _NOT_A_ZIP:
        raise ZipRefused("the package is not a readable zip") from None
    try:
        _check_entries(archive.infolist(), os.fstat(handle.fileno()).st_size)
    except BaseException:
        archive.close()
        raise
    return archive


def _check_entries(infos: list[zipfile.ZipInfo], file_size: int) -> None:
    if len(infos) > MAX_ENTRIES:
        raise ZipRefused(f"the zip holds more than {MAX_ENTRIES:,} entries")
    names: set[str] = set()
    expanded = packed = 0
    for position, info in enumerate(infos, 1):
        entry = f"entry {position}"
        name = info.orig_filename  # zipfile cuts ``filename`` at a NUL: the name as the zip spells it
        if not (_in_layout(name) or name == f"{DATA}/" and info.file_size == 0):  # other tools list the folder
            raise ZipRefused(f"{entry} is {_OUTSIDE_LAYOUT}")
        if name in names:
            raise ZipRefused(f"{entry}: the zip holds the same name twice")
        names.add(name)
        if info.flag_bits & _LOCKED:
            raise ZipRefused(f"{entry} is encrypted by the zip (payloads are encrypted with CMS)")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ZipRefused(f"{entry} is compressed otherwise than by deflate")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise ZipRefused(f"{entry} is stored, yet its sizes differ")
        if info.file_size > MAX_MEMBER_BYTES:
            raise ZipRefused(f"{entry} is larger than {MAX_MEMBER_BYTES >> 30} GiB")
        if not 0 <= info.header_offset <= file_size - info.compress_size:
            raise ZipRefused(f"{entry} lies outside the file")
        if info.file_size > MAX_RATIO * info.compress_size:
            raise ZipRefused(f"{entry} expands more than {MAX_RATIO}-fold (a zip bomb)")
        expanded += info.file_size
        packed += info.compress_size
    if expanded > MAX_TOTAL_BYTES:
        raise ZipRefused(f"the zip's entries add up to more than {MAX_TOTAL_BYTES >> 30} GiB")
    if packed > file_size:
        raise ZipRefused("the zip's entries overlap (together they hold more than the file)")


class _ZipMember:
    """A zip member being read: damage found on the way (CRC, deflate data, a short member) is a named refusal."""

    def __init__(self, stream: BinaryIO, entry: str) -> None:
        self._stream, self._entry = stream, entry

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError):
            raise ZipRefused(f"{self._entry} is damaged (CRC or compressed data)") from None

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> _ZipMember:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


@contextmanager
def _opened(path: Path) -> Iterator[_PackageFiles]:
    files = _PackageFiles(path)
    try:
        yield files
    finally:
        files.close()


def read_manifest_bytes(path: Path) -> bytes:
    """A package's ``manifest.json``, its bytes unparsed, read bounded: what a receiver may look at before the
    signature (to know a package it has stored by the bytes' SHA-256). Refusals as ``read_manifest``'s."""
    with _opened(path) as files:
        return files.read(MANIFEST, ManifestInvalid)


def read_manifest(path: Path) -> tuple[Manifest, str]:
    """The manifest of a package and its SHA-256, without verifying anything: for the sender's own packages, and for
    a receiver naming a package in a rejected receipt (the zip and the JSON are read by the same bounded readers as
    ``verify_package``; its refusals are ``files`` or ``manifest``, and a zip's also a ``zipfile.BadZipFile``)."""
    data = read_manifest_bytes(path)
    return Manifest.from_bytes(data), hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class VerifiedPackage:
    path: Path
    manifest: Manifest
    manifest_sha256: str
    signature: VerifiedSignature
    sequence_checked: bool
    decrypted: tuple[Path, ...]

    def summary(self) -> str:
        m = self.manifest
        parts = [
            f"package {m.package_id} verified: {m.agreement} #{m.sequence} from {m.sender} to {m.recipient}",
            f"{m.record_count:,} records in {len(m.files)} file(s)",
            f"signed by '{common_name(self.signature.signer)}' (SHA-256 {self.signature.fingerprint[:16]}…), "
            f"chain to '{common_name(self.signature.path[-1])}', not revoked",
            "sequence follows the last accepted" if self.sequence_checked else "sequence not checked",
        ]
        if self.decrypted:
            parts.append(f"{len(self.decrypted)} file(s) decrypted to {self.decrypted[0].parent}")
        return "; ".join(parts)


def verify_package(
    path: Path,
    trust: TrustAnchors,
    *,
    sequence: Callable[[Manifest, str], None] | None = None,
    recipient: CertifiedKey | None = None,
    decrypt_to: Path | None = None,
    at: datetime | None = None,
) -> VerifiedPackage:
    """Every check on a received package, in order: signature, chain, validity, key usage, revocation, the
    signer being the sender, the manifest, the files' list, sizes and hashes; then ``sequence`` (called with the
    manifest and its SHA-256: it raises when the package is not the next one of its feed); then decryption (with
    ``recipient``, into ``decrypt_to``). Raises a VerificationError naming the check that failed. Reads only. A zip
    is checked whole first (``files``); the manifest is parsed only once the signature over its exact bytes holds."""
    with _opened(path) as files:
        manifest_bytes = files.read(MANIFEST, ManifestInvalid)
        signature = files.read(SIGNATURE, SignatureInvalid, MAX_SIGNATURE_BYTES)
        signed = verify_signature(manifest_bytes, signature, trust, at=at)
        manifest = Manifest.from_bytes(manifest_bytes)
        if signed.agency != manifest.sender:
            signer = shown(describe(signed.signer))
            raise SignerMismatch(f"the manifest's sender is {manifest.sender}, but {signer} signed it")
        if recipient is not None and manifest.recipient != agency_of(recipient.certificate):
            raise RecipientMismatch(f"the package is for {manifest.recipient}")
        _check_files(files, manifest)
        manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
        if sequence is not None:
            sequence(manifest, manifest_sha256)
        decrypted = ()
        if recipient is not None:
            decrypted = _decrypt_files(files, manifest, recipient, decrypt_to or _decrypt_dir(path))
    return VerifiedPackage(path, manifest, manifest_sha256, signed, sequence is not None, decrypted)


def _check_files(files: _PackageFiles, manifest: Manifest) -> None:
    listed = {f.path for f in manifest.files}
    if len(listed) != len(manifest.files):
        raise ManifestInvalid("a file is listed twice")
    unlisted = sorted(files.names - listed - {MANIFEST, SIGNATURE})
    if unlisted:  # names of the layout (letters, digits, '.', '_', '-'), and a few of them: the line stays short
        more = f" and {len(unlisted) - 3:,} more" if len(unlisted) > 3 else ""
        raise FilesMismatch(f"{', '.join(unlisted[:3])}{more} in the package but not in the manifest")
    for entry in manifest.files:
        if entry.path not in files.names:
            raise FilesMismatch(f"{entry.path} is in the manifest but not in the package")
        size = files.size(entry.path)
        if size != entry.bytes:
            raise FileSizeMismatch(f"{entry.path} has {size:,} bytes, the manifest says {entry.bytes:,}")
        if not _has_sha256(files, entry):
            raise FileHashMismatch(f"{entry.path} does not have the SHA-256 the manifest says (the file was changed)")


def _has_sha256(files: _PackageFiles, entry: PayloadFile) -> bool:
    sha256 = hashlib.sha256()
    with files.open(entry.path) as handle:
        try:
            while block := handle.read(4 * BLOCK):
                sha256.update(block)
        except ZipRefused:  # a changed byte fails the zip's CRC (or its deflate data) before the hash can
            return False
    return sha256.hexdigest() == entry.sha256


def _decrypt_dir(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".zip") + ".decrypted")


def _decrypt_files(
    files: _PackageFiles, manifest: Manifest, recipient: CertifiedKey, out_dir: Path
) -> tuple[Path, ...]:
    """Each encrypted file decrypted into ``out_dir``; when one fails, none of them is left there."""
    written: list[Path] = []
    try:
        for entry in manifest.files:
            if not entry.encrypted:
                continue
            target = out_dir / entry.path.removesuffix(ENCRYPTED_SUFFIX)
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            written.append(partial)
            with files.open(entry.path) as source, partial.open("wb") as plain:
                decrypt(source, plain, recipient, size=files.size(entry.path))
            partial.replace(target)
            written[-1] = target
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return tuple(written)


def after(last_manifest: bytes | None) -> Callable[[Manifest, str], None]:
    """The sequence check of ``verify_package`` for a receiver that keeps the last manifest it accepted as a file
    (its exact bytes; None before the first package): the package must be the next of the same feed."""
    last = Manifest.from_bytes(last_manifest) if last_manifest is not None else None
    last_sha256 = hashlib.sha256(last_manifest).hexdigest() if last_manifest is not None else None

    def check(manifest: Manifest, manifest_sha256: str) -> None:
        if last is not None and last.feed != manifest.feed:
            raise ValueError(
                f"the last accepted manifest is of {last.feed.describe()}, this package of {manifest.feed.describe()}"
            )
        check_next(manifest.feed, last.sequence if last else 0, last_sha256, manifest.sequence,
                   manifest.previous_manifest_sha256, manifest_sha256)  # fmt: skip

    return check
