"""SoapHook against the real tax SOAP service: WS-Security, body signatures, faults, hardened XML."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import (
    AuthenticationFailed,
    CertificateRejected,
    HttpStatusError,
    MalformedResponse,
    ResponseTooLarge,
    SoapFault,
    TransientError,
    UnsafeXml,
)
from connectors.soap import SoapHook
from exchange.pki import POPULATION, SIGNING, key_path
from exchange.receipt import verify_receipt
from partners.faults import Fault
from tests.partners.fixtures import PASSWORD, connection_like, define_connection, record_waits


def tax_hook(partners, monkeypatch, name: str = "test_tax", **changes) -> SoapHook:
    return SoapHook(define_connection(monkeypatch, name, connection_like(partners, "lienthong_tax", **changes)))


def test_ping_checks_the_credentials(partners):
    ok, message = SoapHook("lienthong_tax").test_connection()
    assert ok, message


def test_a_delivered_package_comes_back_with_a_signed_receipt(partners, make_package, trust, tmp_path):
    package = make_package("tax")
    delivered = SoapHook("lienthong_tax").deliver_package(package.path, package.manifest.package_id)
    verified = verify_receipt(delivered.write_to(tmp_path / "r"), trust, package.manifest, package.manifest_sha256)
    assert verified.receipt.status == "accepted"
    assert partners.partners["tax"].store.record_count(package.manifest.package_id) == 3


def test_a_body_signed_with_the_agency_certificate_is_accepted(partners, monkeypatch, make_package):
    hook = tax_hook(partners, monkeypatch, extra={"sign_body": True})
    package = make_package("tax")
    hook.deliver_package(package.path, package.manifest.package_id)
    assert partners.partners["tax"].store.stored_package(package.manifest.package_id) is not None


def test_a_body_signed_by_a_certificate_from_another_ca_is_refused(partners, monkeypatch, stranger_pki):
    signing = stranger_pki.certificate(POPULATION, SIGNING)
    hook = tax_hook(partners, monkeypatch, extra={"sign_body": True, "signing_cert": str(signing),
                                                  "signing_key": str(key_path(signing))})  # fmt: skip
    waits = record_waits(hook)
    with pytest.raises(AuthenticationFailed):
        hook.call("Ping")
    assert waits == []


def test_a_redelivered_package_is_stored_once(partners, make_package):
    package = make_package("tax")
    hook = SoapHook("lienthong_tax")
    first = hook.deliver_package(package.path, package.manifest.package_id)
    second = hook.deliver_package(package.path, package.manifest.package_id)
    assert first == second
    assert partners.partners["tax"].store.record_count(package.manifest.package_id) == 3


def test_a_connection_reset_mid_answer_is_retried_without_storing_twice(partners, make_package):
    tax = partners.partners["tax"]
    tax.faults.add(Fault("reset", operation="SubmitPackage"))
    hook = SoapHook("lienthong_tax")
    waits = record_waits(hook)
    package = make_package("tax")
    hook.deliver_package(package.path, package.manifest.package_id)
    assert len(waits) == 1 and tax.faults.fired["reset:SubmitPackage"] == 1
    assert tax.store.record_count(package.manifest.package_id) == 3


def test_a_wrong_password_fails_fast(partners, monkeypatch):
    hook = tax_hook(partners, monkeypatch, password="wrong")
    waits = record_waits(hook)
    with pytest.raises(AuthenticationFailed):
        hook.call("Ping")
    assert waits == []


def test_busy_faults_are_retried_to_success(partners):
    tax = partners.partners["tax"]
    tax.faults.add(Fault("soap_fault", operation="ListRecords", code="soap:Server.Busy", times=2))
    hook = SoapHook("lienthong_tax")
    waits = record_waits(hook)
    records = list(hook.paginate(page_size=100))
    assert len(records) == len(tax.store.all_people()) and len(waits) == 2


def test_client_faults_fail_fast_and_say_retry_cannot_help(partners):
    tax = partners.partners["tax"]
    tax.faults.add(Fault("soap_fault", operation="Ping", code="soap:Client.Invalid", times=3))
    hook = SoapHook("lienthong_tax")
    waits = record_waits(hook)
    with pytest.raises(SoapFault) as raised:
        hook.call("Ping")
    assert not raised.value.retryable and raised.value.code == "soap:Client.Invalid" and waits == []


def test_http_5xx_without_a_fault_is_retried(partners):
    partners.partners["tax"].faults.add(Fault("status", operation="Ping", status=503, times=2))
    hook = SoapHook("lienthong_tax")
    waits = record_waits(hook)
    assert hook.call("Ping")["status"] == "up" and len(waits) == 2


def test_http_4xx_is_not_retried(partners):
    partners.partners["tax"].faults.add(Fault("status", operation="Ping", status=404))
    hook = SoapHook("lienthong_tax")
    with pytest.raises(HttpStatusError) as raised:
        hook.call("Ping")
    assert not raised.value.retryable


def test_an_answer_with_entities_is_refused(partners):
    partners.partners["tax"].faults.add(Fault("unsafe_xml", operation="Ping"))
    hook = SoapHook("lienthong_tax")
    waits = record_waits(hook)
    with pytest.raises(UnsafeXml):
        hook.call("Ping")
    assert waits == []


def test_a_malformed_answer_is_refused_by_name_without_quoting_it(partners):
    partners.partners["tax"].faults.add(Fault("malformed", operation="Ping"))
    with pytest.raises(MalformedResponse, match=r"^SOAP Ping: the answer is not well-formed XML \(") as refused:
        SoapHook("lienthong_tax").call("Ping")
    assert "<soap:Envelope>" not in str(refused.value)  # zeep's own message carries the answer itself


def test_an_oversized_answer_is_cut_off_at_the_limit(partners, monkeypatch):
    partners.partners["tax"].faults.add(Fault("oversized", operation="Ping", size=4 * 1024 * 1024))
    hook = tax_hook(partners, monkeypatch, extra={"max_response_bytes": 256 * 1024})
    waits = record_waits(hook)
    with pytest.raises(ResponseTooLarge, match=r"^SOAP Ping: the answer is over 262,144 bytes"):
        hook.call("Ping")
    assert waits == []  # the same answer would come again: not retried


def test_an_operation_timeout_is_retried(partners, monkeypatch):
    partners.partners["tax"].faults.add(Fault("latency", operation="Ping", seconds=3))
    hook = tax_hook(partners, monkeypatch, extra={"operation_timeout": 0.5})
    waits = record_waits(hook)
    assert hook.call("Ping")["status"] == "up" and len(waits) == 1


def test_a_server_that_stays_down_gives_a_retryable_error(partners, monkeypatch):
    hook = tax_hook(partners, monkeypatch, extra={"retries": 1})
    assert hook.service is not None  # the WSDL comes from schemas/: the client is made without the server
    partners.partners["tax"].stop()
    record_waits(hook)
    with pytest.raises(TransientError):
        hook.call("Ping")


def test_a_tls_certificate_from_another_ca_is_refused(partners, monkeypatch, stranger_pki):
    hook = tax_hook(partners, monkeypatch, extra={"ca_file": str(stranger_pki.root_ca)})
    waits = record_waits(hook)
    with pytest.raises(CertificateRejected):
        hook.call("Ping")
    assert waits == []


def test_a_wsdl_with_a_dtd_is_refused(partners, monkeypatch, tmp_path):
    hostile = tmp_path / "hostile.wsdl"
    original = (Path("schemas/wsdl/tax-exchange.v1.wsdl")).read_text(encoding="utf-8")
    hostile.write_text(original.replace("<wsdl:definitions", '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                                        "<wsdl:definitions", 1), encoding="utf-8")  # fmt: skip
    with pytest.raises(UnsafeXml):
        tax_hook(partners, monkeypatch, extra={"wsdl": str(hostile)}).call("Ping")


def test_the_wsdl_can_come_from_the_partner(partners, monkeypatch):
    wsdl_url = partners.partners["tax"].endpoint()["wsdl_url"]
    hook = tax_hook(partners, monkeypatch, host=None, extra={"wsdl": wsdl_url})
    assert hook.call("Ping")["partner"] == "tax"


def test_credentials_never_reach_the_logs(partners, make_package, caplog, capfd):
    caplog.set_level("DEBUG")
    partners.partners["tax"].faults.add(Fault("soap_fault", operation="SubmitPackage", code="soap:Server.Busy"))
    hook = SoapHook("lienthong_tax")
    record_waits(hook)
    package = make_package("tax")
    hook.deliver_package(package.path, package.manifest.package_id)
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "SOAP SubmitPackage failed" in logs
    for forbidden in (partners.credentials["tax"]["password"], PASSWORD.decode(), "001200012345"):
        assert forbidden not in logs


def test_a_wsdl_from_the_partner_is_bounded_like_an_answer(partners, monkeypatch):
    wsdl_url = partners.partners["tax"].endpoint()["wsdl_url"]
    hook = tax_hook(partners, monkeypatch, host=None, extra={"wsdl": wsdl_url, "max_response_bytes": 512})
    refused = r"^SOAP Ping: the answer (has [\d,]+ bytes, over the limit|is over 512)"
    with pytest.raises(ResponseTooLarge, match=refused):
        hook.call("Ping")
