"""Reading payload files by their suffix (``exchange.payload``); XML batches have their own tests."""

import pytest

from exchange.payload import parse_payload


def test_a_csv_line_with_the_wrong_number_of_fields_is_named():
    assert parse_payload("a.csv", b"x,y\r\n1,2\r\n\r\n3,4\r\n") == [{"x": "1", "y": "2"}, {"x": "3", "y": "4"}]
    with pytest.raises(ValueError, match=r"a\.csv line 3: 3 fields where the header has 2"):
        parse_payload("a.csv", b"x,y\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=r"a\.csv line 2: 1 fields"):
        parse_payload("a.csv", b"x,y\n1\n")
    assert parse_payload("a.csv", b"") == []
