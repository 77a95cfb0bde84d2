"""XML batch payloads: laid out by the dataset's XSD, read back (hardened, checked) as written, the same bytes
for the same rows, valid for lxml and stock xmllint, streamed in flat memory."""

from __future__ import annotations

import io
import shutil
import subprocess
import tracemalloc
import unicodedata
import weakref
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from exchange.package import MEDIA_TYPES, WRITERS, verify_package
from exchange.payload import parse_payload
from exchange.safe_xml import InvalidDocument, validate
from exchange.xml_payload import BATCH_XSDS, parse_xml_batch, write_xml, xml_layout
from tests.exchange.conftest import build

COLUMNS = ["personal_id", "former_id_number", "full_name", "date_of_birth", "permanent_ward_code",
           "permanent_address", "current_ward_code", "date_of_death", "updated_at"]  # fmt: skip
NFD_NAME = unicodedata.normalize("NFD", "Lê Thị Thuỷ")  # written as given, not normalised
ROWS = [
    ("001200012345", None, "Nguyễn Thị Thuỷ", date(2000, 1, 2), "00004", "Số 1 phố Hàng Bài, Hà Nội", "00004",
     None, datetime(2026, 7, 2, 3, 4, 5, tzinfo=UTC)),
    ("079085001234", "025123456", 'Trần Văn "Bé" <con> & cháu', "1985-03-04", None, "", "26734",
     date(2026, 5, 1), "2026-07-02T10:00:00+07:00"),
    ("096191000077", None, NFD_NAME, None, "31234", "Ấp Tân Lập\r\nxã Đầm Dơi", None, None, "2026-07-02T00:00:00"),
]  # fmt: skip
LAND_COLUMNS = ["certificate_serial", "commune_code", "map_sheet", "parcel_number", "area_square_metres",
                "personal_id", "full_name", "date_of_birth", "status"]  # fmt: skip
LAND_ROWS = [
    ("CS 123456", "00004", 12, 345, 250.5, "001200012345", "Nguyễn Thị Thuỷ", "2000-01-02", "active"),
    ("AB 000001", "26734", 1, 7, None, "079085001234", "Đặng Hoà Phước", None, "transferred"),
]
LAND_BATCH = {"office": "VPĐKĐĐ Hà Nội", "createdAt": "2026-07-01T00:00:00Z", "count": 2}


def written(columns, rows, **options) -> bytes:
    sink = io.BytesIO()
    write_xml(columns, rows, sink, **options)
    return sink.getvalue()


