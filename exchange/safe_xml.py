"""Parsing XML that comes from outside: no DTD, no entities, no network, no huge trees.

Anything with a document type declaration is refused before it is parsed (XXE, billion laughs, external DTDs);
what remains is parsed by lxml with entity resolution and network access off, and checked again.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from lxml import etree

MAX_BYTES = 64 * 1024 * 1024


class UnsafeDocument(ValueError):
    """The document declares a DTD or entities, or is too large: refused without being expanded."""


class InvalidDocument(ValueError):
    """The document is not well-formed, or does not follow its schema."""


def _parser(long_text: bool = False) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=long_text,
        remove_pis=True,
    )


def parse_untrusted(data: bytes, *, long_text: bool = False) -> etree._Element:
    """Parse a document from outside. ``long_text`` lifts libxml2's 10 MB limit on one text node (a SOAP request
    carrying a package in base64 has one); the size cap, and the refusal of DTDs and entities, stay."""
    if len(data) > MAX_BYTES:
        raise UnsafeDocument(f"the document has {len(data):,} bytes, over {MAX_BYTES:,}")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeDocument("the document declares a DTD or entities")
    try:
        root = etree.fromstring(data, _parser(long_text))
    except etree.XMLSyntaxError as error:
        raise InvalidDocument(f"not well-formed XML ({error})") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise UnsafeDocument("the document declares a DTD")
    return root


@cache
def schema(path: Path) -> etree.XMLSchema:
    """An XSD from ``schemas/``, itself parsed with the same precautions."""
    return etree.XMLSchema(etree.parse(str(path), _parser()))


def validate(root: etree._Element, xsd: Path) -> None:
    checker = schema(xsd)
    if not checker.validate(root):
        error = checker.error_log.last_error
        raise InvalidDocument(f"does not follow {xsd.name}: line {error.line}: {error.message}")
