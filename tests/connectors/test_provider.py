"""The hooks as an Airflow provider: discovered by entry point, with their connection forms."""

from __future__ import annotations

import json
from pathlib import Path

import airflow
import jsonschema
import pytest

from connectors import get_provider_info
from connectors.rest import RestHook
from connectors.sftp import SftpHook
from connectors.soap import SoapHook

HOOKS = {"lienthong_soap": SoapHook, "lienthong_rest": RestHook, "lienthong_sftp": SftpHook}


def test_provider_info_follows_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.mark.parametrize("conn_type", HOOKS)
def test_each_connection_type_names_its_hook_and_fields(conn_type):
    (declared,) = [c for c in get_provider_info()["connection-types"] if c["connection-type"] == conn_type]
    hook = HOOKS[conn_type]
    assert declared["hook-class-name"] == f"{hook.__module__}.{hook.__name__}"
    assert declared["hook-name"] == hook.hook_name and hook.conn_type == conn_type
    assert hook.default_conn_name.startswith("lienthong_") and hook.conn_name_attr.endswith("_conn_id")
    assert declared["conn-fields"] and all("schema" in field for field in declared["conn-fields"].values())
    assert hook(**{hook.conn_name_attr: "some_connection"}).conn_id == "some_connection"


def test_airflow_discovers_the_hooks_and_their_forms():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager, runtime = ProvidersManager(), ProvidersManagerTaskRuntime()
    assert "lienthong" in manager.providers
    for conn_type, hook in HOOKS.items():
        assert runtime.hooks[conn_type].hook_class_name == f"{hook.__module__}.{hook.__name__}"
    assert "extra__lienthong_sftp__host_key" in manager.connection_form_widgets
    assert manager.field_behaviours["lienthong_sftp"]["hidden_fields"] == ["schema"]


def test_a_connection_of_our_type_gives_our_hook(monkeypatch):
    from airflow.sdk import BaseHook

    monkeypatch.setenv("AIRFLOW_CONN_SOME_PARTNER", json.dumps({"conn_type": "lienthong_rest", "host": "x"}))
    hook = BaseHook.get_hook("some_partner")
    assert isinstance(hook, RestHook) and hook.conn_id == "some_partner"