def as_text(value) -> str | None:
    """What the reader gives back: text; null (None or empty) as None; timestamps ISO 8601 in UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value.isoformat() if isinstance(value, date) else str(value)


def xmllint(document: bytes, xsd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / "batch.xml"
    path.write_bytes(document)
    return subprocess.run(["xmllint", "--noout", "--nonet", "--schema", str(xsd), str(path)], capture_output=True,
                          text=True)  # fmt: skip


def test_a_citizen_batch_reads_back_as_the_rows_written():
    document = written(COLUMNS, ROWS)
    records = parse_xml_batch(document)  # hardened parse and XSD check first
    layout_order = [f for f in xml_layout("citizen-extract").fields if f in COLUMNS]
    assert [list(record) for record in records] == [layout_order] * len(ROWS)  # every column, in the XSD's order
    assert records == [{c: as_text(v) for c, v in zip(COLUMNS, row, strict=True)} for row in ROWS]
    assert records[2]["full_name"] == NFD_NAME and records[2]["permanent_address"] == "Ấp Tân Lập\r\nxã Đầm Dơi"
    assert b'<dateOfDeath xsi:nil="true"></dateOfDeath>' in document
    lines = document.decode("utf-8").split("\n")  # declaration, root, one record per line (the address breaks one)
    assert [line[:9] for line in lines[2:4]] == ["<citizen>"] * 2 and len(lines) == len(ROWS) + 4


def test_a_land_batch_nests_the_parcel_and_reads_back_flat():
    document = written(LAND_COLUMNS, LAND_ROWS, dataset="land-owners", batch=LAND_BATCH)
    root = etree.fromstring(document)
    assert (root.get("office"), root.get("count")) == ("VPĐKĐĐ Hà Nội", "2")
    ns = {"l": "urn:lienthong:land:owners:v1"}
    assert root.findtext("l:owner/l:parcel/l:mapSheet", namespaces=ns) == "12"
    assert b"areaSquareMetres" not in document.split(b"\n")[3] and b"xsi" not in document  # nulls left out
    records = parse_xml_batch(document)
    expected = [{c: as_text(v) for c, v in zip(LAND_COLUMNS, row, strict=True) if v is not None} for row in LAND_ROWS]
    assert records == [{**owner, "created_at": LAND_BATCH["createdAt"]} for owner in expected]  # the batch's date


def test_the_writer_is_chosen_by_suffix_and_infers_the_layout_from_the_columns():
    assert WRITERS[".xml"] is write_xml and MEDIA_TYPES[".xml"].startswith("application/xml")
    assert written(COLUMNS, ROWS) == written(COLUMNS, ROWS, dataset="citizen-extract", version="1")
    assert written(LAND_COLUMNS, LAND_ROWS, batch=LAND_BATCH) == written(
        LAND_COLUMNS, LAND_ROWS, dataset="land-owners", batch=LAND_BATCH
    )
    with pytest.raises(ValueError, match="the columns fit none of the XML batch layouts: name the dataset"):
        written(["personal_id", "tax_code"], [])
    with pytest.raises(ValueError, match="no XML batch layout for tax-registrants"):
        written(["tax_code"], [], dataset="tax-registrants")


def test_what_the_xsd_forbids_is_refused_while_writing():
    with pytest.raises(ValueError, match="died_on: no element for it in citizen-extract.v1.xsd"):
        written(["personal_id", "died_on"], [], dataset="citizen-extract")
    with pytest.raises(ValueError, match="requires certificate_serial"):
        written(LAND_COLUMNS[1:], [], dataset="land-owners", batch=LAND_BATCH)
    with pytest.raises(ValueError, match="record 2: full_name is null, which land-owners.v1.xsd does not allow"):
        written(LAND_COLUMNS, [LAND_ROWS[0], LAND_ROWS[1][:6] + (None,) + LAND_ROWS[1][7:]], batch=LAND_BATCH)
    with pytest.raises(ValueError, match="record 1: personal_id is null, which citizen-extract"):
        written(["personal_id"], [(None,)], dataset="citizen-extract")  # not nillable: the dataset requires it
    with pytest.raises(ValueError, match="count=3, but 2 records"):
        written(LAND_COLUMNS, LAND_ROWS, batch={**LAND_BATCH, "count": 3})
    with pytest.raises(ValueError, match=r"missing: createdAt, count; unknown: note"):
        written(LAND_COLUMNS, LAND_ROWS, batch={"office": "x", "note": "y"})
    with pytest.raises(ValueError, match="record 1: .*XML compatible"):
        written(["full_name"], [("Nguyễn\x00",)], dataset="citizen-extract")


@pytest.mark.parametrize("dataset", ["citizen-extract", "land-owners"])
def test_batches_follow_their_xsd_for_lxml_and_for_stock_xmllint(dataset, tmp_path):
    xsd = BATCH_XSDS[dataset, "1"]
    document = written(COLUMNS, ROWS) if dataset == "citizen-extract" else written(LAND_COLUMNS, LAND_ROWS,
                                                                                   batch=LAND_BATCH)  # fmt: skip
    validate(etree.fromstring(document), xsd)
    if shutil.which("xmllint") is None:  # stock tool absent (Debian: libxml2-utils): lxml's check only
        return
    checked = xmllint(document, xsd, tmp_path)
    assert checked.returncode == 0 and "validates" in checked.stderr, checked.stderr
    broken = document.replace(b"001200012345", b"00120001234")
    refused = xmllint(broken, xsd, tmp_path)
    assert refused.returncode != 0 and "pattern" in refused.stderr


def test_a_batch_breaking_its_xsd_is_refused_naming_the_file_the_line_and_the_rule():
    document = written(COLUMNS, [ROWS[0], ("12345", *ROWS[1][1:])])
    with pytest.raises(InvalidDocument) as refused:
        parse_payload("citizen-extract.xml", document)
    message = str(refused.value)
    assert message.startswith("citizen-extract.xml: does not follow citizen-extract.v1.xsd: line 4:")
    assert "personalId" in message and "[0-9]{12}" in message


def test_the_same_rows_give_the_same_package_payload(exchange_engine, tmp_path, population_signer, trust):
    records = [dict(zip(COLUMNS, row, strict=True)) for row in ROWS]
    first = build(exchange_engine, tmp_path / "a", population_signer, records, name="citizens.xml")
    second = build(exchange_engine, tmp_path / "b", population_signer, records, name="citizens.xml")
    assert second.manifest.sequence == first.manifest.sequence + 1
    payload = (first.path / "data" / "citizens.xml").read_bytes()
    assert payload == (second.path / "data" / "citizens.xml").read_bytes() == written(COLUMNS, ROWS)
    assert first.manifest.files[0].sha256 == second.manifest.files[0].sha256
    assert first.manifest.files[0].media_type == "application/xml; charset=utf-8"
    assert verify_package(first.path, trust).manifest.record_count == len(ROWS)


class _Discard:
    """A sink that keeps nothing, counting what went through."""

    bytes = 0

    def write(self, data: bytes) -> int:
        self.bytes += len(data)
        return len(data)


class _Row(list):
    """A row that can be watched (weak references): is anything still holding it?"""


def test_writing_streams_without_holding_rows():
    """200,000 rows from a generator: at most the row being written is alive at any time, and the Python heap's
    peak over a shorter run stays far below the rows' size."""
    alive, most_alive = 0, 0

    def released() -> None:
        nonlocal alive
        alive -= 1

    def rows(count: int):
        nonlocal alive, most_alive
        for n in range(count):
            row = _Row((f"{n:012d}", None, f"Nguyễn Văn Số {n}", date(1990, 1, 1), "00004", f"Số {n} phố Huế",
                        "00004", None, "2026-07-02T00:00:00Z"))  # fmt: skip
            weakref.finalize(row, released)
            alive += 1
            most_alive = max(most_alive, alive)
            yield row

    sink = _Discard()
    assert write_xml(COLUMNS, rows(200_000), sink) == 200_000
    assert most_alive <= 2 and alive == 0
    assert sink.bytes > 200 * 200_000  # ~50 MB of XML went through

    tracemalloc.start()  # slow: a shorter run
    try:
        write_xml(COLUMNS, rows(20_000), _Discard())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024  # the 20,000 rows alone would take several MiB


_XML_CHARACTERS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff") | (
    st.sampled_from("\t\n\r")
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[0-9]{12}", fullmatch=True),
            st.none() | st.text(_XML_CHARACTERS, max_size=40),
            st.none() | st.dates(),
            st.none() | st.text(_XML_CHARACTERS, max_size=60),
        ),
        max_size=8,
    )
)
def test_any_rows_round_trip(rows):
    columns = ["personal_id", "place_of_birth", "date_of_birth", "permanent_address"]
    records = parse_xml_batch(written(columns, rows))
    assert records == [{c: as_text(v) for c, v in zip(columns, row, strict=True)} for row in rows]
