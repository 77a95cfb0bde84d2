"""Reading a package's payload files, by their suffix: CSV, JSON Lines, or an XML batch (``exchange.xml_payload``:
hardened parse, XSD check). Both sides read what comes in with it: the partners' intake the population
database's packages, the population side's inbound (``feeds.inbound``) the partners' packages.

``parse_payload`` reads a file whole into dicts of the file's fields (CSV and XML: text, or None for an XML null).
``csv_rows`` reads a CSV file as it is iterated, as rows of text in the header's order, without a dict per record:
the partners' intake stores a million-record snapshot from it.

What comes in is a sender's text, so each reader is bounded (the limits below) and strict: field names are names,
none twice, within the fields the caller allows; a record is an object of at most ``MAX_COLUMNS`` fields. A file
that breaks a rule is an ``InvalidDocument`` (or ``UnsafeDocument`` for XML) on one line naming the file, the
position (line, record, field) and the rule, never a value: it becomes a rejected receipt and a log line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import accumulate
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from exchange.safe_xml import InvalidDocument, UnsafeDocument
from exchange.xml_payload import parse_xml_batch

if TYPE_CHECKING:
    from exchange.package import SchemaRef

SUFFIXES = (".csv", ".jsonl", ".xml")
TEXT_SUFFIXES = (".csv", ".xml")  # files whose records hold text or None only

# A record's fields. The widest dataset (citizen-extract v1) has 39; the partners' store makes a record's JSON with
# SQLite's json_object, which takes at most 127 arguments (SQLITE_MAX_FUNCTION_ARG), two per field.
MAX_COLUMNS = 63
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # the datasets' names are snake_case, well under 64
# One value. The longest the dataset schemas bound is a name (100 characters); an address written out is a few
# hundred. 4,096 leaves room for anything real, and a record of MAX_COLUMNS such fields stays under 256 KiB.
MAX_FIELD_CHARS = 4096
# One record as written: a CSV record (its lines, in characters) or a JSON Lines line (in bytes, before decoding).
# MAX_COLUMNS fields of MAX_FIELD_CHARS, every character a quote doubled in CSV, fit with room to spare; a longer
# one is refused before it is whole in memory.
MAX_RECORD_CHARS = 1 << 20
# A JSON Lines record's nesting. Records are flat objects of a dataset's fields; 16 leaves room for a nested value
# and keeps far below the recursion limit of the JSON decoder and of the store's encoder (about 1,000).
MAX_DEPTH = 16


def parse_payload(
    name: str, data: bytes, *, schema: SchemaRef | None = None, fields: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Every record of a payload file, read with the parser its suffix calls for. ``schema``: the manifest's
    {name, version}, which chooses an XML batch's XSD (without it, the batch's namespace does); ``fields``: the
    fields a record may carry (an agreement's), any name when None. Raises ``InvalidDocument`` (the file, the
    position and the rule) or, for XML, ``UnsafeDocument`` for a file it cannot read."""
    suffix = PurePosixPath(name).suffix
    if suffix == ".csv":
        header, rows = csv_rows(name, io.StringIO(_text(name, data), newline=""), fields=fields)
        return [dict(zip(header, row, strict=True)) for row in rows]
    if suffix == ".jsonl":
        return list(json_lines(name, io.BytesIO(data), fields))
    if suffix == ".xml":
        dataset, version = (schema.name, schema.version) if schema else (None, "1")
        try:
            records = parse_xml_batch(data, dataset, version)
        except UnsafeDocument as error:
            raise UnsafeDocument(f"{name}: {error}") from None
        except ValueError as error:  # not well-formed, not per its XSD, or of no batch layout we know
            raise InvalidDocument(f"{name}: {error}") from None  # a receipt names the file, the line and the rule
        for number, record in enumerate(records, 1):
            _check_record(f"{name} record {number}", record, fields)
        return records
    raise InvalidDocument(f"{name}: no reader for {suffix or 'files without a suffix'}")


def csv_rows(
    name: str, lines: Iterable[str], *, fields: Collection[str] | None = None
) -> tuple[list[str], Iterator[list[str]]]:
    """A CSV payload's header, and its rows as they are read from ``lines`` (text opened with ``newline=""``).
    The header is checked at once (``fields`` as for ``parse_payload``); a row when it is read: a row with more or
    fewer fields than the header (``csv.DictReader`` would pad or spill it silently), a field or a record over its
    limit, text that is not UTF-8 and what the ``csv`` module cannot read are an ``InvalidDocument`` naming the
    file and the line. Blank lines are skipped."""
    source = _BoundedLines(name, lines)
    reader = csv.reader(source)
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise InvalidDocument(f"{name} line 1: {error}") from None
    except UnicodeDecodeError:
        raise InvalidDocument(f"{name}: not UTF-8, in its first lines") from None
    if header is None:
        return [], iter(())
    _check_names(f"{name} line 1", header, fields, "the header")
    source.chars = 0
    return header, _rows(name, reader, source, header)


def _rows(name: str, reader, source: _BoundedLines, header: list[str]) -> Iterator[list[str]]:
    width = len(header)
    try:
        for row in reader:
            if len(row) != width:
                if not row:
                    source.chars = 0
                    continue  # a blank line, as DictReader skips it
                raise InvalidDocument(f"{name} line {reader.line_num}: {len(row)} fields where the header has {width}")
            if source.chars > MAX_FIELD_CHARS:  # only a record this long can hold a field over the limit
                _check_values(f"{name} line {reader.line_num}", zip(header, row, strict=True))
            source.chars = 0
            yield row
    except csv.Error as error:
        raise InvalidDocument(f"{name} line {reader.line_num}: {error}") from None
    except UnicodeDecodeError:  # decoded ahead of the reader, a block at a time: the line is not known
        raise InvalidDocument(f"{name}: not UTF-8, after line {reader.line_num}") from None


