"""Data-sharing agreements: ``schemas/agreements/<partner>.yaml``, checked when loaded.

An agreement says what may cross to or from one partner and why: legal basis and purpose, the transport and its
Airflow connection, the format, how long its payloads and staging files are kept (``retention_days``), and per
direction the dataset, the fields allowed (each with its legal basis), encryption, the validation suite and its
thresholds, and the delivery deadline. It is checked against
``schemas/agreements/agreement.schema.json``, against the dataset schema it names, and against its partner's
agency file (``schemas/agencies/<partner>.yaml``: the partner must be an agency, and what it sends in is what the
agency publishes); any problem is an ``AgreementError`` naming the file and the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.agencies import load_agencies
from exchange.documents import DocumentError, dataset_fields, read_yaml
from lienthong.settings import schema_files

AGREEMENT_SCHEMA = "agreements/agreement.schema.json"
DEFAULT_RETENTION_DAYS = 365  # an agreement that states none keeps payloads and staging a year


class AgreementError(DocumentError):
    """An agreement file that cannot be used, with the file and line where the problem is."""


@dataclass(frozen=True)
class Direction:
    name: str  # outbound | inbound
    dataset: str
    schema_version: int
    mode: str
    fields: dict[str, str]  # field -> its legal basis
    encryption: bool
    recipient_certificate: str | None
    validation: dict[str, Any] | None
    delivery_deadline_hours: float | None


@dataclass(frozen=True)
class Agreement:
    name: str
    partner: str
    legal_basis: tuple[str, ...]
    purpose: str
    schedule: str | None
    transport: str
    connection_id: str
    pool_slots: int
    format: str
    directions: dict[str, Direction]
    source: Path
    retention_days: int = DEFAULT_RETENTION_DAYS  # payloads and staging kept this long (``lienthong retention``)


def load_agreement(path: Path) -> Agreement:
    document = read_yaml(path, AGREEMENT_SCHEMA, AgreementError)
    content = document.content
    partner = content["partner"]
    agency = load_agencies().get(partner)
    if agency is None or not agency.is_partner:
        document.fail([], "partner", f"partner '{partner}' is not a partner agency (schemas/agencies/{partner}.yaml)")
    directions = {}
    for name, spec in content["directions"].items():
        at, dataset, version = ["directions", name], spec["dataset"], spec["schema_version"]
        columns = dataset_fields(dataset, version)
        if columns is None:
            missing = f"no dataset schema {dataset} version {version} (datasets/{dataset}.v{version}.json)"
            document.fail(at, "dataset", f"directions.{name}: {missing}")
        for field in spec["fields"]:
            if field not in columns:
                unknown = f"'{field}' is not a field of dataset {dataset} version {version}"
                document.fail([*at, "fields"], field, f"directions.{name}.fields: {unknown}")
        published = agency.publishes
        if name == "inbound" and published and (published.dataset, published.version) != (dataset, version):
            mismatch = f"{partner} publishes {published.dataset} version {published.version} ({agency.source.name})"
            document.fail(at, "dataset", f"directions.inbound: dataset {dataset} version {version}, but {mismatch}")
        if spec.get("encryption") and not spec.get("recipient_certificate") and name == "outbound":
            document.fail(at, "encryption", f"directions.{name}: encryption asks for a recipient_certificate")
        directions[name] = Direction(
            name=name,
            dataset=spec["dataset"],
            schema_version=spec["schema_version"],
            mode=spec.get("mode", "incremental"),
            fields=dict(spec["fields"]),
            encryption=spec.get("encryption", False),
            recipient_certificate=spec.get("recipient_certificate"),
            validation=spec.get("validation"),
            delivery_deadline_hours=spec.get("delivery_deadline_hours"),
        )
    transport = content["transport"]
    return Agreement(
        name=content["agreement"],
        partner=partner,
        legal_basis=tuple(content["legal_basis"]),
        purpose=content["purpose"],
        schedule=content.get("schedule"),
        transport=transport["kind"],
        connection_id=transport["connection_id"],
        pool_slots=transport.get("pool_slots", 2),
        format=content["format"],
        directions=directions,
        source=Path(path),
        retention_days=content.get("retention_days", DEFAULT_RETENTION_DAYS),
    )


def load_agreements(folder: Path | None = None) -> dict[str, Agreement]:
    """Every agreement in the folder (else in the schema folders' ``agreements/``), by name; two files with one
    name is an error."""
    agreements: dict[str, Agreement] = {}
    paths = sorted(Path(folder).glob("*.yaml")) if folder else schema_files("agreements", "*.yaml")
    for path in paths:
        agreement = load_agreement(path)
        if agreement.name in agreements:
            other = agreements[agreement.name].source.name
            raise AgreementError(path, 1, f"agreement '{agreement.name}' is also defined in {other}")
        agreements[agreement.name] = agreement
    return agreements
