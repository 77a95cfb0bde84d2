"""Data-sharing agreements: ``schemas/agreements/*.yaml`` (a partner may have several), checked when loaded.

An agreement says what may cross to or from one partner and why: legal basis and purpose, the transport and its
Airflow connection, the format, how long its payloads and staging files are kept (``retention_days``), and per
direction the dataset, the fields allowed (each with its legal basis), encryption, the validation suite and its
thresholds, and the delivery deadline. It is checked against
``schemas/agreements/agreement.schema.json``, against the dataset schema it names, and against its partner's
agency file (``schemas/agencies/<partner>.yaml``: the partner must be an agency, and what it sends in is what the
agency publishes); any problem is an ``AgreementError`` naming the file and the line.

An outbound direction may ``select`` the rows the partner receives: by life event (``events``, as the change log
names them) and by tests on extract fields (``where``), checked against the dataset schema; say where a new
feed ``start``s (the change-log head by default); and cap the changed citizens one incremental package carries
(``max_package_citizens``, 50,000 by default: a burst of life events goes out in packages of at most that many).
``check_agreement_files`` is the one check that the loader, the DAG file and ``lienthong agreements check`` share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from exchange.agencies import load_agencies
from exchange.documents import DocumentError, YamlDocument, dataset_fields, read_yaml
from lienthong.settings import schema_files
from population.changelog import EVENT_TYPES
from population.extract import EQUALS, ONE_OF, FieldCondition

AGREEMENT_SCHEMA = "agreements/agreement.schema.json"
DEFAULT_RETENTION_DAYS = 365  # an agreement that states none keeps payloads and staging a year
DEFAULT_MAX_PACKAGE_CITIZENS = 50_000  # an incremental window over this many changed citizens is split
HEAD, BEGINNING = "head", "beginning"  # where a new incremental feed starts


class AgreementError(DocumentError):
    """An agreement file that cannot be used, with the file and line where the problem is."""


@dataclass(frozen=True)
class RowSelection:
    """Which rows an outbound direction sends: citizens with a change of one of ``events`` (any row when empty)
    whose extract row meets every test of ``where``."""

    events: tuple[str, ...] = ()
    where: tuple[FieldCondition, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.events or self.where)


EVERY_ROW = RowSelection()


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
    rows: RowSelection = EVERY_ROW  # unless the agreement selects
    start: str = HEAD  # where a new incremental feed starts: the change-log head, or its beginning
    max_package_citizens: int = DEFAULT_MAX_PACKAGE_CITIZENS  # the most changed citizens an incremental package has


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
        if name != "outbound":
            for key in ("select", "start", "max_package_citizens"):
                if key in spec:
                    document.fail(at, key, f"directions.{name}.{key}: only an outbound direction has it")
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
            rows=_row_selection(document, name, spec, columns),
            start=spec.get("start", HEAD),
            max_package_citizens=spec.get("max_package_citizens", DEFAULT_MAX_PACKAGE_CITIZENS),
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


def _row_selection(document: YamlDocument, name: str, spec: dict, columns: dict[str, dict]) -> RowSelection:
    """The direction's ``select``, its event types those of the change log and each test on a text field of the
    dataset with values the field's schema allows (values are never echoed: they may be personal IDs)."""
    chosen = spec.get("select")
    if not chosen:
        return RowSelection()
    at = ["directions", name, "select"]
    for index, event in enumerate(chosen.get("events", [])):
        if event not in EVENT_TYPES:
            known = ", ".join(EVENT_TYPES)
            document.fail(
                [*at, "events", index],
                None,
                f"directions.{name}.select.events: '{event}' is not an event of the change log ({known})",
            )
    conditions = []
    for field, test in chosen.get("where", {}).items():
        where = f"directions.{name}.select.where.{field}"
        schema = columns.get(field)
        if schema is None:
            document.fail(
                [*at, "where"],
                field,
                f"{where}: '{field}' is not a field of dataset {spec['dataset']} version {spec['schema_version']}",
            )
        kinds = schema.get("type")
        kinds = kinds if isinstance(kinds, list) else [kinds]
        if "string" not in kinds or "format" in schema:
            document.fail(
                [*at, "where"],
                field,
                f"{where}: only text fields can be tested (this one is "
                f"{schema.get('format') or '/'.join(k for k in kinds if k != 'null')})",
            )
        ((kind, value),) = test.items()
        values = (value,) if kind == EQUALS else tuple(value)
        if kind in (EQUALS, ONE_OF):
            check = Draft202012Validator(schema)
            for position, one in enumerate(values, 1):
                problem = next(check.iter_errors(one), None)
                if problem is not None:
                    document.fail(
                        [*at, "where", field],
                        kind,
                        f"{where}.{kind}: value {position} does not fit the field's schema ({problem.validator})",
                    )
        conditions.append(FieldCondition(field, kind, values))
    return RowSelection(tuple(chosen.get("events", ())), tuple(conditions))


def check_agreement_files(paths: Iterable[Path]) -> tuple[dict[str, Agreement], list[AgreementError]]:
    """Load each file: the agreements that load, by name, and an error for each file that does not (a name
    already taken by an earlier file is that file's error). The one check of the loader, the DAG file and
    ``lienthong agreements check``."""
    agreements: dict[str, Agreement] = {}
    errors: list[AgreementError] = []
    for path in paths:
        try:
            agreement = load_agreement(path)
        except AgreementError as error:
            errors.append(error)
            continue
        if agreement.name in agreements:
            other = agreements[agreement.name].source
            errors.append(
                AgreementError(path, _name_line(path), f"agreement '{agreement.name}' is also defined in {other.name}")
            )
            continue
        agreements[agreement.name] = agreement
    return agreements, errors


def _name_line(path: Path) -> int:
    document = read_yaml(path, AGREEMENT_SCHEMA, AgreementError)
    return document.line([], "agreement")


def agreement_files(folder: Path | None = None) -> list[Path]:
    """The agreement files: those of ``folder``, else of the schema folders' ``agreements/``."""
    return sorted(Path(folder).glob("*.yaml")) if folder else schema_files("agreements", "*.yaml")


def usable_agreements(folder: Path | None = None) -> tuple[dict[str, Agreement], list[AgreementError]]:
    """The agreements that load and the errors of the files that do not: one bad file loses only its own."""
    return check_agreement_files(agreement_files(folder))


def load_agreements(folder: Path | None = None) -> dict[str, Agreement]:
    """Every agreement in the folder (else in the schema folders' ``agreements/``), by name; a file that does not
    load (or a name used twice) raises its ``AgreementError``."""
    agreements, errors = usable_agreements(folder)
    if errors:
        raise errors[0]
    return agreements
