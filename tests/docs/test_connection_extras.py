"""Every extra of every connection type is documented in docs/connectors.md (meaning, default, example), declared in
its connection form (``connectors.get_provider_info()``), and read by its hook, with the same default in all three.
What the hooks read is found in their source, so an extra added to a hook without its line in the docs and the
form fails here."""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

from connectors import get_provider_info

ROOT = Path(__file__).resolve().parents[2]
CONNECTORS, DOC = ROOT / "connectors", ROOT / "docs" / "connectors.md"
HOOK_MODULES = {"lienthong_rest": "rest", "lienthong_soap": "soap", "lienthong_sftp": "sftp"}
READERS = {"text", "required", "number", "flag", "path", "get"}  # connectors.base.Extras, and a mapping's get
UNSET = object()


class Read:
    """One extra read in the source: where, how (``required`` or not), and its default when it has a plain one."""

    def __init__(self, function: str, method: str, default: object) -> None:
        self.function, self.method, self.default = function, method, default


def extras_read(module: str) -> dict[str, list[Read]]:
    """``extras.<reader>("key", default)`` calls in ``connectors/<module>.py``, by key."""
    namespace = vars(importlib.import_module(f"connectors.{module}"))
    found: dict[str, list[Read]] = {}
    for function in ast.walk(ast.parse((CONNECTORS / f"{module}.py").read_text(encoding="utf-8"))):
        if not isinstance(function, ast.FunctionDef):
            continue
        for call in ast.walk(function):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            owner = call.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
            if call.func.attr not in READERS or owner_name != "extras" or not call.args:
                continue
            key = call.args[0]
            assert isinstance(key, ast.Constant), f"connectors/{module}.py:{call.lineno}: an extra's name is a literal"
            given = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords), None)
            if given is None:
                default = False if call.func.attr == "flag" else None
            else:
                try:
                    default = eval(ast.unparse(given), namespace)  # a literal or a module constant
                except NameError:
                    default = UNSET  # computed in the function (the retry policy's dataclass defaults)
            found.setdefault(key.value, []).append(Read(function.name, call.func.attr, default))
    return found


def shared_reads_used_by(module: str) -> dict[str, list[Read]]:
    """What the shared modules read on a hook's behalf: a function of ``base`` or ``retry`` counts for a hook when
    the hook's module calls it, or when ``PartnerHook`` (every hook's base class) does."""
    base_source = (CONNECTORS / "base.py").read_text(encoding="utf-8")
    partner_hook = next(
        node for node in ast.parse(base_source).body if isinstance(node, ast.ClassDef) and node.name == "PartnerHook"
    )
    users = (CONNECTORS / f"{module}.py").read_text(encoding="utf-8") + ast.unparse(partner_hook)
    found: dict[str, list[Read]] = {}
    for shared in ("base", "retry"):
        for key, reads in extras_read(shared).items():
            used = [read for read in reads if re.search(rf"\b{read.function}\(", users)]
            if used:
                found.setdefault(key, []).extend(used)
    return found


def read_by(conn_type: str) -> dict[str, list[Read]]:
    module = HOOK_MODULES[conn_type]
    found = extras_read(module)
    for key, reads in shared_reads_used_by(module).items():
        found.setdefault(key, []).extend(reads)
    return found


def documented() -> dict[str, dict[str, dict[str, str]]]:
    """The extras tables of docs/connectors.md, by connection type (the section's heading names it; a table under
    another heading is common to all), then by extra: its meaning, default and example cells."""
    tables: dict[str, dict[str, dict[str, str]]] = {conn_type: {} for conn_type in HOOK_MODULES}
    section, header = "", None
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("## "):
            section = line
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if header[0] != "extra" or set(cells) <= {"---"}:
            continue
        assert header == ["extra", "meaning", "default", "example"], f"docs/connectors.md:{number}: {header}"
        name = re.fullmatch(r"`([a-z_]+)`", cells[0])
        assert name, f"docs/connectors.md:{number}: one extra per row, in backticks: {cells[0]!r}"
        row = dict(zip(header[1:], cells[1:], strict=True))
        owners = [t for t in HOOK_MODULES if f"`{t}`" in section] or list(HOOK_MODULES)
        for conn_type in owners:
            assert name.group(1) not in tables[conn_type], f"docs/connectors.md:{number}: {name.group(1)} twice"
            tables[conn_type][name.group(1)] = row
    return tables


def form(conn_type: str) -> dict[str, dict]:
    (declared,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    return declared["conn-fields"]


def as_documented(value: object) -> str:
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


@pytest.mark.parametrize("conn_type", HOOK_MODULES)
def test_the_hook_reads_exactly_the_extras_its_form_declares_and_the_docs_list(conn_type):
    read, declared, listed = set(read_by(conn_type)), set(form(conn_type)), set(documented()[conn_type])
    assert read - listed == set(), f"{conn_type}: read by the hook, not in docs/connectors.md"
    assert listed - read == set(), f"{conn_type}: in docs/connectors.md, never read by the hook"
    assert read - declared == set(), f"{conn_type}: read by the hook, not in its connection form (get_provider_info)"
    assert declared - read == set(), f"{conn_type}: in its connection form, never read by the hook"


@pytest.mark.parametrize("conn_type", HOOK_MODULES)
def test_each_extra_has_one_default_in_the_hook_the_form_and_the_docs(conn_type):
    rows = documented()[conn_type]
    for key, reads in read_by(conn_type).items():
        row, field = rows[key], form(conn_type)[key]
        assert row["meaning"] and re.search(r"`[^`]+`", row["example"]), f"{conn_type} {key}: meaning and example"
        if all(read.method == "required" for read in reads):
            assert row["default"] == "required" and "default" not in field["schema"], f"{conn_type} {key}"
            continue
        declared = field["schema"].get("default")
        defaults = [read.default for read in reads if read.default is not UNSET]
        assert all(default == declared for default in defaults), (
            f"{conn_type} {key}: the hook's default {defaults} is not the form's {declared!r}"
        )
        if declared is None:
            assert not row["default"].startswith("`"), f"{conn_type} {key}: the docs give a default the form lacks"
        else:
            assert row["default"].startswith(as_documented(declared)), (
                f"{conn_type} {key}: the docs say {row['default']!r}, the form {declared!r}"
            )


def test_the_walk_finds_the_soap_signing_extras_and_the_shared_ones():
    """A guard on the guard: what the issue found undocumented, and what reaches a hook through a shared module."""
    soap, sftp = read_by("lienthong_soap"), read_by("lienthong_sftp")
    assert {"signing_cert", "signing_key", "scheme", "client_cert", "retries"} <= set(soap)
    assert "client_cert" not in sftp and "retries" in sftp
