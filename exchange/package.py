"""Exchange package v1 (DESIGN.md): build and zip here; read and verify with the partners' kit
(``lienthong_verify.package``, re-exported here), the sequence checked against this database. Manifests are written as
``lienthong-package/1.1`` (v1 and ``ledger_head``: the sender's ledger head at sealing, which the receiver's
receipt echoes, so that partners witness the sender's ledger); ``lienthong-package/1`` manifests are still read.

A package is a directory (or a ``.zip`` of it for transports that carry one file)::

    manifest.json         what is in the package, which feed and place it has, the SHA-256 of every file
    manifest.json.p7s     detached CMS signature over the exact bytes of manifest.json, with the signer's chain
    data/<name>           payload: CSV, JSON Lines or XML batch (``exchange.xml_payload``), UTF-8;
                          ``data/<name>.p7m`` when encrypted (CMS EnvelopedData)

Building streams records into the payload in constant memory, hashing while writing; the same rows give the same
payload bytes. Sealing numbers the package on its feed (sequence, previous manifest's hash), writes and signs
the manifest, and records the package in the ledger, in one transaction; the manifest's ``ledger_head`` is the
ledger's last entry under the ledger's lock, so the package's own ``package_sent`` entry is the one after it.
``package_id`` is a UUID derived from sender, agreement, direction and sequence, so a package and its retries
carry one id and partners deduplicate by it. Encrypted files differ on every build (fresh content key); a retry
resends the sealed package.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from cryptography import x509
from sqlalchemy import Engine, Select
from sqlalchemy.orm import Session

from exchange import ledger
from exchange.agencies import load_agencies
from exchange.envelope import encrypt_file
from exchange.pki import POPULATION, CertifiedKey, Signer, fingerprint
from exchange.sequence import RECEIVED, SENT, Feed, advance, check_next, direction_of, locked_state, state
from exchange.signature import (
    SIGNING_USAGE,
    TrustAnchors,
    check_key_usage,
    check_validity,
    sign_detached,
)
from exchange.xml_payload import write_xml
from lienthong_verify.package import (  # noqa: F401 (re-exported: the partners' kit reads packages)
    BLOCK,
    DATA,
    ENCRYPTED_SUFFIX,
    FILE_NAME_PATTERN,
    FORMAT,
    FORMAT_1,
    FORMATS,
    MANIFEST,
    MAX_CENTRAL_DIRECTORY_BYTES,
    MAX_COUNT,
    MAX_DOCUMENT_BYTES,
    MAX_ENTRIES,
    MAX_JSON_DEPTH,
    MAX_JSON_ITEMS,
    MAX_MEMBER_BYTES,
    MAX_NUMBER_CHARS,
    MAX_RATIO,
    MAX_TEXT_CHARS,
    MAX_TOTAL_BYTES,
    MODES,
    NAME_PATTERN,
    SIGNATURE,
    Manifest,
    PayloadFile,
    SchemaRef,
    Validation,
    VerifiedPackage,
    document_bytes,
    ledger_head_of,
    load_document,
    read_manifest,
    read_manifest_bytes,
)
from lienthong_verify.package import verify_package as verify_received
from lienthong_verify.schemas import date_time_text
from population.db import session_factory

MEDIA_TYPES = {".csv": "text/csv; charset=utf-8; header=present", ".jsonl": "application/x-ndjson; charset=utf-8",
               ".xml": "application/xml; charset=utf-8"}  # fmt: skip
PACKAGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:package")


def package_id_for(feed: Feed, sequence: int) -> str:
    return str(uuid.uuid5(PACKAGE_NAMESPACE, f"{feed.sender}/{feed.agreement}/{feed.direction}/{sequence}"))


def package_name(feed: Feed, sequence: int) -> str:
    return f"{feed.agreement}-{feed.sender}-{feed.direction}-{sequence:08d}"


# -- payload writers ---------------------------------------------------------------------------------------------


class HashingWriter:
    """Writes bytes to a file in large blocks, hashing (SHA-256) and counting them on the way."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._buffer = bytearray()
        self._sha256 = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        if len(self._buffer) >= BLOCK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buffer:
            self._sha256.update(self._buffer)
            self._handle.write(self._buffer)
            self.bytes += len(self._buffer)
            self._buffer.clear()

    def hexdigest(self) -> str:
        self.flush()
        return self._sha256.hexdigest()


