"""XML batch payloads: one element per record, laid out by a versioned XSD per dataset (``schemas/xsd``).

The XSD is the only description of the layout: the batch root, its record element, and the record's elements
in order, nested ones (the land owners' ``parcel``) included. A record's fields are the snake_case names of its
leaf elements (``certificateSerial`` → ``certificate_serial``, ``parcel/communeCode`` → ``commune_code``),
which is how ``parse_xml_batch`` reads them back, so writing and reading are symmetric.

Writing streams (``lxml.etree.xmlfile``: one record in memory at a time) and is deterministic: the same rows give
the same bytes, nothing of the moment is written. UTF-8, text as given (NFC as recorded), one record per line
unless its text holds line breaks (a schema error names the line, hence the record). A null (``None``, or an
empty string as in the CSV payloads) is ``xsi:nil="true"`` where the XSD makes the element nillable (citizen
extract), left out in a layout without nillable elements where the element is optional (land owners), and an
error otherwise. A field the columns do not carry is left out: that is how an agreement's subset of the citizen
extract is written.

Reading (``parse_xml_batch``, both sides: the partners' intake and the population side's inbound) takes a batch
from outside: hardened parse (``exchange.safe_xml``: no DTD, no entities, no network), the XSD of the dataset the
manifest names (a batch in another layout is refused: the file does not choose its own schema), then one flat
record per record element. The whole document is parsed in memory. A batch that says when
it was made (the land owners' ``createdAt``) gives that to each of its records as ``created_at``: the date the
records speak for (the land owners' record element has no date of its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from exchange.safe_xml import InvalidDocument, parse_untrusted, validate
from lienthong.settings import schema_file
from lienthong_verify.schemas import date_time_text

# The datasets that have an XML batch layout: (name, version) → XSD. A batch read from outside is read with the
# layout of the dataset its manifest names; its root must be that layout's, in the XSD's targetNamespace.
BATCH_XSDS = {
    ("citizen-extract", "1"): schema_file("xsd/citizen-extract.v1.xsd"),
    ("land-owners", "1"): schema_file("xsd/land-owners.v1.xsd"),
}
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSI_NIL = f"{{{XSI}}}nil"
_NIL = {XSI_NIL: "true"}
_XS = "{http://www.w3.org/2001/XMLSchema}"
BATCH_DATE = "createdAt"  # the root attribute saying when a batch was made (land owners): see parse_xml_batch


def snake_case(name: str) -> str:
    """``certificateSerial`` → ``certificate_serial``: an element's name as a record field."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class Node:
    """An element of the record: a leaf carrying one field, or a group (``parcel``) of nested elements."""

    name: str
    tag: str  # the qualified name, {namespace}name
    field: str | None  # None for a group
    required: bool
    nillable: bool
    children: tuple[Node, ...] = ()

    def fields(self) -> Iterator[str]:
        if self.field is not None:
            yield self.field
        for child in self.children:
            yield from child.fields()


