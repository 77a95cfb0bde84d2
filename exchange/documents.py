"""Schema documents as the loaders read them: a YAML file checked by a JSON Schema, whose every problem names the
file and the line; and the dataset schemas those documents refer to. Agreements and agencies are read this way.

An agreement can come from an operator's folder, so the YAML is read bounded (``MAX_DOCUMENT_BYTES``,
``MAX_NESTING``) and without anchors or aliases, which no agreement needs and which make a few lines expand into
billions of nodes: each is refused while the document is composed, before a Python object is built.

>>> document = read_yaml(path, "agencies/agency.schema.json", AgencyError)
>>> if problem:
...     document.fail(["publishes", "dataset"], None, "no such dataset")  # AgencyError: path:line: message
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import yaml
from jsonschema import Draft202012Validator

from exchange.errors import printable
from lienthong.settings import schema_file

# The largest agreement or agency file is about 3 KiB; a hundred times that is room for any real one.
MAX_DOCUMENT_BYTES = 256 * 1024
# The deepest file nests 5 levels (agreement > directions > inbound > validation > setting); the composer and the
# constructor recurse once per level, so a bound far below Python's recursion limit (1,000) keeps them safe.
MAX_NESTING = 20


class DocumentError(ValueError):
    """A schema document that cannot be used, with the file and line where the problem is."""

    def __init__(self, source: Path, line: int, message: str):
        self.source, self.line, self.problem = source, line, printable(message)  # keys and values are the file's
        super().__init__(f"{source}:{line}: {self.problem}")


@dataclass(frozen=True)
class YamlDocument:
    """A YAML file that passed its JSON Schema: the parsed ``content`` and the node tree that knows the lines."""

    source: Path
    content: Any
    root: yaml.Node
    error: type[DocumentError]

    def line(self, path: Sequence[str | int], key: str | None = None) -> int:
        """1-based line of the node at ``path`` (keys and indexes from the top), or of its key ``key``."""
        return line_of(node_at(self.root, list(path)), key)

    def fail(self, path: Sequence[str | int], key: str | None, message: str) -> NoReturn:
        """Raise the document's error at the node at ``path`` (or its key ``key``)."""
        raise self.error(self.source, self.line(path, key), message)


def read_yaml(path: Path, schema: str, error: type[DocumentError]) -> YamlDocument:
    """Read a YAML file and check it against the JSON Schema ``schema`` (a path under the schema folders). Not YAML,
    empty, a key twice in one mapping, or the first violation of the schema: ``error`` naming the file and line."""
    path = Path(path)
    text = _document_text(path, error)
    try:
        loader = _BoundedLoader(text)
        root = loader.get_single_node()
        content = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as problem:
        mark = problem.problem_mark or problem.context_mark
        raise error(path, mark.line + 1 if mark else 1, f"not valid YAML: {problem.problem}") from None
    except yaml.reader.ReaderError as problem:  # a character YAML does not allow (NUL, other controls)
        line = text.count("\n", 0, problem.position) + 1
        raise error(path, line, f"not valid YAML: character #x{problem.character:04x} is not allowed") from None
    if root is None:
        raise error(path, 1, "the file is empty")
    _refuse_duplicate_keys(path, root, error)
    document = YamlDocument(path, content, root, error)
    violations = _validator(schema_file(schema)).iter_errors(content)
    violations = sorted(violations, key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if violations:
        violation, key = violations[0], None
        where = list(violation.absolute_path)
        if violation.validator == "additionalProperties" and isinstance(violation.instance, dict):
            allowed = set(violation.schema.get("properties", {}))
            key = next(k for k in violation.instance if k not in allowed)
            message = f"unknown key '{key}' at {_where(where)}"
        else:
            message = f"{_where(where)}: {violation.message}"
            if where and isinstance(where[-1], str):  # the line of the key whose value is wrong
                where, key = where[:-1], where[-1]
        document.fail(where, key, message)
    return document


def _document_text(path: Path, error: type[DocumentError]) -> str:
    """The file's text, read only when it is a regular file within ``MAX_DOCUMENT_BYTES`` and UTF-8."""
    try:
        if not path.is_file():
            raise error(path, 1, "no such file" if not path.exists() else "not a regular file")
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as problem:
        raise error(path, 1, f"cannot be read ({problem.strerror or type(problem).__name__})") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise error(path, 1, f"larger than {MAX_DOCUMENT_BYTES:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(path, data.count(b"\n", 0, problem.start) + 1, "not UTF-8") from None


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses an anchor or an alias, and nesting deeper than ``MAX_NESTING``, as it
    composes the node tree; a value its constructor cannot make (a date that does not exist, an integer over
    Python's digit limit) is refused at its line, without the value."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors and aliases are not allowed", event.start_mark)
        if self._depth == MAX_NESTING:
            raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_NESTING} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError):
            kind = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(None, None, f"not a valid {kind}", node.start_mark) from None


def dataset_schema_path(dataset: str, version: int) -> Path:
    """The JSON Schema of a dataset version: ``datasets/<dataset>.v<version>.json`` in the schema folders."""
    return schema_file(f"datasets/{dataset}.v{version}.json")


def dataset_fields(dataset: str, version: int) -> dict[str, dict] | None:
    """The fields of a dataset version, in order, each with its JSON Schema; None when there is no such schema."""
    path = dataset_schema_path(dataset, version)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))["properties"]


@cache
def _validator(path: Path) -> Draft202012Validator:
    return Draft202012Validator(json.loads(path.read_text(encoding="utf-8")))


def _where(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def node_at(root: yaml.Node, path: list) -> yaml.Node:
    """The node at ``path``, or the deepest one on the way that exists."""
    node = root
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), node)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
    return node


def line_of(node: yaml.Node, key: str | None = None) -> int:
    """1-based line of a mapping's key, or of the node itself."""
    if key is not None and isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == key:
                return k.start_mark.line + 1
    return node.start_mark.line + 1


def _refuse_duplicate_keys(path: Path, node: yaml.Node, error: type[DocumentError]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key, value in node.value:
            if key.value in seen:
                raise error(path, key.start_mark.line + 1, f"key '{key.value}' appears twice")
            seen.add(key.value)
            _refuse_duplicate_keys(path, value, error)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item, error)
