"""The REST partners' own checks: tokens, idempotency keys, cursors, the outbox, and the OpenAPI contract."""

from __future__ import annotations

import base64
import ssl

import httpx
import pytest
import yaml

from connectors.rest import RestHook

OPENAPI = "schemas/openapi/health.v1.yaml"


@pytest.fixture
def health(partners) -> httpx.Client:
    """A plain HTTP client for the health server, with a valid bearer token."""
    url = partners.partners["health"].server.url
    token = RestHook("lienthong_health")._access_token()
    with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=str(partners.pki.root_ca)),
                      headers={"Authorization": f"Bearer {token}"}) as client:  # fmt: skip
        yield client


def test_every_path_of_the_openapi_description_is_served(partners, health):
    with open(OPENAPI, encoding="utf-8") as handle:
        paths = yaml.safe_load(handle)["paths"]
    outbox = health.get("/v1/outbox").json()["items"][0]["name"]
    for path, operations in paths.items():
        concrete = path.replace("{name}", outbox)
        if "get" in operations:
            assert health.get(concrete).status_code == 200, path
        if "post" in operations:
            assert health.post(concrete).status_code not in (404, 405), path


def test_calls_without_a_valid_token_are_refused(partners, health):
    assert health.get("/v1/insured", headers={"Authorization": "Bearer forged"}).status_code == 401
    assert health.get("/v1/insured", headers={"Authorization": ""}).status_code == 401


def test_the_token_endpoint_checks_grant_and_client(partners, health):
    client = partners.credentials["health"]
    good = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    bad = base64.b64encode(f"{client['client_id']}:guess".encode()).decode()
    form = {"grant_type": "client_credentials"}
    assert health.post("/oauth/token", data=form, headers={"Authorization": f"Basic {good}"}).status_code == 200
    assert health.post("/oauth/token", data=form, headers={"Authorization": f"Basic {bad}"}).status_code == 401
    password_grant = {"grant_type": "password"}
    assert (
        health.post("/oauth/token", data=password_grant, headers={"Authorization": f"Basic {good}"}).status_code == 400
    )


def test_a_package_needs_an_idempotency_key_and_must_be_a_package(health):
    assert health.post("/v1/packages", content=b"PK").status_code == 400
    answer = health.post("/v1/packages", content=b"not a zip", headers={"Idempotency-Key": "k" * 16})
    assert answer.status_code == 400 and "not an exchange package" in answer.json()["detail"]


def test_a_rejected_package_gets_422_and_a_signed_rejected_receipt(partners, health, make_package):
    package = make_package("tax")  # delivered to the wrong partner
    answer = health.post("/v1/packages", content=package.path.read_bytes(),
                         headers={"Idempotency-Key": package.manifest.package_id})  # fmt: skip
    assert answer.status_code == 422 and answer.json()["status"] == "rejected"
    assert b'"rejected"' in base64.b64decode(answer.json()["receipt"])


@pytest.mark.parametrize("query", ["cursor=forged", "cursor=YWZ0ZXI6eA==", "limit=0", "limit=999999", "limit=x"])
def test_bad_cursors_and_limits_are_refused(health, query):
    assert health.get(f"/v1/insured?{query}").status_code == 400


@pytest.mark.parametrize("name", ["..%2Fregistry.db", ".hidden.zip", "missing.zip", "registry.db"])
def test_the_outbox_serves_published_packages_only(health, name):
    assert health.get(f"/v1/outbox/{name}").status_code == 404
