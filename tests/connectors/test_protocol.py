"""One delivery protocol (``connectors.base.PartnerHook``): every transport implements it, and nothing outside
``connectors/`` tells the transports apart by name — the feeds and the DAGs ask the hook instead."""

from __future__ import annotations

import ast
import inspect
from datetime import timedelta
from pathlib import Path

import pytest
from airflow.sdk import BaseSensorOperator

from connectors import get_provider_info
from connectors.base import DeliveredReceipt, PartnerHook
from connectors.transport import TRANSPORTS, hook_class, partner_hook

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_CONNECTORS = ("feeds", "dags", "lienthong", "plugins")
PROTOCOL = ("deliver_package", "outbox_packages", "download_package", "send_receipt", "get_conn", "test_connection")
LATER = ("fetch_receipt", "receipt_sensor")  # what a transport whose receipt comes later fills in too


def overrides(cls: type, name: str) -> bool:
    return getattr(cls, name) is not getattr(PartnerHook, name)


@pytest.mark.parametrize("kind", TRANSPORTS)
def test_every_transport_is_a_hook_that_implements_the_whole_protocol(kind):
    cls = hook_class(kind)
    assert issubclass(cls, PartnerHook) and not inspect.isabstract(cls)
    assert all(overrides(cls, name) for name in PROTOCOL)
    assert isinstance(cls.receipt_comes_later, bool)
    assert all(overrides(cls, name) for name in LATER) == cls.receipt_comes_later
    inspect.signature(cls.deliver_package).bind(cls("some_connection"), Path("p.zip"), "package-id")
    assert isinstance(partner_hook(kind, "some_connection"), cls)


def test_the_registry_names_every_hook_airflow_knows_and_no_other():
    declared = {c["hook-class-name"] for c in get_provider_info()["connection-types"]}
    assert set(TRANSPORTS.values()) == declared
    with pytest.raises(ValueError, match="unknown transport 'ftp'"):
        hook_class("ftp")


@pytest.mark.parametrize("kind", [kind for kind in TRANSPORTS if hook_class(kind).receipt_comes_later])
def test_a_transport_whose_receipt_comes_later_gives_the_deferrable_sensor_that_waits_for_it(kind):
    sensor = hook_class(kind).receipt_sensor(
        task_id="wait_for_receipt",
        conn_id="some_connection",
        package_name="pkg",
        pool="partner-x",
        timeout=timedelta(hours=2),
    )
    assert isinstance(sensor, BaseSensorOperator) and sensor.deferrable
    assert (sensor.task_id, sensor.pool, sensor.timeout) == ("wait_for_receipt", "partner-x", 7200)
    assert "package_name" in sensor.template_fields


@pytest.mark.parametrize("kind", [kind for kind in TRANSPORTS if not hook_class(kind).receipt_comes_later])
def test_a_transport_that_answers_with_the_receipt_has_none_to_wait_for(kind):
    cls = hook_class(kind)
    with pytest.raises(NotImplementedError, match="answers the delivery with the receipt"):
        cls("some_connection").fetch_receipt("pkg")
    with pytest.raises(NotImplementedError):
        cls.receipt_sensor(task_id="wait_for_receipt", conn_id="some_connection", package_name="pkg")


def test_a_transport_that_leaves_out_an_operation_cannot_be_made():
    class Incomplete(PartnerHook):
        conn_name_attr, default_conn_name = "x_conn_id", "x_default"

        def deliver_package(self, package_zip: Path, package_id: str) -> None:
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_a_receipt_travels_in_json_as_base64_and_comes_back_the_same_bytes():
    receipt = DeliveredReceipt(b'{"status":"accepted"}\n', bytes(range(256)))
    assert DeliveredReceipt.from_base64(receipt.as_base64()) == receipt
    assert set(receipt.as_base64()) == {"receipt", "signature"}


# -- no transport's name outside connectors/ ---------------------------------------------------------------------


def _names_a_transport(node: ast.AST) -> bool:
    """A transport's name, a collection of them, or an attribute called ``transport``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.lower() in TRANSPORTS
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return any(_names_a_transport(element) for element in node.elts)
    return isinstance(node, ast.Attribute) and node.attr == "transport"


def transport_branches(source: str) -> list[int]:
    """The lines that tell transports apart by name: a comparison with a transport's name or with ``.transport``
    (``==``, ``!=``, ``in``), a ``match`` on either, a dict keyed by transport names."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            found = any(_names_a_transport(operand) for operand in (node.left, *node.comparators))
        elif isinstance(node, ast.Match):
            found = _names_a_transport(node.subject) or any(
                _names_a_transport(value) for case in node.cases for value in ast.walk(case.pattern)
            )
        elif isinstance(node, ast.Dict):
            found = any(key is not None and _names_a_transport(key) for key in node.keys)
        else:
            continue
        if found:
            lines.append(node.lineno)
    return lines


@pytest.mark.parametrize(
    "branch",
    [
        'if agreement.transport == "sftp":\n    pass',
        'if kind != "REST":\n    pass',
        'wait = kind in ("soap", "rest")',
        "same = agreement.transport is other",
        'match agreement.transport:\n    case "x":\n        pass',
        'match kind:\n    case "sftp":\n        pass',
        'HOOKS = {"sftp": SftpHook}',
    ],
)
def test_the_guard_sees_a_branch_on_a_transport_name(branch):
    assert transport_branches(branch) == [1]


def test_the_guard_lets_the_protocol_and_plain_mentions_pass():
    assert (
        transport_branches(
            'if hook.receipt_comes_later:\n    pass\ntags = [agreement.transport]\nlog.info("over sftp")\n'
            "hook = partner_hook(agreement.transport, agreement.connection_id)"
        )
        == []
    )


def test_no_code_outside_connectors_branches_on_a_transport_name():
    """Only ``connectors.transport`` maps a transport's name to a hook; everything else asks the hook
    (``receipt_comes_later``, ``receipt_sensor``…), so a new transport is a hook and a line in the registry."""
    files = [path for folder in OUTSIDE_CONNECTORS for path in sorted((ROOT / folder).rglob("*.py"))]
    assert any(path.parent.name == "dags" for path in files) and len(files) > 20
    branches = {
        f"{path.relative_to(ROOT)}:{line}"
        for path in files
        for line in transport_branches(path.read_text(encoding="utf-8"))
    }
    assert not branches, f"branches on a transport's name outside connectors/: {sorted(branches)}"
