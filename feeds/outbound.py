"""The outbound pipeline of one agreement, as plain functions the DAGs call (DESIGN.md, "Data flow").

    window = extract(engine, agreement)                   # which changes: after the checkpoint, up to a mark
    checked = validate(engine, agreement, window, work)   # rows that passed, minimised; the rest quarantined
    sealed = package(engine, agreement, checked, pki, out)
    receipt = deliver(agreement, sealed)                  # through the partner's transport (None when the receipt
                                                          #   comes later: collect_receipt until it is there)
    verified = verify(engine, sealed, receipt, pki)       # signed by the recipient, bound to the manifest; ledger
    close_window(engine, agreement, window, verified)     # the checkpoint moves only now

Each step returns a small frozen dataclass of references and counts (XCom values for the DAG layer) and is safe to
retry:

- ``extract`` fixes the window: the changes after the feed's checkpoint up to the change-log head read at the
  start (incremental; at most the agreement's ``max_package_citizens`` changed citizens, the rest in the next
  window), or every citizen (full); of them, the rows the agreement's ``select`` takes (its events, its field
  tests, in SQL). While a sealed package waits for its receipt, the window is that package's, so a
  rerun resends it rather than sealing another. A new feed starts at the head unless its agreement says
  ``start: beginning``.
- ``validate`` validates the extract rows with the agreement's suite, over the fields the partner gets and the
  columns that identify a person (a defect in a field the partner never sees does not hold back, say, a death
  the land registry must know of; one person under two IDs is held back from every partner), then minimises
  the passing rows to the agreement's fields (principle 4). Failing rows go to the quarantine; a block-severity
  failure, or more quarantined rows than the agreement allows, raises ``DatasetBlocked``. The passing rows are
  written, in the payload format, to a staging file under ``work_dir``; a retry writes the same file again (and
  records another validation run). A full snapshot may stage several files (one per shard, ``feeds.snapshot``).
- ``package`` seals the staging file into the next package of the feed (signed, encrypted when the agreement
  says, with the validation outcome) and zips it. It is held as pending on the checkpoint, under the name it
  will get, before sealing; a retry finds it (zipped or not) and returns it rather than numbering another.
- ``deliver`` sends the zip; partners deduplicate by package id, so a resend is answered with the stored receipt.
  Most transports answer the delivery with the receipt; on one whose receipt comes later
  (``PartnerHook.receipt_comes_later``: SFTP) the partner writes it when done, which ``collect_receipt`` looks for
  (the DAG waits for it in a deferred task, the transport's ``receipt_sensor``).
- ``verify`` checks the receipt and records it in the ledger once; a rejected receipt raises ``ReceiptRejected``.
- ``close_window`` moves the checkpoint to the window's end; moving it twice is a no-op.

An incremental window with no changes produces no package (``run_outbound`` stops after ``extract``): packages
are numbered without gaps, and an empty one would only say "nothing happened". A window whose changed citizens
were all quarantined still produces a package with no records, so that the window is acknowledged and closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, distinct, func, or_, select, update
from sqlalchemy.orm import Session

from connectors.transport import partner_hook
from exchange.agreements import EVERY_ROW, HEAD, Agreement, Direction, RowSelection
from exchange.errors import VerificationError
from exchange.keys import keys_of
from exchange.package import (
    WRITERS,
    HashingWriter,
    PackageBuilder,
    SchemaRef,
    Validation,
    package_name,
    read_manifest,
    zip_package,
)
from exchange.pki import POPULATION, PkiDirectory
from exchange.receipt import record_receipt, verify_receipt
from exchange.sequence import SENT, Feed, direction_of, state
from feeds.checkpoint import hold_pending, move_checkpoint, read_checkpoint, start_feed
from feeds.disclosures import package_recorder, subject_hasher
from population.changelog import changed_citizens, last_sequence
from population.db import session_factory
from population.disclosures import SubjectsFile, subjects_path
from population.extract import extract_query
from population.models import Change, Citizen

if TYPE_CHECKING:  # the steps that validate import them: the others start without Great Expectations and pandas
    import pandas as pd

    from validation.outcome import ValidationOutcome
    from validation.suites import DatasetSuite

log = logging.getLogger(__name__)
OUTBOUND = "outbound"
FULL, INCREMENTAL = "full", "incremental"
SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "xml": ".xml"}


class ReceiptRejected(VerificationError):
    """The partner verified the package and refused it: the checkpoint stays, the package needs a look."""


@dataclass(frozen=True)
class FeedWindow:
    """The changes one run delivers: those numbered after ``after`` up to ``up_to`` (or, in full mode, every
    citizen as of ``up_to``); ``pending`` when it is the window of a package sealed but not yet acknowledged."""

    agreement: str
    mode: str
    after: int
    up_to: int
    citizens: int
    pending: str | None = None


@dataclass(frozen=True)
class StagedFile:
    """A payload file written before sealing: its name in the package, where it is, how many records."""

    name: str
    path: str
    records: int


@dataclass(frozen=True)
class CheckedRows:
    """The minimised rows that passed validation, in the payload format, and the validation's figures."""

    window: FeedWindow
    files: tuple[StagedFile, ...]
    rows: int
    passed: int
    quarantined: int
    suite: str
    validation_run: int | None
    released: tuple[dict, ...] = ()  # the manifest's validation.released: the stewards' releases it carries
    releases_done: tuple[int, ...] = ()  # the released records this package settles (carried, or held anew)


