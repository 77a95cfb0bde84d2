"""Package sequence numbers, per feed: one sender's packages for one agreement and direction.

The sending side numbers its packages 1, 2, 3 … and puts the previous manifest's SHA-256 in each; the receiving
side accepts only the next number whose previous hash is the manifest it accepted last. So a package seen again
is a replay, a number skipped is a gap, and two different packages claiming the same place are a fork. The
platform keeps the last accepted place in its database (``exchange.sequence``); a partner may keep the last
accepted manifest as a file (``check_after``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lienthong_verify.errors import SequenceFork, SequenceGap, SequenceReplay

POPULATION = "population"  # the agency of the population database: the one party of every feed
OUTBOUND, INBOUND = "outbound", "inbound"


@dataclass(frozen=True)
class Feed:
    sender: str
    agreement: str
    direction: str

    def describe(self) -> str:
        return f"{self.sender}'s {self.direction} packages on agreement {self.agreement}"


def direction_of(sender: str) -> str:
    """Outbound: from the population database to a partner; inbound: from a partner."""
    return OUTBOUND if sender == POPULATION else INBOUND


def check_next(
    feed: Feed,
    last_sequence: int,
    last_hash: str | None,
    sequence: int,
    previous_manifest_sha256: str | None,
    manifest_sha256: str,
    accepted: Callable[[int], str | None] = lambda sequence: None,
) -> None:
    """Is this package the next one on the feed, after package ``last_sequence`` whose manifest had ``last_hash``
    (0 and None before the first)? ``accepted``: the manifest hash accepted earlier at a place before the last,
    when the receiver still knows it (a different one there is a fork, not a replay)."""
    if sequence == last_sequence + 1:
        if previous_manifest_sha256 != last_hash:
            raise SequenceFork(
                f"package {sequence} of {feed.describe()} follows manifest {_short(previous_manifest_sha256)}, "
                f"but the package accepted before it was {_short(last_hash)}"
            )
        return
    if sequence > last_sequence + 1:
        raise SequenceGap(
            f"expected package {last_sequence + 1} of {feed.describe()}, got {sequence}: "
            f"{sequence - last_sequence - 1} missing"
        )
    earlier = accepted(sequence) if sequence < last_sequence else last_hash
    if earlier is not None and earlier != manifest_sha256:
        raise SequenceFork(
            f"package {sequence} of {feed.describe()} differs from the package {sequence} accepted before "
            f"({_short(manifest_sha256)} against {_short(earlier)})"
        )
    raise SequenceReplay(
        f"package {sequence} of {feed.describe()} was already accepted (the last accepted is {last_sequence})"
    )


def _short(digest: str | None) -> str:
    return "none" if digest is None else digest[:12] + "…"
