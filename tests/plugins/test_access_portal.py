"""The citizen portal's API in the plugin, served by uvicorn on loopback over a population whose changes went to the
real health partner: OAuth2 client credentials, then one citizen's signed access report, which stock OpenSSL
verifies; everything else refused with one OAuth2 error line and no personal data, before the body is read."""

from __future__ import annotations

import base64
import json
import logging
import time

import httpx
import jwt
import pytest

from feeds import access_portal
from partners.http import ServerThread
from plugins.airflow_lienthong import portal_app
from tests.feeds.disclosure_fixtures import *  # noqa: F403 - people, health_agreement, sent
from tests.feeds.disclosure_fixtures import openssl_cms_verify, pdf_text
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, partners, key_password_env …

CLIENT_ID, SECRET = "cong-dich-vu-cong", "s" * 16 + "portal-secret-of-32-chars"


@pytest.fixture
def portal(sent, people, sandbox_pki, key_password_env, monkeypatch):
    """The portal's API over the workspace the DAGs would use, with the portal's client configured."""
    monkeypatch.setenv("LIENTHONG_DB_URL", str(people.url))
    monkeypatch.setenv("LIENTHONG_PKI_DIR", str(sandbox_pki.path))
    monkeypatch.setenv("LIENTHONG_PORTAL_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("LIENTHONG_PORTAL_CLIENT_SECRET", SECRET)
    server = ServerThread(portal_app, "citizen-portal-api")
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            yield client
    finally:
        server.stop()


def token(client: httpx.Client, secret: str = SECRET, **form: str) -> httpx.Response:
    return client.post("/oauth/token", data={"grant_type": "client_credentials", **form}, auth=(CLIENT_ID, secret))


def bearer(client: httpx.Client) -> dict[str, str]:
    answer = token(client)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_the_portal_gets_a_signed_report_that_openssl_verifies_and_holds_no_other_citizen(
    portal, sent, sandbox_pki, tmp_path, caplog
):
    run, records = sent
    first, other = records[0]["personal_id"], records[1]["personal_id"]
    granted = token(portal)
    assert granted.status_code == 200 and granted.headers["cache-control"] == "no-store"
    assert granted.json()["token_type"] == "Bearer" and granted.json()["expires_in"] == 300
    with caplog.at_level(logging.INFO, "lienthong.portal"):
        answer = portal.post("/access-reports", json={"personal_id": first}, headers=bearer(portal))
    assert answer.status_code == 200, answer.text
    assert first not in answer.request.url.path and answer.headers["cache-control"] == "no-store"
    files = {name: base64.b64decode(data) for name, data in answer.json()["files"].items()}
    assert set(files) == {"report.json", "report.json.p7s", "report.html", "report.pdf", "report.pdf.p7s"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for content in ("report.json", "report.pdf"):
        verified = openssl_cms_verify(tmp_path / f"{content}.p7s", tmp_path / content, sandbox_pki.root_ca)
        assert verified.returncode == 0, verified.stderr
    document = json.loads(files["report.json"])
    assert document["subject"]["personal_id"] == first
    assert [d["package_id"] for d in document["disclosures"]] == [run.package.package_id]
    assert first in pdf_text(tmp_path / "report.pdf")
    for name, data in files.items():
        assert other.encode() not in data, name
    assert f"{first[:3]}******{first[-3:]}" in caplog.text and first not in caplog.text

    since = portal.post("/access-reports", json={"personal_id": first, "since": "2999-01-01"}, headers=bearer(portal))
    assert json.loads(base64.b64decode(since.json()["files"]["report.json"]))["disclosures"] == []


def refused(answer: httpx.Response, status: int, error: str) -> str:
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error and "traceback" not in answer.text.lower()
    return answer.json()["error_description"]


def test_nothing_is_given_without_a_valid_token_and_the_body_is_not_read_first(portal, sent):
    pid = sent[1][0]["personal_id"]
    # no token: refused before the body is read, even one far over the limit
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()}):
        answer = portal.post("/access-reports", content=b"x" * 5_000_000, headers=headers)
        refused(answer, 401, "invalid_request")
        assert answer.headers["www-authenticate"].startswith("Bearer")
    # tokens that are not ours: another key, expired, another audience, no signature
    now = int(time.time())
    claims = {"iss": "lienthong", "aud": access_portal.AUDIENCE, "sub": CLIENT_ID, "scope": "access-report",
              "iat": now, "exp": now + 60}  # fmt: skip
    own_key = access_portal._token_key(SECRET)
    forged = [
        jwt.encode(claims, access_portal._token_key("another secret of at least 32 chars!"), algorithm="HS256"),
        jwt.encode(claims | {"iat": now - 600, "exp": now - 300}, own_key, algorithm="HS256"),
        jwt.encode(claims | {"aud": "airflow"}, own_key, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
        "not-a-token",
    ]
    for bad in forged:
        answer = portal.post("/access-reports", json={"personal_id": pid}, headers={"Authorization": f"Bearer {bad}"})
        assert "invalid_token" in answer.headers["www-authenticate"]
        refused(answer, 401, "invalid_token")
    wrong_scope = jwt.encode(claims | {"scope": "openid"}, own_key, algorithm="HS256")
    answer = portal.post(
        "/access-reports", json={"personal_id": pid}, headers={"Authorization": f"Bearer {wrong_scope}"}
    )
    refused(answer, 403, "insufficient_scope")


def test_the_token_endpoint_wants_the_client_and_its_secret(portal, monkeypatch):
    assert "wrong secret" in refused(token(portal, secret="guess" * 8), 401, "invalid_client")
    assert token(portal, secret="guess" * 8).headers["www-authenticate"].startswith("Basic")
    refused(portal.post("/oauth/token", data={"grant_type": "client_credentials"}), 401, "invalid_client")
    in_form = portal.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                "client_secret": SECRET})  # fmt: skip
    assert in_form.status_code == 200
    refused(token(portal, grant_type="password"), 400, "unsupported_grant_type")
    refused(token(portal, scope="admin"), 400, "invalid_scope")
    refused(portal.post("/oauth/token", content=b"a" * 5000, auth=(CLIENT_ID, SECRET)), 413, "invalid_request")
    monkeypatch.delenv("LIENTHONG_PORTAL_CLIENT_SECRET")
    assert "no citizen portal client" in refused(token(portal), 503, "temporarily_unavailable")
    monkeypatch.setenv("LIENTHONG_PORTAL_CLIENT_SECRET", "short")
    assert "at least 32 characters" in refused(token(portal), 503, "temporarily_unavailable")


