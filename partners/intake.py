"""What every partner does with a package it receives, whatever the transport, and with one it publishes.

Receiving (``PackageIntake.receive``):
1. a package id seen before is answered with the receipt stored for it (same manifest) — nothing is stored
   twice; a different manifest under a known id is rejected;
2. the package must travel under one of the partner's agreements (``schemas/agreements``), in a direction it has,
   with the dataset that direction takes (``agreement``);
3. the package is verified with ``exchange.package.verify_package``: signature, certificate chain, revocation,
   the sender, the files, and the sequence against the packages accepted before; encrypted files are
   decrypted with the partner's key;
4. in one transaction the feed is moved on (``accept_package``), the records are read (``exchange.payload``'s
   bounded readers: CSV as it is stored, JSON Lines, or XML batch files checked against the XSD of the manifest's
   schema), each within the agreement's fields, and stored; the records read must be the manifest's
   ``record_count``; the package is stored with the signed receipt that counts them, and the receipt is recorded
   in the partner's ledger: a payload error or a failure half-way keeps none of it;
5. the answer is a receipt v1 signed by the partner: ``accepted``, or ``rejected`` with the failed check.

Publishing (``publish_outbox``): the partner's own records as an exchange package to the population database,
signed by the partner, encrypted for the population database, zipped into the outbox folder. The population
database answers each with its signed receipt (``take_receipt``): verified against the published package (signed
by the population database, bound to the package's manifest), kept once in the partner's store and recorded in
its ledger once. An acknowledged package stays in the outbox, listed as before: the population database skips
what its inbound feed has accepted already (``feeds.inbound.fetch``), so the outbox is also the partner's
record of what it published.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy.orm import Session

from exchange.agreements import Direction, load_agreements
from exchange.errors import VerificationError
from exchange.package import (
    ENCRYPTED_SUFFIX,
    Manifest,
    PackageBuilder,
    SchemaRef,
    accept_package,
    read_manifest,
    read_manifest_bytes,
    verify_package,
    zip_package,
)
from exchange.payload import TEXT_SUFFIXES, csv_rows, parse_payload
from exchange.pki import (
    ENCRYPTION,
    POPULATION,
    CertifiedKey,
    PkiDirectory,
    Signer,
    key_path,
    load_certificate,
    load_recipient,
    load_signer,
)
from exchange.receipt import RECEIPT, SIGNATURE, make_receipt, record_receipt, verify_receipt
from exchange.safe_xml import InvalidDocument, UnsafeDocument
from exchange.signature import TrustAnchors, sign_detached
from partners.store import RegistryStore
from partners.trust import ReloadingTrust
from population.db import session_factory

log = logging.getLogger("lienthong.partners")


@dataclass(frozen=True)
class PartnerKeys:
    """A partner's certificates and keys from the sandbox PKI."""

    name: str
    signer: Signer
    recipient: CertifiedKey
    trust: TrustAnchors
    population_encryption: Path
    tls_certificate: Path
    tls_key: Path
    issuing_ca: Path
    key_password: bytes

    @classmethod
    def load(cls, pki: PkiDirectory, name: str, password: bytes) -> PartnerKeys:
        encryption = pki.certificate(name, ENCRYPTION)
        return cls(
            name=name,
            signer=load_signer(pki, name, password),
            recipient=load_recipient(encryption, key_path(encryption), password),
            trust=ReloadingTrust.from_pki(pki),  # a certificate revoked while the partner runs is refused
            population_encryption=pki.certificate(POPULATION, ENCRYPTION),
            tls_certificate=pki.certificate(name, "tls-server"),
            tls_key=key_path(pki.certificate(name, "tls-server")),
            issuing_ca=pki.issuing_ca,
            key_password=password,
        )


class AgreementRefused(VerificationError):
    """The package does not travel under one of the partner's agreements, in a direction and dataset it has."""

    check = "agreement"


class IntakeRefused(ValueError):
    """The upload is not an exchange package at all (no readable manifest): no receipt can be made for it."""


