"""The inbound exchange of one agreement, as plain functions the DAGs call (DESIGN.md, "Data flow"): the packages a
partner publishes for the population database, fetched, verified, validated, reconciled and acknowledged.

    fetched = fetch(engine, agreement, work_dir)                        # new packages from the partner's outbox
    for package in fetched.packages:
        verified = verify(engine, agreement, package, pki)              # rejected: a signed rejected receipt, stop
        checked = validate(engine, agreement, verified)                 # failing rows to the quarantine
        reconciled = reconcile(engine, agreement, checked, reports_dir) # registry links, mismatch report
        acknowledge(engine, agreement, verified, pki)                   # accepted receipt sent, ledger, feed moves

Each step returns a small frozen dataclass of references and counts (XCom values for the DAG layer) and is safe to
rerun after a crash at any point:

- ``fetch`` lists the partner's outbox through the agreement's transport (the inbound side of the protocol every
  hook implements, ``PartnerHook``: ``outbox_packages``, ``download_package``, ``send_receipt``) and downloads
  the packages of this agreement's inbound feed whose sequence (in the package's name,
  ``<agreement>-<partner>-inbound-<sequence>.zip``) is after the last one the feed accepted, in order, into
  ``work_dir/<agreement>/`` (``<package>.zip``, beside it ``<package>.receipt/`` for our receipt and
  ``<package>.work/`` for the steps' files, as outbound packages are kept). Partners keep
  acknowledged packages in their outbox; the population side skips them by the feed's sequence. A rerun
  downloads a pending package again.
- ``verify`` checks the package with ``exchange.package.verify_package`` (signature, chain, validity, key usage,
  revocation, signer = sender, files and hashes, the sequence on the inbound feed), that it belongs to the
  agreement (agreement, sender, recipient, dataset and version) and decrypts it with the population database's
  key; an XML batch payload is parsed with the hardened reader and checked against its XSD here. A package
  that fails gets a signed ``rejected`` receipt naming the failed check, sent back and recorded in the ledger
  once; it is not accepted, so the feed stays and the run stops there. The rejected receipt is kept beside the
  package (by the downloaded file's SHA-256), so a rerun on the same bytes resends the same receipt; a package
  that comes again intact is verified afresh.
- ``validate`` runs the inbound dataset's suite (``validation.suites``) over the payload, restricted to the
  agreement's fields: failing rows go to the quarantine with the rule, the field, the value and the reason
  (and to ``quarantine.csv`` beside the reports); more quarantined rows than ``max_quarantined_share`` raise
  ``DatasetBlocked`` (nothing is acknowledged: stewards release or the partner corrects, then a rerun goes on).
  The passing rows, with their row numbers in the package, are staged as ``passed.csv``; ``validation.json``
  beside it marks the step done, so a rerun does not validate (and quarantine) the package twice.
- ``reconcile`` matches the passing rows to citizens (``validation.reconciliation``): registry links are upserted
  (a rerun writes no second link) and the mismatches go to the database and to ``mismatches.csv``; the report,
  ``reconciliation.json``, marks the step done. Both under ``reports_dir/<agreement>/<package>/``.
- ``acknowledge`` signs an ``accepted`` receipt once (kept beside the package, so a resend is byte-identical),
  sends it through the transport (partners keep a receipt once), records ``receipt_sent`` in the ledger once,
  and only then accepts the package (``accept_package``: the inbound feed moves, ``package_received`` in the
  ledger). The feed moving is the last thing that happens, so a crash anywhere before it leaves the package
  pending and the rerun finishes it.

XML batch payloads are read with the hardened reader both sides use (``exchange.payload.parse_payload``, whole
document in memory) as the agreement's fields: an element the XSD lets a record leave out is a null, an element
the agreement does not take (the land owners' area and share) is not read. The land owners' records carry their
batch's ``createdAt`` as ``created_at``, the date the suite checks them on.

A crash between writing to the database and writing a step's marker file (``validation.json``,
``reconciliation.json``) makes the rerun do that step again: a second validation or reconciliation run is
recorded for the package, with the same findings; registry links and ledger entries are still written once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from connectors.base import DeliveredReceipt
from connectors.transport import partner_hook
from exchange.agreements import Agreement, Direction
from exchange.errors import FileHashMismatch, SequenceReplay, VerificationError
from exchange.keys import Keys, keys_of
from exchange.package import (
    DATA,
    ENCRYPTED_SUFFIX,
    Manifest,
    SchemaRef,
    VerifiedPackage,
    accept_package,
    hash_file,
    read_manifest,
    read_manifest_bytes,
    verify_package,
)
from exchange.payload import SUFFIXES, parse_payload
from exchange.pki import POPULATION, PkiDirectory
from exchange.receipt import RECEIPT, SIGNATURE, Receipt, make_receipt, record_receipt, write_receipt
from exchange.sequence import INBOUND, RECEIVED, Feed, state
from feeds.disclosures import package_recorder, subject_hasher
from feeds.outbound import check_quarantine_limit
from population.db import session_factory
from population.disclosures import SubjectsFile

if TYPE_CHECKING:  # the steps that validate and reconcile import them: fetching, verifying and acknowledging
    import pandas as pd  # start without Great Expectations and pandas

log = logging.getLogger(__name__)
VERIFIED, REJECTED, ALREADY_RECEIVED = "verified", "rejected", "already_received"
ROW_NUMBER = "row_number"
PASSED, VALIDATION_MARK, RECONCILIATION_MARK = "passed.csv", "validation.json", "reconciliation.json"
MISMATCHES = "mismatches.csv"


class AgreementMismatch(VerificationError):
    """The package is not one of this agreement's inbound feed (agreement, sender, recipient, dataset)."""

    check = "agreement"


