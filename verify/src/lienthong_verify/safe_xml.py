"""Parsing XML that comes from outside: no DTD, no entities, no network, no huge trees.

Anything with a document type declaration is refused before it is parsed (XXE, billion laughs, external DTDs);
what remains is parsed by lxml with entity resolution and network access off, and checked again.

libxml2's own messages quote what they read (a schema error quotes the offending value, a personal ID; an encoding
error the bytes), and they end up in signed receipts and logs. A refusal here says where (the line, the element)
and which rule, built from the schema's side of the message only: never the document's values.
"""

from __future__ import annotations

import re
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
        raise InvalidDocument(f"not well-formed XML: {_syntax_problem(error)}") from None
    info = root.getroottree().docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise UnsafeDocument("the document declares a DTD")
    return root


@cache
def schema(path: Path) -> etree.XMLSchema:
    """An XSD from ``schemas/``, itself parsed with the same precautions."""
    return etree.XMLSchema(etree.parse(str(path), _parser()))


def validate(root: etree._Element, xsd: Path) -> None:
    """Check ``root`` against the XSD; ``InvalidDocument`` names the first error's line, element and rule."""
    checker = schema(xsd)
    if not checker.validate(root):
        error = checker.error_log[0]
        problem = schema_problem(error.message, error.type_name, declared_names(xsd))
        raise InvalidDocument(f"does not follow {xsd.name}: line {error.line}: {problem}")


@cache
def declared_names(path: Path) -> frozenset[str]:
    """The element and attribute names an XSD declares: the only names of a document a refusal repeats."""
    tree = etree.parse(str(path), _parser())
    xs = "{http://www.w3.org/2001/XMLSchema}"
    return frozenset(node.get("name") for node in tree.iter(f"{xs}element", f"{xs}attribute") if node.get("name"))


def _syntax_problem(error: etree.XMLSyntaxError) -> str:
    """Where the document stops being XML, and libxml2's name for the rule (``tag name mismatch``), not its
    message, which may quote the bytes or names it read."""
    line, column = error.position
    rule = _ERROR_NAMES.get(error.code, "ERR_UNKNOWN").removeprefix("ERR_").lower().replace("_", " ")
    return f"line {line}, column {column}: {rule}"


_ERROR_NAMES = {code: name for name, code in vars(etree.ErrorTypes).items() if name.isupper()}

# libxml2's schema messages are "Element '{ns}name'(, attribute 'name')?: <rule>"; names cannot hold a quote. A rule
# quoting a value keeps only the schema's side, which libxml2 writes after the value: the leading greedy ``.*`` eats
# the value, whatever it holds. Rules that quote no value are kept as they are; any other is named by its code.
_ELEMENT = re.compile(
    r"Element '(?:\{[^}']*\})?(?P<element>[^']*)'(?:, attribute '(?P<attribute>[^']*)')?: (?P<rule>.*)", re.S
)
_WITH_VALUE = {
    r"\[facet 'pattern'\] .*' is not accepted by the pattern '(?P<p>.*)'\.": "does not match the pattern '{p}'",
    r"\[facet 'enumeration'\] .*' is not an element of the set (?P<p>\{.*\})\.": "is not one of {p}",
    r"\[facet '(?P<p>\w+)'\] .*": "breaks the {p} facet of its type",
    r".*' is not a valid value of the (?P<p>(?:local )?\w+ type(?: '[^']*')?)\.": "is not a valid value of the {p}",
}
_WITH_VALUE_RULES = tuple((re.compile(pattern, re.S), text) for pattern, text in _WITH_VALUE.items())
_WITHOUT_VALUE = (
    "This element is not expected",
    "Missing child element",
    "The attribute '",  # … is required but missing / is not allowed
    "Character content other than whitespace is not allowed",
    "Element content is not allowed",
    "The element is not 'nillable'",
    "No matching global declaration",
)
_NAMESPACE = re.compile(r"\{\w[\w+.-]*:[^}'\s]*\}")  # {urn:…}name in the lists of expected elements
_QUOTED = re.compile(r"'([^']*)'")
_LIBXML2_WORDS = frozenset({"element-only", "mixed", "empty", "nillable"})  # quoted in its rules, not in documents


def schema_problem(message: str, code: str, declared: frozenset[str] = frozenset()) -> str:
    """A libxml2 schema error (its ``message`` and rule ``code``) as ``element personalId: does not match the pattern
    '[0-9]{12}'``: the element (and attribute), the rule and the schema's side of it, never the document's value. A
    name is repeated only when the schema ``declared`` it (a sender may write anything in an element's name)."""

    def named(name: str) -> str:
        return name if name in declared else "(not in the schema)"

    where, rule = "", message
    if matched := _ELEMENT.fullmatch(message):
        attribute = matched["attribute"]
        where = f"element {named(matched['element'])}" + (f", attribute {named(attribute)}" if attribute else "") + ": "
        rule = matched["rule"]
    for pattern, text in _WITH_VALUE_RULES:
        if found := pattern.fullmatch(rule):
            return where + text.format(p=found["p"])
    if rule.startswith(_WITHOUT_VALUE) and rule.isprintable():
        kept = _QUOTED.sub(lambda q: q[0] if q[1] in declared or q[1] in _LIBXML2_WORDS else "'…'", rule)
        return where + _NAMESPACE.sub("", kept).rstrip(".")
    return where + f"breaks the schema's rule {code}"