@dataclass(frozen=True)
class IntakeResult:
    status: str  # accepted | rejected
    duplicate: bool
    receipt: bytes
    signature: bytes
    package_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "duplicate": self.duplicate,
            "receipt": base64.b64encode(self.receipt).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }


class ReceiptRefused(ValueError):
    """A receipt for a published package that does not verify (signature, signer, binding): not kept."""


@dataclass(frozen=True)
class Acknowledgement:
    """What the partner made of the population database's receipt for one of its published packages."""

    status: str  # the receipt's: accepted | rejected
    duplicate: bool  # this very receipt was kept before
    package_id: str

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "duplicate": self.duplicate, "package_id": self.package_id}


def outbox_package(outbox: Path, name: str) -> Path | None:
    """A published package by its file name (a plain ``.zip`` name, never a path or a hidden file), or None."""
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".zip"):
        return None
    path = outbox / name
    return path if path.is_file() else None


class PackageIntake:
    def __init__(self, keys: PartnerKeys, store: RegistryStore, work_dir: Path) -> None:
        self.keys, self.store, self.work_dir = keys, store, work_dir
        work_dir.mkdir(parents=True, exist_ok=True)

    def receive(self, package_path: Path) -> IntakeResult:
        """Verify, deduplicate, store and acknowledge one package (a directory or a zip). Before its signature holds,
        only the manifest's bytes are read (bounded), to know a package stored already by their SHA-256; the manifest
        is parsed once the signature over those bytes holds (``verify_package``), or, when it does not, only to name
        the package in the rejected receipt."""
        try:
            data = read_manifest_bytes(package_path)
        except (VerificationError, zipfile.BadZipFile, OSError, KeyError) as error:  # no package to name
            raise IntakeRefused(f"not an exchange package: {error}") from None
        manifest_sha256 = hashlib.sha256(data).hexdigest()
        with self.store.intake_lock:
            stored = self.store.stored_manifest(manifest_sha256)
            if stored is not None:
                log.info("%s: package %s received again; answering the stored receipt", self.keys.name,
                         stored.package_id)  # fmt: skip
                return IntakeResult("accepted", True, stored.receipt, stored.signature, stored.package_id)
            return self._verify_and_store(package_path, data, manifest_sha256)

    def _verify_and_store(self, package_path: Path, data: bytes, manifest_sha256: str) -> IntakeResult:
        decrypted = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="decrypted-"))
        engine = self.store.engine
        manifest = None
        try:
            verified = verify_package(
                package_path, self.keys.trust, engine=engine, recipient=self.keys.recipient, decrypt_to=decrypted
            )
            manifest = verified.manifest
            if self.store.stored_package(manifest.package_id) is not None:
                return self._reject(manifest, manifest_sha256, "package_id: this id was received with another manifest")
            direction = self._direction(manifest)
            # one transaction: the feed moved on, the records read into the store as they are parsed, the package
            # with its signed receipt, the ledger entry; a payload error or a failure half-way keeps none of them,
            # and the sender's retry is received as the first time
            with session_factory(engine)() as session, session.begin():
                accept_package(engine, verified, within=session)  # the sequence, checked again under the lock
                count = self._store_records(package_path, manifest, direction, decrypted, session)
                if count != manifest.record_count:  # the manifest's number is not echoed: it may be any size
                    raise InvalidDocument(f"{count:,} records read, which is not the manifest's record_count")
                receipt = make_receipt(manifest, manifest_sha256, status="accepted", record_count=count)
                receipt_bytes = receipt.to_bytes()
                signature = sign_detached(receipt_bytes, self.keys.signer)
                self.store.store_package(manifest, manifest_sha256, receipt_bytes, signature, count, within=session)
                record_receipt(engine, "receipt_sent", manifest, receipt, self.keys.signer.certificate,
                               within=session)  # fmt: skip
        except VerificationError as error:  # a check failed, or another intake took this place in the sequence
            return self._reject(manifest or self._named(data), manifest_sha256, str(error))
        except (InvalidDocument, UnsafeDocument) as error:
            return self._reject(manifest or self._named(data), manifest_sha256, f"payload: {error}")
        finally:
            shutil.rmtree(decrypted, ignore_errors=True)
        log.info("%s: accepted package %s (#%d of %s, %d records)", self.keys.name, manifest.package_id,
                 manifest.sequence, manifest.agreement, count)  # fmt: skip
        return IntakeResult("accepted", False, receipt_bytes, signature, manifest.package_id)

    @staticmethod
    def _named(data: bytes) -> Manifest:
        """The manifest of a package that failed verification, parsed (bounded) only to name it in the rejected
        receipt; a manifest that cannot be read has no package to name."""
        try:
            return Manifest.from_bytes(data)
        except VerificationError as error:
            raise IntakeRefused(f"not an exchange package: {error}") from None

    def _direction(self, manifest: Manifest) -> Direction:
        """The agreement direction the package travels under: one of this partner's agreements (a partner with
        several is never guessed for), the manifest's direction, and the dataset that direction takes."""
        agreement = load_agreements().get(manifest.agreement)  # the name is checked by the manifest's reader
        if agreement is None or agreement.partner != self.keys.name:
            raise AgreementRefused(f"{self.keys.name} has no agreement {manifest.agreement}")
        direction = agreement.directions.get(manifest.direction)
        if direction is None:
            raise AgreementRefused(f"agreement {agreement.name} has no {manifest.direction} direction")
        if (manifest.schema.name, manifest.schema.version) != (direction.dataset, str(direction.schema_version)):
            takes = f"{direction.dataset} v{direction.schema_version}"
            raise AgreementRefused(
                f"agreement {agreement.name}'s {direction.name} direction takes {takes}; "
                "the manifest names another schema"
            )
        return direction

    def _store_records(
        self, package_path: Path, manifest: Manifest, direction: Direction, decrypted: Path, session: Session
    ) -> int:
        """Every payload file's records, each within the agreement direction's fields, into the store, in the
        intake's transaction; how many. A CSV file is stored as it is read (rows of text, no dict per record, memory
        flat in its size); JSON Lines and XML are read whole (``exchange.payload.parse_payload``)."""
        count = 0
        allowed = direction.fields
        for entry in manifest.files:
            name = _payload_name(entry).name
            with _payload_file(package_path, entry, decrypted) as binary:
                if PurePosixPath(name).suffix == ".csv":
                    text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
                    fields, rows = csv_rows(name, text, fields=allowed)
                    count += self.store.store_rows(manifest.package_id, fields, rows, within=session)
                else:
                    records = parse_payload(name, binary.read(), schema=manifest.schema, fields=allowed)
                    text_only = PurePosixPath(name).suffix in TEXT_SUFFIXES
                    count += self.store.store_records(manifest.package_id, records, text_only=text_only,
                                                      within=session)  # fmt: skip
        return count

    def failed(self, package_path: Path, error: Exception) -> IntakeResult | None:
        """A signed ``rejected`` receipt for a package the intake broke on (a fault of the partner's, not of the
        package): nothing was stored, so the sender learns it now instead of waiting for a receipt that never comes,
        and may send it again. None when the package has no manifest to name. The message gives only the kind of
        failure: its text may quote the package."""
        try:
            data = read_manifest_bytes(package_path)
            manifest = self._named(data)
        except (VerificationError, IntakeRefused, zipfile.BadZipFile, OSError, KeyError):
            return None
        problem = f"intake: the partner failed on this package ({type(error).__name__}); nothing was stored"
        return self._reject(manifest, hashlib.sha256(data).hexdigest(), problem)

    def _reject(self, manifest: Manifest, manifest_sha256: str, problem: str) -> IntakeResult:
        """A signed ``rejected`` receipt; nothing is stored, so the sender may send a corrected package."""
        receipt = make_receipt(manifest, manifest_sha256, status="rejected", errors=[problem])
        data = receipt.to_bytes()
        log.warning("%s: rejected package %s: %s", self.keys.name, manifest.package_id, problem)
        return IntakeResult("rejected", False, data, sign_detached(data, self.keys.signer), manifest.package_id)

    # -- publishing ---------------------------------------------------------------------------------------------

    def take_receipt(self, package_path: Path, receipt: bytes, signature: bytes) -> Acknowledgement:
        """The population database's signed receipt for a package this partner published: verified, kept once
        in the store, recorded in the partner's ledger once. Raises ``ReceiptRefused`` when it does not verify."""
        manifest, manifest_sha256 = read_manifest(package_path)
        folder = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="receipt-"))
        try:
            (folder / RECEIPT).write_bytes(receipt)
            (folder / SIGNATURE).write_bytes(signature)
            verified = verify_receipt(folder, self.keys.trust, manifest, manifest_sha256)
        except VerificationError as error:
            log.warning("%s: refused the receipt for package %s: %s", self.keys.name, manifest.package_id, error)
            raise ReceiptRefused(str(error)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        with self.store.intake_lock:
            # the ledger first: a kept receipt always has its entry, and taking the receipt again after a crash
            # between the two keeps it without a second entry (the ledger records a receipt once)
            record_receipt(self.store.engine, "receipt_received", manifest, verified.receipt,
                           verified.signature.signer)  # fmt: skip
            kept = self.store.store_acknowledgement(package_path.name, manifest_sha256, verified.receipt, receipt,
                                                    signature)  # fmt: skip
        log.info("%s: package %s %s by the population database%s", self.keys.name, manifest.package_id,
                 verified.receipt.status, "" if kept else " (receipt received again)")  # fmt: skip
        return Acknowledgement(verified.receipt.status, not kept, manifest.package_id)

    def publish_outbox(
        self,
        outbox: Path,
        agreement: str,
        schema: SchemaRef,
        records: Iterable[dict],
        *,
        suffix: str = ".csv",
        batch: dict[str, Any] | None = None,
        encrypt: bool = True,
    ) -> Path:
        """The partner's records as the next package of its inbound feed, zipped into ``outbox``: a CSV file, or
        with ``suffix=".xml"`` an XML batch per the schema's XSD (``batch``: its root attributes); encrypted for
        the population database unless ``encrypt`` is False (a partner that forgot to)."""
        outbox.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.work_dir, prefix="outbox-"))
        try:
            with PackageBuilder(
                staging, agreement=agreement, recipient=POPULATION, schema=schema, signer=self.keys.signer,
                sender=self.keys.name,
                encrypt_for=load_certificate(self.keys.population_encryption) if encrypt else None,
            ) as builder:  # fmt: skip
                builder.add_records(f"{schema.name}{suffix}", records, batch=batch)
                built = builder.seal(self.store.engine)
            archive = zip_package(built.path)
            target = outbox / archive.name
            hidden = outbox / f".{archive.name}.partial"
            shutil.copyfile(archive, hidden)
            hidden.replace(target)
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# -- payload records -------------------------------------------------------------------------------------------


