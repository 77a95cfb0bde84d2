"""Reading a package's payload files, by their suffix: CSV, JSON Lines, or an XML batch (``exchange.xml_payload``:
hardened parse, XSD check). Both sides read what comes in with it: the partners' intake the population
database's packages, the population side's inbound (``feeds.inbound``) the partners' packages.

``parse_payload`` reads a file whole into dicts of the file's fields (CSV and XML: text, or None for an XML null).
``csv_rows`` reads a CSV file as it is iterated, as rows of text in the header's order, without a dict per record:
the partners' intake stores a million-record snapshot from it. A file that cannot be read is an ``InvalidDocument``
(or ``UnsafeDocument`` for XML) naming the file and, where there is one, the line.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import PurePosixPath
from typing import Any

from exchange.safe_xml import InvalidDocument, UnsafeDocument
from exchange.xml_payload import parse_xml_batch

SUFFIXES = (".csv", ".jsonl", ".xml")
TEXT_SUFFIXES = (".csv", ".xml")  # files whose records hold text or None only


def parse_payload(name: str, data: bytes) -> list[dict[str, Any]]:
    """Every record of a payload file, read with the parser its suffix calls for. Raises ``InvalidDocument``
    (the file, the line and the rule) or, for XML, ``UnsafeDocument`` for a file it cannot read."""
    suffix = PurePosixPath(name).suffix
    if suffix == ".csv":
        header, rows = csv_rows(name, io.StringIO(_text(name, data), newline=""))
        return [dict(zip(header, row, strict=True)) for row in rows]
    if suffix == ".jsonl":
        return [_json_record(name, number, line) for number, line in enumerate(_text(name, data).splitlines(), 1)
                if line.strip()]  # fmt: skip
    if suffix == ".xml":
        try:
            return parse_xml_batch(data)
        except UnsafeDocument:
            raise
        except ValueError as error:  # not well-formed, not per its XSD, or of no batch layout we know
            raise InvalidDocument(f"{name}: {error}") from None  # a receipt names the file, the line and the rule
    raise InvalidDocument(f"{name}: no reader for {suffix or 'files without a suffix'}")


def csv_rows(name: str, lines: Iterable[str]) -> tuple[list[str], Iterator[list[str]]]:
    """A CSV payload's header, and its rows as they are read from ``lines`` (text opened with ``newline=""``).
    A line with more or fewer fields than the header is an ``InvalidDocument`` naming the file and the line
    (``csv.DictReader`` would pad or spill it silently), and so are a repeated field name, text that is not UTF-8
    and what the ``csv`` module cannot read (a field over its size limit); blank lines are skipped."""
    reader = csv.reader(lines)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise InvalidDocument(f"{name} line 1: {error}") from None
    except UnicodeDecodeError:
        raise InvalidDocument(f"{name}: not UTF-8, in its first lines") from None
    if header is None:
        return [], iter(())
    if len(set(header)) != len(header):
        repeated = sorted({field for field in header if header.count(field) > 1})
        raise InvalidDocument(f"{name} line 1: the header repeats {', '.join(repeated)}")
    return header, _rows(name, reader, len(header))


def _rows(name: str, reader, width: int) -> Iterator[list[str]]:
    try:
        for row in reader:
            if len(row) != width:
                if not row:
                    continue  # a blank line, as DictReader skips it
                raise InvalidDocument(f"{name} line {reader.line_num}: {len(row)} fields where the header has {width}")
            yield row
    except csv.Error as error:
        raise InvalidDocument(f"{name} line {reader.line_num}: {error}") from None
    except UnicodeDecodeError:  # decoded ahead of the reader, a block at a time: the line is not known
        raise InvalidDocument(f"{name}: not UTF-8, after line {reader.line_num}") from None


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDocument(f"{name}: not UTF-8 at byte {error.start}") from None


def _json_record(name: str, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as error:
        raise InvalidDocument(f"{name} line {number}: {error}") from None
