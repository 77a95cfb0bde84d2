"""Hostile clients of the REST partners, on loopback: bodies over their endpoint's limit, uploads broken off, big
bodies from callers who are not authenticated, client certificates of the wrong agency, revoked or not for TLS
clients, and requests that used to end in a traceback. Each is refused by name, stores nothing, leaves nothing on
disk, keeps personal data out of the answer and the log, and the partner serves the next valid request.

The partners here run on a PKI of this module's own, so that revoking a certificate touches no other test."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import socket
import ssl
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from exchange.pki import (
    POPULATION,
    PROFILES,
    SIGNING,
    TLS_CLIENT,
    TLS_SERVER,
    CertifiedKey,
    PkiDirectory,
    Profile,
    init_pki,
    key_path,
    load_certificate,
    load_private_key,
    make_agency_certificate,
    revoke,
    write_certified_key,
)
from partners import rest
from partners.base import write_chain
from partners.intake import PartnerKeys
from partners.rest import RestPartner
from partners.seed import seed_registry
from partners.trust import ReloadingTrust
from tests.partners.fixtures import PASSWORD, wait_for

PERSONAL_ID = re.compile(r"\b\d{12}\b")  # a personal ID on its own, not the tail of a hex serial
SECRET = "hostile-test-client-secret"
SMALL_LIMIT = 4096  # a limit the tests can go over cheaply; the real ones are tested by Content-Length alone


# -- the partners and their clients ----------------------------------------------------------------------------


@dataclass
class Partners:
    pki: PkiDirectory
    issuing: CertifiedKey
    health: RestPartner  # OAuth2 client credentials
    business: RestPartner  # mutual TLS
    folder: Path

    def client_files(self, name: str, issued: CertifiedKey) -> tuple[Path, Path]:
        """A client certificate with its chain, and its key (encrypted with PASSWORD), written for a TLS client."""
        certificate = self.folder / "clients" / name / "certificate.pem"
        write_certified_key(issued, certificate, PASSWORD)
        return write_chain(certificate.with_name("chain.pem"), certificate, self.pki.issuing_ca), key_path(certificate)

    def context(self, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.root_ca))
        if client is not None:
            context.load_cert_chain(client[0], client[1], password=PASSWORD)
        return context

    def issue(self, agency: str = POPULATION, profile: Profile = PROFILES[TLS_CLIENT]) -> CertifiedKey:
        return make_agency_certificate(self.issuing, agency, TLS_CLIENT, profile=profile)

    def agency_client(self, agency: str) -> tuple[Path, Path]:
        """The agency's own tls-client certificate of the PKI, with its chain, and its key."""
        certificate = self.pki.certificate(agency, TLS_CLIENT)
        chain = write_chain(self.folder / f"{agency}-chain.pem", certificate, self.pki.issuing_ca)
        return chain, key_path(certificate)

    @property
    def population_client(self) -> tuple[Path, Path]:
        return self.agency_client(POPULATION)

    def token(self) -> str:
        with httpx.Client(verify=self.context()) as client:
            answer = client.post(
                f"{self.health.server.url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(POPULATION, SECRET),
            )
        return answer.json()["access_token"]


def _partner(pki: PkiDirectory, name: str, state: Path, citizens, **settings) -> RestPartner:
    keys = PartnerKeys.load(pki, name, PASSWORD)
    keys = replace(keys, trust=ReloadingTrust.from_pki(pki))  # what PartnerKeys.load gives once intake.py uses it
    partner = RestPartner(keys, state, root_ca=pki.root_ca, **settings)
    partner.store.seed(*seed_registry(name, citizens, 7))
    partner.start()
    partner.publish_links()
    return partner


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, citizens, key_password_env) -> Iterator[Partners]:
    folder = tmp_path_factory.mktemp("rest-hostile")
    pki = init_pki(folder / "pki", PASSWORD, rsa_bits=2048)
    issuing = CertifiedKey(load_certificate(pki.issuing_ca), load_private_key(key_path(pki.issuing_ca), PASSWORD))
    health = _partner(
        pki, "health", folder / "health", citizens, collection="insured", oauth_clients={POPULATION: SECRET}
    )
    business = _partner(pki, "business", folder / "business", citizens, collection="enterprise-roles", mutual_tls=True)
    yield Partners(pki, issuing, health, business, folder)
    health.close()
    business.close()


