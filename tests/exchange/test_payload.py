"""Reading payload files by their suffix (``exchange.payload``); XML batches have their own tests."""

import io

import pytest

from exchange.payload import csv_rows, parse_payload
from exchange.safe_xml import InvalidDocument


def test_a_csv_line_with_the_wrong_number_of_fields_is_named():
    assert parse_payload("a.csv", b"x,y\r\n1,2\r\n\r\n3,4\r\n") == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    with pytest.raises(ValueError, match=r"a\.csv line 3: 3 fields where the header has 2"):
        parse_payload("a.csv", b"x,y\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=r"a\.csv line 2: 1 fields"):
        parse_payload("a.csv", b"x,y\n1\n")
    assert parse_payload("a.csv", b"") == []


def test_csv_rows_are_read_as_they_are_iterated_and_errors_name_the_file_and_line():
    text = io.TextIOWrapper(io.BytesIO(b"x,y\n1,2\n3,4\n5\n"), encoding="utf-8", newline="")
    header, rows = csv_rows("a.csv", text)
    assert header == ["x", "y"] and next(rows) == ["1", "2"] and next(rows) == ["3", "4"]
    with pytest.raises(InvalidDocument, match=r"a\.csv line 4: 1 fields where the header has 2"):
        next(rows)
    with pytest.raises(InvalidDocument, match=r"a\.csv line 1: the header repeats x"):
        csv_rows("a.csv", io.StringIO("x,y,x\n1,2,3\n"))


def test_files_that_cannot_be_read_are_invalid_documents_naming_the_file():
    with pytest.raises(InvalidDocument, match=r"a\.csv: not UTF-8 at byte 5"):
        parse_payload("a.csv", b"x,y\n1\xff,2\n")
    with pytest.raises(InvalidDocument, match=r"a\.jsonl line 2: not JSON \(Expecting value, column 1\)"):
        parse_payload("a.jsonl", b'{"x": 1}\n{"x": \n')
    with pytest.raises(InvalidDocument, match=r"a\.txt: no reader for \.txt"):
        parse_payload("a.txt", b"x")
    assert parse_payload("a.jsonl", b'{"x": 1}\n\n{"x": true}\n') == [{"x": 1}, {"x": True}]
