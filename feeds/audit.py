"""The daily ledger audit: the chain holds, a sample of its entries is backed by the signed files kept on disk,
and no certificate of the PKI expires unnoticed. One function per check, for the audit DAG (a task each) and
``lienthong ledger audit``:

- ``audit_chain`` walks the hash chain (``ledger.verify``); a broken chain raises LedgerBroken naming the first
  bad entry.
- ``audit_signatures`` re-verifies a sample of entries from the files: for a package entry the package, found by
  its name (``package_name``) as ``<name>.zip`` or the directory ``<name>``; for a receipt entry the receipt
  folder beside it, ``<name>.receipt/``. The package's manifest must have the SHA-256 the ledger recorded (a
  receipt: the package, manifest, status and count the ledger recorded), its CMS signature must verify against
  the PKI's root and CRL as at the moment the entry was recorded (a certificate that expired since does not fail
  an old entry; a revoked one does, and so far whenever it was revoked: ``signature.check_revocation`` does not
  weigh the revocation date), and the signer must be the certificate whose fingerprint the ledger holds.
  Failures are reported, not raised: a missing file is a problem like any other.
- ``audit_witnesses`` checks the chain against the heads partners signed: every kept receipt (``receipt.json``
  with ``receipt.json.p7s``, anywhere under the folders given: the pipeline's packages, or receipts a partner
  handed over from its own copies) that accepts a package and carries a ``ledger_head`` (Receipt 1.1) is verified
  (as at its ``received_at``), and when a partner signed it, the ledger's entry at the head's position must have
  the head's hash, and the entry after it must be that package's ``package_sent`` with the receipt's manifest (the
  head is the entry before it at sealing). A chain rewritten by someone who dropped the ledger's triggers and
  recomputed every hash after the change verifies on its own; it contradicts every receipt witnessing a head at
  or after the change. Receipts signed by the population database (for partners' packages) witness the partners'
  ledgers, not this one, and are passed over; so are /1 receipts and rejected ones, which witness nothing.
- ``expiring_certificates`` lists the PKI directory's certificates that expire within a window or have expired,
  and the CRL when its next update falls within the window.
"""

from __future__ import annotations

import hashlib
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path, PurePosixPath

from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, func, select

from exchange import ledger
from exchange.errors import ReceiptInvalid, VerificationError
from exchange.keys import CRL, Keys, keys_of
from exchange.package import MANIFEST, package_name
from exchange.package import SIGNATURE as MANIFEST_SIGNATURE
from exchange.pki import POPULATION, PkiDirectory, agency_of, common_name, describe
from exchange.receipt import RECEIPT, Receipt
from exchange.receipt import SIGNATURE as RECEIPT_SIGNATURE
from exchange.sequence import Feed
from exchange.signature import TrustAnchors, verify_detached
from population.db import session_factory
from population.models import LedgerEntry

PACKAGE_KINDS = ("package_sent", "package_received")
RECEIPT_FOLDER_SUFFIX = ".receipt"
NEWEST_SHARE = 10  # half of each sample is drawn among the newest tenth of the ledger


# -- the chain ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainAudit:
    entries: int
    head_hash: str


def audit_chain(engine: Engine) -> ChainAudit:
    """Walk the whole chain; LedgerBroken, naming the first entry that does not hold, propagates."""
    with session_factory(engine)() as session:
        state = ledger.verify(session)
    return ChainAudit(state.entries, state.head_hash)


# -- signatures --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureProblem:
    """One check that failed for one sampled entry. ``check`` is ``missing`` (no file to check), ``unreadable``,
    ``manifest_hash`` (the package's manifest is not the one recorded), ``receipt_mismatch`` (the receipt says
    other than the entry), ``signer`` (another certificate signed), or the check of the signature that failed
    (``signature``, ``chain``, ``expired``, ``revoked``, ``crl``, … as in exchange.errors)."""

    position: int
    kind: str
    package_id: str
    check: str
    detail: str

    def __str__(self) -> str:
        return f"entry {self.position} ({self.kind}, package {self.package_id}): {self.check}: {self.detail}"


@dataclass(frozen=True)
class SignatureAudit:
    seed: str
    checked: int  # entries sampled
    verified: int  # of those, entries with no problem
    problems: list[SignatureProblem]

    @property
    def passed(self) -> bool:
        return not self.problems


