"""Anchors of the ledger's head, kept outside the database.

The hash chain shows an edited, deleted, inserted or reordered entry; whoever can rewrite the whole
``ledger_entry`` table (and drop its triggers) can build a new chain that verifies. An anchor pins the chain as
the audit found it: ``ledger-<entries>.json`` — {``format`` "lienthong-ledger-anchor/1", ``entries``,
``head_hash``, ``anchored_at``} — with ``ledger-<entries>.json.p7s``, a detached CMS signature by the population
database's signing certificate, in a folder outside the database (``var/ledger-anchors/``; copy the files where
the database's administrators cannot write, or hand them to the partners). ``check_anchors`` then requires of
every anchor a signature by the population database that verifies as at its time, and the ledger's entry at
that position to carry the anchored hash: a rewritten chain fails at the first anchor it contradicts, and a
shortened one at the first anchor beyond its end. Anyone can check an anchor's signature with stock OpenSSL::

    openssl cms -verify -binary -inform DER -in ledger-00000024.json.p7s -content ledger-00000024.json \\
        -CAfile var/pki/root-ca.pem -purpose any

The daily ledger audit checks the anchors, then anchors the head it verified. The partners witness the head too,
on their side: each manifest carries it and each accepted receipt echoes it, signed by the partner
(``feeds.audit.audit_witnesses``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from exchange import ledger
from exchange.errors import LedgerBroken, VerificationError
from exchange.keys import Keys, keys_of
from exchange.pki import POPULATION, PkiDirectory, Signer, agency_of
from exchange.signature import TrustAnchors, sign_detached, verify_detached
from population.db import session_factory
from population.models import LedgerEntry

FORMAT = "lienthong-ledger-anchor/1"
SIGNATURE_SUFFIX = ".p7s"


@dataclass(frozen=True)
class AnchorCheck:
    checked: int
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def write_anchor(engine: Engine, signer: Signer, folder: Path) -> Path | None:
    """Verify the chain, then anchor its head in ``folder`` (None for an empty ledger). The same head anchored
    before is not written again; a different head at the same position is ``LedgerBroken`` (the chain was
    rewritten since that anchor)."""
    with session_factory(engine)() as session:
        state = ledger.verify(session)
    if state.entries == 0:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ledger-{state.entries:08d}.json"
    if path.is_file():
        anchored = json.loads(path.read_bytes()).get("head_hash")
        if anchored != state.head_hash:
            raise LedgerBroken(
                state.entries, f"{path.name} anchored {anchored}, the ledger now holds {state.head_hash}"
            )
        return path
    content = {"format": FORMAT, "entries": state.entries, "head_hash": state.head_hash,
               "anchored_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    data = json.dumps(content, indent=2, sort_keys=True).encode() + b"\n"
    _write(path.with_name(path.name + SIGNATURE_SUFFIX), sign_detached(data, signer))
    _write(path, data)  # last: an anchor without its signature is never left behind
    return path


def check_anchors(engine: Engine, folder: Path, pki: Keys | PkiDirectory) -> AnchorCheck:
    """Every anchor in ``folder`` against the ledger: its signature (the population database's, as at the time
    it was made, against the PKI's root and CRL) and the hash of the entry at its position. Problems are
    reported, not raised."""
    trust = keys_of(pki).trust()
    anchors = sorted(folder.glob("ledger-*.json")) if folder.is_dir() else []
    problems = []
    with session_factory(engine)() as session:
        for path in anchors:
            try:
                entries, head_hash = _read(path, trust)
            except (OSError, ValueError, KeyError, VerificationError) as error:
                problems.append(f"{path.name}: {error}")
                continue
            found = session.scalar(select(LedgerEntry.entry_hash).where(LedgerEntry.position == entries))
            if found is None:
                problems.append(f"{path.name}: the ledger has no entry {entries}: entries were removed")
            elif found != head_hash:
                problems.append(f"{path.name}: entry {entries} has hash {found}, anchored {head_hash}: "
                                "the chain was rewritten")  # fmt: skip
    return AnchorCheck(len(anchors), problems)


def _read(path: Path, trust: TrustAnchors) -> tuple[int, str]:
    data = path.read_bytes()
    signature = path.with_name(path.name + SIGNATURE_SUFFIX)
    if not signature.is_file():
        raise ValueError(f"no signature {signature.name}")
    content = json.loads(data)
    if content.get("format") != FORMAT:
        raise ValueError(f"not a ledger anchor (format {content.get('format')!r})")
    verified = verify_detached(data, signature.read_bytes(), trust, at=datetime.fromisoformat(content["anchored_at"]))
    if agency_of(verified.signer) != POPULATION:
        raise ValueError(f"signed by {agency_of(verified.signer)}, not the population database")
    return int(content["entries"]), str(content["head_hash"])


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    partial.replace(path)
