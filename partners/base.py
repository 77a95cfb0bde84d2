"""What the partner servers share: a store, an intake for packages, a fault plan, an outbox; and which agencies
the sandbox plays and under which agreements."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from exchange.agencies import Agency, load_agencies
from exchange.agreements import Agreement, load_agreements
from exchange.documents import dataset_fields
from exchange.package import SchemaRef
from partners.faults import FaultPlan
from partners.intake import Acknowledgement, PackageIntake, PartnerKeys, outbox_package
from partners.store import PersonRow, RegistryStore

RECORDED_AT = "2026-07-01T00:00:00Z"  # when the seeded registries last verified their records


class UnknownAgreement(LookupError):
    """A name that is not one of the partner's agreements."""


def sandbox_agencies() -> dict[str, Agency]:
    """The agencies the sandbox can play (their file says which server plays them), by name."""
    return {name: agency for name, agency in load_agencies().items() if agency.sandbox is not None}


def agreements_with(partner: str, direction: str | None = None) -> list[Agreement]:
    """The partner's agreements (with that direction, if given), by name."""
    found = [agreement for agreement in load_agreements().values() if agreement.partner == partner]
    return [agreement for agreement in found if direction is None or direction in agreement.directions]


def agreement_of(partner: str, name: str) -> Agreement:
    """The agreement a package names (its manifest's ``agreement``), which must be one of the partner's: a partner
    with several agreements is never guessed for."""
    agreement = load_agreements().get(name)
    if agreement is None or agreement.partner != partner:
        known = ", ".join(a.name for a in agreements_with(partner)) or "none"
        raise UnknownAgreement(f"{partner} has no agreement {name!r} (its agreements: {known})")
    return agreement


class _InboundDatasets(Mapping[str, str]):
    """The dataset each partner agency publishes, by agency, read from the agency files when asked."""

    def _current(self) -> dict[str, str]:
        return {name: agency.publishes.dataset for name, agency in load_agencies().items() if agency.publishes}

    def __getitem__(self, partner: str) -> str:
        return self._current()[partner]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


INBOUND_DATASETS: Mapping[str, str] = _InboundDatasets()  # validation.suites checks these datasets


def inbound_row(person: PersonRow, columns: list[str]) -> dict[str, str | None]:
    """A registry record in the columns of the partner's inbound dataset: strings or null, status active or
    inactive (a closed, deceased, transferred or suspended record is inactive)."""
    item = person.as_item()
    item["status"] = "active" if person.status == "active" else "inactive"
    item.setdefault("updated_at", RECORDED_AT)
    return {column: None if item.get(column) is None else str(item[column]) for column in columns}


def inbound_dataset(agreement: Agreement) -> SchemaRef:
    """The dataset and version the agreement's inbound direction takes in."""
    if "inbound" not in agreement.directions:
        raise UnknownAgreement(f"agreement {agreement.name!r} has no inbound direction")
    direction = agreement.directions["inbound"]
    return SchemaRef(direction.dataset, str(direction.schema_version))


class NoSuchPackage(LookupError):
    """A name that is not a package in the partner's outbox."""


class Partner:
    """A partner registry: subclasses add the transport (``start``, ``stop``, ``endpoint``)."""

    transport: str

    def __init__(self, keys: PartnerKeys, state_dir: Path) -> None:
        self.name = keys.name
        self.keys = keys
        self.state_dir = state_dir
        self.store = RegistryStore(state_dir / "registry.db")
        self.intake = PackageIntake(keys, self.store, state_dir / "work")
        self.faults = FaultPlan()
        self.tls_chain = write_chain(state_dir / "tls-server-chain.pem", keys.tls_certificate, keys.issuing_ca)

    @property
    def outbox(self) -> Path:
        return self.state_dir / "outbox"

    def publish_links(self) -> list[Path]:
        """Publish the registry's links (its identifier by personal ID) as the next inbound package of each of the
        partner's agreements with an inbound direction, unless the outbox already holds one of that agreement."""
        published = []
        for agreement in agreements_with(self.name, "inbound"):
            if not any(self.outbox.glob(f"{agreement.name}-{self.name}-inbound-*.zip")):
                published.append(self.publish(agreement.name))
        return published

    def publish(self, agreement_name: str) -> Path:
        """The registry's links as the next package of the named agreement's inbound feed, in the dataset the
        agreement takes in (``schemas/datasets/<dataset>.v<version>.json``), which the population side validates."""
        dataset = inbound_dataset(agreement_of(self.name, agreement_name))
        columns = list(dataset_fields(dataset.name, int(dataset.version)))
        rows = (inbound_row(person, columns) for person in self.store.all_people())
        return self.intake.publish_outbox(self.outbox, agreement_name, dataset, rows)

    def published(self) -> list[Path]:
        """The packages in the outbox, by name (acknowledged ones too: the population database skips those)."""
        if not self.outbox.is_dir():
            return []
        return sorted(p for p in self.outbox.glob("*.zip") if not p.name.startswith("."))

    def take_receipt(self, name: str, receipt: bytes, signature: bytes) -> Acknowledgement:
        """The population database's receipt for the published package ``name`` (see ``PackageIntake``).
        Raises ``NoSuchPackage`` for a name not in the outbox, ``ReceiptRefused`` for a receipt that does not
        verify."""
        package = outbox_package(self.outbox, name)
        if package is None:
            raise NoSuchPackage(f"no package {name!r} in the outbox")
        return self.intake.take_receipt(package, receipt, signature)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def endpoint(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()
        self.store.dispose()


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def write_chain(target: Path, certificate: Path, *issuers: Path) -> Path:
    """A PEM file with a certificate and its issuing CAs, as a TLS peer must present them."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(path.read_bytes().strip() + b"\n" for path in (certificate, *issuers)))
    return target


def encode_cursor(row_id: int | None) -> str | None:
    return None if row_id is None else base64.urlsafe_b64encode(f"after:{row_id}".encode()).decode("ascii")


def decode_cursor(cursor: str | None) -> int:
    """The row id a cursor points after; raises ValueError for a cursor this server did not make."""
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError):
        raise ValueError("unknown cursor") from None
    prefix, _, number = text.partition(":")
    if prefix != "after" or not number.isdigit():
        raise ValueError("unknown cursor")
    return int(number)
