"""A hostile sender's payload files: each is refused by name (an ``InvalidDocument`` naming the file and the
position, on one line), bounded before it costs memory, and never echoes a value (a personal ID) it holds."""

from __future__ import annotations

import csv
import io
import re
import sys

import pytest

from exchange.package import SchemaRef
from exchange.payload import MAX_COLUMNS, MAX_DEPTH, MAX_FIELD_CHARS, MAX_RECORD_CHARS, csv_rows, parse_payload
from exchange.safe_xml import InvalidDocument
from exchange.xml_payload import write_xml

CITIZEN = SchemaRef("citizen-extract", "1")
ALLOWED = ("personal_id", "full_name", "date_of_birth", "sex", "place_of_birth", "updated_at")
IDS = ("001200012345", "079085001234", "096191000077")
PERSONAL_ID = re.compile(r"(?<!\d)\d{12,13}(?!\d)")  # a personal ID, or one a digit too long
LAND_ROWS = [
    ("CS 123456", "00004", "12", "345", IDS[0], "Nguyễn Thị Thuỷ", "active"),
    ("CS 654321", "00004", "12", "346", IDS[1], "Trần Văn Bé", "active"),
]
LAND_COLUMNS = [
    "certificate_serial",
    "commune_code",
    "map_sheet",
    "parcel_number",
    "personal_id",
    "full_name",
    "status",
]
LAND_BATCH = {"office": "VPĐKĐĐ Hà Nội", "createdAt": "2026-07-01T00:00:00Z", "count": 2}


def citizens_xml(rows=((IDS[0], "Nguyễn Thị Thuỷ"), (IDS[1], "Trần Văn Bé")), columns=("personal_id", "full_name")):
    sink = io.BytesIO()
    write_xml(list(columns), rows, sink, dataset="citizen-extract")
    return sink.getvalue()


def land_xml(batch=LAND_BATCH):
    sink = io.BytesIO()
    write_xml(LAND_COLUMNS, LAND_ROWS, sink, dataset="land-owners", batch=batch)
    return sink.getvalue()


def csv_file(header: str, *rows: str) -> bytes:
    return "\n".join((header, *rows, "")).encode()