@dataclass(frozen=True)
class SealedPackage:
    window: FeedWindow
    path: str  # the zip
    package_id: str
    sequence: int
    manifest_sha256: str
    record_count: int
    quarantined: int


@dataclass(frozen=True)
class VerifiedDelivery:
    package_id: str
    status: str
    record_count: int
    newly_recorded: bool  # False when the ledger had this receipt already (a retry)


def outbound_of(agreement: Agreement) -> Direction:
    direction = agreement.directions.get(OUTBOUND)
    if direction is None:
        raise ValueError(f"agreement {agreement.name} has no outbound direction")
    return direction


# -- 1. extract --------------------------------------------------------------------------------------------------


def _window_query(
    window: FeedWindow, rows: RowSelection, columns: list[str] | None = None, released: tuple[str, ...] = ()
):
    """The extract rows of the window that the agreement selects: in an incremental window, the citizens changed
    in it (by one of the selected events, when it names some) and those a steward released from the quarantine
    (``released``: their personal IDs); in a full one, every citizen (with such an event in the change log up to
    the window's end); each meeting the selection's field tests."""
    query = extract_query(columns=columns, where=rows.where)
    if window.mode == INCREMENTAL:
        changed = Citizen.id.in_(changed_citizens(window.after, window.up_to, rows.events))
        query = query.where(or_(changed, Citizen.personal_id.in_(released)) if released else changed)
    elif rows.events:
        query = query.where(Citizen.id.in_(changed_citizens(0, window.up_to, rows.events)))
    return query


def _window_citizens(session: Session, window: FeedWindow, rows: RowSelection) -> int:
    if rows:
        selected = _window_query(window, rows, ["personal_id"]).order_by(None).subquery()
        return session.scalar(select(func.count()).select_from(selected))
    if window.mode == INCREMENTAL:
        changed = Change.sequence > window.after, Change.sequence <= window.up_to
        return session.scalar(select(func.count(distinct(Change.citizen_id))).where(*changed))
    return session.scalar(select(func.count()).select_from(Citizen))


def _capped_up_to(session: Session, window: FeedWindow, rows: RowSelection, cap: int) -> int:
    """Where an incremental window of more than ``cap`` citizens ends: just before the first change of the citizen
    one past the cap, so that the window holds the first ``cap`` citizens in the order of their first change in it,
    with every change of theirs up to there. A change is never split and the next window starts where this one
    ends: no change is skipped or sent twice (a citizen changed on both sides of the cut is in both packages, as
    one changed in two windows always is). The citizens counted are those the window would send (a change of a
    selected event, the selection's field tests met), as ``_window_citizens`` counts them.

    One aggregate over the window's part of the change log (a range of its primary key): each citizen's first
    change in it; the ``cap + 1``-th of those, in sequence order, is where the next window begins."""
    changes = [Change.sequence > window.after, Change.sequence <= window.up_to]
    if rows.events:
        changes.append(Change.event_type.in_(rows.events))
    if rows.where:
        selected = _window_query(window, rows, ["personal_id"]).with_only_columns(Citizen.id).order_by(None)
        changes.append(Change.citizen_id.in_(selected))
    first = select(func.min(Change.sequence).label("sequence")).where(*changes).group_by(Change.citizen_id).subquery()
    beyond = session.scalar(select(first.c.sequence).order_by(first.c.sequence).offset(cap).limit(1))
    return window.up_to if beyond is None else beyond - 1