class PayloadUnreadable(VerificationError):
    """A payload file the population side has no reader for."""

    check = "payload"


class PackageUnreadable(ValueError):
    """The download is not an exchange package at all (no readable manifest): no receipt can be made for it."""


@dataclass(frozen=True)
class FetchedPackage:
    agreement: str
    name: str  # the file name in the partner's outbox
    path: str  # where it was downloaded
    sequence: int


@dataclass(frozen=True)
class FetchedPackages:
    agreement: str
    listed: int  # this feed's packages in the partner's outbox
    skipped: int  # of those, already accepted by the feed
    packages: tuple[FetchedPackage, ...]  # the rest, downloaded, in sequence order


@dataclass(frozen=True)
class VerifiedInbound:
    """A fetched package after verification: ``verified`` (payload decrypted), ``rejected`` (a rejected receipt
    went back, ``problem`` says why) or ``already_received`` (another run accepted it meanwhile)."""

    agreement: str
    name: str
    path: str
    status: str
    package_id: str
    sequence: int
    manifest_sha256: str
    record_count: int
    payload: tuple[str, ...] = ()  # the plain payload files
    problem: str | None = None


@dataclass(frozen=True)
class CheckedInbound:
    """The validation of a verified package: the passing rows staged with their row numbers, and the figures."""

    agreement: str
    name: str
    package_id: str
    manifest_sha256: str
    staged: str
    rows: int
    passed: int
    quarantined: int
    suite: str
    validation_run: int | None
    quarantine_report: str | None


@dataclass(frozen=True)
class ReconciledPackage:
    agreement: str
    name: str
    package_id: str
    reconciliation_run: int
    rows: int
    links_written: int
    counts: dict[str, int]  # rows per class (matched, name_differs, dead_but_active …)
    report: str  # reconciliation.json
    mismatches: str  # mismatches.csv


@dataclass(frozen=True)
class Acknowledged:
    agreement: str
    name: str
    package_id: str
    status: str
    record_count: int
    receipt_dir: str
    newly_recorded: bool  # False when the ledger had this receipt already (a rerun)
    feed_moved: bool  # False when the feed had accepted the package already (a rerun)


@dataclass(frozen=True)
class InboundPackage:
    verified: VerifiedInbound
    checked: CheckedInbound | None = None
    reconciled: ReconciledPackage | None = None
    acknowledged: Acknowledged | None = None


@dataclass(frozen=True)
class InboundRun:
    fetched: FetchedPackages
    packages: tuple[InboundPackage, ...]


