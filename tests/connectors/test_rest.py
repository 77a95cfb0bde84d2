"""RestHook against the real health (OAuth2 over TLS) and business (mutual TLS) servers, faults included."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from connectors.errors import (
    AuthenticationFailed,
    CertificateRejected,
    HttpStatusError,
    MalformedResponse,
    ResponseTooLarge,
    TransientError,
)
from connectors.rest import RestHook
from exchange.package import verify_package
from exchange.pki import POPULATION, TLS_CLIENT, key_path
from exchange.receipt import verify_receipt
from partners.faults import Fault
from tests.partners.fixtures import PASSWORD, connection_like, define_connection, record_waits

SCHEMAS = "schemas/jsonschema/business-enterprise-role.v1.json"


def health_hook(partners, monkeypatch, **changes) -> RestHook:
    document = connection_like(partners, "lienthong_health", **changes)
    return RestHook(define_connection(monkeypatch, "test_health", document))


def test_health_and_business_answer_test_connection(partners):
    assert RestHook("lienthong_health").test_connection()[0]
    assert RestHook("lienthong_business").test_connection()[0]


@pytest.mark.parametrize("partner", ["health", "business"])
def test_a_delivered_package_comes_back_with_a_receipt_signed_by_the_partner(partners, make_package, trust, partner,
                                                                             tmp_path):  # fmt: skip
    package = make_package(partner)
    delivered = RestHook(f"lienthong_{partner}").deliver_package(package.path, package.manifest.package_id)
    verified = verify_receipt(
        delivered.write_to(tmp_path / "receipt"), trust, package.manifest, package.manifest_sha256
    )
    assert verified.receipt.status == "accepted"
    assert verified.receipt.record_count == 3
    store = partners.partners[partner].store
    assert store.stored_package(package.manifest.package_id) is not None
    assert store.record_count(package.manifest.package_id) == 3


def test_a_post_retried_after_the_connection_broke_mid_answer_stores_the_package_once(partners, make_package, trust,
                                                                                      tmp_path):  # fmt: skip
    health = partners.partners["health"]
    health.faults.add(Fault("reset", operation="packages"))
    hook = RestHook("lienthong_health")
    record_waits(hook)
    package = make_package("health")
    delivered = hook.deliver_package(package.path, package.manifest.package_id)
    assert health.faults.fired["reset:packages"] == 1
    verify_receipt(delivered.write_to(tmp_path / "receipt"), trust, package.manifest, package.manifest_sha256)
    assert health.store.record_count(package.manifest.package_id) == 3
    # a later task run delivering the same package again: the same receipt, still stored once
    again = RestHook("lienthong_health").deliver_package(package.path, package.manifest.package_id)
    assert again == delivered
    assert health.store.record_count(package.manifest.package_id) == 3


@pytest.mark.parametrize("status", [503, 429, 500])
def test_5xx_and_429_bursts_are_retried_to_success_honouring_retry_after(partners, status):
    health = partners.partners["health"]
    health.faults.add(Fault("status", operation="records", status=status, times=3, retry_after=2))
    hook = RestHook("lienthong_health")
    waits = record_waits(hook)
    items = list(hook.paginate("insured"))
    assert len(items) == len(health.store.all_people())
    assert health.faults.fired["status:records"] == 3
    assert len(waits) == 3 and all(wait >= 2 for wait in waits)


def test_a_retry_after_longer_than_allowed_fails_at_once(partners, monkeypatch):
    partners.partners["health"].faults.add(Fault("status", operation="records", status=503, retry_after=3600))
    hook = health_hook(partners, monkeypatch, extra={"max_retry_after": 60})
    waits = record_waits(hook)
    with pytest.raises(HttpStatusError) as raised:
        hook.get_json("insured")
    assert raised.value.retry_after == pytest.approx(3600, abs=1) and waits == []


@pytest.mark.parametrize("status", [400, 404, 409, 422])
def test_other_4xx_fail_fast(partners, status):
    health = partners.partners["health"]
    health.faults.add(Fault("status", operation="records", status=status, times=5))
    hook = RestHook("lienthong_health")
    waits = record_waits(hook)
    with pytest.raises(HttpStatusError) as raised:
        hook.get_json("insured")
    assert not raised.value.retryable and raised.value.status == status
    assert waits == [] and health.faults.fired["status:records"] == 1


def test_retries_give_up_after_the_configured_attempts(partners, monkeypatch):
    health = partners.partners["health"]
    health.faults.add(Fault("status", operation="records", status=503, times=10))
    hook = health_hook(partners, monkeypatch, extra={"retries": 2})
    record_waits(hook)
    with pytest.raises(HttpStatusError) as raised:
        hook.get_json("insured")
    assert raised.value.retryable and health.faults.fired["status:records"] == 3


def test_the_token_is_cached_and_renewed_when_the_partner_forgets_it(partners):
    health = partners.partners["health"]
    hook = RestHook("lienthong_health")
    hook.get_json("health")
    first = hook._token
    hook.get_json("health")
    assert hook._token is first
    health.revoke_tokens()
    hook.get_json("health")
    assert hook._token is not first


def test_a_token_about_to_expire_is_replaced_before_use(partners):
    hook = RestHook("lienthong_health")
    hook.get_json("health")
    first = hook._token
    first.expires_at = 0.0
    hook.get_json("health")
    assert hook._token is not first


def test_a_wrong_client_secret_fails_fast(partners, monkeypatch):
    hook = health_hook(partners, monkeypatch, password="not-the-secret")
    waits = record_waits(hook)
    with pytest.raises(AuthenticationFailed):
        hook.get_json("insured")
    assert waits == []


def test_pagination_yields_every_item_once_in_order(partners):
    health = partners.partners["health"]
    hook = RestHook("lienthong_health")
    items = list(hook.paginate("insured", {"limit": 37}))
    assert [item["personal_id"] for item in items] == [p.personal_id for p in health.store.all_people()]


def test_business_items_follow_their_json_schema(partners):
    schema = json.loads(Path(SCHEMAS).read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    items = list(RestHook("lienthong_business").paginate("enterprise-roles", {"limit": 5}))
    assert items
    for item in items:
        validator.validate(item)


def test_a_malformed_answer_is_refused_without_retrying(partners):
    partners.partners["health"].faults.add(Fault("malformed", operation="records"))
    hook = RestHook("lienthong_health")
    waits = record_waits(hook)
    with pytest.raises(MalformedResponse):
        hook.get_json("insured")
    assert waits == []


def test_an_oversized_answer_is_cut_off_at_the_limit(partners, monkeypatch):
    partners.partners["health"].faults.add(Fault("oversized", operation="records", size=4 * 1024 * 1024))
    hook = health_hook(partners, monkeypatch, extra={"max_response_bytes": 256 * 1024})
    with pytest.raises(ResponseTooLarge):
        hook.get_json("insured")


def test_a_slow_partner_times_out_and_the_retry_succeeds(partners, monkeypatch):
    partners.partners["health"].faults.add(Fault("latency", operation="records", seconds=3))
    hook = health_hook(partners, monkeypatch, extra={"timeout": 0.5})
    waits = record_waits(hook)
    assert hook.get_json("insured")["items"]
    assert len(waits) == 1


def test_a_partner_that_went_down_is_retried_until_it_is_back(partners):
    health = partners.partners["health"]
    hook = RestHook("lienthong_health")
    hook.get_json("health")  # a live keep-alive connection, then the server dies under it
    health.stop()
    hook.sleep = lambda _seconds: health.start()
    assert hook.get_json("health")["status"] == "up"


def test_a_partner_that_stays_down_fails_with_a_retryable_error(partners, monkeypatch):
    partners.partners["health"].stop()
    hook = health_hook(partners, monkeypatch, extra={"retries": 1})
    record_waits(hook)
    with pytest.raises(TransientError):
        hook.get_json("health")


def test_a_tls_certificate_from_another_ca_is_refused(partners, monkeypatch, stranger_pki):
    hook = health_hook(partners, monkeypatch, extra={"ca_file": str(stranger_pki.root_ca)})
    waits = record_waits(hook)
    with pytest.raises(CertificateRejected):
        hook.get_json("health")
    assert waits == []


@pytest.mark.parametrize("client", ["none", "stranger"])
def test_business_refuses_a_client_without_a_certificate_from_its_ca(partners, monkeypatch, stranger_pki, client):
    """With TLS 1.3 the server's refusal comes after the client's side of the handshake: the client sees the
    connection dropped, retries within its budget, and gets nothing."""
    certificate = stranger_pki.certificate(POPULATION, TLS_CLIENT)
    offered = (
        {"client_cert": str(certificate), "client_key": str(key_path(certificate))} if client == "stranger" else {}
    )
    document = connection_like(partners, "lienthong_business",
                               extra={"client_cert": None, "client_key": None, "retries": 1} | offered)  # fmt: skip
    hook = RestHook(define_connection(monkeypatch, f"client_{client}", document))
    record_waits(hook)
    with pytest.raises((AuthenticationFailed, TransientError)):
        hook.get_json("health")


def test_a_reused_idempotency_key_with_another_body_is_a_conflict(partners, make_package):
    first, second = make_package("health"), make_package("health")
    hook = RestHook("lienthong_health")
    hook.deliver_package(first.path, first.manifest.package_id)
    with pytest.raises(HttpStatusError) as raised:
        hook.deliver_package(second.path, first.manifest.package_id)
    assert raised.value.status == 409


def test_every_post_carries_an_idempotency_key_derived_from_the_request(partners):
    from connectors.rest import idempotency_key_for

    assert idempotency_key_for("a", b"{}") == idempotency_key_for("a", b"{}") != idempotency_key_for("a", b"{ }")
    with pytest.raises(ValueError, match="idempotency_key"):
        RestHook("lienthong_health").request("POST", "packages", content=lambda: iter([b"x"]))


def test_an_outbox_package_downloads_resuming_after_a_broken_transfer(partners, trust, population_key, tmp_path):
    health = partners.partners["health"]
    health.faults.add(Fault("reset", operation="outbox_file"))
    hook = RestHook("lienthong_health")
    (listed,) = hook.get_json("outbox")["items"]
    partial_sizes: list[int] = []
    target = tmp_path / listed["name"]
    hook.sleep = lambda _s: partial_sizes.append(target.with_name(target.name + ".partial").stat().st_size)
    size = hook.download(f"outbox/{listed['name']}", target)
    assert size == listed["bytes"] and partial_sizes and 0 < partial_sizes[0] < size
    verified = verify_package(target, trust, recipient=population_key, decrypt_to=tmp_path / "plain")
    assert verified.manifest.sender == "health" and verified.manifest.record_count == len(health.store.all_people())


def test_credentials_never_reach_the_logs(partners, make_package, caplog, capfd):
    caplog.set_level("DEBUG")
    partners.partners["health"].faults.add(Fault("status", operation="packages", status=503))
    hook = RestHook("lienthong_health")
    record_waits(hook)
    package = make_package("health")
    hook.deliver_package(package.path, package.manifest.package_id)
    list(hook.paginate("insured"))
    RestHook("lienthong_business").get_json("health")
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    secret = partners.credentials["health"]["client_secret"]
    assert "POST packages" in logs  # the retry was logged
    for forbidden in (secret, hook._token.value, PASSWORD.decode(), "001200012345"):
        assert forbidden not in logs
