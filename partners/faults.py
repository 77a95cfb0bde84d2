"""Fault injection: a plan of misbehaviours a test (or a person, through the admin endpoint) sets on a partner.

A plan is a list of faults. Each names the operations it hits, a glob over the partner's operation names
(REST: ``token``, ``packages``, ``records``, ``outbox``, ``outbox_file``, ``outbox_receipt``, ``health``; SOAP:
``Ping``, ``SubmitPackage``, ``ListRecords``, ``ListOutbox``, ``FetchPackage``, ``SubmitReceipt``, ``wsdl``; SFTP:
``upload``, ``download``), and how many requests (SFTP: files) it spoils; each request takes the first fault that
still applies. Kinds:

``latency``      wait ``seconds`` before answering normally
``status``       answer ``status`` (503, 500, 429 …) with ``Retry-After: retry_after`` when given
``soap_fault``   answer a SOAP fault with ``code`` (``soap:Server.Busy``, ``soap:Client.Invalid`` …)
``reset``        do the work, then break the connection half-way through the answer's body
``malformed``    answer 200 with a body that is not valid JSON or XML
``oversized``    answer 200 with ``size`` bytes
``unsafe_xml``   answer with an XML document carrying a DTD and entity declarations (billion laughs)
``disconnect``   SFTP: drop the connection once ``after_bytes`` bytes of a file have gone through
"""

from __future__ import annotations

import fnmatch
import threading
from collections import Counter
from dataclasses import asdict, dataclass, fields

KINDS = ("latency", "status", "soap_fault", "reset", "malformed", "oversized", "unsafe_xml", "disconnect")


@dataclass
class Fault:
    kind: str
    operation: str = "*"
    times: int = 1
    seconds: float = 0.0
    status: int = 503
    retry_after: float | None = None
    code: str = "soap:Server.Busy"
    size: int = 32 * 1024 * 1024
    after_bytes: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.times < 1:
            raise ValueError("a fault applies to at least one request")

    @classmethod
    def from_dict(cls, document: dict) -> Fault:
        known = {f.name for f in fields(cls)}
        unknown = set(document) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**document)


class FaultPlan:
    """Thread-safe: the servers take faults from their own threads while a test adds them."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: Counter[str] = Counter()  # "kind:operation" → how many requests were spoiled

    def add(self, *faults: Fault) -> FaultPlan:
        with self._lock:
            self._faults.extend(faults)
        return self

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.fired.clear()

    def take(self, operation: str, kinds: tuple[str, ...] = KINDS) -> Fault | None:
        """The first fault that applies to ``operation`` (among ``kinds``), counted as used once."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fnmatch.fnmatchcase(operation, fault.operation):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    self.fired[f"{fault.kind}:{operation}"] += 1
                    return fault
        return None

    def pending(self) -> list[dict]:
        with self._lock:
            return [asdict(fault) for fault in self._faults]