def inbound_of(agreement: Agreement) -> Direction:
    direction = agreement.directions.get(INBOUND)
    if direction is None:
        raise ValueError(f"agreement {agreement.name} has no inbound direction")
    return direction


def inbound_feed(agreement: Agreement) -> Feed:
    return Feed(agreement.partner, agreement.name, INBOUND)


def _package_folder(work_dir: Path, agreement: Agreement) -> Path:
    """Where the agreement's inbound packages are kept, as outbound ones are: ``<name>.zip`` with the receipt we
    sent in ``<name>.receipt/`` beside it, and what the steps work with in ``<name>.work/``."""
    return Path(work_dir) / agreement.name


def _work_folder(package: Path) -> Path:
    return package.with_suffix(".work")


def _receipt_folder(package: Path) -> Path:
    return package.with_suffix(".receipt")


def _report_folder(reports_dir: Path, agreement: Agreement, name: str) -> Path:
    return Path(reports_dir) / agreement.name / name.removesuffix(".zip")


# -- 1. fetch ----------------------------------------------------------------------------------------------------


def _last_received(engine: Engine, feed: Feed) -> int:
    with session_factory(engine)() as session:
        received = state(session, RECEIVED, feed)
    return received.last_sequence if received else 0


def sequence_of(feed: Feed, name: str) -> int | None:
    """The sequence of one of the feed's packages from its file name (``exchange.package.package_name``), or None
    for a package of another feed."""
    prefix = re.escape(f"{feed.agreement}-{feed.sender}-{feed.direction}-")
    match = re.fullmatch(prefix + r"(\d{8})\.zip", name)
    return int(match.group(1)) if match else None


def fetch(engine: Engine, agreement: Agreement, work_dir: Path) -> FetchedPackages:
    """Download the feed's packages the partner has published after the last one accepted, in order."""
    inbound_of(agreement)
    feed = inbound_feed(agreement)
    last = _last_received(engine, feed)
    with partner_hook(agreement.transport, agreement.connection_id) as hook:
        listed = sorted((sequence, name) for name in hook.outbox_packages()
                        if (sequence := sequence_of(feed, name)) is not None)  # fmt: skip
        fetched = []
        for sequence, name in listed:
            if sequence <= last:
                continue
            path = hook.download_package(name, _package_folder(work_dir, agreement))
            fetched.append(FetchedPackage(agreement.name, name, str(path), sequence))
    log.info("%s: %d inbound package(s) listed, %d new", agreement.name, len(listed), len(fetched))
    return FetchedPackages(agreement.name, len(listed), len(listed) - len(fetched), tuple(fetched))


# -- 2. verify ---------------------------------------------------------------------------------------------------


def check_agreement(agreement: Agreement, manifest: Manifest) -> None:
    """The package belongs to the agreement's inbound feed, in the dataset and version the agreement names."""
    direction = inbound_of(agreement)
    expected = {
        "agreement": (manifest.agreement, agreement.name),
        "sender": (manifest.sender, agreement.partner),
        "recipient": (manifest.recipient, POPULATION),
        "dataset": (manifest.schema.name, direction.dataset),
        "schema version": (manifest.schema.version, str(direction.schema_version)),
    }
    for what, (found, wanted) in expected.items():
        if found != wanted:
            raise AgreementMismatch(f"the package's {what} is {found!r}, the agreement's inbound feed has {wanted!r}")
    plain = [f.path for f in manifest.files if not f.encrypted]
    if direction.encryption and plain:
        raise AgreementMismatch(f"the agreement asks for encrypted payloads; {', '.join(plain)} is not encrypted")


def _plain_payload(path: Path, manifest: Manifest, decrypted: Path) -> tuple[str, ...]:
    """The plain payload files: decrypted ones as ``verify_package`` wrote them, plain ones taken out of the zip."""
    files = []
    for entry in manifest.files:
        name = PurePosixPath(entry.path).name.removesuffix(ENCRYPTED_SUFFIX)
        if PurePosixPath(name).suffix not in SUFFIXES:
            raise PayloadUnreadable(f"{name}: the population side reads CSV, JSON Lines and XML batch payloads")
        target = decrypted / DATA / name
        if not entry.encrypted:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(path) as archive, archive.open(entry.path) as source, target.open("wb") as plain:
                shutil.copyfileobj(source, plain, 1 << 20)
        files.append(str(target))
    return tuple(files)