def test_a_bad_request_is_named_without_echoing_the_personal_id(portal, sent):
    pid = sent[1][0]["personal_id"]
    headers = bearer(portal)
    cases = [
        ({"personal_id": "12345"}, "personal_id"),
        ({"personal_id": f"{pid}0"}, "personal_id"),
        ({"personal_id": int(pid)}, "personal_id"),
        ({"personal_id": pid, "since": "yesterday"}, "since"),
        ({"personal_id": pid, "since": "2026-02-30"}, "since"),
        ({"personal_id": pid, "name": "x"}, "the body is"),
        ([pid], "the body is"),
    ]
    for body, named in cases:
        description = refused(portal.post("/access-reports", json=body, headers=headers), 400, "invalid_request")
        assert named in description and pid not in description
    not_json = portal.post("/access-reports", content=b"{", headers=headers)
    assert "not JSON" in refused(not_json, 400, "invalid_request")
    too_big = portal.post("/access-reports", content=b" " * 5000, headers=headers)
    refused(too_big, 413, "invalid_request")


def test_the_plugin_serves_the_portal_beside_the_overview():
    from plugins.airflow_lienthong import PORTAL_PREFIX, LienThongPlugin

    apps = {entry["url_prefix"]: entry["app"] for entry in LienThongPlugin.fastapi_apps}
    assert apps[PORTAL_PREFIX] is portal_app and PORTAL_PREFIX == "/lienthong-portal"
