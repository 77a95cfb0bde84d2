"""Retention: how long the payloads of exchange packages and the staging files are kept, and the legal holds that
stop their deletion (Law 91/2025 on personal data protection: personal data is kept no longer than its purpose
needs). ``lienthong retention`` and the daily ``lienthong.retention`` DAG call ``apply_retention``.

Each agreement states ``retention_days`` (``exchange.agreements``). A package of the agreement, outbound
(``<var>/packages/<agreement>/``) or inbound (``<var>/inbound/<agreement>/``), **expires** when the ledger holds
an *accepted* receipt for it (``receipt_received`` for a package sent, ``receipt_sent`` for one received) recorded
more than ``retention_days`` ago, and it is not the package an outbound feed holds as pending. A package without
a receipt, with a rejected one (stewards look at it), or pending, never expires; neither does a package of an
agreement no longer on file (its retention is unknown).

What is deleted of an expired package is what carries personal data: the payload (``<name>/data/``), the zip that
was sent or received (``<name>.zip``) and, inbound, the steps' files with the decrypted payload (``<name>.work/``).
What proves the exchange stays: ``<name>/manifest.json`` and its signature ``manifest.json.p7s`` (taken out of the
zip first when the folder is not there), the receipt folder ``<name>.receipt/``, and the ledger, which holds the
manifest's hash; the manifest holds each payload file's hash. So ``ledger verify`` and ``ledger audit`` still
verify the chain and the signed manifests and receipts after retention. ``<name>.expired.json`` beside the package
records what was deleted and when (and marks the package done: a second run passes over it).

Staging files (``<var>/staging/<agreement>/<changes|full>-<after>-<up_to>/``) expire when their window was
delivered and acknowledged (``up_to`` at or before the feed's checkpoint, and not the pending window) and their
newest file is older than ``retention_days``.

Legal holds (``retention_hold``, ``lienthong retention hold``/``release``): a hold on an agreement keeps all of its
packages and staging; a hold on a citizen keeps every package and staging folder that holds that citizen's
record. A package's citizens are found in the disclosure index (``population.disclosures``: the packages whose
records carry the HMAC of the citizen's ID), without opening the package. A package the index does not know
(sealed before the index, or the index's key missing here) is scanned instead for the 12-digit ID, in the payload
files that can be read here (plain payloads, the decrypted copy of an inbound package); **an encrypted payload
with no decrypted copy cannot be read by its sender and is kept while any citizen hold is in force** (it might hold
the citizen). Staging folders are plain files and are always scanned.

Nothing outside the workspace is ever deleted: every path is checked to be inside its folder under the workspace
once symbolic links are resolved, and a symbolic link is removed as a link, never followed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from exchange.agreements import Agreement, load_agreements
from exchange.package import DATA, ENCRYPTED_SUFFIX, MANIFEST, SIGNATURE, package_name
from exchange.sequence import Feed
from lienthong.settings import Workspace
from population.db import session_factory
from population.identity import is_personal_id, mask_personal_id
from population.models import FeedCheckpoint, LedgerEntry, RetentionHold

log = logging.getLogger(__name__)
RECEIPT_KINDS = {"receipt_received": "outbound", "receipt_sent": "inbound"}
EXPIRED_NOTE = ".expired.json"
SCAN_BLOCK = 1 << 20


class RetentionError(ValueError):
    """A hold that cannot be placed or released: no such agreement, a malformed ID, no such hold."""


# -- holds -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hold:
    id: int
    agreement: str | None
    personal_id: str | None
    reason: str
    placed_at: datetime

    @property
    def target(self) -> str:
        """What the hold is on, for people and logs: the agreement, or the citizen's ID masked."""
        if self.agreement is not None:
            return f"agreement {self.agreement}"
        return f"citizen {mask_personal_id(self.personal_id)}"


