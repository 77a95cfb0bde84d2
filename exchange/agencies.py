"""The agencies: ``schemas/agencies/<agency>.yaml``, one file each, checked when loaded.

An agency file says who the agency is in certificates and packages (its name, its organisation), the dataset it
publishes to the population database and how that dataset is reconciled (which fields match which population
fields, the registry identifier a link stores and the rule its values follow, the status that keeps a link
active), and how the partner sandbox plays it (its server, who its registry holds). It is checked against
``schemas/agencies/agency.schema.json`` and against the dataset schema it names; any problem is an
``AgencyError`` naming the file and the line. Files are found in every schema folder (``LIENTHONG_SCHEMAS_PATH``
first): a new partner agency is a file, not Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from exchange.documents import DocumentError, YamlDocument, dataset_fields, read_yaml
from lienthong.settings import schema_files
from lienthong_verify.sequence import POPULATION as POPULATION

AGENCY_SCHEMA = "agencies/agency.schema.json"


class AgencyError(DocumentError):
    """An agency file that cannot be used, with the file and line where the problem is."""


@dataclass(frozen=True)
class Publishes:
    dataset: str
    version: int
    record_date: str  # the field with the record's date


@dataclass(frozen=True)
class Identifier:
    field: str
    kind: str  # digits | tax-code | personal-tax-code | certificate-serial
    one_holder: bool  # one holder, who holds only one
    one_row: bool  # each value on one row of a dataset
    length: int | None = None  # digits
    parcel: dict[str, str] | None = None  # certificate-serial: commune, map_sheet, parcel_number → fields


@dataclass(frozen=True)
class Status:
    field: str
    active: tuple[str, ...]


@dataclass(frozen=True)
class Reconciliation:
    match: dict[str, str]  # population field → the dataset's field
    identifier: Identifier
    status: Status | None


@dataclass(frozen=True)
class Server:
    kind: str  # rest | soap | sftp
    auth: str | None = None  # rest: oauth2 | mutual-tls
    collection: str | None = None
    openapi: str | None = None
    item_schema: str | None = None


@dataclass(frozen=True)
class SandboxPart:
    """How the partner sandbox plays the agency."""

    server: Server
    minimum_age: int
    share: float
    records: str | None  # one of the reference registries' records, else identifiers of the agency's kind


@dataclass(frozen=True)
class Agency:
    name: str
    organisation: str
    publishes: Publishes | None
    reconciliation: Reconciliation | None
    sandbox: SandboxPart | None
    source: Path

    @property
    def is_partner(self) -> bool:
        return self.name != POPULATION


def load_agency(path: Path) -> Agency:
    document = read_yaml(path, AGENCY_SCHEMA, AgencyError)
    content = document.content
    publishes = reconciliation = sandbox = None
    if "publishes" in content:
        publishes = Publishes(**content["publishes"])
        reconciliation = _reconciliation(document, publishes)
    if "sandbox" in content:
        part = content["sandbox"]
        registry = part["registry"]
        server = Server(**part["server"])
        sandbox = SandboxPart(server, registry["minimum_age"], registry["share"], registry.get("records"))
    return Agency(content["agency"], content["organisation"], publishes, reconciliation, sandbox, Path(path))


def _reconciliation(document: YamlDocument, publishes: Publishes) -> Reconciliation:
    """The reconciliation section, each field it names checked against the published dataset."""
    columns = dataset_fields(publishes.dataset, publishes.version)
    dataset = f"{publishes.dataset} version {publishes.version}"
    schema_name = f"{publishes.dataset}.v{publishes.version}.json"
    if columns is None:
        document.fail(["publishes"], "dataset", f"publishes: no dataset schema {dataset} (datasets/{schema_name})")

    def field(name: str, where: list[str], key: str) -> str:
        if name not in columns:
            place = ".".join([*where, key])
            document.fail(where, key, f"{place}: '{name}' is not a field of dataset {dataset}")
        return name

    field(publishes.record_date, ["publishes"], "record_date")
    section = document.content["reconciliation"]
    at = ["reconciliation"]
    match = {key: field(name, [*at, "match"], key) for key, name in section["match"].items()}
    spec = section["identifier"]
    parcel = spec.get("parcel")
    if parcel is not None:
        parcel = {key: field(name, [*at, "identifier", "parcel"], key) for key, name in parcel.items()}
    digits = f"^[0-9]{{{spec.get('length')}}}$"
    pattern = columns.get(spec["field"], {}).get("pattern")
    if spec["kind"] == "digits" and pattern not in (None, digits):
        mismatch = f"{spec['length']} digits, but dataset {dataset} has the pattern {pattern} for {spec['field']}"
        document.fail([*at, "identifier"], "length", f"reconciliation.identifier: {mismatch}")
    identifier = Identifier(
        field(spec["field"], [*at, "identifier"], "field"),
        spec["kind"],
        spec["one_holder"],
        spec["one_row"],
        spec.get("length"),
        parcel,
    )
    status = None
    if "status" in section:
        status = Status(field(section["status"]["field"], [*at, "status"], "field"), tuple(section["status"]["active"]))
    return Reconciliation(match, identifier, status)


def load_agencies() -> dict[str, Agency]:
    """Every agency of the schema folders (``agencies/*.yaml``, ``LIENTHONG_SCHEMAS_PATH`` first), by name. Two files
    with one name, or no ``population`` agency, is an error. Read again only when a file changes."""
    paths = schema_files("agencies", "*.yaml")
    return dict(_load(tuple((path, *_stamp(path)) for path in paths)))


def _stamp(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_mtime_ns, status.st_size


@lru_cache(maxsize=8)
def _load(files: tuple[tuple[Path, int, int], ...]) -> dict[str, Agency]:
    agencies: dict[str, Agency] = {}
    for path, *_ in files:
        agency = load_agency(path)
        if agency.name in agencies:
            other = agencies[agency.name].source
            raise AgencyError(path, 1, f"agency '{agency.name}' is also defined in {other}")
        agencies[agency.name] = agency
    if POPULATION not in agencies:
        folders = sorted({str(path.parent) for path, *_ in files})
        raise AgencyError(Path(folders[0] if folders else "agencies"), 1, f"no agency '{POPULATION}' is defined")
    return agencies


def partner_agencies() -> dict[str, Agency]:
    """Every agency but the population database, by name."""
    return {name: agency for name, agency in load_agencies().items() if agency.is_partner}
