"""Reading a package's payload files, by their suffix: CSV, JSON Lines, or an XML batch (``exchange.xml_payload``:
hardened parse, XSD check). Both sides read what comes in with it: the partners' intake the population
database's packages, the population side's inbound (``exchange.inbound``) the partners' packages.

The file is read whole; the records are dicts of the file's fields (CSV and XML: text, or None for an XML null).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import PurePosixPath
from typing import Any

from exchange.safe_xml import InvalidDocument
from exchange.xml_payload import parse_xml_batch

SUFFIXES = (".csv", ".jsonl", ".xml")
TEXT_SUFFIXES = (".csv", ".xml")  # files whose records hold text or None only


def parse_payload(name: str, data: bytes) -> list[dict[str, Any]]:
    """Every record of a payload file, read with the parser its suffix calls for. Raises ``ValueError`` for a
    file it cannot read: ``UnsafeDocument`` or ``InvalidDocument`` (the file, the line and the rule) for XML."""
    suffix = PurePosixPath(name).suffix
    if suffix == ".csv":
        return _csv_records(name, data)
    if suffix == ".jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    if suffix == ".xml":
        try:
            return parse_xml_batch(data)
        except InvalidDocument as error:  # a receipt names the file, the line and the rule
            raise InvalidDocument(f"{name}: {error}") from None
    raise ValueError(f"{name}: no reader for {suffix or 'files without a suffix'}")


def _csv_records(name: str, data: bytes) -> list[dict[str, Any]]:
    """CSV with a header line: a record per line, keyed by the header. A line with more or fewer fields than the
    header is an error naming the file and the line (``csv.DictReader`` would pad or spill it silently)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader, None)
    if header is None:
        return []
    width = len(header)
    records = []
    for row in reader:
        if len(row) != width:
            if not row:
                continue  # a blank line, as DictReader skips it
            raise ValueError(f"{name} line {reader.line_num}: {len(row)} fields where the header has {width}")
        records.append(dict(zip(header, row, strict=True)))
    return records