class _BoundedLines:
    """A CSV file's lines for ``csv.reader``, read at most ``MAX_RECORD_CHARS`` at a time (``csv.field_size_limit``
    is the whole process's, so it is not the bound): a record (``chars``, counted since the reader last reset it)
    longer than that is refused before it is whole in memory."""

    def __init__(self, name: str, lines: Iterable[str]) -> None:
        self.name, self.line, self.chars = name, 0, 0
        if hasattr(lines, "readline"):
            self._readline = lines.readline
        else:
            iterator = iter(lines)
            self._readline = lambda _size: next(iterator, "")

    def __iter__(self) -> Iterator[str]:
        for text in iter(partial(self._readline, MAX_RECORD_CHARS + 1), ""):  # no Python call per line to read it
            self.line += 1
            self.chars += len(text)
            if self.chars > MAX_RECORD_CHARS:
                raise InvalidDocument(f"{self.name} line {self.line}: a record over {MAX_RECORD_CHARS:,} characters")
            yield text


def json_lines(
    name: str, handle: BinaryIO, fields: Collection[str] | None = None, *, empty_records: bool = False
) -> Iterator[dict[str, Any]]:
    """The objects of a JSON Lines stream as it is read: one object per line, each line bounded in length and
    nesting before it is decoded; a key twice, NaN or Infinity are refused (other readers differ); keys and texts
    as ``csv_rows`` bounds them. Raises ``InvalidDocument`` naming the file, the line and the rule, never a value.
    Blank lines are skipped, unless ``empty_records`` (a data steward's file, whose row numbers are its lines): then
    a blank line, like ``{}``, is a record with every field missing."""
    number = 0
    names: set[str] = set()  # keys already checked: most lines repeat the first one's
    while raw := handle.readline(MAX_RECORD_CHARS + 1):
        number += 1
        where = f"{name} line {number}"
        if len(raw) > MAX_RECORD_CHARS:
            raise InvalidDocument(f"{where}: a line over {MAX_RECORD_CHARS:,} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise InvalidDocument(f"{where}: not UTF-8 at byte {error.start}") from None
        if not line.strip():
            if empty_records:
                yield {}
            continue
        if line.count("{") + line.count("[") > MAX_DEPTH and _depth(line) > MAX_DEPTH:
            raise InvalidDocument(f"{where}: nested deeper than {MAX_DEPTH} levels")
        try:
            record = strict_json(line)
        except json.JSONDecodeError as error:  # its message names the column, not the text
            raise InvalidDocument(f"{where}: not JSON ({error.msg}, column {error.colno})") from None
        except ValueError as error:  # a key twice, NaN or Infinity, an integer longer than Python converts
            raise InvalidDocument(f"{where}: {str(error).split(':')[0]}") from None
        if not isinstance(record, dict):
            raise InvalidDocument(f"{where}: not a JSON object (JSON Lines holds a JSON object per line)")
        if record or not empty_records:
            if len(record) > MAX_COLUMNS or not names.issuperset(record):
                _check_names(where, list(record), fields, "a record")
                names.update(record)
            if len(raw) > MAX_FIELD_CHARS:  # only a line this long can hold a text over the limit
                _check_values(where, record.items())
        yield record


# A JSON string, or the rest of the line after an unterminated quote: the optional closing quote means a match never
# fails, so the scan stays linear whatever the line holds.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')
_BRACKET = re.compile(r"[\[\]{}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(line: str) -> int:
    """How deep a JSON text's arrays and objects nest, counted outside its strings, without decoding it."""
    steps = map(_STEP.__getitem__, _BRACKET.findall(_JSON_STRING.sub("", line)))
    return max(accumulate(steps), default=0)


def strict_json(text: str) -> Any:
    """``json.loads`` as a payload needs it: a key twice in an object, NaN or Infinity are ``ValueError``s (Python
    keeps the last of two keys where other readers keep the first, and NaN is not JSON)."""
    return json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        raise ValueError("an object has a key twice")
    return record


def _no_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _check_record(where: str, record: Mapping[str, Any], fields: Collection[str] | None) -> None:
    _check_names(where, list(record), fields, "a record")
    _check_values(where, record.items())


def _check_names(where: str, names: Sequence[str], fields: Collection[str] | None, what: str) -> None:
    """Field names as the header or a record gives them: at most ``MAX_COLUMNS``, each a name (``FIELD_NAME``),
    none twice, each one of ``fields`` when given. A name is echoed only once it is known to be one."""
    if not names:
        raise InvalidDocument(f"{where}: {what} has no fields")
    if len(names) > MAX_COLUMNS:
        raise InvalidDocument(f"{where}: {what} has {len(names)} fields, over the {MAX_COLUMNS} a record may have")
    for number, field in enumerate(names, 1):
        if not isinstance(field, str) or not FIELD_NAME.fullmatch(field):
            raise InvalidDocument(f"{where}: field {number} of {what} is not a name (letters, digits, '_'; 64 at most)")
    if len(set(names)) != len(names):
        repeated = sorted({field for field in names if names.count(field) > 1})
        raise InvalidDocument(f"{where}: {what} repeats {', '.join(repeated)}")
    if fields is not None and (outside := [field for field in names if field not in fields]):
        raise InvalidDocument(f"{where}: {', '.join(outside)} not among the fields allowed")


def _check_values(where: str, items: Iterable[tuple[str, Any]]) -> None:
    for field, value in items:
        if isinstance(value, str) and len(value) > MAX_FIELD_CHARS:
            raise InvalidDocument(f"{where}: field {field} over {MAX_FIELD_CHARS:,} characters")


def _text(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidDocument(f"{name}: not UTF-8 at byte {error.start}") from None
