"""The tax SOAP server's own checks: WS-Security, replay, expiry, signatures, hostile XML, its WSDL."""

from __future__ import annotations

import pytest
import requests
from lxml import etree

from connectors.soap import SoapHook
from exchange.safe_xml import parse_untrusted
from partners.http import BILLION_LAUGHS
from partners.intake import PartnerKeys
from partners.tax import TaxPartner
from tests.partners.fixtures import PASSWORD, connection_like, define_connection

XXE = b"""<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&x;</soap:Body></soap:Envelope>"""


def message(hook: SoapHook, operation: str, **arguments) -> bytes:
    """The envelope the hook would send, WS-Security header and all."""
    return etree.tostring(hook.client.create_message(hook.service, operation, **arguments))


def post(partners, body: bytes, operation: str = "Ping", url: str | None = None) -> requests.Response:
    tax = partners.partners["tax"]
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"urn:lienthong:tax:exchange:v1#{operation}"'}
    return requests.post(url or tax.endpoint()["url"], data=body, headers=headers, verify=str(partners.pki.root_ca),
                         timeout=30)  # fmt: skip


def fault_code(response: requests.Response) -> str | None:
    return parse_untrusted(response.content).findtext(".//faultcode")


def test_a_proper_message_is_answered(partners):
    answer = post(partners, message(SoapHook("lienthong_tax"), "Ping"))
    assert answer.status_code == 200 and b"<tns:status>up</tns:status>" in answer.content


def test_a_replayed_message_is_refused(partners):
    body = message(SoapHook("lienthong_tax"), "Ping")
    assert post(partners, body).status_code == 200
    assert fault_code(post(partners, body)) == "soap:Client.Authentication"


def test_an_expired_message_is_refused(partners):
    body = message(SoapHook("lienthong_tax"), "Ping")
    root = etree.fromstring(body)
    expires = root.find(".//{*}Timestamp/{*}Expires")
    expires.text = "2020-01-01T00:00:00Z"
    assert fault_code(post(partners, etree.tostring(root))) == "soap:Client.Authentication"


def test_a_message_without_ws_security_is_refused(partners, monkeypatch):
    hook = SoapHook(define_connection(monkeypatch, "anonymous", connection_like(partners, "lienthong_tax", login=None)))
    assert fault_code(post(partners, message(hook, "Ping"))) == "soap:Client.Authentication"


@pytest.mark.parametrize("body", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_hostile_xml_is_refused_before_it_is_expanded(partners, body):
    answer = post(partners, body)
    assert answer.status_code == 500 and fault_code(answer) == "soap:Client.Invalid"
    assert b"root:" not in answer.content


def test_a_request_breaking_the_schema_is_refused(partners):
    body = message(SoapHook("lienthong_tax"), "ListRecords", limit=5).replace(b">5<", b">0<")
    assert fault_code(post(partners, body, "ListRecords")) == "soap:Client.Invalid"


def test_a_signed_body_changed_after_signing_is_refused(partners, monkeypatch):
    hook = SoapHook(define_connection(monkeypatch, "signed", connection_like(partners, "lienthong_tax",
                                                                             extra={"sign_body": True})))  # fmt: skip
    body = message(hook, "ListRecords", limit=5)
    assert post(partners, body, "ListRecords").status_code == 200
    changed = message(hook, "ListRecords", limit=5).replace(b">5<", b">6<")
    answer = post(partners, changed, "ListRecords")
    assert fault_code(answer) == "soap:Client.Authentication" and b"signature" in answer.content


def test_a_service_that_demands_signatures_refuses_unsigned_bodies(partners, monkeypatch, tmp_path, sandbox_pki):
    keys = PartnerKeys.load(sandbox_pki, "tax", PASSWORD)
    users = {partners.credentials["tax"]["username"]: partners.credentials["tax"]["password"]}
    strict = TaxPartner(keys, tmp_path / "strict-tax", users=users, issuing_ca=sandbox_pki.issuing_ca,
                        require_signature=True)  # fmt: skip
    strict.start()
    try:
        port = {"port": strict.server.port}
        unsigned = connection_like(partners, "lienthong_tax", **port)
        signed = connection_like(partners, "lienthong_tax", **port, extra={"sign_body": True})
        answer = post(partners, message(SoapHook(define_connection(monkeypatch, "unsigned", unsigned)), "Ping"),
                      url=strict.endpoint()["url"])  # fmt: skip
        assert fault_code(answer) == "soap:Client.Authentication"
        assert SoapHook(define_connection(monkeypatch, "signed", signed)).call("Ping")["status"] == "up"
    finally:
        strict.close()


def test_the_served_wsdl_is_self_contained_and_names_this_server(partners):
    tax = partners.partners["tax"]
    answer = requests.get(tax.endpoint()["wsdl_url"], verify=str(partners.pki.root_ca), timeout=30)
    wsdl = parse_untrusted(answer.content)
    assert not wsdl.findall(".//{http://www.w3.org/2001/XMLSchema}import")
    assert wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address").get("location") == tax.endpoint()["url"]


def test_a_package_larger_than_libxml2s_text_limit_is_received(partners, make_package):
    """SubmitPackage carries the package in base64 in one text node: over 10 MB, libxml2 refuses it unless told."""
    import secrets

    random = [{"personal_id": f"{i:012d}", "note": secrets.token_hex(512)} for i in range(16000)]  # 8 MB zipped
    package = make_package("tax", random, encrypt=False)
    assert package.path.stat().st_size * 4 / 3 > 10 * 1024 * 1024
    receipt = SoapHook("lienthong_tax").deliver_package(package.path, package.manifest.package_id)
    assert b'"status":"accepted"' in receipt.receipt.replace(b" ", b"")


def test_a_password_in_clear_travels_with_a_nonce_and_a_created_time(partners, monkeypatch):
    """The server takes each message once whatever the kind of password, so the hook sends a nonce with either."""
    text = connection_like(partners, "lienthong_tax", extra={"password_digest": False})
    hook = SoapHook(define_connection(monkeypatch, "password_text", text))
    token = etree.fromstring(message(hook, "Ping")).find(".//{*}UsernameToken")
    assert token.findtext("{*}Nonce") and token.findtext("{*}Created")
    assert hook.call("Ping")["status"] == "up"
