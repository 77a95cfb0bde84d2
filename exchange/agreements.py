"""Data-sharing agreements: ``schemas/agreements/<partner>.yaml``, checked when loaded.

An agreement says what may cross to or from one partner and why: legal basis and purpose, the transport and its
Airflow connection, the format, and per direction the dataset, the fields allowed (each with its legal basis),
encryption, the validation suite and its thresholds, and the delivery deadline. It is checked against
``schemas/agreements/agreement.schema.json`` and against the dataset schema it names; any problem is an
``AgreementError`` naming the file and the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from lienthong.settings import schema_file, schema_files

AGREEMENT_SCHEMA = "agreements/agreement.schema.json"


class AgreementError(ValueError):
    """An agreement file that cannot be used, with the file and line where the problem is."""

    def __init__(self, source: Path, line: int, message: str):
        self.source, self.line, self.problem = source, line, message
        super().__init__(f"{source}:{line}: {message}")


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


def dataset_schema_path(dataset: str, version: int) -> Path:
    return schema_file(f"datasets/{dataset}.v{version}.json")


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_file(AGREEMENT_SCHEMA).read_text(encoding="utf-8")))


def load_agreement(path: Path) -> Agreement:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise AgreementError(path, mark.line + 1 if mark else 1, f"not valid YAML: {error.problem}") from None
    if root is None:
        raise AgreementError(path, 1, "the file is empty")
    _refuse_duplicate_keys(path, root)
    errors = sorted(_validator().iter_errors(document), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if errors:
        error = errors[0]
        node, key = _node_at(root, list(error.absolute_path)), None
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = set(error.schema.get("properties", {}))
            key = next(k for k in error.instance if k not in allowed)
            message = f"unknown key '{key}' at {_where(error.absolute_path)}"
        elif error.validator == "required":
            message = f"{_where(error.absolute_path)}: {error.message}"
        else:
            message = f"{_where(error.absolute_path)}: {error.message}"
        raise AgreementError(path, _line(node, key), message)
    directions = {}
    for name, spec in document["directions"].items():
        schema_file = dataset_schema_path(spec["dataset"], spec["schema_version"])
        direction_node = _node_at(root, ["directions", name])
        if not schema_file.exists():
            raise AgreementError(
                path, _line(direction_node, "dataset"),
                f"directions.{name}: no dataset schema {spec['dataset']} version {spec['schema_version']} "
                f"(datasets/{schema_file.name})",
            )  # fmt: skip
        columns = json.loads(schema_file.read_text(encoding="utf-8"))["properties"]
        for field in spec["fields"]:
            if field not in columns:
                raise AgreementError(
                    path, _line(_node_at(root, ["directions", name, "fields"]), field),
                    f"directions.{name}.fields: '{field}' is not a field of dataset {spec['dataset']} "
                    f"version {spec['schema_version']}",
                )  # fmt: skip
        if spec.get("encryption") and not spec.get("recipient_certificate") and name == "outbound":
            raise AgreementError(
                path, _line(direction_node, "encryption"),
                f"directions.{name}: encryption asks for a recipient_certificate",
            )  # fmt: skip
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
    transport = document["transport"]
    return Agreement(
        name=document["agreement"],
        partner=document["partner"],
        legal_basis=tuple(document["legal_basis"]),
        purpose=document["purpose"],
        schedule=document.get("schedule"),
        transport=transport["kind"],
        connection_id=transport["connection_id"],
        pool_slots=transport.get("pool_slots", 2),
        format=document["format"],
        directions=directions,
        source=path,
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


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def _node_at(root: yaml.Node, path: list) -> yaml.Node:
    node = root
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
    return node


def _line(node: yaml.Node, key: str | None = None) -> int:
    """1-based line of a mapping's key, or of the node itself."""
    if key is not None and isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k.start_mark.line + 1
    return node.start_mark.line + 1


def _refuse_duplicate_keys(path: Path, node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if key.value in seen:
                raise AgreementError(path, key.start_mark.line + 1, f"key '{key.value}' appears twice")
            seen.add(key.value)
            _refuse_duplicate_keys(path, value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item)
