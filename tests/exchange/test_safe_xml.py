"""XML from outside: DTDs, entities and external references are refused before anything is expanded."""

from __future__ import annotations

import pytest

from exchange.safe_xml import InvalidDocument, UnsafeDocument, parse_untrusted, schema_problem
from exchange.xml_payload import parse_xml_batch
from partners.http import BILLION_LAUGHS

XXE = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd"><r/>'
LAND_BATCH = """<?xml version="1.0" encoding="UTF-8"?>
<OwnersBatch xmlns="urn:lienthong:land:owners:v1" office="VPĐKĐĐ Hà Nội" createdAt="2026-07-01T00:00:00Z" count="1">
  <owner>
    <certificateSerial>CS 123456</certificateSerial>
    <parcel><communeCode>00004</communeCode><mapSheet>12</mapSheet><parcelNumber>345</parcelNumber></parcel>
    <personalId>001200012345</personalId>
    <fullName>Nguyễn Thị Thuỷ</fullName>
    <status>active</status>
  </owner>
</OwnersBatch>""".encode()


@pytest.mark.parametrize("document", [XXE, BILLION_LAUGHS, EXTERNAL_DTD], ids=["xxe", "billion-laughs", "external"])
def test_documents_declaring_a_dtd_or_entities_are_refused(document):
    with pytest.raises(UnsafeDocument):
        parse_untrusted(document)


def test_a_dtd_hidden_in_another_encoding_is_still_refused():
    with pytest.raises((UnsafeDocument, InvalidDocument)):
        parse_untrusted(XXE.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"').decode().encode("utf-16"))


def test_a_land_batch_is_read_after_its_schema_is_checked():
    (owner,) = parse_xml_batch(LAND_BATCH)
    assert owner["certificate_serial"] == "CS 123456" and owner["commune_code"] == "00004"
    assert owner["personal_id"] == "001200012345" and owner["full_name"] == "Nguyễn Thị Thuỷ"
    assert owner["created_at"] == "2026-07-01T00:00:00Z"  # the batch's createdAt: the date the owners speak for


def test_a_land_batch_that_breaks_its_schema_is_refused():
    with pytest.raises(InvalidDocument, match="land-owners"):
        parse_xml_batch(LAND_BATCH.replace(b"CS 123456", b"123456"))


def test_errors_name_the_line_the_element_and_the_rule_never_the_value():
    """libxml2 quotes the value it refuses (a personal ID) before the schema's side of the rule; only the element,
    the rule and the schema's side are kept, whatever the value holds; a name the schema does not declare is not
    repeated, and an unknown message keeps its code only."""
    declared = frozenset({"personalId", "a"})
    hostile = "001200012345' is not accepted by the pattern 'x"
    pattern = (
        f"Element '{{urn:x}}personalId': [facet 'pattern'] The value '{hostile}' is not accepted by the pattern "
        "'[0-9]{12}'."
    )
    assert schema_problem(pattern, "SCHEMAV_CVC_PATTERN_VALID", declared) == (
        "element personalId: does not match the pattern '[0-9]{12}'"
    )
    unexpected = "Element '{urn:x}x001200012345': This element is not expected. Expected is ( {urn:x}personalId )."
    assert schema_problem(unexpected, "SCHEMAV_ELEMENT_CONTENT", declared) == (
        "element (not in the schema): This element is not expected. Expected is ( personalId )"
    )
    fixed = "Element '{urn:x}a': The value '001200012345' does not match the fixed value constraint 'b'."
    assert schema_problem(fixed, "SCHEMAV_CVC_ELT_5_2_2_2_2", declared) == (
        "element a: breaks the schema's rule SCHEMAV_CVC_ELT_5_2_2_2_2"
    )
    with pytest.raises(InvalidDocument) as broken:
        parse_untrusted(b"<a>\xc3\x28001200012345</a>")
    assert str(broken.value) == "not well-formed XML: line 1, column 4: invalid encoding"
