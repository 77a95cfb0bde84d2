"""What the four partner servers share: a store, an intake for packages, a fault plan, an outbox."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from exchange.agreements import dataset_schema_path, load_agreements
from exchange.package import SchemaRef
from partners.faults import FaultPlan
from partners.intake import Acknowledgement, PackageIntake, PartnerKeys, outbox_package
from partners.store import PersonRow, RegistryStore

# What each partner sends to the population database (validation/suites.py checks these datasets).
INBOUND_DATASETS = {"health": "health-insured", "tax": "tax-registrants", "land": "land-owners",
                    "business": "business-roles"}  # fmt: skip
RECORDED_AT = "2026-07-01T00:00:00Z"  # when the seeded registries last verified their records


def agreement_of(partner: str) -> str:
    """The name of the partner's sharing agreement (``schemas/agreements``), which inbound packages use too."""
    for agreement in load_agreements().values():
        if agreement.partner == partner:
            return agreement.name
    raise ValueError(f"no agreement with {partner} in schemas/agreements")


def inbound_row(person: PersonRow, columns: list[str]) -> dict[str, str | None]:
    """A registry record in the columns of the partner's inbound dataset: strings or null, status active or
    inactive (a closed, deceased, transferred or suspended record is inactive)."""
    item = person.as_item()
    item["status"] = "active" if person.status == "active" else "inactive"
    item.setdefault("updated_at", RECORDED_AT)
    return {column: None if item.get(column) is None else str(item[column]) for column in columns}


class NoSuchPackage(LookupError):
    """A name that is not a package in the partner's outbox."""


class Partner:
    """A partner registry: subclasses add the transport (``start``, ``stop``, ``endpoint``)."""

    name: str
    transport: str

    def __init__(self, keys: PartnerKeys, state_dir: Path) -> None:
        self.keys = keys
        self.state_dir = state_dir
        self.store = RegistryStore(state_dir / "registry.db")
        self.intake = PackageIntake(keys, self.store, state_dir / "work")
        self.faults = FaultPlan()
        self.tls_chain = write_chain(state_dir / "tls-server-chain.pem", keys.tls_certificate, keys.issuing_ca)

    @property
    def outbox(self) -> Path:
        return self.state_dir / "outbox"

    def publish_links(self) -> Path | None:
        """Publish the registry's links (its identifier by personal ID) as the next inbound package, in the
        inbound dataset the population side validates (``schemas/datasets/<dataset>.v1.json``), unless the
        outbox already holds one."""
        if any(self.outbox.glob("*.zip")):
            return None
        dataset = INBOUND_DATASETS[self.name]
        columns = list(json.loads(dataset_schema_path(dataset, 1).read_text(encoding="utf-8"))["properties"])
        rows = (inbound_row(person, columns) for person in self.store.all_people())
        return self.intake.publish_outbox(self.outbox, agreement_of(self.name), SchemaRef(dataset, "1"), rows)

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