CSV_ROW = f"{IDS[0]},Nguyễn Thị Thuỷ,2000-01-02"
WIDE = ",".join(f"c{n}" for n in range(70))
HOSTILE = {
    # CSV: the header is checked before any row; each row as it is read
    "csv-header-with-a-nul": (
        "a.csv",
        csv_file("personal_id,full\x00name,date_of_birth", CSV_ROW),
        r"a\.csv line 1: field 2 of the header is not a name",
    ),
    "csv-header-with-rich-markup": (
        "a.csv",
        csv_file("personal_id,[bold red]full_name[/],date_of_birth", CSV_ROW),
        r"a\.csv line 1: field 2 of the header is not a name",
    ),
    "csv-header-with-a-bom": (
        "a.csv",
        csv_file("\ufeffpersonal_id,full_name,date_of_birth", CSV_ROW),
        r"a\.csv line 1: field 1 of the header is not a name",
    ),
    "csv-70-columns": (
        "a.csv",
        csv_file(WIDE, ",".join(IDS[0] for _ in range(70))),
        rf"a\.csv line 1: the header has 70 fields, over the {MAX_COLUMNS}",
    ),
    "csv-duplicate-header": (
        "a.csv",
        csv_file("personal_id,full_name,personal_id", f"{IDS[0]},A,{IDS[1]}"),
        r"a\.csv line 1: the header repeats personal_id",
    ),
    "csv-blank-header": ("a.csv", csv_file("", CSV_ROW), r"a\.csv line 1: the header has no fields"),
    "csv-10-mb-field": (
        "a.csv",
        csv_file("personal_id,full_name,date_of_birth", CSV_ROW, f"{IDS[1]},{'x' * (10 << 20)},1985-03-04"),
        r"a\.csv line 3: a record over 1,048,576 characters",
    ),
    "csv-field-over-its-limit": (
        "a.csv",
        csv_file("personal_id,full_name,date_of_birth", f"{IDS[1]},{'Ô' * (MAX_FIELD_CHARS + 1)},1985-03-04"),
        r"a\.csv line 2: field full_name over 4,096 characters",
    ),
    "csv-quoted-field-over-many-lines": (
        "a.csv",
        csv_file("personal_id,full_name", f'{IDS[1]},"' + "x\n" * 600_000),
        r"a\.csv line \d+: a record over 1,048,576 characters",
    ),
    "csv-field-outside-the-allowed": (
        "a.csv",
        csv_file("personal_id,full_name,religion", f"{IDS[0]},A,B"),
        r"a\.csv line 1: religion not among the fields allowed",
    ),
    # JSON Lines: each line bounded in length and nesting before it is decoded
    "jsonl-nested-10000-deep": (
        "a.jsonl",
        b"[" * 10_000 + b"]" * 10_000 + b"\n",
        rf"a\.jsonl line 1: nested deeper than {MAX_DEPTH} levels",
    ),
    "jsonl-nested-inside-a-record": (
        "a.jsonl",
        b'{"personal_id": {"a": ' * 40 + b"1" + b"}" * 40 + b"\n",
        rf"a\.jsonl line 1: nested deeper than {MAX_DEPTH} levels",
    ),
    "jsonl-overlong-line": (
        "a.jsonl",
        b'{"personal_id": "' + b"1" * (2 << 20) + b'"}\n',
        r"a\.jsonl line 1: a line over 1,048,576 bytes",
    ),
    "jsonl-unterminated-strings-with-brackets": (
        "a.jsonl",
        b"[" * 20 + b'"' + b'\\"' * 300_000 + b"\n",
        rf"a\.jsonl line 1: nested deeper than {MAX_DEPTH}",
    ),
    "jsonl-duplicate-key": (
        "a.jsonl",
        f'{{"personal_id": "{IDS[0]}", "personal_id": "{IDS[1]}"}}\n'.encode(),
        r"a\.jsonl line 1: an object has a key twice",
    ),
    "jsonl-nan": (
        "a.jsonl",
        f'{{"personal_id": "{IDS[0]}", "updated_at": NaN}}\n'.encode(),
        r"a\.jsonl line 1: NaN is not JSON",
    ),
    "jsonl-not-an-object": ("a.jsonl", f'["{IDS[0]}"]\n'.encode(), r"a\.jsonl line 1: not a JSON object"),
    "jsonl-5000-digit-number": ("a.jsonl", b'{"updated_at": ' + b"9" * 5000 + b"}\n", r"a\.jsonl line 1: "),
    "jsonl-key-outside-the-allowed": (
        "a.jsonl",
        f'{{"personal_id": "{IDS[0]}", "died": null}}\n'.encode(),
        r"a\.jsonl line 1: died not among the fields allowed",
    ),
    "jsonl-key-that-is-a-personal-id": (
        "a.jsonl",
        f'{{"{IDS[0]}": "x"}}\n'.encode(),
        r"a\.jsonl line 1: field 1 of a record is not a name",
    ),
    "jsonl-field-over-its-limit": (
        "a.jsonl",
        f'{{"full_name": "{"x" * (MAX_FIELD_CHARS + 1)}"}}\n'.encode(),
        r"a\.jsonl line 1: field full_name over 4,096 characters",
    ),
    # XML: the manifest's schema chooses the XSD; schema errors name the line, the element and the rule
    "xml-land-batch-sent-as-citizen-extract": (
        "c.xml",
        land_xml(),
        r"c\.xml: line 2: the manifest's schema citizen-extract v1 asks for "
        r"CitizenBatch of citizen-extract\.v1\.xsd, the file is a "
        r"land-owners\.v1\.xsd batch",
    ),
    "xml-personal-id-breaking-its-pattern": (
        "c.xml",
        citizens_xml().replace(IDS[1].encode(), b"0790850012349"),
        r"c\.xml: does not follow citizen-extract\.v1\.xsd: line 4: element "
        r"personalId: does not match the pattern '\[0-9\]\{12\}'",
    ),
    "xml-value-quoting-libxml2": (
        "c.xml",
        citizens_xml([(IDS[0], "A", f"{IDS[1]}' is not")], ("personal_id", "full_name", "sex")),
        r"c\.xml: does not follow citizen-extract\.v1\.xsd: line 3: element sex: is not "
        r"one of \{'M', 'F'\}",
    ),
    "xml-element-named-with-a-personal-id": (
        "c.xml",
        citizens_xml().replace(b"fullName>", f"x{IDS[0]}>".encode()),
        r"c\.xml: does not follow citizen-extract\.v1\.xsd: line 3: element \(not in the schema\): This element is "
        r"not expected\. Expected is one of \( fullName,",
    ),
    "xml-not-utf8": (
        "c.xml",
        citizens_xml().replace("Thuỷ".encode(), b"\xc3\x28" + IDS[2].encode()),
        r"c\.xml: not well-formed XML: line 3, column \d+: invalid encoding",
    ),
    "xml-element-outside-the-allowed": (
        "c.xml",
        citizens_xml([(IDS[0], "Phật giáo")], ("personal_id", "religion")),
        r"c\.xml record 1: religion not among the fields allowed",
    ),
    "xml-field-over-its-limit": (
        "c.xml",
        citizens_xml([(IDS[0], "x" * (MAX_FIELD_CHARS + 1))], ("personal_id", "place_of_birth")),
        r"c\.xml record 1: field place_of_birth over 4,096 characters",
    ),
}


