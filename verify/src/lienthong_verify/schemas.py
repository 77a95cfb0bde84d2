"""The dataset schemas and XSDs shipped in the kit (the same files as the platform's ``schemas/datasets`` and
``schemas/xsd``), and checking a decrypted payload file against them.

A CSV or JSON Lines file is checked record by record against the dataset's JSON Schema, in plain code: the kit reads
the few keywords the dataset schemas use (type, pattern, enum, maxLength, format date and date-time). A record
carries the fields its agreement sends, so a field the schema requires may be absent; a field the schema does not
declare is refused. An XML batch is checked against its XSD (``safe_xml``: no DTD, no entities, no network).
Refusals name the file, the record or line, the field and the rule, never a value.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

from lienthong_verify.errors import shown
from lienthong_verify.safe_xml import InvalidDocument, parse_untrusted, validate

FOLDERS = ("datasets", "xsd")
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
# An ISO 8601 date-time with its offset, as ``date_time_text`` writes it (in UTC: +00:00)
_DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
_TYPES = {"string": str, "null": type(None), "boolean": bool, "integer": int, "number": (int, float)}


def date_time_text(value: datetime) -> str:
    """A timestamp as every payload writes it (the dataset schemas' ``date-time``): ISO 8601 in UTC with its offset,
    ``2026-07-01T08:30:00+00:00``. A timestamp without a zone is UTC: the population database stores UTC, and
    SQLite gives it back without the zone."""
    return (value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def folder() -> Path:
    """Where the kit's schemas are installed."""
    return Path(str(resources.files("lienthong_verify") / "schemas"))


def publish(out: Path) -> list[Path]:
    """Copy the kit's schemas into ``out`` (``out/datasets``, ``out/xsd``); returns the files written."""
    written = []
    for name in FOLDERS:
        for source in sorted((folder() / name).iterdir()):
            target = out / name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(target)
    return written


@cache
def dataset_schema(name: str, version: str) -> dict[str, Any]:
    path = folder() / "datasets" / f"{name}.v{version}.json"
    if not path.is_file():
        raise InvalidDocument(f"no dataset schema {name} version {version} in the kit")
    return json.loads(path.read_text(encoding="utf-8"))


def xsd_of(name: str, version: str) -> Path:
    path = folder() / "xsd" / f"{name}.v{version}.xsd"
    if not path.is_file():
        raise InvalidDocument(f"no XSD for {name} version {version} in the kit")
    return path


def check_payload(path: Path, name: str, version: str) -> int:
    """Check a decrypted payload file against dataset ``name`` version ``version``; returns its record count.
    ``InvalidDocument`` says the file, where, the field and the rule."""
    suffix = PurePosixPath(path.name).suffix
    if suffix == ".xml":
        try:
            root = parse_untrusted(path.read_bytes())
            validate(root, xsd_of(name, version))
        except ValueError as error:  # InvalidDocument and UnsafeDocument
            raise InvalidDocument(f"{path.name}: {error}") from None
        return len(root)
    if suffix not in (".csv", ".jsonl"):
        raise InvalidDocument(f"{path.name}: not a payload file (.csv, .jsonl or .xml)")
    schema = dataset_schema(name, version)
    count = 0
    for where, record in _csv_records(path) if suffix == ".csv" else _jsonl_records(path):
        problem = record_problem(schema, record)
        if problem:
            raise InvalidDocument(f"{path.name}: {where}: {problem}")
        count += 1
    return count


def record_problem(schema: dict[str, Any], record: dict[str, Any]) -> str | None:
    """The first field of ``record`` that breaks ``schema``, as ``field X: rule``; None when it follows it."""
    properties = schema["properties"]
    for field, value in record.items():
        rules = properties.get(field)
        if rules is None:
            return f"field {shown(field)}: not in dataset {schema.get('title', 'schema')}"
        problem = _value_problem(rules, value)
        if problem:
            return f"field {field}: {problem}"
    return None


def _value_problem(rules: dict[str, Any], value: Any) -> str | None:
    types = rules.get("type", [])
    types = [types] if isinstance(types, str) else types
    if types and not any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                         for t in types):  # fmt: skip
        return f"must be {' or '.join(types)}"
    if "enum" in rules and value not in rules["enum"]:
        return f"is not one of {', '.join('null' if v is None else v for v in rules['enum'])}"
    if not isinstance(value, str):
        return None
    if "maxLength" in rules and len(value) > rules["maxLength"]:
        return f"is longer than {rules['maxLength']} characters"
    if "pattern" in rules and not re.search(rules["pattern"], value):
        return f"does not match the pattern '{rules['pattern']}'"
    kind = rules.get("format")
    if kind == "date" and not (_DATE.fullmatch(value) and _parses(date.fromisoformat, value)):
        return "is not a date (YYYY-MM-DD)"
    if kind == "date-time" and not (_DATE_TIME.fullmatch(value) and _parses(datetime.fromisoformat, value)):
        return "is not an ISO 8601 date-time (2026-07-01T08:30:00+00:00)"
    return None


def _parses(parse, value: str) -> bool:
    try:
        parse(value)
    except ValueError:
        return False
    return True


def _csv_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """CSV as the platform writes it: a header, RFC 4180, UTF-8; an empty cell is null."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InvalidDocument(f"{path.name}: no header line")
        for number, row in enumerate(reader, 1):
            if len(row) != len(header):
                raise InvalidDocument(f"{path.name}: record {number}: {len(row)} fields, the header has {len(header)}")
            yield f"record {number}", {name: cell or None for name, cell in zip(header, row, strict=True)}


def _jsonl_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, line in enumerate(io.BufferedReader(handle), 1):
            try:
                record = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise InvalidDocument(f"{path.name}: line {number}: not a JSON object") from None
            if not isinstance(record, dict):
                raise InvalidDocument(f"{path.name}: line {number}: not a JSON object")
            yield f"line {number}", record