def _releases_waiting(session: Session, agreement: Agreement) -> int:
    """How many records stewards released from this feed's quarantine are not sent yet
    (``validation.quarantine.releases_due``)."""
    from validation.models import QuarantinedRecord, releases_due_where

    waiting = releases_due_where(agreement.name, outbound_of(agreement).dataset)
    return session.scalar(select(func.count()).select_from(QuarantinedRecord).where(*waiting))


def extract(engine: Engine, agreement: Agreement, *, mode: str | None = None) -> FeedWindow:
    """The window this run delivers: the changes after the checkpoint up to the change-log head now
    (incremental), or every citizen (full); only the rows the agreement selects. While a package is pending,
    its window, so that it is resent.

    An incremental window of more changed citizens than the agreement's ``max_package_citizens`` (a burst of life
    events, a feed that starts at the beginning) is cut where the cap is reached (``_capped_up_to``); the rest waits
    for the next run, which the outbound DAG asks for at once (``changes_waiting``). A full snapshot is never cut,
    and a pending package's window is the one it was sealed for; the stewards' releases ride along as ever.

    A new incremental feed (no checkpoint yet) starts where its agreement says: at the change-log head as of this
    first run (``start: head``, the default: its first window is empty, and the log says so), or with the first
    change (``start: beginning``). A feed whose first run is a snapshot starts where the snapshot ends. A window
    whose changes the agreement selects none of is passed over: the checkpoint moves to its end, nothing is sent."""
    direction = outbound_of(agreement)
    mode = mode or direction.mode
    if mode not in (FULL, INCREMENTAL):
        raise ValueError("mode must be full or incremental")
    checkpoint = read_checkpoint(engine, agreement.name)
    sealed = checkpoint.pending_package
    if sealed is not None and sealed.exists():
        manifest, _ = read_manifest(sealed)
        after, up_to = checkpoint.last_change_sequence, int(checkpoint.pending_up_to or 0)
        return FeedWindow(agreement.name, manifest.mode, after, up_to, manifest.record_count, str(sealed))
    with session_factory(engine)() as session:
        head = last_sequence(session)
    if mode == INCREMENTAL and direction.start == HEAD and start_feed(engine, agreement.name, head):
        log.info(
            "%s: a new feed, started at change %d (the change-log head now); the changes before it are not "
            "sent ('start: beginning' in the agreement sends them, a snapshot sends every citizen)",
            agreement.name,
            head,
        )
        checkpoint = read_checkpoint(engine, agreement.name)
    with session_factory(engine)() as session:
        up_to = checkpoint.pending_up_to if checkpoint.pending_up_to is not None else head
        window = FeedWindow(agreement.name, mode, checkpoint.last_change_sequence, up_to, 0)
        citizens = _window_citizens(session, window, direction.rows)
        cap = direction.max_package_citizens
        if mode == INCREMENTAL and checkpoint.pending_up_to is None and citizens > cap:
            window = replace(window, up_to=_capped_up_to(session, window, direction.rows, cap))
            log.info("%s: %d changed citizens after change %d, more than the agreement's %d a package: this window "
                     "ends at change %d, the rest follows in the next run", agreement.name, citizens, window.after,
                     cap, window.up_to)  # fmt: skip
            citizens = _window_citizens(session, window, direction.rows)
        if mode == INCREMENTAL:  # the stewards' releases go out in the next package, changes or not
            citizens += _releases_waiting(session, agreement)
    log.info("%s: window after change %d up to %d, %d citizens (%s)", agreement.name, window.after, window.up_to,
             citizens, mode)  # fmt: skip
    if mode == INCREMENTAL and not citizens and window.up_to > window.after and checkpoint.pending_up_to is None:
        move_checkpoint(engine, agreement.name, window.up_to, None)
        log.info(
            "%s: none of changes %d-%d is one the agreement selects: passed over",
            agreement.name,
            window.after + 1,
            window.up_to,
        )
        return replace(window, after=window.up_to)
    return replace(window, citizens=citizens)