def read_records(package_path: Path, manifest: Manifest, decrypted: Path) -> list[dict[str, Any]]:
    """Every record of every payload file (``decrypted``: where ``verify_package`` decrypted them), read whole with
    the parser its suffix calls for (``exchange.payload``)."""
    records: list[dict[str, Any]] = []
    for entry in manifest.files:
        with _payload_file(package_path, entry, decrypted) as binary:
            records.extend(parse_payload(_payload_name(entry).name, binary.read(), schema=manifest.schema))
    return records


def _payload_name(entry) -> PurePosixPath:
    """A payload file's name as written, before any encryption."""
    return PurePosixPath(PurePosixPath(entry.path).name.removesuffix(ENCRYPTED_SUFFIX))


@contextmanager
def _payload_file(package_path: Path, entry, decrypted: Path) -> Iterator[BinaryIO]:
    """A payload file's plain bytes, opened for reading: decrypted into ``decrypted/data/``, or as shipped in the
    package (a directory or a zip)."""
    if entry.encrypted:
        with (decrypted / "data" / _payload_name(entry).name).open("rb") as handle:
            yield handle
    elif package_path.is_dir():
        with (package_path / entry.path).open("rb") as handle:
            yield handle
    else:
        with zipfile.ZipFile(package_path) as archive, archive.open(entry.path) as handle:
            yield handle


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