def _target(agreement: str | None, personal_id: str | None) -> tuple[str | None, str | None]:
    if (agreement is None) == (personal_id is None):
        raise RetentionError("a hold is on one agreement or on one citizen")
    if personal_id is not None and not is_personal_id(personal_id):
        raise RetentionError("a personal ID is exactly 12 ASCII digits")
    if agreement is not None and agreement not in load_agreements():
        raise RetentionError(f"no agreement named {agreement!r} in schemas/agreements")
    return agreement, personal_id


def _hold(row: RetentionHold) -> Hold:
    return Hold(row.id, row.agreement, row.personal_id, row.reason, _utc(row.placed_at))


def _in_force(agreement: str | None, personal_id: str | None):
    """The holds in force on the agreement (when given), else on the citizen."""
    target = RetentionHold.agreement == agreement if agreement is not None else RetentionHold.personal_id == personal_id
    return select(RetentionHold).where(RetentionHold.released_at.is_(None), target).order_by(RetentionHold.id)


def active_holds(engine: Engine) -> list[Hold]:
    with session_factory(engine)() as session:
        rows = session.scalars(select(RetentionHold).where(RetentionHold.released_at.is_(None))
                               .order_by(RetentionHold.id))  # fmt: skip
        return [_hold(r) for r in rows]


def place_hold(engine: Engine, *, agreement: str | None = None, personal_id: str | None = None,
               reason: str = "") -> tuple[Hold, bool]:  # fmt: skip
    """Place a legal hold; (the hold, True), or (the hold in force already, False)."""
    agreement, personal_id = _target(agreement, personal_id)
    with session_factory(engine)() as session, session.begin():
        existing = session.scalars(_in_force(agreement, personal_id)).first()
        row, new = existing, existing is None
        if row is None:
            row = RetentionHold(agreement=agreement, personal_id=personal_id, reason=reason[:500] or "legal hold",
                                placed_at=datetime.now(UTC))  # fmt: skip
            session.add(row)
            session.flush()
        hold = _hold(row)
    log.info("retention: hold on %s %s", hold.target, "placed" if new else "in force already")
    return hold, new


def release_hold(engine: Engine, *, agreement: str | None = None, personal_id: str | None = None,
                 reason: str = "") -> int:  # fmt: skip
    """Release the holds in force on the agreement or citizen; how many were released (0: none was in force)."""
    if (agreement is None) == (personal_id is None):
        raise RetentionError("a hold is on one agreement or on one citizen")
    if personal_id is not None and not is_personal_id(personal_id):
        raise RetentionError("a personal ID is exactly 12 ASCII digits")
    with session_factory(engine)() as session, session.begin():
        rows = list(session.scalars(_in_force(agreement, personal_id)))
        for row in rows:
            row.released_at, row.release_reason = datetime.now(UTC), reason[:500] or None
    return len(rows)


# -- what expires ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiredPackage:
    agreement: str
    direction: str  # outbound | inbound
    name: str
    package_id: str
    receipt_recorded_at: str
    paths: tuple[str, ...]  # what is deleted
    bytes: int


@dataclass(frozen=True)
class ExpiredStaging:
    agreement: str
    path: str
    bytes: int


@dataclass(frozen=True)
class KeptByHold:
    what: str  # the package's name or the staging folder
    hold: str  # the hold's target (a citizen masked)


@dataclass
class RetentionRun:
    dry_run: bool
    at: str
    packages: list[ExpiredPackage] = field(default_factory=list)
    staging: list[ExpiredStaging] = field(default_factory=list)
    held: list[KeptByHold] = field(default_factory=list)

    @property
    def freed_bytes(self) -> int:
        return sum(p.bytes for p in self.packages) + sum(s.bytes for s in self.staging)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"freed_bytes": self.freed_bytes}


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _inside(path: Path, folder: Path) -> bool:
    """``path`` (resolved, symbolic links followed for its parents) is inside ``folder``, and not ``folder``."""
    base = folder.resolve()
    target = path.parent.resolve() / path.name
    return target != base and target.is_relative_to(base)


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _remove(path: Path, folder: Path) -> None:
    """Delete a file, link or folder that is inside ``folder``; refuse anything else."""
    if not _inside(path, folder):
        raise RetentionError(f"{path} is outside {folder}: not deleted")
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _receipts(engine: Engine, at: datetime, agreements: dict[str, Agreement]) -> Iterator[tuple[LedgerEntry, str]]:
    """Each accepted receipt older than its agreement's retention, with the direction of its package."""
    with session_factory(engine)() as session:
        query = (select(LedgerEntry).where(LedgerEntry.kind.in_(list(RECEIPT_KINDS)), LedgerEntry.status == "accepted")
                 .order_by(LedgerEntry.position))  # fmt: skip
        for entry in session.scalars(query):
            agreement = agreements.get(entry.agreement)
            if agreement is None:
                continue
            if _utc(entry.recorded_at) <= at - timedelta(days=agreement.retention_days):
                yield entry, RECEIPT_KINDS[entry.kind]