def verify(engine: Engine, agreement: Agreement, fetched: FetchedPackage, pki: Keys | PkiDirectory) -> VerifiedInbound:
    """Verify a fetched package and decrypt its payload; a package that fails is answered with a signed rejected
    receipt naming the failed check (and not accepted). Raises ``PackageUnreadable`` when there is no manifest
    to answer."""
    path = Path(fetched.path)
    try:  # only the bytes before the signature holds: the manifest is parsed by verify_package, after it
        data = read_manifest_bytes(path)
    except (VerificationError, zipfile.BadZipFile, OSError, KeyError) as error:  # no package to name
        raise PackageUnreadable(f"{fetched.name} is not an exchange package: {error}") from None
    manifest_sha256 = hashlib.sha256(data).hexdigest()
    keys = keys_of(pki)
    recipient = keys.recipient(POPULATION)  # in memory: a key from Airflow's secrets never touches the disk
    decrypted = _work_folder(path) / "payload"
    manifest = None
    try:
        trust = keys.trust()
        verified = verify_package(path, trust, engine=engine, recipient=recipient, decrypt_to=decrypted)
        manifest = verified.manifest
        check_agreement(agreement, manifest)
        payload = _plain_payload(path, manifest, decrypted)
        for file in payload:  # an XML batch is parsed (hardened) and checked against the XSD of the manifest's schema
            if file.endswith(".xml"):
                xml_records(Path(file), manifest.schema)
    except SequenceReplay:  # raised once the signature held: the manifest is the sender's
        manifest = _named(fetched, data)
        log.info("%s: package %s was accepted already", agreement.name, manifest.package_id)
        return _verified_inbound(agreement, fetched, manifest, manifest_sha256, ALREADY_RECEIVED)
    except VerificationError as error:
        problem = str(error)
    except zipfile.BadZipFile as error:  # a changed byte in a zip member fails its CRC before its hash
        problem = str(FileHashMismatch(f"the zip does not hold what was packed ({error})"))
    else:
        log.info("%s: package #%d (%s) verified, %d records", agreement.name, manifest.sequence,
                 manifest.package_id, manifest.record_count)  # fmt: skip
        return _verified_inbound(agreement, fetched, manifest, manifest_sha256, VERIFIED, payload=payload)
    manifest = manifest or _named(fetched, data)  # parsed to name the package in the rejected receipt, no more
    log.warning("%s: package %s rejected: %s", agreement.name, manifest.package_id, problem)
    _reject(engine, agreement, fetched, manifest, manifest_sha256, problem, pki)
    return _verified_inbound(agreement, fetched, manifest, manifest_sha256, REJECTED, problem=problem)


def _named(fetched: FetchedPackage, data: bytes) -> Manifest:
    try:
        return Manifest.from_bytes(data)
    except VerificationError as error:
        raise PackageUnreadable(f"{fetched.name} is not an exchange package: {error}") from None


def _verified_inbound(agreement: Agreement, fetched: FetchedPackage, manifest: Manifest, manifest_sha256: str,
                      status: str, **rest) -> VerifiedInbound:  # fmt: skip
    return VerifiedInbound(agreement.name, fetched.name, fetched.path, status, manifest.package_id, manifest.sequence,
                           manifest_sha256, manifest.record_count, **rest)  # fmt: skip


def _reject(engine: Engine, agreement: Agreement, fetched: FetchedPackage, manifest: Manifest, manifest_sha256: str,
            problem: str, pki: Keys | PkiDirectory) -> None:  # fmt: skip
    """Answer a package that failed verification with a signed rejected receipt, kept by the downloaded file's
    SHA-256 (the same bytes get the same receipt again), and record it once."""
    path = Path(fetched.path)
    signer = keys_of(pki).signer(POPULATION)
    folder = _work_folder(path) / f"rejected-{hash_file(path)[0][:16]}"
    if not (folder / RECEIPT).is_file():
        _write_receipt_once(
            make_receipt(manifest, manifest_sha256, status="rejected", errors=[problem]), folder, signer
        )
    receipt = _send_receipt(agreement, fetched.name, folder)
    record_receipt(engine, "receipt_sent", manifest, receipt, signer.certificate)