class _TextSink:
    """What ``csv.writer`` writes to: text gathered and passed on UTF-8 encoded in large blocks."""

    def __init__(self, target: HashingWriter) -> None:
        self._target = target
        self._parts: list[str] = []
        self._size = 0

    def write(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        if self._size >= BLOCK:
            self.flush()

    def flush(self) -> None:
        self._target.write("".join(self._parts).encode("utf-8"))
        self._parts.clear()
        self._size = 0


def _cell(value: Any) -> Any:
    """CSV cells: nulls empty, dates ISO 8601, timestamps ISO 8601 in UTC; the rest as ``str`` gives them."""
    if isinstance(value, datetime):
        return date_time_text(value)
    return value


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return date_time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not serialisable in a package")


def write_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]], sink: HashingWriter) -> int:
    """A header and one line per row, RFC 4180 (CRLF line ends, so that Python 3.11 quotes a CR inside a value
    as well as LF); returns the number of rows. A null is an empty cell."""
    text = _TextSink(sink)
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_cell(value) for value in row])
        count += 1
    text.flush()
    return count


def write_jsonl(columns: Sequence[str], rows: Iterable[Sequence[Any]], sink: HashingWriter) -> int:
    """One compact JSON object per line, keys in column order, non-ASCII as is; returns the number of rows."""
    text = _TextSink(sink)
    count = 0
    for row in rows:
        record = dict(zip(columns, row, strict=True))
        text.write(json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=_json_value) + "\n")
        count += 1
    text.flush()
    return count


# Writers by suffix: (columns, rows, sink) → rows written. The XML writer infers its layout from the columns;
# PackageBuilder names it from the package's schema.
WRITERS = {".csv": write_csv, ".jsonl": write_jsonl, ".xml": write_xml}