def _pending(engine: Engine) -> tuple[set[str], dict[str, FeedCheckpoint]]:
    with session_factory(engine)() as session:
        rows = {row.agreement: row for row in session.scalars(select(FeedCheckpoint))}
        for row in rows.values():
            session.expunge(row)
    pending = {Path(r.pending_package).name.removesuffix(".zip") for r in rows.values() if r.pending_package}
    return pending, rows


def _package_paths(folder: Path, name: str, direction: str) -> list[Path]:
    """What retention deletes of a package: its payload folder, its zip, and (inbound) the steps' files."""
    paths = [folder / name / DATA, folder / f"{name}.zip"]
    if direction == "inbound":
        paths.append(folder / f"{name}.work")
    return [p for p in paths if p.exists() or p.is_symlink()]


def _keep_manifest(folder: Path, name: str) -> bool:
    """``<name>/manifest.json`` and its signature are there, taken from the zip when the folder was not kept;
    False when neither has them (then nothing of the package is deleted)."""
    directory, archive = folder / name, folder / f"{name}.zip"
    if directory.is_symlink() or not _inside(directory, folder):
        return False  # a link where the package's folder should be: nothing is written through it
    if (directory / MANIFEST).is_file() and (directory / SIGNATURE).is_file():
        return True
    if not archive.is_file() or archive.is_symlink():
        return False
    try:
        with zipfile.ZipFile(archive) as opened:
            members = {n: opened.read(n) for n in (MANIFEST, SIGNATURE)}
    except (OSError, KeyError, zipfile.BadZipFile):
        return False
    directory.mkdir(exist_ok=True)
    for member, data in members.items():
        (directory / member).write_bytes(data)
    return True


# -- citizens under hold: found in the payloads that can be read --------------------------------------------------


def _contains(stream, needles: list[bytes]) -> bool:
    tail = b""
    while block := stream.read(SCAN_BLOCK):
        window = tail + block
        if any(needle in window for needle in needles):
            return True
        tail = window[-11:]
    return False


def _file_holds(path: Path, needles: list[bytes]) -> bool:
    with path.open("rb") as handle:
        return _contains(handle, needles)


def _readable_files(folder: Path, name: str, direction: str) -> tuple[list[Path], bool]:
    """The package's payload files that can be read here, and whether some payload cannot (encrypted, and no
    decrypted copy)."""
    work = folder / f"{name}.work"
    if direction == "inbound" and work.is_dir():
        return [p for p in work.rglob("*") if p.is_file() and not p.is_symlink()], False
    data = folder / name / DATA
    if data.is_dir():
        files = [p for p in sorted(data.iterdir()) if p.is_file() and not p.is_symlink()]
        return [p for p in files if not p.name.endswith(ENCRYPTED_SUFFIX)], any(
            p.name.endswith(ENCRYPTED_SUFFIX) for p in files)  # fmt: skip
    return [], True  # only the zip: its payload is not scanned here, so it is kept under a citizen hold


@dataclass(frozen=True)
class CitizenIndex:
    """What the disclosure index says of the citizens under hold: the packages it knows, and per hold those that
    hold the citizen's record. Empty when there is no index key here (then packages are scanned)."""

    indexed: frozenset[str] = frozenset()
    holding: dict[int, frozenset[str]] = field(default_factory=dict)  # hold id -> package ids

    def hold_on(self, package_id: str, holds: list[Hold]) -> Hold | None:
        return next((h for h in holds if package_id in self.holding.get(h.id, frozenset())), None)