def _write_receipt_once(receipt: Receipt, folder: Path, signer) -> Path:
    """Sign and write a receipt folder atomically (written aside, then renamed)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    write_receipt(receipt, partial, signer)
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return folder


def _send_receipt(agreement: Agreement, name: str, folder: Path) -> Receipt:
    data, signature = (folder / RECEIPT).read_bytes(), (folder / SIGNATURE).read_bytes()
    with partner_hook(agreement.transport, agreement.connection_id) as hook:
        hook.send_receipt(name, DeliveredReceipt(data, signature))
    return Receipt.from_bytes(data)


# -- 3. validate -------------------------------------------------------------------------------------------------


def payload_batches(files: tuple[str, ...], fields: list[str], batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The payload's records as batches of text, numbered from 1 across the package's files (an XML batch's as
    the agreement's ``fields``)."""
    from validation.runner import BATCH_ROWS, read_batches

    batch_rows = batch_rows or BATCH_ROWS
    offset = 0
    for file in files:
        last = 0
        path = Path(file)
        batches = xml_batches(path, fields, batch_rows) if path.suffix == ".xml" else read_batches(path, batch_rows)
        for batch in batches:
            last = int(batch.index[-1])
            batch.index = batch.index + offset
            yield batch
        offset += last


def xml_records(path: Path, schema: SchemaRef | None = None) -> list[dict]:
    """An XML batch payload read with the hardened reader (no DTD, no entities, checked against the XSD of the
    manifest's ``schema``, flattened to its fields); ``PayloadUnreadable`` names the line and the rule it breaks.
    The document is parsed whole."""
    try:
        return parse_payload(path.name, path.read_bytes(), schema=schema)
    except ValueError as error:  # the safe parser's refusals are ValueErrors naming the line and the rule
        raise PayloadUnreadable(str(error)) from None