def audit_signatures(
    engine: Engine, package_dirs: list[Path], pki: Keys | PkiDirectory, *, sample: int = 20, seed: str | None = None
) -> SignatureAudit:
    """Re-verify ``sample`` ledger entries from the packages and receipts kept under ``package_dirs``, against
    the PKI's root and CRL. The same seed gives the same sample (the default seed is today's date, UTC, so a
    rerun of a day's audit checks the same entries); half of it is drawn among the newest entries."""
    seed = seed if seed is not None else datetime.now(UTC).date().isoformat()
    trust = keys_of(pki).trust()
    with session_factory(engine)() as session:
        last = session.scalar(select(func.max(LedgerEntry.position))) or 0
        positions = sample_positions(last, sample, seed)
        sampled = list(
            session.scalars(
                select(LedgerEntry).where(LedgerEntry.position.in_(positions)).order_by(LedgerEntry.position)
            )
        )
    problems = [problem for entry in sampled for problem in check_entry(entry, package_dirs, trust)]
    failed = {problem.position for problem in problems}
    return SignatureAudit(seed, len(sampled), len(sampled) - len(failed), problems)


def sample_positions(last: int, size: int, seed: str) -> list[int]:
    """``size`` positions out of 1…``last``, the same for the same seed: half among the newest entries (the
    last tenth of the ledger, at least ``size`` of them), the rest anywhere, so that each audit looks hardest at
    what is new and, day after day, reaches every entry."""
    if size >= last:
        return list(range(1, last + 1))
    rng = random.Random(seed)  # a str seed is hashed with SHA-512: the same in every process
    newest = range(last - max(size, last // NEWEST_SHARE) + 1, last + 1)
    chosen = set(rng.sample(newest, size // 2))
    while len(chosen) < size:
        chosen.add(rng.randint(1, last))
    return sorted(chosen)


def check_entry(entry: LedgerEntry, package_dirs: Sequence[Path], trust: TrustAnchors) -> list[SignatureProblem]:
    """What is wrong with one entry against the files it was recorded from: nothing when they back it."""
    problem = partial(SignatureProblem, entry.position, entry.kind, entry.package_id)
    name = package_name(Feed(entry.sender, entry.agreement, entry.direction), entry.sequence)
    if entry.kind in PACKAGE_KINDS:
        names, document, signature_name = (f"{name}.zip", name), MANIFEST, MANIFEST_SIGNATURE
    else:
        names, document, signature_name = (name + RECEIPT_FOLDER_SUFFIX,), RECEIPT, RECEIPT_SIGNATURE
    try:
        found = find_kept(package_dirs, entry.agreement, names)
    except VerificationError as error:  # kept in the artifact store, and not as it was written (ArtifactCorrupt)
        return [problem("artifact", str(error))]
    if found is None:
        folders = ", ".join(str(folder) for folder in package_dirs) or "no folder"
        return [problem("missing", f"no {' or '.join(names)} under {folders}")]
    try:
        content, signature = _read(found, document), _read(found, signature_name)
    except (OSError, zipfile.BadZipFile) as error:
        return [problem("unreadable", f"{found}: {error}")]
    absent = [n for n, data in ((document, content), (signature_name, signature)) if data is None]
    if absent:
        return [problem("missing", f"{found} has no {' and no '.join(absent)}")]

    problems = []
    if entry.kind in PACKAGE_KINDS:
        sha256 = hashlib.sha256(content).hexdigest()
        if sha256 != entry.manifest_sha256:
            recorded = entry.manifest_sha256[:16]
            detail = f"the manifest has SHA-256 {sha256[:16]}…, the ledger recorded {recorded}… (it was changed)"
            problems.append(problem("manifest_hash", f"{found}: {detail}"))
    elif differences := _receipt_differences(content, entry):
        problems.append(problem("receipt_mismatch", f"{found}: {differences}"))
    try:
        signed = verify_detached(content, signature, trust, at=_utc(entry.recorded_at))
    except VerificationError as error:
        return [*problems, problem(error.check, error.detail)]
    if signed.fingerprint != entry.signer_fingerprint:
        signer, recorded = f"{describe(signed.signer)} (SHA-256 {signed.fingerprint[:16]}…)", entry.signer_fingerprint
        problems.append(problem("signer", f"{signer} signed it, the ledger recorded {recorded[:16]}…"))
    return problems


def find_kept(package_dirs: Sequence[Path], agreement: str, names: Sequence[str]) -> Path | None:
    """The first of ``names`` under one of ``package_dirs``: looked for where the pipeline keeps it
    (``<folder>/<agreement>/``) and where ``lienthong package build`` does (``<folder>/``), then anywhere below."""
    for folder in package_dirs:
        for name in names:
            for candidate in (folder / agreement / name, folder / name):
                if candidate.exists():
                    return candidate
    for folder in package_dirs:
        for name in names:
            found = sorted(folder.rglob(name))
            if found:
                return found[0]
    return _kept_in_store(package_dirs, agreement, names)


def _kept_in_store(package_dirs: Sequence[Path], agreement: str, names: Sequence[str]) -> Path | None:
    """On a cluster (``LIENTHONG_ARTIFACTS``), what another worker kept: from the artifact store, where the
    pipeline keeps it (``<folder>/<agreement>/<name>`` of this workspace)."""
    from feeds.artifacts import artifact_store
    from lienthong.settings import artifacts_url

    if artifacts_url() is None:
        return None
    store = artifact_store()
    for folder in package_dirs:
        for name in names:
            try:
                found = store.fetch_kept(folder / agreement / name)
            except ValueError:  # a folder outside the workspace: not the pipeline's
                break
            if found is not None:
                return found
    return None


def _read(path: Path, name: str) -> bytes | None:
    """A file of a package or receipt folder, a directory or a zip; None when it is not there."""
    if path.is_dir():
        member = path / name
        return member.read_bytes() if member.is_file() else None
    with zipfile.ZipFile(path) as archive:
        try:
            return archive.read(name)
        except KeyError:
            return None


def _receipt_differences(data: bytes, entry: LedgerEntry) -> str | None:
    """How a receipt differs from the ledger's entry for it: package, manifest, status and count."""
    try:
        receipt = Receipt.from_bytes(data)
    except ReceiptInvalid as error:
        return error.detail
    fields = (
        ("package_id", receipt.package_id, entry.package_id),
        ("manifest_sha256", receipt.manifest_sha256, entry.manifest_sha256),
        ("status", receipt.status, entry.status),
        ("record_count", receipt.record_count, entry.record_count),
    )
    differences = [f"{key} is {mine} in the receipt, {theirs} in the ledger" for key, mine, theirs in fields
                   if mine != theirs]  # fmt: skip
    return "; ".join(differences) or None


def _utc(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored as UTC), PostgreSQL aware ones."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- the heads partners witnessed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WitnessProblem:
    """One kept receipt that contradicts the ledger or cannot be checked. ``check`` is ``witness`` (the ledger's
    entry at the witnessed position has another hash, or the entry after it is not the package's
    ``package_sent``), ``missing_entry`` (the ledger ends before it), ``unreadable`` (not a receipt), ``missing``
    (no signature beside it), or the check of the signature that failed (``signature``, ``chain``, ``revoked``, …)."""

    path: str  # the receipt.json
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.check}: {self.detail}"


@dataclass(frozen=True)
class WitnessAudit:
    receipts: int  # distinct receipt files found
    witnesses: int  # of those, accepted receipts signed by a partner that carry a ledger head, checked
    partners: tuple[str, ...]  # the partners who signed them
    newest: int  # the highest entry a partner witnessed (0: none)
    problems: list[WitnessProblem]

    @property
    def passed(self) -> bool:
        return not self.problems


def audit_witnesses(engine: Engine, receipt_dirs: Sequence[Path], pki: Keys | PkiDirectory) -> WitnessAudit:
    """Check the ledger against every ledger head a partner signed in a receipt kept under ``receipt_dirs`` (the
    same receipt found twice counts once). Problems are reported, not raised."""
    trust = keys_of(pki).trust()
    seen: set[str] = set()
    partners: set[str] = set()
    witnesses = newest = 0
    problems: list[WitnessProblem] = []
    with session_factory(engine)() as session:
        for path in _receipt_files(receipt_dirs):
            problem = partial(WitnessProblem, str(path))
            try:
                data = path.read_bytes()
            except OSError as error:
                problems.append(problem("unreadable", str(error)))
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            try:
                receipt = Receipt.from_bytes(data)
            except ReceiptInvalid as error:
                problems.append(problem("unreadable", error.detail))
                continue
            if receipt.ledger_head is None or receipt.status != "accepted":
                continue  # witnesses nothing
            signature = path.with_name(RECEIPT_SIGNATURE)
            if not signature.is_file():
                problems.append(problem("missing", f"no {RECEIPT_SIGNATURE} beside it"))
                continue
            try:
                signed = verify_detached(data, signature.read_bytes(), trust, at=_received_at(receipt.received_at))
            except VerificationError as error:
                problems.append(problem(error.check, error.detail))
                continue
            if signed.agency == POPULATION:
                continue  # the population database's receipt for a partner's package: the partner's ledger
            partner = signed.agency or describe(signed.signer)
            witnesses += 1
            partners.add(partner)
            newest = max(newest, receipt.ledger_head.entry)
            if contradiction := _contradiction(session, receipt, partner):
                problems.append(problem(*contradiction))
    return WitnessAudit(len(seen), witnesses, tuple(sorted(partners)), newest, problems)


def _receipt_files(folders: Sequence[Path]) -> list[Path]:
    """Every ``receipt.json`` under the folders, in order; none in a folder being written (hidden or ``.partial``)."""
    found = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(RECEIPT)):
            parts = path.relative_to(folder).parts[:-1]
            if path.is_file() and not any(p.startswith(".") or p.endswith(".partial") for p in parts):
                found.append(path)
    return found


def _received_at(text: str) -> datetime | None:
    """The moment a receipt says it was made (its signature is checked as at then); None (now) when unreadable."""
    try:
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _contradiction(session, receipt: Receipt, partner: str) -> tuple[str, str] | None:
    """How the ledger contradicts the head ``partner`` signed in ``receipt``: (check, detail), or None."""
    head, package = receipt.ledger_head, receipt.package_id
    rows = {
        entry.position: entry
        for entry in session.execute(
            select(LedgerEntry.position, LedgerEntry.entry_hash, LedgerEntry.kind, LedgerEntry.package_id,
                   LedgerEntry.manifest_sha256).where(LedgerEntry.position.in_([head.entry, head.entry + 1]))
        )
    }  # fmt: skip
    signed = f"the head {partner} signed in the receipt for package {package}"
    if head.entry not in rows:
        return "missing_entry", f"the ledger has no entry {head.entry:,}, {signed} (entries were removed)"
    found = rows[head.entry].entry_hash
    if found != head.hash:
        return "witness", (f"ledger entry {head.entry:,} differs from {signed}: the ledger has {found[:16]}…, "
                           f"the receipt {head.hash[:16]}… (the chain was rewritten)")  # fmt: skip
    after = rows.get(head.entry + 1)
    if after is None:
        return "missing_entry", (f"the ledger has no entry {head.entry + 1:,}, the package_sent of package {package} "
                                 f"that {partner} received (entries were removed)")  # fmt: skip
    if (after.kind, after.package_id, after.manifest_sha256) != ("package_sent", package, receipt.manifest_sha256):
        return "witness", (f"ledger entry {head.entry + 1:,} is not the package_sent of package {package} (manifest "
                           f"{receipt.manifest_sha256[:16]}…) that {partner} received right after entry "
                           f"{head.entry:,}: it records {after.kind} of package {after.package_id} "
                           "(the chain was rewritten)")  # fmt: skip
    return None


# -- certificates ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiringCertificate:
    """A certificate of the PKI directory that expires within the window or has expired; or the CRL (purpose
    ``crl``, its issuer as subject), whose next update is then the ``not_after``."""

    subject: str  # common name
    agency: str | None  # the agency code (OU) of an agency certificate; None for the CAs and the CRL
    purpose: str  # the file's name: signing, encryption, tls-server, tls-client, root-ca, issuing-ca, crl
    path: str  # relative to the PKI directory
    not_after: datetime
    days_left: int  # rounded to whole days, negative once expired
    expired: bool

    def __str__(self) -> str:
        what = (
            f"the CRL {self.path} of '{self.subject}' is due"
            if self.purpose == "crl"
            else f"{self.path} ('{self.subject}')"
        )
        when = f"expired {-self.days_left} days ago" if self.expired else f"expires in {self.days_left} days"
        return f"{what} {when}, {self.not_after:%Y-%m-%d %H:%M} UTC"


def expiring_certificates(
    pki: Keys | PkiDirectory, *, within_days: int = 30, at: datetime | None = None
) -> list[ExpiringCertificate]:
    """Every certificate of the PKI (its public files: ``*.pem`` files that hold certificates, in the PKI folder or
    Airflow's Variable; keys are never among them) that expires within ``within_days`` of ``at`` (default now) or
    has expired, and the CRL if its next update falls in that window too; soonest first."""
    at = _utc(at) if at else datetime.now(UTC)
    until = at + timedelta(days=within_days)

    def expiring(subject: str, agency: str | None, purpose: str, relative: str, not_after: datetime):
        days_left = round((not_after - at) / timedelta(days=1))
        return ExpiringCertificate(subject, agency, purpose, relative, not_after, days_left, not_after <= at)

    files = keys_of(pki).public_files()
    found = [
        expiring(common_name(c), agency_of(c), _purpose(relative), relative, c.not_valid_after_utc)
        for relative, data in sorted(files.items())
        for c in _certificates(data)
        if c.not_valid_after_utc <= until
    ]
    if CRL in files:
        data = files[CRL]
        crl = x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        if crl.next_update_utc is not None and crl.next_update_utc <= until:
            issuer = crl.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
            subject = str(issuer[0].value) if issuer else crl.issuer.rfc4514_string()
            found.append(expiring(subject, None, "crl", CRL, crl.next_update_utc))
    return sorted(found, key=lambda e: (e.not_after, e.path))


def _purpose(relative: str) -> str:
    """``health/signing.pem`` → ``signing``."""
    return PurePosixPath(relative).name.removesuffix(".pem")


def _certificates(data: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM file; none for a CRL or anything else."""
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        return []