def citizen_index(engine: Engine, holds: list[Hold]) -> CitizenIndex:
    """The disclosure index's answer for the citizens under hold (``CitizenIndex``)."""
    from lienthong.settings import DisclosureKeyMissing, disclosure_key
    from population.disclosures import DisclosurePackage, SubjectHasher, disclosure

    citizens = [h for h in holds if h.personal_id is not None]
    if not citizens:
        return CitizenIndex()
    try:
        hasher = SubjectHasher(disclosure_key())
    except DisclosureKeyMissing:
        log.warning("retention: no disclosure key here; packages are scanned for the citizens under hold")
        return CitizenIndex()
    with session_factory(engine)() as session:
        indexed = frozenset(session.scalars(select(DisclosurePackage.package_id)))
        holding = {}
        for hold in citizens:
            query = (select(DisclosurePackage.package_id).join(disclosure, disclosure.c.package == DisclosurePackage.id)
                     .where(disclosure.c.subject == hasher(str(hold.personal_id))).distinct())  # fmt: skip
            holding[hold.id] = frozenset(session.scalars(query))
    return CitizenIndex(indexed, holding)


def _citizen_hold_on(paths: Iterable[Path], unreadable: bool, holds: list[Hold]) -> Hold | None:
    """The first citizen hold whose citizen's ID is in one of the files (any, when some payload is unreadable)."""
    citizens = [h for h in holds if h.personal_id is not None]
    if not citizens:
        return None
    if unreadable:
        return citizens[0]
    for hold in citizens:
        needle = [str(hold.personal_id).encode("ascii")]
        if any(_file_holds(path, needle) for path in paths):
            return hold
    return None


# -- the run -----------------------------------------------------------------------------------------------------


def apply_retention(engine: Engine, workspace: Workspace, *, dry_run: bool = False, at: datetime | None = None,
                    agreements: dict[str, Agreement] | None = None) -> RetentionRun:  # fmt: skip
    """Delete the expired payloads and staging files of every agreement under the workspace, except what a legal
    hold keeps; with ``dry_run``, only say what would be deleted. ``at``: the moment retention is judged at
    (default now)."""
    at = _utc(at) if at else datetime.now(UTC)
    agreements = load_agreements() if agreements is None else agreements
    run = RetentionRun(dry_run, at.isoformat())
    holds = active_holds(engine)
    held_agreements = {h.agreement: h for h in holds if h.agreement is not None}
    pending, checkpoints = _pending(engine)
    index = citizen_index(engine, holds)
    roots = {"outbound": workspace.packages, "inbound": workspace.inbound}
    for receipt, direction in _receipts(engine, at, agreements):
        folder = roots[direction] / receipt.agreement
        name = package_name(Feed(receipt.sender, receipt.agreement, receipt.direction), receipt.sequence)
        if name in pending or (folder / f"{name}{EXPIRED_NOTE}").exists():
            continue
        paths = _package_paths(folder, name, direction)
        if not paths:
            continue
        if receipt.agreement in held_agreements:
            run.held.append(KeptByHold(name, held_agreements[receipt.agreement].target))
            continue
        if receipt.package_id in index.indexed:
            hold = index.hold_on(receipt.package_id, holds)
        else:
            hold = _citizen_hold_on(*_readable_files(folder, name, direction), holds)
        if hold is not None:
            run.held.append(KeptByHold(name, hold.target))
            continue
        if not all(_inside(path, roots[direction]) for path in paths):
            log.warning("retention: %s has a path outside %s; nothing of it deleted", name, roots[direction])
            continue
        expired = ExpiredPackage(receipt.agreement, direction, name, receipt.package_id,
                                 _utc(receipt.recorded_at).isoformat(), tuple(str(p) for p in paths),
                                 sum(_size(p) for p in paths))  # fmt: skip
        if not dry_run:
            if not _keep_manifest(folder, name):
                log.warning("retention: %s has no manifest to keep; nothing of it deleted", name)
                continue
            _expire_package(folder, expired, agreements[receipt.agreement], at, roots[direction])
        run.packages.append(expired)
    for agreement, staged in _staging_folders(workspace.staging, agreements, checkpoints, at):
        if agreement.name in held_agreements:
            run.held.append(KeptByHold(str(staged), held_agreements[agreement.name].target))
            continue
        files = [p for p in staged.rglob("*") if p.is_file() and not p.is_symlink()]
        hold = _citizen_hold_on(files, False, holds)
        if hold is not None:
            run.held.append(KeptByHold(str(staged), hold.target))
            continue
        expired_staging = ExpiredStaging(agreement.name, str(staged), _size(staged))
        if not dry_run:
            _remove(staged, workspace.staging)
        run.staging.append(expired_staging)
    verb = "would delete" if dry_run else "deleted"
    log.info("retention: %s the payloads of %d packages and %d staging folders (%d bytes); %d kept by a hold",
             verb, len(run.packages), len(run.staging), run.freed_bytes, len(run.held))  # fmt: skip
    return run