@pytest.fixture
def server_log() -> Iterator[list[str]]:
    """Every line the partners' loggers and uvicorn write during the test, tracebacks included."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(logging.Formatter().format(record))

    handler = Collect(logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn's logger does not propagate
    for logger in loggers:
        logger.addHandler(handler)
    yield lines
    for logger in loggers:
        logger.removeHandler(handler)


@pytest.fixture
def health_client(hostile) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=hostile.health.server.url,
        verify=hostile.context(),
        headers={"Authorization": f"Bearer {hostile.token()}"},
    ) as client:
        yield client


@pytest.fixture
def business_client(hostile) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hostile.business.server.url, verify=hostile.context(hostile.population_client)) as c:
        yield c


class RawRequest:
    """One HTTP/1.1 request written by hand over TLS, for what a polite client never sends: a Content-Length not
    followed by its body, a chunked body broken off in the middle."""

    def __init__(self, partner: RestPartner, context: ssl.SSLContext, method: str, path: str, headers: dict) -> None:
        plain = socket.create_connection(("127.0.0.1", partner.server.port), timeout=15)
        self.socket = context.wrap_socket(plain, server_hostname="127.0.0.1")
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def send(self, data: bytes, *, chunked: bool) -> None:
        self.socket.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    def answer(self) -> tuple[int, dict]:
        """The status and JSON body of the answer (the socket times out if the server waits for more body)."""
        response = http.client.HTTPResponse(self.socket)
        response.begin()
        status, body = response.status, response.read()
        self.socket.close()
        return status, json.loads(body) if body else {}

    def drop(self, *, reset: bool) -> None:
        """Hang up: with a TCP reset, or a plain close (no TLS close_notify either way)."""
        if reset:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.socket.close()


def uploads(partner: RestPartner) -> list[Path]:
    """Temporary files of request bodies in the partner's state folder."""
    return sorted(partner.state_dir.rglob("upload-*"))


def assert_clean(partner: RestPartner, answer: object, log: list[str], packages_before: int | None = None) -> None:
    """Nothing left on disk or stored, no personal data or traceback in the answer or the log."""
    assert uploads(partner) == []
    if packages_before is not None:
        assert partner.store.package_count() == packages_before
    text = json.dumps(answer, ensure_ascii=False) + "\n".join(log)
    assert not PERSONAL_ID.search(text)
    assert "Traceback" not in text


def assert_serving(hostile: Partners) -> None:
    """Both partners still answer a valid request, with the registry's records."""
    with httpx.Client(verify=hostile.context(hostile.population_client)) as client:
        answer = client.get(f"{hostile.business.server.url}/v1/enterprise-roles?limit=1")
    assert answer.status_code == 200 and PERSONAL_ID.fullmatch(answer.json()["items"][0]["personal_id"])
    with httpx.Client(verify=hostile.context(), headers={"Authorization": f"Bearer {hostile.token()}"}) as client:
        assert client.get(f"{hostile.health.server.url}/v1/insured?limit=1").status_code == 200


def bearer(hostile: Partners) -> dict[str, str]:
    return {"Authorization": f"Bearer {hostile.token()}"}


# -- bodies over the limit ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, limit",
    [
        ("/v1/packages", "MAX_PACKAGE_BYTES"),
        ("/v1/outbox/{outbox}/receipt", "MAX_RECEIPT_BYTES"),
        ("/oauth/token", "MAX_TOKEN_REQUEST_BYTES"),  # read before the client is known
    ],
)
def test_a_body_announced_over_the_limit_is_refused_before_a_byte_of_it_is_read(hostile, server_log, path, limit):
    partner = hostile.health
    before = partner.store.package_count()
    path = path.format(outbox=partner.published()[0].name)
    headers = bearer(hostile) | {"Idempotency-Key": "over-the-limit", "Content-Length": getattr(rest, limit) + 1}
    request = RawRequest(partner, hostile.context(), "POST", path, headers)
    status, answer = request.answer()  # answered although no byte of the body was sent
    assert status == 413 and answer["detail"].startswith("body_size: ")
    assert f"{getattr(rest, limit):,}" in answer["detail"]
    assert_clean(partner, answer, server_log, before)
    assert_serving(hostile)