@dataclass(frozen=True)
class XmlLayout:
    """The batch layout an XSD describes."""

    xsd: Path
    namespace: str
    root: str
    record: str
    attributes: tuple[str, ...]  # the root's required attributes (land: office, createdAt, count)
    nodes: tuple[Node, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(field for node in self.nodes for field in node.fields())

    @property
    def required(self) -> frozenset[str]:
        """The fields every record must carry (required leaves under required groups)."""
        return frozenset(field for node in self.nodes if node.required for field in _required(node))

    @property
    def nillable(self) -> bool:
        return any(_any_nillable(node) for node in self.nodes)

    def fits(self, columns: Sequence[str]) -> bool:
        return set(columns) <= set(self.fields) and self.required <= set(columns)

    def check(self, columns: Sequence[str]) -> None:
        unknown = [column for column in columns if column not in self.fields]
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: no element for it in {self.xsd.name}")
        missing = sorted(self.required - set(columns))
        if missing:
            raise ValueError(f"{self.xsd.name} requires {', '.join(missing)} in every record")

    def tag(self, name: str) -> str:
        return f"{{{self.namespace}}}{name}"


def _required(node: Node) -> Iterator[str]:
    if node.field is not None:
        yield node.field
    for child in node.children:
        if child.required:
            yield from _required(child)


def _any_nillable(node: Node) -> bool:
    return node.nillable or any(_any_nillable(child) for child in node.children)


@cache
def xml_layout(dataset: str, version: str = "1") -> XmlLayout:
    """The layout of a dataset's XML batches, read from its XSD."""
    xsd = BATCH_XSDS.get((dataset, str(version)))
    if xsd is None:
        known = ", ".join(f"{name} v{v}" for name, v in BATCH_XSDS)
        raise ValueError(f"no XML batch layout for {dataset} v{version}; known: {known}")
    schema = etree.parse(str(xsd), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
    types = {element.get("name"): element for element in schema.findall(f"{_XS}complexType")}
    (root,) = schema.findall(f"{_XS}element")
    batch = root.find(f"{_XS}complexType")
    (record,) = batch.findall(f"{_XS}sequence/{_XS}element")
    attributes = tuple(a.get("name") for a in batch.findall(f"{_XS}attribute") if a.get("use") == "required")
    namespace = schema.get("targetNamespace")
    return XmlLayout(xsd, namespace, root.get("name"), record.get("name"), attributes,
                     _nodes(_complex_type(record, types), types, namespace))  # fmt: skip


def _complex_type(element: etree._Element, types: dict[str, etree._Element]) -> etree._Element | None:
    """The element's complex type, inline or named; None for a simple one."""
    inline = element.find(f"{_XS}complexType")
    return inline if inline is not None else types.get(element.get("type", "").rpartition(":")[2])


def _nodes(complex_type: etree._Element, types: dict[str, etree._Element], namespace: str) -> tuple[Node, ...]:
    nodes = []
    for element in complex_type.findall(f"{_XS}sequence/{_XS}element"):
        name, nested = element.get("name"), _complex_type(element, types)
        nodes.append(Node(
            name=name,
            tag=f"{{{namespace}}}{name}",
            field=None if nested is not None else snake_case(name),
            required=element.get("minOccurs", "1") != "0",
            nillable=element.get("nillable") == "true",
            children=_nodes(nested, types, namespace) if nested is not None else (),
        ))  # fmt: skip
    return tuple(nodes)


def layout_for(columns: Sequence[str], dataset: str | None = None, version: str = "1") -> XmlLayout:
    """The dataset's layout; without a dataset, the one layout whose fields the columns fit (the pipeline's
    writer knows only the columns: an agreement's subset of the citizen extract fits only the extract)."""
    if dataset is not None:
        layout = xml_layout(dataset, version)
        layout.check(columns)
        return layout
    fitting = [xml_layout(*key) for key in BATCH_XSDS if xml_layout(*key).fits(columns)]
    if len(fitting) != 1:
        names = ", ".join(layout.xsd.name for layout in fitting) or "none"
        raise ValueError(f"the columns fit {names} of the XML batch layouts: name the dataset")
    return fitting[0]


def write_xml(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    sink,
    *,
    dataset: str | None = None,
    version: str = "1",
    batch: Mapping[str, Any] | None = None,
) -> int:
    """An XML batch of the dataset (see ``layout_for``), one record element per row, streamed into ``sink``
    (anything with ``write(bytes)``); returns the number of rows. ``batch`` gives the root's attributes where
    the XSD asks for some (land: office, createdAt, count); a ``count`` must be the number of rows written."""
    layout = layout_for(columns, dataset, version)
    attributes = _attributes(layout, batch or {})
    nsmap = {None: layout.namespace, **({"xsi": XSI} if layout.nillable else {})}
    count = 0
    with etree.xmlfile(sink, encoding="utf-8") as xml:
        xml.write_declaration()
        with xml.element(layout.tag(layout.root), attributes, nsmap=nsmap):
            xml.write("\n")
            for row in rows:
                count += 1
                values = dict(zip(columns, row, strict=True))
                try:
                    with xml.element(layout.tag(layout.record)):
                        _write(xml, layout, layout.nodes, values)
                except (TypeError, ValueError) as error:
                    raise ValueError(f"record {count}: {error}") from None
                xml.write("\n")
    if "count" in attributes and int(attributes["count"]) != count:
        raise ValueError(f"the batch says count={attributes['count']}, but {count} records were written")
    return count


def _attributes(layout: XmlLayout, batch: Mapping[str, Any]) -> dict[str, str]:
    missing = [name for name in layout.attributes if batch.get(name) is None]
    unknown = sorted(set(batch) - set(layout.attributes))
    if missing or unknown:
        wanted, missing, unknown = (", ".join(names) or "none" for names in (layout.attributes, missing, unknown))
        raise ValueError(f"{layout.xsd.name}: the batch's attributes are {wanted} (missing: {missing}; "
                         f"unknown: {unknown})")  # fmt: skip
    return {name: _text(batch[name]) for name in layout.attributes}


def _write(xml, layout: XmlLayout, nodes: tuple[Node, ...], values: dict[str, Any]) -> None:
    for node in nodes:
        if node.children:
            if node.required or any(not _is_null(values.get(field)) for field in node.fields()):
                with xml.element(node.tag):
                    _write(xml, layout, node.children, values)
        elif node.field in values:
            value = values[node.field]
            if not _is_null(value):
                with xml.element(node.tag):
                    xml.write(_text(value))
            elif node.nillable:
                with xml.element(node.tag, _NIL):
                    pass
            elif node.required or layout.nillable:
                raise ValueError(f"{node.field} is null, which {layout.xsd.name} does not allow")


def _is_null(value: Any) -> bool:
    return value is None or value == ""


def _text(value: Any) -> str:
    """Text as given; dates ISO 8601, timestamps ISO 8601 in UTC, numbers as Python writes them."""
    if isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return date_time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not serialisable in an XML batch")


# -- reading ----------------------------------------------------------------------------------------------------


@cache
def _layouts_by_namespace() -> dict[str, XmlLayout]:
    return {layout.namespace: layout for layout in (xml_layout(*key) for key in BATCH_XSDS)}


def batch_layout(namespace: str) -> XmlLayout:
    """The layout of the XML batches in a namespace; ``InvalidDocument`` for a namespace with none."""
    layout = _layouts_by_namespace().get(namespace)
    if layout is None:  # the namespace is the sender's text: not echoed
        raise InvalidDocument("no schema for XML batches in the root element's namespace")
    return layout


def parse_xml_batch(data: bytes, dataset: str | None = None, version: str = "1") -> list[dict[str, Any]]:
    """An XML batch from outside (land owners, citizen extract): hardened parse, the check against the XSD of
    ``dataset`` (the manifest's schema; without it, of the batch's namespace), then one flat record per record
    element: its leaf elements by their field names (nested ones flattened; an absent element left out, an
    ``xsi:nil`` one None), and the batch's ``created_at`` where the root says when it was made. A batch whose root is
    not the dataset's, or whose ``count`` is not the records it holds, is refused. Raises ``UnsafeDocument`` or
    ``InvalidDocument`` (the line and the rule)."""
    root = parse_untrusted(data)
    if dataset is None:
        layout = batch_layout(etree.QName(root).namespace or "")
    else:
        layout = _expected_layout(dataset, version)
        if root.tag != layout.tag(layout.root):
            other = _layouts_by_namespace().get(etree.QName(root).namespace or "")
            found = f"a {other.xsd.name} batch" if other else "not a batch of any XSD known here"
            asks = f"the manifest's schema {dataset} v{version} asks for {layout.root} of {layout.xsd.name}"
            raise InvalidDocument(f"line {root.sourceline}: {asks}, the file is {found}")
    validate(root, layout.xsd)
    made = root.get(BATCH_DATE)
    batch = {} if made is None else {snake_case(BATCH_DATE): made}
    records = [{**_flatten(record), **batch} for record in root.iterchildren(layout.tag(layout.record))]
    if "count" in layout.attributes and _number(root.get("count")) != str(len(records)):
        raise InvalidDocument(f"line {root.sourceline}: the batch's count is not the {len(records)} records it holds")
    return records


def _expected_layout(dataset: str, version: str) -> XmlLayout:
    try:
        return xml_layout(dataset, str(version))
    except ValueError:  # the manifest's text, checked against the known layouts only
        raise InvalidDocument("the manifest's schema has no XML batch layout") from None


def _number(text: str) -> str:
    """An xsd:nonNegativeInteger as its digits, without converting it (a 5,000-digit count is not an int)."""
    return text.strip().lstrip("+").lstrip("0") or "0"


def _flatten(element: etree._Element) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for child in element.iterchildren(tag=etree.Element):
        if len(child):
            record.update(_flatten(child))
        else:
            record[snake_case(etree.QName(child).localname)] = child.text
    return record