def _expire_package(folder: Path, expired: ExpiredPackage, agreement: Agreement, at: datetime, root: Path) -> None:
    """Write the note first (what goes, as the manifest lists it), then delete."""
    deleted = [Path(p).relative_to(folder).as_posix() for p in expired.paths]
    kept = [f"{expired.name}/{MANIFEST}", f"{expired.name}/{SIGNATURE}", f"{expired.name}.receipt/"]
    note = {"format": "lienthong-retention/1", "package": expired.name, "package_id": expired.package_id,
            "agreement": expired.agreement, "direction": expired.direction, "retention_days": agreement.retention_days,
            "receipt_recorded_at": expired.receipt_recorded_at, "expired_at": at.isoformat(), "deleted": deleted,
            "kept": kept}  # fmt: skip
    target = folder / f"{expired.name}{EXPIRED_NOTE}"
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, target)
    for path in expired.paths:
        _remove(Path(path), root)


def _staging_folders(staging: Path, agreements: dict[str, Agreement], checkpoints: dict[str, FeedCheckpoint],
                     at: datetime) -> Iterator[tuple[Agreement, Path]]:  # fmt: skip
    """Each staging folder whose window was acknowledged and whose newest file is older than the agreement's
    retention."""
    for name, agreement in sorted(agreements.items()):
        folder, checkpoint = staging / name, checkpoints.get(name)
        if checkpoint is None or not folder.is_dir() or folder.is_symlink():
            continue
        for window in sorted(folder.iterdir()):
            kind, _, span = window.name.partition("-")
            after, _, up_to = span.partition("-")
            if kind not in ("changes", "full") or not (after.isdigit() and up_to.isdigit()) or window.is_symlink():
                continue
            if int(up_to) > checkpoint.last_change_sequence or int(up_to) == checkpoint.pending_up_to:
                continue  # not yet acknowledged, or the pending package's: a rerun may need it
            newest = max((p.lstat().st_mtime for p in window.rglob("*")), default=window.lstat().st_mtime)
            if datetime.fromtimestamp(newest, UTC) <= at - timedelta(days=agreement.retention_days):
                yield agreement, window


# -- for the DAG -------------------------------------------------------------------------------------------------


def apply_in_workspace(dry_run: bool = False) -> dict[str, Any]:
    """What the ``lienthong.retention`` DAG's task calls: retention over the workspace of the environment
    (``lienthong.settings``), as counts (an XCom value, no paths of personal data)."""
    from lienthong.settings import database_url
    from population.db import create_population_engine

    engine = create_population_engine(database_url(None))
    try:
        run = apply_retention(engine, Workspace.from_environment(), dry_run=dry_run)
    finally:
        engine.dispose()
    return {"dry_run": run.dry_run, "packages": len(run.packages), "staging": len(run.staging),
            "held": len(run.held), "freed_bytes": run.freed_bytes}  # fmt: skip