@pytest.fixture
def csv_limit_raised():
    """The ``csv`` module's field limit is the whole process's, and anything may raise it: the readers' own
    bounds must hold without it."""
    before = csv.field_size_limit(sys.maxsize)
    yield
    csv.field_size_limit(before)


@pytest.mark.parametrize(("name", "data", "problem"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_payload_is_refused_by_name_on_one_line_without_its_values(name, data, problem, csv_limit_raised):
    with pytest.raises(InvalidDocument) as refused:
        parse_payload(name, data, schema=CITIZEN, fields=ALLOWED)
    message = str(refused.value)
    assert re.match(problem, message), message
    assert "\n" not in message and len(message) < 400
    assert not PERSONAL_ID.search(message)


def test_a_land_batch_whose_count_is_not_its_records_is_refused():
    for count in (b"3", b"1", b"9" * 5000):
        batch = land_xml().replace(b'count="2"', b'count="' + count + b'"')
        with pytest.raises(InvalidDocument, match=r"^l\.xml: line 2: the batch's count is not the 2 records it holds$"):
            parse_payload("l.xml", batch, schema=SchemaRef("land-owners", "1"))


def test_a_schema_without_an_xml_layout_is_refused_without_echoing_it():
    with pytest.raises(InvalidDocument, match=r"^c\.xml: the manifest's schema has no XML batch layout$"):
        parse_payload("c.xml", citizens_xml(), schema=SchemaRef(f"x{IDS[0]}\nforged", "1"))


def test_a_csv_record_over_its_limit_is_refused_before_it_is_read_whole():
    """The reader takes at most a record's limit from the file: a 64 MiB line without an end is never in memory."""

    class Endless(io.StringIO):
        asked: list[int] = []

        def readline(self, size=-1):
            self.asked.append(size)
            return "x" * (size if size > 0 else 64 << 20)

    header, rows = csv_rows("a.csv", io.StringIO("a,b\n"))
    assert header == ["a", "b"] and list(rows) == []
    with pytest.raises(InvalidDocument, match=r"a\.csv line 1: a record over"):
        csv_rows("a.csv", Endless())
    assert Endless.asked == [MAX_RECORD_CHARS + 1]


def test_valid_payloads_are_still_read():
    assert parse_payload("a.csv", csv_file("personal_id,full_name", f"{IDS[0]},Lê Thị Hoà"), fields=ALLOWED) == [
        {"personal_id": IDS[0], "full_name": "Lê Thị Hoà"}
    ]
    separator = f'{{"personal_id": "{IDS[0]}", "full_name": "a\u2028b [x] {{y}}"}}\n\n'.encode()  # one record
    assert parse_payload("a.jsonl", separator, fields=ALLOWED) == [
        {"personal_id": IDS[0], "full_name": "a\u2028b [x] {y}"}
    ]
    assert [r["personal_id"] for r in parse_payload("c.xml", citizens_xml(), schema=CITIZEN, fields=ALLOWED)] == [
        IDS[0],
        IDS[1],
    ]
    assert len(parse_payload("l.xml", land_xml(), schema=SchemaRef("land-owners", "1"))) == 2