def records_as_rows(records: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> Iterator[list[Any]]:
    """Records as rows in column order; a missing field is null, a field outside the columns is an error
    (nothing is dropped silently)."""
    allowed = set(columns)
    for number, record in enumerate(records, 1):
        if not record.keys() <= allowed:
            extra = sorted(map(str, record.keys() - allowed))
            raise ValueError(f"record {number} has fields outside the columns: {', '.join(extra)}")
        yield [record.get(column) for column in columns]


# -- building ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltPackage:
    path: Path
    manifest: Manifest
    manifest_sha256: str


class PackageBuilder:
    """Stage payload files, then ``seal``. Use as a context manager: a failed build leaves nothing behind.

    >>> with PackageBuilder(out, agreement="health-identity", recipient="health", schema=ref, signer=s) as b:
    ...     b.add_records("citizens.csv", records)
    ...     built = b.seal(engine)
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        agreement: str,
        recipient: str,
        schema: SchemaRef,
        signer: Signer,
        sender: str = POPULATION,
        mode: str = "full",
        encrypt_for: x509.Certificate | None = None,
        validation: Validation | None = None,
    ) -> None:
        if not NAME_PATTERN.fullmatch(agreement):
            raise ValueError(f"agreement name {agreement!r}: lowercase letters, digits, '.', '_' and '-'")
        agencies = load_agencies()
        if sender not in agencies or recipient not in agencies or sender == recipient:
            raise ValueError(f"sender and recipient must be two of {', '.join(agencies)}")
        if POPULATION not in (sender, recipient):
            raise ValueError("every exchange is between the population database and one partner")
        if mode not in MODES:
            raise ValueError("mode must be full or incremental")
        now = datetime.now(UTC)
        check_validity([signer.certificate], now)
        check_key_usage(signer.certificate, SIGNING_USAGE)
        if encrypt_for is not None:
            check_validity([encrypt_for], now)
            check_key_usage(encrypt_for, frozenset({"key_encipherment"}))
        self.feed = Feed(sender, agreement, direction_of(sender))
        self.recipient, self.schema, self.signer, self.mode = recipient, schema, signer, mode
        self.encrypt_for, self.validation = encrypt_for, validation
        self.out_dir = out_dir
        self.staging = out_dir / f".building-{uuid.uuid4().hex}"
        (self.staging / DATA).mkdir(parents=True)
        self.files: list[PayloadFile] = []
        self.record_count = 0

    def __enter__(self) -> PackageBuilder:
        return self

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)  # gone already once sealed

    def add_records(
        self,
        name: str,
        records: Iterable[Mapping[str, Any]],
        *,
        columns: Sequence[str] | None = None,
        batch: Mapping[str, Any] | None = None,
    ) -> PayloadFile:
        """A payload file from records (dicts), streamed. Columns default to the first record's fields."""
        records = iter(records)
        first = next(records, None)
        if columns is None:
            columns = list(first) if first is not None else []
        restored = chain([first], records) if first is not None else iter(())
        return self.add_rows(name, columns, records_as_rows(restored, columns), batch=batch)

    def add_batches(
        self, name: str, batches: Iterable[Iterable[Mapping[str, Any]]], *, columns: Sequence[str] | None = None
    ) -> PayloadFile:
        """A payload file from record batches (lists of dicts), streamed batch by batch."""
        return self.add_records(name, chain.from_iterable(batches), columns=columns)

    def add_rows(
        self,
        name: str,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        batch: Mapping[str, Any] | None = None,
    ) -> PayloadFile:
        """A payload file from rows (tuples) in ``columns`` order, e.g. ``population.extract.iter_extract``.
        The name's suffix chooses the format: ``.csv``, ``.jsonl`` or ``.xml``, an XML batch laid out by the XSD
        of the package's schema (``exchange.xml_payload``; ``batch``: the root's attributes, where it has some)."""
        suffix = self._suffix(name)
        if batch is not None and suffix != ".xml":
            raise ValueError("batch attributes are for XML payloads")
        with self._plain_file(name) as sink:
            if suffix == ".xml":
                count = write_xml(columns, rows, sink, dataset=self.schema.name, version=self.schema.version,
                                  batch=batch)  # fmt: skip
            else:
                count = WRITERS[suffix](columns, rows, sink)
        return self._finish(name, count)

    def add_postgres_copy(self, name: str, engine: Engine, query: Select | str) -> PayloadFile:
        """A CSV payload file straight from PostgreSQL's ``COPY (query) TO STDOUT``: the server formats the CSV
        (nulls empty, empty strings quoted), dates and timestamps in ISO style and UTC. The query must order
        its rows for the payload to be deterministic."""
        if self._suffix(name) != ".csv":
            raise ValueError("COPY writes CSV: the name must end in .csv")
        if engine.dialect.name != "postgresql":
            raise ValueError("COPY needs PostgreSQL; use add_rows with population.extract.iter_extract")
        sql = query if isinstance(query, str) else str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        with self._plain_file(name) as sink, engine.connect() as connection:
            with connection.connection.driver_connection.cursor() as cursor:
                cursor.execute("SET LOCAL TimeZone = 'UTC'")
                cursor.execute("SET LOCAL DateStyle = 'ISO, YMD'")
                with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER true)") as copy:
                    for block in copy:
                        sink.write(block)
                count = cursor.rowcount
            connection.rollback()
        return self._finish(name, count)

    def add_file(self, name: str, source: Path, record_count: int, *, link: bool = False) -> PayloadFile:
        """A payload file that already exists, copied in; with ``link`` hard-linked where the filesystem allows
        (no copy: the caller hands the file over and must not change it afterwards)."""
        self._suffix(name)
        target = self._plain_path(name)
        try:
            if not link:
                raise OSError("copy asked for")
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
        return self._finish(name, record_count)

    def _suffix(self, name: str) -> str:
        suffix = PurePosixPath(name).suffix
        if not FILE_NAME_PATTERN.fullmatch(name) or suffix not in WRITERS:
            raise ValueError(f"payload file name {name!r}: letters, digits, '.', '_', '-', ending .csv, .jsonl or .xml")
        if any(PurePosixPath(f.path).name.removesuffix(ENCRYPTED_SUFFIX) == name for f in self.files):
            raise ValueError(f"the package already has a file {name}")
        return suffix

    def _plain_path(self, name: str) -> Path:
        return self.staging / DATA / name

    @contextmanager
    def _plain_file(self, name: str) -> Iterator[HashingWriter]:
        with self._plain_path(name).open("wb", buffering=0) as handle:
            sink = HashingWriter(handle)
            yield sink
            sink.flush()

    def _finish(self, name: str, record_count: int) -> PayloadFile:
        """Encrypt the plain file if asked, then hash what will be shipped."""
        plain = self._plain_path(name)
        shipped = plain
        if self.encrypt_for is not None:
            shipped = plain.with_name(name + ENCRYPTED_SUFFIX)
            with shipped.open("wb") as handle:
                encrypt_file(plain, handle, self.encrypt_for)
            plain.unlink()
        sha256, size = hash_file(shipped)
        payload = PayloadFile(
            path=f"{DATA}/{shipped.name}",
            media_type=MEDIA_TYPES[PurePosixPath(name).suffix],
            bytes=size,
            sha256=sha256,
            encrypted=self.encrypt_for is not None,
        )
        self.files.append(payload)
        self.record_count += record_count
        return payload

    def seal(self, engine: Engine, *, also: Callable[[Session, Manifest], Any] | None = None) -> BuiltPackage:
        """Number the package on its feed, write and sign the manifest, record it; one transaction. ``also`` is
        called in that transaction with the manifest, before the ledger entry (the feeds index the package's
        disclosures there, ``feeds.disclosures``): what it writes commits with the package or not at all."""
        if not self.files:
            raise ValueError("a package needs at least one payload file")
        with session_factory(engine)() as session, session.begin():
            feed_state = locked_state(session, SENT, self.feed)
            sequence = feed_state.last_sequence + 1
            # the ledger's lock from here to the package_sent entry below (the feed's lock first, as everywhere):
            # the head the manifest carries is the entry just before the package's own
            head = ledger.head(session, lock=True)
            manifest = Manifest(
                package_id=package_id_for(self.feed, sequence),
                agreement=self.feed.agreement,
                sender=self.feed.sender,
                recipient=self.recipient,
                direction=self.feed.direction,
                mode=self.mode,
                sequence=sequence,
                previous_manifest_sha256=feed_state.last_manifest_sha256,
                created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                schema=self.schema,
                record_count=self.record_count,
                files=tuple(self.files),
                validation=self.validation,
                ledger_head=head,
            )
            manifest_bytes = manifest.to_bytes()
            manifest_sha256 = hashlib.sha256(manifest_bytes).hexdigest()
            (self.staging / MANIFEST).write_bytes(manifest_bytes)
            (self.staging / SIGNATURE).write_bytes(sign_detached(manifest_bytes, self.signer))
            final = self.out_dir / package_name(self.feed, sequence)
            if final.exists():
                raise FileExistsError(f"{final} exists already: a package from another database?")
            if also is not None:
                also(session, manifest)
            advance(feed_state, sequence, manifest.package_id, manifest_sha256)
            ledger.append(session, ledger_record("package_sent", manifest, manifest_sha256, self.signer.certificate))
        self.staging.rename(final)
        return BuiltPackage(final, manifest, manifest_sha256)