def xml_batches(path: Path, fields: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    """An XML batch payload as batches of text in the agreement's ``fields``: an element the record leaves out is
    a null, one the agreement does not take is not read (the XSD, checked already, is the batch's shape)."""
    import pandas as pd

    records = xml_records(path)
    for start in range(0, len(records), batch_rows):
        frame = pd.DataFrame.from_records(records[start : start + batch_rows], columns=fields).astype(object)
        frame.index = pd.RangeIndex(start + 1, start + 1 + len(frame))
        yield frame.where(frame.notna(), None)


def _marked(marker: Path, manifest_sha256: str) -> dict | None:
    """A step's marker file, when it is for this very package."""
    if not marker.is_file():
        return None
    document = json.loads(marker.read_text(encoding="utf-8"))
    return document if document.get("manifest_sha256") == manifest_sha256 else None


def _write_marker(marker: Path, document: dict) -> None:
    partial = marker.with_name(marker.name + ".partial")
    partial.write_text(json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    partial.replace(marker)


def validate(
    engine: Engine,
    agreement: Agreement,
    verified: VerifiedInbound,
    *,
    reports_dir: Path | None = None,
    as_of: date | None = None,
) -> CheckedInbound:
    """Validate the payload with the inbound dataset's suite over the agreement's fields: failing rows to the
    quarantine (and ``quarantine.csv`` under ``reports_dir``), the passing ones staged with their row numbers."""
    if verified.status != VERIFIED:
        raise ValueError(f"package {verified.package_id} is {verified.status}, not verified")
    folder = _work_folder(Path(verified.path))
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / VALIDATION_MARK
    if (done := _marked(marker, verified.manifest_sha256)) is not None:
        return CheckedInbound(**{k: v for k, v in done.items() if k in CheckedInbound.__dataclass_fields__})
    from validation.quarantine import QuarantineStore
    from validation.reports import FindingsCsv
    from validation.runner import StreamValidation
    from validation.suites import build_suite

    direction = inbound_of(agreement)
    fields = list(direction.fields)
    settings = direction.validation or {}
    suite = build_suite(settings.get("suite", direction.dataset), as_of=as_of,
                        freshness_days=settings.get("freshness_days"), columns=fields)  # fmt: skip
    source = f"{agreement.name}: inbound package {verified.sequence} ({verified.package_id})"
    store = QuarantineStore(engine, direction.dataset, suite.suite.name, source, agreement.name)
    sinks: list = [store]
    report = None
    if reports_dir is not None:
        report = _report_folder(reports_dir, agreement, verified.name) / "quarantine.csv"
        sinks.append(FindingsCsv(report))
    run = StreamValidation(suite, sinks=sinks, waivers=store.waivers, source=source, scratch_dir=folder)
    staged = folder / PASSED
    partial = staged.with_name(staged.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow([ROW_NUMBER, *fields])
        for passing in run.passing(payload_batches(verified.payload, fields)):
            plain = passing[fields].astype(object).where(passing[fields].notna(), "")
            writer.writerows([number, *values] for number, values in zip(
                passing.index, plain.itertuples(index=False, name=None), strict=True))  # fmt: skip
    outcome = run.outcome
    check_quarantine_limit(direction, outcome)
    partial.replace(staged)
    checked = CheckedInbound(agreement.name, verified.name, verified.package_id, verified.manifest_sha256,
                             str(staged), outcome.rows, outcome.passed, outcome.quarantined, suite.suite.name,
                             outcome.run_id, str(report) if report else None)  # fmt: skip
    _write_marker(marker, asdict(checked))
    log.info("%s: package %s: %d rows validated, %d passed, %d quarantined", agreement.name, verified.package_id,
             outcome.rows, outcome.passed, outcome.quarantined)  # fmt: skip
    return checked


# -- 4. reconcile ------------------------------------------------------------------------------------------------


def staged_batches(staged: Path, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """The staged passing rows, indexed by their row numbers in the package."""
    from validation.runner import BATCH_ROWS, read_batches

    for batch in read_batches(staged, batch_rows or BATCH_ROWS):
        batch.index = batch.pop(ROW_NUMBER).astype(int)
        yield batch


def reconcile(engine: Engine, agreement: Agreement, checked: CheckedInbound, reports_dir: Path) -> ReconciledPackage:
    """Match the passing rows to citizens: registry links written, mismatches recorded and reported under
    ``reports_dir/<agreement>/<package>/`` (``reconciliation.json``, ``mismatches.csv``)."""
    folder = _report_folder(reports_dir, agreement, checked.name)
    marker = folder / RECONCILIATION_MARK
    if (done := _marked(marker, checked.manifest_sha256)) is not None:
        return ReconciledPackage(**done["package"])
    from validation.reconciliation import reconcile as reconcile_rows
    from validation.reconciliation import write_mismatch_csv

    folder.mkdir(parents=True, exist_ok=True)
    source = f"{agreement.name}: inbound package {checked.package_id}"
    staged = Path(checked.staged)
    report = reconcile_rows(engine, agreement.partner, staged_batches(staged), source, scratch_dir=staged.parent)
    mismatches = folder / MISMATCHES
    write_mismatch_csv(engine, report.run_id, mismatches)
    reconciled = ReconciledPackage(agreement.name, checked.name, checked.package_id, report.run_id, report.rows,
                                   report.links_written, dict(report.counts), str(marker), str(mismatches))  # fmt: skip
    _write_marker(marker, {"manifest_sha256": checked.manifest_sha256, **report.as_dict(),
                           "package": asdict(reconciled)})  # fmt: skip
    log.info("%s: package %s reconciled: %d rows, %d links written, %s", agreement.name, checked.package_id,
             report.rows, report.links_written, {c: n for c, n in report.counts.items() if n})  # fmt: skip
    return reconciled


# -- 5. acknowledge ----------------------------------------------------------------------------------------------


def acknowledge(
    engine: Engine, agreement: Agreement, verified: VerifiedInbound, pki: Keys | PkiDirectory
) -> Acknowledged:
    """Send the signed accepted receipt (made once, kept beside the package), then, in one transaction, accept the
    package and record the receipt in the ledger once: the inbound feed moves with the receipt's ledger entry, last.
    A failure before the commit leaves neither, and the rerun sends the same receipt again (the partner keeps it
    once)."""
    if verified.status != VERIFIED:
        raise ValueError(f"package {verified.package_id} is {verified.status}, not verified")
    hasher = subject_hasher()  # no disclosure key: refused before the receipt goes out
    path = Path(verified.path)
    manifest, manifest_sha256 = read_manifest(path)
    signer = keys_of(pki).signer(POPULATION)
    folder = _receipt_folder(path)
    if not _receipt_for(folder, manifest_sha256):
        _write_receipt_once(make_receipt(manifest, manifest_sha256, status="accepted"), folder, signer)
    receipt = _send_receipt(agreement, verified.name, folder)
    again = _verified_again(engine, path, pki) if _last_received(engine, manifest.feed) < manifest.sequence else None
    moved = again is not None
    disclosures = None
    if moved:
        disclosures = package_recorder(agreement, INBOUND, [_index_subjects(agreement, verified, hasher)])
    with session_factory(engine)() as session, session.begin():  # the feed's lock first, then the ledger's
        if disclosures is not None:
            disclosures(session, again.manifest)  # the disclosure index: accepted with the package, or not at all
            accept_package(engine, again, within=session)
        recorded = record_receipt(engine, "receipt_sent", manifest, receipt, signer.certificate, within=session)
    log.info("%s: package #%d (%s) acknowledged%s", agreement.name, manifest.sequence, manifest.package_id,
             "" if moved else " again")  # fmt: skip
    return Acknowledged(agreement.name, verified.name, manifest.package_id, receipt.status, receipt.record_count,
                        str(folder), recorded, moved)  # fmt: skip


def _index_subjects(agreement: Agreement, verified: VerifiedInbound, hasher) -> Path:
    """The subjects of every record of the package for the disclosure index (the quarantined too: the partner sent
    them), written beside the package's work files."""
    fields = list(inbound_of(agreement).fields)
    target = _work_folder(Path(verified.path)) / "disclosure.subjects"
    target.parent.mkdir(parents=True, exist_ok=True)
    with SubjectsFile(target, hasher) as subjects:
        if "personal_id" in fields:
            for batch in payload_batches(verified.payload, fields):
                for value in batch["personal_id"]:
                    subjects.add(value if isinstance(value, str) else None)
    return target


def _receipt_for(folder: Path, manifest_sha256: str) -> bool:
    if not (folder / RECEIPT).is_file() or not (folder / SIGNATURE).is_file():
        return False
    return Receipt.from_bytes((folder / RECEIPT).read_bytes()).manifest_sha256 == manifest_sha256


def _verified_again(engine: Engine, path: Path, pki: Keys | PkiDirectory) -> VerifiedPackage:
    """The package verified once more (without decrypting) for ``accept_package``, which records its signer."""
    return verify_package(path, keys_of(pki).trust(), engine=engine)


# -- the whole run -----------------------------------------------------------------------------------------------


def run_inbound(
    engine: Engine,
    agreement: Agreement,
    pki: Keys | PkiDirectory,
    work_dir: Path,
    reports_dir: Path,
    *,
    as_of: date | None = None,
) -> InboundRun:
    """Every step for every pending package of the agreement's inbound feed, in order (what the DAG does task by
    task). Stops at a rejected package: those after it cannot be accepted before it."""
    fetched = fetch(engine, agreement, work_dir)
    done = []
    for package in fetched.packages:
        verified = verify(engine, agreement, package, pki)
        if verified.status == REJECTED:
            done.append(InboundPackage(verified))
            break
        if verified.status == ALREADY_RECEIVED:
            done.append(InboundPackage(verified))
            continue
        checked = validate(engine, agreement, verified, reports_dir=reports_dir, as_of=as_of)
        reconciled = reconcile(engine, agreement, checked, reports_dir)
        acknowledged = acknowledge(engine, agreement, verified, pki)
        done.append(InboundPackage(verified, checked, reconciled, acknowledged))
    return InboundRun(fetched, tuple(done))