def window_batches(
    engine: Engine,
    window: FeedWindow,
    batch_rows: int | None = None,
    rows: RowSelection = EVERY_ROW,
    released: tuple[str, ...] = (),
) -> Iterator[pd.DataFrame]:
    """The extract rows of the window's citizens (those ``rows`` selects, and the ``released`` ones), streamed in
    batches of text indexed by row number."""
    from validation.runner import BATCH_ROWS, extract_frames

    batch_rows = batch_rows or BATCH_ROWS
    with engine.connect() as connection:
        result = connection.execution_options(stream_results=True, yield_per=batch_rows)
        yield from extract_frames(result.execute(_window_query(window, rows, released=released)), batch_rows)


def changes_waiting(engine: Engine, agreement: Agreement) -> bool:
    """Whether changes wait after the feed's checkpoint, once a run has closed its window: its window was cut at the
    agreement's ``max_package_citizens``, or changes came meanwhile. The outbound DAG then asks for another run at
    once, rather than waiting for the next life event or the cron."""
    with session_factory(engine)() as session:
        head = last_sequence(session)
    return read_checkpoint(engine, agreement.name).last_change_sequence < head


# -- 2-3. minimise and validate ------------------------------------------------------------------------------


def minimise(batch: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """Only the agreement's fields, in the agreement's order (principle 4)."""
    return batch[fields]


def _records(batch: pd.DataFrame) -> Iterator[list]:
    plain = batch.astype(object).where(batch.notna(), None)
    return iter(plain.itertuples(index=False, name=None))


def subject_position(fields: list[str]) -> int | None:
    """Where the personal ID is in a payload row (the disclosure index's subject); None when it is not sent."""
    return fields.index("personal_id") if "personal_id" in fields else None


def payload_name(agreement: Agreement) -> str:
    return f"{outbound_of(agreement).dataset}{SUFFIXES[agreement.format]}"


def outbound_suite(agreement: Agreement, as_of: date | None = None) -> DatasetSuite:
    """The agreement's suite with its freshness window, over the fields the agreement sends and the columns
    that tell one person from another (so that a person under two IDs is caught whatever the partner gets)."""
    from validation.suites import build_suite, dataset_spec

    direction = outbound_of(agreement)
    settings = direction.validation or {}
    dataset = settings.get("suite", direction.dataset)
    spec = dataset_spec(dataset)
    identity = [*spec.person_key, *([spec.repeat_key] if spec.repeat_key else [])]
    columns = [c for c in spec.columns if c in direction.fields or c in identity]
    return build_suite(dataset, as_of=as_of, freshness_days=settings.get("freshness_days"), columns=columns)


def check_quarantine_limit(direction: Direction, outcome: ValidationOutcome) -> None:
    """Raise ``DatasetBlocked`` when more rows were quarantined than the agreement allows in that direction.

    The share is judged on datasets of at least ``min_rows_for_share`` rows (default: any size): it guards against
    a source gone wrong, and two defective records in a window of thirty changes are not that — they stay in the
    quarantine for stewards while the other 28 go out."""
    from validation.outcome import DatasetBlocked

    validation = direction.validation or {}
    limit, least = validation.get("max_quarantined_share"), validation.get("min_rows_for_share", 1)
    if limit is None or not outcome.rows or outcome.quarantined / outcome.rows <= limit:
        return
    if outcome.rows < least:
        log.info("%s: %d of %d rows quarantined, above the agreement's %.0f%% but fewer rows than the %d it judges "
                 "the share on; the rest go out", outcome.source, outcome.quarantined, outcome.rows, limit * 100,
                 least)  # fmt: skip
        return
    reason = f"{outcome.quarantined} of {outcome.rows} rows quarantined, more than the agreement's {limit:.0%}"
    outcome.blocked = [reason]
    raise DatasetBlocked([reason], outcome)


def validate(
    engine: Engine,
    agreement: Agreement,
    window: FeedWindow,
    work_dir: Path,
    *,
    as_of: date | None = None,
    reports_dir: Path | None = None,
) -> CheckedRows:
    """Validate the window's rows, minimise those that pass and write them to ``work_dir`` in the payload
    format. With ``reports_dir``, the run's report is kept per feed, in ``<agreement>/run-<id>/``: its Data Docs,
    ``quarantine.csv`` (every finding) and ``summary.json``."""
    from validation.quarantine import QuarantineStore, releases_due
    from validation.reports import FindingsCsv, write_summary
    from validation.runner import StreamValidation

    direction = outbound_of(agreement)
    fields = list(direction.fields)
    suite = outbound_suite(agreement, as_of)
    due = []
    if window.mode == INCREMENTAL:  # the changed citizens are parts of households: no household roll-up
        suite = replace(suite, households=None)
        with session_factory(engine)() as session:
            due = releases_due(session, agreement.name, direction.dataset)
    source = f"{agreement.name}: changes {window.after + 1}-{window.up_to} ({window.mode})"
    store = QuarantineStore(engine, direction.dataset, suite.suite.name, source, agreement.name)
    report = None if reports_dir is None else Path(reports_dir) / agreement.name / f"run-{store.run_id}"
    sinks = [store] if report is None else [store, FindingsCsv(report / "quarantine.csv")]
    run = StreamValidation(suite, sinks=sinks, waivers=store.waivers, source=source,
                           data_docs_dir=None if report is None else report / "data-docs")  # fmt: skip
    name = payload_name(agreement)
    staging = Path(work_dir) / agreement.name / f"changes-{window.after}-{window.up_to}" / name
    staging.parent.mkdir(parents=True, exist_ok=True)
    hasher = subject_hasher()  # no disclosure key, no package: refused before anything is validated
    released = tuple(d.personal_id for d in due if d.personal_id is not None)
    batches = (batch[suite.columns] for batch in window_batches(engine, window, rows=direction.rows,
                                                                released=released))  # fmt: skip
    passing = (minimise(ok, fields) for ok in run.passing(batches))
    with staging.open("wb") as handle, SubjectsFile(subjects_path(staging), hasher) as subjects:
        sink = HashingWriter(handle)
        rows = subjects.tap((row for ok in passing for row in _records(ok)), subject_position(fields))
        passed = WRITERS[staging.suffix](fields, rows, sink)
        sink.flush()
    outcome = run.outcome
    if report is not None:
        write_summary(outcome, report / "summary.json")
    check_quarantine_limit(direction, outcome)
    log.info("%s: %d rows validated, %d passed, %d quarantined", agreement.name, outcome.rows, passed,
             outcome.quarantined)  # fmt: skip
    held_again = store.held_among(released)  # changed since it was released, and held for something new
    carried = tuple(d.manifest_entry() for d in due if d.personal_id not in held_again)
    if due:
        log.info("%s: %d record(s) released by stewards go out (%d held again)", agreement.name, len(carried),
                 len(due) - len(carried))  # fmt: skip
    return CheckedRows(window, (StagedFile(name, str(staging), passed),), outcome.rows, passed, outcome.quarantined,
                       suite.suite.name, outcome.run_id, carried, tuple(d.record for d in due))  # fmt: skip


# -- 4. package --------------------------------------------------------------------------------------------------


def _sealed(window: FeedWindow, path: Path) -> SealedPackage:
    manifest, manifest_sha256 = read_manifest(path)
    quarantined = manifest.validation.quarantined if manifest.validation else 0
    return SealedPackage(window, str(path), manifest.package_id, manifest.sequence, manifest_sha256,
                         manifest.record_count, quarantined)  # fmt: skip


def pending_package(window: FeedWindow) -> SealedPackage:
    """The package sealed for a window and waiting for its receipt (``window.pending``)."""
    if window.pending is None:
        raise ValueError(f"{window.agreement}: no package is pending")
    return _sealed(window, Path(window.pending))


def _next_package(engine: Engine, agreement: Agreement, out_dir: Path) -> Path:
    """Where the feed's next package will be sealed (its name carries the sequence)."""
    feed = Feed(POPULATION, agreement.name, direction_of(POPULATION))
    with session_factory(engine)() as session:
        numbered = state(session, SENT, feed)
    return out_dir / package_name(feed, (numbered.last_sequence if numbered else 0) + 1)


def package(
    engine: Engine, agreement: Agreement, checked: CheckedRows, pki: PkiDirectory, out_dir: Path
) -> SealedPackage:
    """Seal the checked rows into the feed's next package and zip it. The package is held as pending on the
    checkpoint before it is sealed, under the name it will get; a retry for the same window finds it (zipped or
    not) and returns it, or, when sealing never committed, builds it again."""
    window = checked.window
    out_dir = Path(out_dir) / agreement.name
    pending = read_checkpoint(engine, agreement.name)
    if pending.pending_package is not None and pending.pending_up_to == window.up_to:
        archive, directory = pending.pending_package, pending.pending_package.with_suffix("")
        if archive.exists():
            return _sealed(window, archive)
        if directory.exists():  # sealed, then stopped before zipping
            return _sealed(window, zip_package(directory))
    expected = _next_package(engine, agreement, out_dir)
    # recorded in the sealing transaction: the disclosure index (the staged files' subjects), the stewards'
    # releases the package settles, and which package the validation run's rows went out in
    disclosures = package_recorder(agreement, OUTBOUND, [subjects_path(f.path) for f in checked.files])

    def also(session: Session, manifest) -> None:
        disclosures(session, manifest)
        settle_releases(session, checked, manifest.package_id)

    hold_pending(engine, agreement.name, window.up_to, expected.with_name(expected.name + ".zip"))
    direction = outbound_of(agreement)
    encrypt_for = None
    if direction.encryption:
        encrypt_for = keys_of(pki).certificate(str(direction.recipient_certificate))
    validation = Validation(suite=checked.suite, passed=True, quarantined=checked.quarantined, report=None,
                            released=checked.released)  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = SchemaRef(direction.dataset, str(direction.schema_version))
    signer = keys_of(pki).signer()
    with PackageBuilder(out_dir, agreement=agreement.name, recipient=agreement.partner, schema=schema, signer=signer,
                        mode=window.mode, encrypt_for=encrypt_for, validation=validation) as builder:  # fmt: skip
        for staged in checked.files:
            builder.add_file(staged.name, Path(staged.path), staged.records)
        built = builder.seal(engine, also=also)
    if built.path != expected:
        raise RuntimeError(f"{agreement.name}: another run sealed a package on this feed meanwhile")
    archive = zip_package(built.path)
    log.info("%s: sealed package #%d (%s), %d records", agreement.name, built.manifest.sequence,
             built.manifest.package_id, built.manifest.record_count)  # fmt: skip
    return SealedPackage(window, str(archive), built.manifest.package_id, built.manifest.sequence,
                         built.manifest_sha256, built.manifest.record_count, checked.quarantined)  # fmt: skip


def settle_releases(session: Session, checked: CheckedRows, package_id: str) -> None:
    """In the package's sealing transaction: the released records it settles are not due again, and its
    validation run names it (``lienthong quarantine list --package``)."""
    from validation.models import ValidationRun
    from validation.quarantine import mark_sent

    mark_sent(session, checked.releases_done, package_id)
    if checked.validation_run is not None:
        session.execute(
            update(ValidationRun).where(ValidationRun.id == checked.validation_run).values(package_id=package_id)
        )


# -- 5-7. deliver, verify the receipt, move the checkpoint ----------------------------------------------------


def receipt_folder(sealed: SealedPackage) -> Path:
    """Where the partner's receipt for a package is kept, beside the package."""
    return Path(sealed.path).with_name(f"{Path(sealed.path).stem}.receipt")


def deliver(agreement: Agreement, sealed: SealedPackage) -> str | None:
    """Send the package through the agreement's transport. Returns the folder holding the partner's receipt when
    the transport answers the delivery with it; None when the receipt comes later (``collect_receipt``)."""
    with partner_hook(agreement.transport, agreement.connection_id) as hook:
        receipt = hook.deliver_package(Path(sealed.path), sealed.package_id)
    return None if receipt is None else str(receipt.write_to(receipt_folder(sealed)))


def collect_receipt(agreement: Agreement, sealed: SealedPackage) -> str | None:
    """The partner's receipt for a package whose receipt comes later, once it is there (None until then)."""
    with partner_hook(agreement.transport, agreement.connection_id) as hook:
        if not hook.receipt_comes_later:
            raise ValueError(f"{agreement.name}: {agreement.transport} partners answer the delivery with the receipt")
        receipt = hook.fetch_receipt(Path(sealed.path).stem)  # the package's zip name without .zip
    return None if receipt is None else str(receipt.write_to(receipt_folder(sealed)))


def verify(engine: Engine, sealed: SealedPackage, receipt_dir: str, pki: PkiDirectory) -> VerifiedDelivery:
    """Check the receipt (signed by the recipient, bound to the manifest, full count) and record it once."""
    manifest, manifest_sha256 = read_manifest(Path(sealed.path))
    trust = keys_of(pki).trust()
    verified = verify_receipt(Path(receipt_dir), trust, manifest, manifest_sha256)
    recorded = record_receipt(engine, "receipt_received", manifest, verified.receipt, verified.signature.signer)
    if verified.receipt.status != "accepted":
        raise ReceiptRejected(f"{manifest.recipient} rejected package {manifest.package_id}: "
                              + "; ".join(verified.receipt.errors))  # fmt: skip
    return VerifiedDelivery(manifest.package_id, verified.receipt.status, verified.receipt.record_count, recorded)


def close_window(engine: Engine, agreement: Agreement, window: FeedWindow, delivery: VerifiedDelivery | None) -> bool:
    """Move the checkpoint to the window's end; only with a verified, accepted receipt (or an empty window)."""
    if delivery is None and window.citizens:
        raise ValueError("a window with changes moves the checkpoint only with a verified receipt")
    if delivery is not None and delivery.status != "accepted":
        raise ValueError("only an accepted receipt moves the checkpoint")
    return move_checkpoint(engine, agreement.name, window.up_to, delivery.package_id if delivery else None)


# -- the whole run -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRun:
    window: FeedWindow
    package: SealedPackage | None
    delivery: VerifiedDelivery | None


def run_outbound(
    engine: Engine,
    agreement: Agreement,
    pki: PkiDirectory,
    work_dir: Path,
    *,
    mode: str | None = None,
    as_of: date | None = None,
    receipt_timeout: float = 60.0,
) -> OutboundRun:
    """Every step in order, for one agreement (what the DAG does task by task; it waits for a receipt that comes
    later in a deferred task where this polls for up to ``receipt_timeout`` seconds)."""
    window = extract(engine, agreement, mode=mode)
    if window.pending is not None:
        sealed = pending_package(window)
    elif window.mode == INCREMENTAL and not window.citizens:
        return OutboundRun(window, None, None)
    else:
        checked = validate(engine, agreement, window, Path(work_dir) / "staging", as_of=as_of,
                           reports_dir=Path(work_dir) / "reports")  # fmt: skip
        sealed = package(engine, agreement, checked, pki, Path(work_dir) / "packages")
    return deliver_and_close_window(engine, agreement, sealed, pki, receipt_timeout)


def deliver_and_close_window(
    engine: Engine, agreement: Agreement, sealed: SealedPackage, pki: PkiDirectory, receipt_timeout: float = 60.0
) -> OutboundRun:
    """Steps 5-7 for a sealed package: deliver, wait for the receipt (one that comes later is looked for every
    0.2 s for up to ``receipt_timeout`` seconds), verify it, move the checkpoint."""
    receipt_dir = deliver(agreement, sealed)
    deadline = time.monotonic() + receipt_timeout
    while receipt_dir is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{agreement.name}: no receipt for package {sealed.package_id} "
                               f"after {receipt_timeout:.0f} s")  # fmt: skip
        time.sleep(0.2)
        receipt_dir = collect_receipt(agreement, sealed)
    delivery = verify(engine, sealed, receipt_dir, pki)
    close_window(engine, agreement, sealed.window, delivery)
    return OutboundRun(sealed.window, sealed, delivery)