def ledger_record(
    kind: str,
    manifest: Manifest,
    manifest_sha256: str,
    signer: x509.Certificate,
    *,
    record_count: int | None = None,
    status: str | None = None,
) -> ledger.LedgerRecord:
    """The ledger entry for a package (or a receipt of it: its count and status) signed by ``signer``."""
    return ledger.LedgerRecord(
        kind=kind,
        agreement=manifest.agreement,
        direction=manifest.direction,
        sender=manifest.sender,
        recipient=manifest.recipient,
        package_id=manifest.package_id,
        sequence=manifest.sequence,
        manifest_sha256=manifest_sha256,
        record_count=manifest.record_count if record_count is None else record_count,
        signer_fingerprint=fingerprint(signer),
        status=status,
    )


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in large blocks (hashlib releases the GIL on them)."""
    sha256, size = hashlib.sha256(), 0
    buffer = bytearray(4 * BLOCK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            sha256.update(view[:n])
            size += n
    return sha256.hexdigest(), size


def zip_package(directory: Path) -> Path:
    """``<directory>.zip`` holding the package's files at its top level, deterministically (sorted names, fixed
    timestamps); payload compressed, encrypted files stored."""
    target = directory.with_name(directory.name + ".zip")
    partial = target.with_name(target.name + ".partial")
    names = [MANIFEST, SIGNATURE] + sorted(f"{DATA}/{p.name}" for p in (directory / DATA).iterdir())
    with zipfile.ZipFile(partial, "w") as archive:
        for name in names:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            compressed = name.startswith(f"{DATA}/") and not name.endswith(ENCRYPTED_SUFFIX)
            info.compress_type = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
            with (directory / name).open("rb") as source, archive.open(info, "w", force_zip64=True) as member:
                shutil.copyfileobj(source, member, BLOCK)
    partial.replace(target)
    return target


# -- reading and verifying: the partners' verifier (lienthong_verify.package) with the platform's sequence state --


def verify_package(
    path: Path,
    trust: TrustAnchors,
    *,
    engine: Engine | None = None,
    recipient: CertifiedKey | None = None,
    decrypt_to: Path | None = None,
    at: datetime | None = None,
) -> VerifiedPackage:
    """``lienthong_verify.package.verify_package``, the sequence checked against the last package accepted from
    the sender in the database (with ``engine``). Reads only; ``accept_package`` records the package as received."""
    sequence = None
    if engine is not None:

        def sequence(manifest: Manifest, manifest_sha256: str) -> None:
            with session_factory(engine)() as session:
                _check_sequence(session, manifest, manifest_sha256, state(session, RECEIVED, manifest.feed))

    return verify_received(path, trust, sequence=sequence, recipient=recipient, decrypt_to=decrypt_to, at=at)


def _check_sequence(session, manifest: Manifest, manifest_sha256: str, last) -> None:
    check_next(session, manifest.feed, last, manifest.sequence, manifest.previous_manifest_sha256, manifest_sha256)


def accept_package(engine: Engine, verified: VerifiedPackage, *, within: Session | None = None) -> None:
    """Record a verified package as received: move its feed on and append ``package_received`` to the ledger.
    The sequence is checked again under the feed's lock, so two workers cannot accept the same place twice.
    ``within``: in the caller's transaction (a receiver that stores the package in the same one)."""
    if within is None:
        with session_factory(engine)() as session, session.begin():
            return accept_package(engine, verified, within=session)
    manifest = verified.manifest
    feed_state = locked_state(within, RECEIVED, manifest.feed)
    _check_sequence(within, manifest, verified.manifest_sha256, feed_state)
    advance(feed_state, manifest.sequence, manifest.package_id, verified.manifest_sha256)
    ledger.append(
        within, ledger_record("package_received", manifest, verified.manifest_sha256, verified.signature.signer)
    )