@pytest.mark.parametrize("path", ["/v1/packages", "/v1/outbox/{outbox}/receipt", "/oauth/token"])
def test_a_chunked_body_is_counted_and_refused_once_over_the_limit(hostile, server_log, monkeypatch, path):
    for limit in ("MAX_PACKAGE_BYTES", "MAX_RECEIPT_BYTES", "MAX_TOKEN_REQUEST_BYTES"):
        monkeypatch.setattr(rest, limit, SMALL_LIMIT)
    partner = hostile.health
    before = partner.store.package_count()
    headers = bearer(hostile) | {"Idempotency-Key": "chunked-over", "Transfer-Encoding": "chunked"}
    request = RawRequest(partner, hostile.context(), "POST", path.format(outbox=partner.published()[0].name), headers)
    for _ in range(3):
        request.send(b"x" * (SMALL_LIMIT // 2), chunked=True)
    request.send(b"", chunked=True)
    status, answer = request.answer()
    assert (
        status == 413 and answer["detail"] == f"body_size: a request body here may have at most {SMALL_LIMIT:,} bytes"
    )
    assert_clean(partner, answer, server_log, before)
    assert_serving(hostile)


# -- uploads broken off -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize("reset", [True, False], ids=["reset", "closed"])
def test_an_upload_broken_off_in_the_middle_leaves_no_file_behind(hostile, server_log, chunked, reset):
    partner = hostile.health
    before = partner.store.package_count()
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": 64 * 1024 * 1024}
    headers = bearer(hostile) | {"Idempotency-Key": "broken-off-upload"} | framing
    request = RawRequest(partner, hostile.context(), "POST", "/v1/packages", headers)
    for _ in range(8):
        request.send(b"PK" * 16 * 1024, chunked=chunked)
    wait_for(lambda: uploads(partner), "the server to spool the upload")  # it was reading the body
    request.drop(reset=reset)
    wait_for(lambda: not uploads(partner), "the temporary file to be removed")
    assert_clean(partner, {}, server_log, before)
    assert_serving(hostile)


# -- callers not authenticated ----------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
@pytest.mark.parametrize(
    "partner_name, path, client, status, check",
    [
        ("health", "/v1/packages", "no-token", 401, "token"),
        ("health", "/v1/outbox/{outbox}/receipt", "no-token", 401, "token"),
        ("business", "/v1/packages", "health-certificate", 403, "signer"),
        ("business", "/v1/outbox/{outbox}/receipt", "health-certificate", 403, "signer"),
    ],
)
def test_a_big_body_from_a_caller_not_authenticated_is_refused_unread(
    hostile, server_log, partner_name, path, client, status, check, chunked
):
    partner = getattr(hostile, partner_name)
    before = partner.store.package_count()
    headers = {"Idempotency-Key": "unauthenticated-big-body"}
    headers |= {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": 512 * 1024 * 1024}
    certificate = hostile.agency_client("health") if client == "health-certificate" else None
    path = path.format(outbox=partner.published()[0].name)
    # the answer comes although no byte of the body was sent: the server did not wait for it
    status_seen, answer = RawRequest(partner, hostile.context(certificate), "POST", path, headers).answer()
    assert (status_seen, answer["detail"].split(":")[0]) == (status, check)
    assert_clean(partner, answer, server_log, before)
    assert_serving(hostile)


# -- mutual TLS: the agency, revocation and the extended key usage -----------------------------------------------

NO_EKU = Profile(frozenset({"digital_signature"}), days=365)
SIGNING_AS_CLIENT = PROFILES[SIGNING]  # a signing certificate presented as a TLS client's


@pytest.mark.parametrize(
    "profile, check",
    [
        (None, "signer"),  # the health agency's own TLS client certificate
        (NO_EKU, "key_usage"),  # the population's, with no extended key usage at all
        (SIGNING_AS_CLIENT, "key_usage"),  # the population's, but for signing
    ],
    ids=["health-agency", "no-client-auth", "signing-certificate"],
)
@pytest.mark.parametrize("path", ["/v1/enterprise-roles", "/v1/outbox"])
def test_mutual_tls_refuses_a_certificate_of_another_agency_or_not_for_tls_clients(
    hostile, server_log, profile, check, path
):
    files = (
        hostile.agency_client("health")
        if profile is None
        else hostile.client_files(check, hostile.issue(profile=profile))
    )
    with httpx.Client(base_url=hostile.business.server.url, verify=hostile.context(files)) as client:
        answer = client.get(path)
    assert answer.status_code == 403 and answer.json()["detail"].startswith(f"{check}: certificate ")
    assert "\n" not in answer.json()["detail"]
    assert_clean(hostile.business, answer.json(), server_log)
    assert any(f"refused a client certificate: {check}:" in line for line in server_log)
    assert_serving(hostile)


SERVER_ONLY = Profile(frozenset({"digital_signature"}), 365, extended_key_usage=PROFILES[TLS_SERVER].extended_key_usage)


@pytest.mark.parametrize("client", ["none", "server-auth-only", "another-root"])
def test_a_client_without_a_certificate_for_tls_clients_of_this_pki_is_refused_in_the_handshake(
    hostile, server_log, stranger_pki, client
):
    """The handshake refuses these before HTTP (OpenSSL checks the chain, and the purpose of an extended key usage
    that is present); the checks above are the ones it does not make."""
    files = {
        "none": None,
        "server-auth-only": hostile.client_files("server-auth-only", hostile.issue(profile=SERVER_ONLY)),
        "another-root": (
            write_chain(
                hostile.folder / "stranger-chain.pem",
                stranger_pki.certificate(POPULATION, TLS_CLIENT),
                stranger_pki.issuing_ca,
            ),
            key_path(stranger_pki.certificate(POPULATION, TLS_CLIENT)),
        ),
    }[client]
    with (
        pytest.raises(httpx.TransportError),
        httpx.Client(base_url=hostile.business.server.url, verify=hostile.context(files)) as http,
    ):
        http.get("/v1/enterprise-roles")
    assert_clean(hostile.business, {}, server_log)
    assert_serving(hostile)


def test_a_client_certificate_revoked_while_the_partner_runs_is_refused_on_its_open_connection(hostile, server_log):
    issued = hostile.issue()
    files = hostile.client_files("revoked-later", issued)
    with httpx.Client(base_url=hostile.business.server.url, verify=hostile.context(files)) as client:
        assert client.get("/v1/enterprise-roles?limit=1").status_code == 200
        revoke(hostile.pki, issued.certificate, PASSWORD)  # a new CRL file; the partner is not restarted
        answer = client.get("/v1/enterprise-roles?limit=1")
    assert answer.status_code == 403 and answer.json()["detail"].startswith("revoked: certificate ")
    assert_clean(hostile.business, answer.json(), server_log)
    assert_serving(hostile)


def test_a_crl_that_cannot_be_read_refuses_every_client_until_it_can(hostile, server_log, business_client):
    crl = hostile.pki.crl
    hidden = crl.with_name("crl.pem.away")
    crl.rename(hidden)
    try:
        answer = business_client.get("/v1/enterprise-roles")
    finally:
        hidden.rename(crl)
    assert answer.status_code == 403 and answer.json()["detail"].startswith("crl: ")
    assert_clean(hostile.business, answer.json(), server_log)
    assert business_client.get("/v1/enterprise-roles").status_code == 200


# -- hostile queries, names and bodies ---------------------------------------------------------------------------

PAST_SQLITE = base64.urlsafe_b64encode(b"after:" + b"9" * 30).decode()  # a cursor past SQLite's largest integer


@pytest.mark.parametrize(
    "path, status, check",
    [
        (f"/v1/insured?cursor={PAST_SQLITE}", 400, "cursor"),
        (f"/v1/insured?limit={'9' * 5000}", 400, "limit"),
        (f"/v1/outbox/{'a' * 300}.zip", 404, "outbox"),  # a name longer than the file system takes
        ("/v1/outbox/a%00b.zip", 404, "outbox"),
    ],
    ids=["cursor-past-sqlite", "limit-of-5000-digits", "name-too-long", "name-with-nul"],
)
def test_a_hostile_query_or_name_gets_a_named_answer(hostile, server_log, health_client, path, status, check):
    answer = health_client.get(path)
    assert answer.status_code == status and answer.json()["detail"].startswith(f"{check}: ")
    assert_clean(hostile.health, answer.json(), server_log)
    assert_serving(hostile)


@pytest.mark.parametrize(
    "body, status, check",
    [
        (b"[" * 200_000 + b"]" * 200_000, 400, "receipt"),  # nesting deeper than the JSON parser recurses
        (b'{"receipt": 1, "signature": []}', 400, "receipt"),
        (b'{"receipt": "\xff\xfe", "signature": ""}', 400, "receipt"),
        (b'{"receipt": "bm90IGEgcmVjZWlwdA==", "signature": "bm90IGEgc2lnbmF0dXJl"}', 422, "signature"),
    ],
    ids=["deep-nesting", "wrong-types", "not-utf8", "not-a-receipt"],
)
def test_a_hostile_receipt_body_gets_a_named_answer(hostile, server_log, health_client, body, status, check):
    acknowledged = len(hostile.health.store.acknowledgements())
    answer = health_client.post(f"/v1/outbox/{hostile.health.published()[0].name}/receipt", content=body)
    assert answer.status_code == status and answer.json()["detail"].startswith(f"{check}: ")
    assert len(hostile.health.store.acknowledgements()) == acknowledged
    assert_clean(hostile.health, answer.json(), server_log)
    assert_serving(hostile)


@pytest.mark.parametrize(
    "body",
    [b"grant_type=client_credentials&grant_type=password", b"grant_type=\xff", b"&".join([b"a=b"] * 100)],
    ids=["repeated-parameter", "not-utf8", "too-many-fields"],
)
def test_a_malformed_token_request_is_an_invalid_request(hostile, server_log, body):
    with httpx.Client(verify=hostile.context()) as client:
        answer = client.post(
            f"{hostile.health.server.url}/oauth/token",
            content=body,
            auth=(POPULATION, SECRET),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 400 and answer.json() == {"error": "invalid_request"}
    assert_clean(hostile.health, answer.json(), server_log)
    assert_serving(hostile)
