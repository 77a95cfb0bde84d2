"""The tax SOAP server against a hostile sender: every request below is refused by the name of its check, stores
nothing, leaves nothing in the work folder, echoes no personal data, and the server answers a proper call after.

Unauthenticated requests cost no more than their header; a sender who knows the WS-Security password but holds no
signing key gets nothing past the signature checks, which run before xmlsec dereferences anything."""

from __future__ import annotations

import base64
import copy
import ctypes
import gc
import logging
import os
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from lxml import etree

from connectors.soap import SoapHook
from exchange.pki import SIGNING, key_path
from partners.tax import MAX_NONCE_BYTES, MAX_REQUEST_BYTES, PATH
from partners.xml_signature import DS, EXC_C14N, MAX_DEPTH, MAX_ELEMENTS, MAX_HEADER_BYTES, SOAP, WSSE, WSU
from tests.partners.fixtures import connection_like, define_connection, wait_for

WSU_ID = f"{{{WSU}}}Id"
PERSONAL_ID = re.compile(rb"(?<!\d)\d{12}(?!\d)")
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
XSLT = "http://www.w3.org/TR/1999/REC-xslt-19991116"
SECRET = "a line of the server's own secret file"
BIG = 16 * 1024 * 1024  # an unauthenticated body this large must not be parsed: parsed, it would cost ~500 MiB


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


# -- talking to the server ----------------------------------------------------------------------------------------


def post(partners, body: bytes, operation: str = "SubmitPackage") -> requests.Response:
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"urn:lienthong:tax:exchange:v1#{operation}"'}
    url = partners.partners["tax"].endpoint()["url"]
    return requests.post(url, data=body, headers=headers, verify=str(partners.pki.root_ca), timeout=30)


def fault(response: requests.Response) -> tuple[str | None, str]:
    root = etree.fromstring(response.content)
    return root.findtext(".//faultcode"), root.findtext(".//faultstring") or ""


@dataclass
class Senders:
    """Hooks for the tax partner: the password as a digest or in clear, signing with the population database's
    key or with the health agency's."""

    digest: SoapHook
    text: SoapHook
    signed: SoapHook
    health: SoapHook


@pytest.fixture
def senders(partners, monkeypatch, sandbox_pki) -> Senders:
    def hook(name: str, **extra) -> SoapHook:
        return SoapHook(define_connection(monkeypatch, name, connection_like(partners, "lienthong_tax", extra=extra)))

    health_certificate = sandbox_pki.certificate("health", SIGNING)
    return Senders(
        digest=SoapHook("lienthong_tax"),
        text=hook("tax_text", password_digest=False),
        signed=hook("tax_signed", sign_body=True),
        health=hook(
            "tax_health",
            sign_body=True,
            signing_cert=str(health_certificate),
            signing_key=str(key_path(health_certificate)),
        ),
    )


def message(hook: SoapHook, operation: str = "Ping", **arguments) -> etree._Element:
    """The envelope the hook would send (WS-Security header and all), as a tree to spoil."""
    return copy.deepcopy(hook.client.create_message(hook.service, operation, **arguments))


def security(tree: etree._Element) -> etree._Element:
    return tree.find(f"{q(SOAP, 'Header')}/{q(WSSE, 'Security')}")


def token(tree: etree._Element) -> etree._Element:
    return security(tree).find(q(WSSE, "UsernameToken"))


def signed_info(tree: etree._Element) -> etree._Element:
    return security(tree).find(f"{q(DS, 'Signature')}/{q(DS, 'SignedInfo')}")


def add_reference(tree: etree._Element, uri: str) -> None:
    """A Reference as zeep writes them (exclusive C14N, SHA-256), to ``uri``, its digest made up."""
    reference = etree.SubElement(signed_info(tree), q(DS, "Reference"), URI=uri)
    etree.SubElement(etree.SubElement(reference, q(DS, "Transforms")), q(DS, "Transform"), Algorithm=EXC_C14N)
    etree.SubElement(reference, q(DS, "DigestMethod"), Algorithm=SHA256)
    etree.SubElement(reference, q(DS, "DigestValue")).text = base64.b64encode(bytes(32)).decode()


def header_block(tree: etree._Element, identifier: str | None = None) -> etree._Element:
    """A header block of the sender's own beside wsu:Security (any SOAP header may carry such)."""
    block = etree.SubElement(tree.find(q(SOAP, "Header")), "{urn:example:note}Note")
    if identifier is not None:
        block.set(WSU_ID, identifier)
    return block


def nest(parent: etree._Element, levels: int) -> None:
    for _ in range(levels):
        parent = etree.SubElement(parent, "{urn:example:note}n")


# -- what a hostile sender does -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    sender: str  # which of Senders builds the message before it is spoiled
    spoil: Callable[[etree._Element, Path], bytes | None]  # changes the tree in place, or returns raw bytes
    code: str
    check: str


def _set(path: str, text: str) -> Callable[[etree._Element, Path], None]:
    def spoil(tree: etree._Element, _tmp: Path) -> None:
        for element in tree.iterfind(path, {"wsse": WSSE, "wsu": WSU}):
            element.text = text

    return spoil


def _remove(path: str) -> Callable[[etree._Element, Path], None]:
    def spoil(tree: etree._Element, _tmp: Path) -> None:
        for element in tree.findall(path, {"wsse": WSSE, "wsu": WSU, "ds": DS}):
            element.getparent().remove(element)

    return spoil


def _local_path(tree: etree._Element, tmp: Path) -> None:
    """The original attack: a URI that is a path, and an element whose id is that path without its first
    character (the only check there was)."""
    secret = tmp / "secret.txt"
    secret.write_text(f"{SECRET}\n")
    header_block(tree, str(secret)[1:])
    add_reference(tree, str(secret))


def _fifo(tree: etree._Element, tmp: Path) -> None:
    """Opened, a FIFO nobody writes to blocks the reader for ever."""
    fifo = tmp / "fifo"
    os.mkfifo(fifo)
    header_block(tree, str(fifo)[1:])
    add_reference(tree, str(fifo))


def _xslt(tree: etree._Element, tmp: Path) -> None:
    """A stylesheet on the body's reference that would write a file if it ran."""
    transforms = signed_info(tree).find(f"{q(DS, 'Reference')}/{q(DS, 'Transforms')}")
    transform = etree.SubElement(transforms, q(DS, "Transform"), Algorithm=XSLT)
    transform.append(
        etree.fromstring(
            f'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform" '
            f'xmlns:exsl="http://exslt.org/common" extension-element-prefixes="exsl"><xsl:template match="/">'
            f'<exsl:document href="{tmp / "xslt-ran"}"><ran/></exsl:document></xsl:template></xsl:stylesheet>'
        )
    )


def _reference(uri: str) -> Callable[[etree._Element, Path], None]:
    def spoil(tree: etree._Element, _tmp: Path) -> None:
        add_reference(tree, uri)

    return spoil


def _unexpected_id(tree: etree._Element, _tmp: Path) -> None:
    token(tree).set(WSU_ID, "id-token")
    add_reference(tree, "#id-token")


def _wrapped_body(tree: etree._Element, _tmp: Path) -> None:
    """Signature wrapping: a second element with the signed Body's id, for a verifier to pick the wrong one."""
    body = tree.find(q(SOAP, "Body"))
    decoy = header_block(tree, body.get(WSU_ID))
    decoy.append(copy.deepcopy(body[0]))


def _method(algorithm: str) -> Callable[[etree._Element, Path], None]:
    def spoil(tree: etree._Element, _tmp: Path) -> None:
        signed_info(tree).find(q(DS, "SignatureMethod")).set("Algorithm", algorithm)

    return spoil


def _retrieval_method(tree: etree._Element, _tmp: Path) -> None:
    key_info = security(tree).find(f"{q(DS, 'Signature')}/{q(DS, 'KeyInfo')}")
    key_info.append(etree.Element(q(DS, "RetrievalMethod"), URI="file:///etc/passwd"))


def _object(tree: etree._Element, _tmp: Path) -> None:
    security(tree).find(q(DS, "Signature")).append(etree.Element(q(DS, "Object")))


def _twice(path: str) -> Callable[[etree._Element, Path], None]:
    def spoil(tree: etree._Element, _tmp: Path) -> None:
        element = tree.find(path, {"wsse": WSSE, "wsu": WSU})
        element.addnext(copy.deepcopy(element))

    return spoil


def _raw(make: Callable[[bytes], bytes]) -> Callable[[etree._Element, Path], bytes]:
    return lambda tree, _tmp: make(etree.tostring(tree))


def _deep_body(tree: etree._Element, _tmp: Path) -> None:
    nest(tree.find(q(SOAP, "Body"))[0], MAX_DEPTH + 8)


def _many_elements(tree: etree._Element, _tmp: Path) -> None:
    request = tree.find(q(SOAP, "Body"))[0]
    for _ in range(MAX_ELEMENTS + 1):
        etree.SubElement(request, "{urn:example:note}e")


def _deep_header(tree: etree._Element, _tmp: Path) -> None:
    nest(header_block(tree), MAX_DEPTH + 8)


def _long_header(tree: etree._Element, _tmp: Path) -> None:
    header_block(tree).text = "x" * MAX_HEADER_BYTES


def _personal_id_in_a_value(tree: etree._Element, _tmp: Path) -> None:
    tree.find(q(SOAP, "Body"))[0][0].text = "001200012345"  # packageId: a personal ID where a UUID belongs


def _response_in_the_body(tree: etree._Element, _tmp: Path) -> None:
    body = tree.find(q(SOAP, "Body"))
    body.remove(body[0])
    tns = "urn:lienthong:tax:exchange:v1"
    records = etree.SubElement(etree.SubElement(body, q(tns, "ListRecordsResponse")), q(tns, "records"))
    etree.SubElement(records, q(tns, "personalId")).text = "079085001234"


INVALID, AUTHENTICATION = "soap:Client.Invalid", "soap:Client.Authentication"
CREATED = "wsse:UsernameToken/wsu:Created"
HOSTILE = {
    # WS-Security: the credentials, the nonce, the times
    "password-text-without-nonce": Hostile("text", _remove(".//wsse:Nonce"), AUTHENTICATION, "nonce"),
    "password-digest-without-nonce": Hostile("digest", _remove(".//wsse:Nonce"), AUTHENTICATION, "nonce"),
    "nonce-not-base64": Hostile("digest", _set(".//wsse:Nonce", "not base64!"), AUTHENTICATION, "nonce"),
    "nonce-too-long": Hostile(
        "digest", _set(".//wsse:Nonce", base64.b64encode(bytes(MAX_NONCE_BYTES + 1)).decode()), AUTHENTICATION, "nonce"
    ),
    "created-without-time-zone": Hostile(
        "digest", _set(f".//{CREATED}", "2026-07-01T00:00:00"), AUTHENTICATION, "created"
    ),
    "created-long-ago": Hostile("digest", _set(f".//{CREATED}", "2020-07-01T00:00:00Z"), AUTHENTICATION, "created"),
    "timestamp-without-time-zone": Hostile(
        "digest", _set(".//wsu:Timestamp/*", "2026-07-01T00:00:00"), AUTHENTICATION, "timestamp"
    ),
    "timestamp-out-of-range": Hostile(
        "digest", _set(".//wsu:Timestamp/*", "0001-01-01T00:00:00+23:59"), AUTHENTICATION, "timestamp"
    ),
    "no-timestamp": Hostile("digest", _remove(".//wsu:Timestamp"), AUTHENTICATION, "timestamp"),
    "wrong-password": Hostile("text", _set(".//wsse:Password", "guessed"), AUTHENTICATION, "credentials"),
    "two-username-tokens": Hostile("digest", _twice(".//wsse:UsernameToken"), AUTHENTICATION, "credentials"),
    "two-security-headers": Hostile("digest", _twice(".//wsse:Security"), AUTHENTICATION, "credentials"),
    # the XML
    "dtd": Hostile("digest", _raw(lambda body: b'<!DOCTYPE e [<!ENTITY x "x">]>' + body), INVALID, "envelope"),
    "header-nested-deep": Hostile("digest", _deep_header, INVALID, "envelope"),
    "header-past-its-limit": Hostile("digest", _long_header, INVALID, "envelope"),
    "body-nested-deep": Hostile("digest", _deep_body, INVALID, "envelope"),
    "body-of-many-elements": Hostile("digest", _many_elements, INVALID, "envelope"),
    "cut-off-in-the-body": Hostile(
        "digest", _raw(lambda body: body[: body.index(b"packageId>") + 30]), INVALID, "envelope"
    ),
    "soap-1.2": Hostile(
        "digest",
        _raw(lambda body: body.replace(SOAP.encode(), b"http://www.w3.org/2003/05/soap-envelope")),
        INVALID,
        "envelope",
    ),
    "personal-id-breaking-the-schema": Hostile("digest", _personal_id_in_a_value, INVALID, "envelope"),
    "a-response-in-the-body": Hostile("digest", _response_in_the_body, INVALID, "envelope"),
    # the XML signature, by a sender who knows the password but holds no signing key
    "reference-to-a-local-path": Hostile("signed", _local_path, AUTHENTICATION, "signature"),
    "reference-to-a-fifo": Hostile("signed", _fifo, AUTHENTICATION, "signature"),
    "xslt-transform": Hostile("signed", _xslt, AUTHENTICATION, "signature"),
    "reference-to-an-unexpected-id": Hostile("signed", _unexpected_id, AUTHENTICATION, "signature"),
    "xpointer-reference": Hostile("signed", _reference("#xpointer(/)"), AUTHENTICATION, "signature"),
    "whole-document-reference": Hostile("signed", _reference(""), AUTHENTICATION, "signature"),
    "body-not-signed": Hostile("signed", _remove(".//ds:SignedInfo/ds:Reference[1]"), AUTHENTICATION, "signature"),
    "signature-wrapping": Hostile("signed", _wrapped_body, AUTHENTICATION, "signature"),
    "hmac-signature-method": Hostile(
        "signed", _method("http://www.w3.org/2000/09/xmldsig#hmac-sha1"), AUTHENTICATION, "signature"
    ),
    "retrieval-method-in-key-info": Hostile("signed", _retrieval_method, AUTHENTICATION, "signature"),
    "object-in-signature": Hostile("signed", _object, AUTHENTICATION, "signature"),
    "signed-by-the-health-agency": Hostile("health", lambda tree, _tmp: None, AUTHENTICATION, "signer"),
}


def intake_calls(tax, monkeypatch) -> list[Path]:
    """The packages that reach the partner's intake from now on (a refused request must bring none there)."""
    calls: list[Path] = []
    receive = tax.intake.receive

    def spy(path: Path):
        calls.append(path)
        return receive(path)

    monkeypatch.setattr(tax.intake, "receive", spy)
    return calls


def assert_refused(answer: requests.Response, code: str, check: str) -> str:
    assert answer.status_code == 500 and answer.headers["content-type"].startswith("text/xml")
    faultcode, faultstring = fault(answer)
    assert (faultcode, faultstring.split(":", 1)[0]) == (code, check), faultstring
    assert "\n" not in faultstring and not PERSONAL_ID.search(answer.content)
    return faultstring


def assert_still_answering(hook: SoapHook) -> None:
    assert hook.call("Ping")["status"] == "up"


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_request_is_refused_by_name_and_changes_nothing(
    partners, senders, make_package, tmp_path, caplog, monkeypatch, case
):
    caplog.set_level(logging.DEBUG)
    tax = partners.partners["tax"]
    package = make_package("tax")
    tree = message(
        getattr(senders, case.sender),
        "SubmitPackage",
        packageId=package.manifest.package_id,
        package=package.path.read_bytes(),
    )
    work, stored = sorted(tax.intake.work_dir.iterdir()), tax.store.package_count()
    received = intake_calls(tax, monkeypatch)
    spoiled = case.spoil(tree, tmp_path)
    message_text = assert_refused(post(partners, spoiled or etree.tostring(tree)), case.code, case.check)
    assert received == [] and tax.store.package_count() == stored
    assert tax.store.stored_package(package.manifest.package_id) is None
    assert sorted(tax.intake.work_dir.iterdir()) == work
    assert not (tmp_path / "xslt-ran").exists() and SECRET not in message_text + caplog.text
    assert not PERSONAL_ID.search(caplog.text.encode())
    assert_still_answering(senders.digest)


def test_a_replayed_password_text_message_is_refused(partners, senders):
    body = etree.tostring(message(senders.text, "ListRecords", limit=5))
    assert post(partners, body, "ListRecords").status_code == 200
    assert_refused(post(partners, body, "ListRecords"), AUTHENTICATION, "replay")
    assert_still_answering(senders.text)


def test_a_replayed_signed_timestamp_with_a_fresh_nonce_is_refused(partners, senders):
    """A password holder without the signing key re-sends a captured signed request under a new UsernameToken."""
    captured = message(senders.signed, "ListRecords", limit=5)
    assert post(partners, etree.tostring(captured), "ListRecords").status_code == 200
    security(captured).replace(token(captured), token(message(senders.digest)))
    assert_refused(post(partners, etree.tostring(captured), "ListRecords"), AUTHENTICATION, "replay")
    assert_still_answering(senders.signed)


def unauthenticated(spoil: Callable[[etree._Element], None]) -> Callable[[etree._Element], bytes]:
    """A request of ``BIG`` bytes of small elements in its Body, its header spoiled by ``spoil``."""

    def make(tree: etree._Element) -> bytes:
        spoil(tree)
        head, tail = etree.tostring(tree).split(b"<ns0:PingRequest")
        return head + b"<r/>" * (BIG // 4) + b"<ns0:PingRequest" + tail

    return make


def _strip_security(tree: etree._Element) -> None:
    security(tree).getparent().remove(security(tree))


def _wrong_password(tree: etree._Element) -> None:
    token(tree).find(q(WSSE, "Password")).text = "guessed"


def _huge_header(tree: etree._Element) -> None:
    header_block(tree).text = "x" * BIG


UNAUTHENTICATED = {
    "no-ws-security": (unauthenticated(_strip_security), AUTHENTICATION, "credentials"),
    "wrong-password": (unauthenticated(_wrong_password), AUTHENTICATION, "credentials"),
    "huge-header": (unauthenticated(_huge_header), INVALID, "envelope"),
}


def _memory(field: str) -> int:
    """A figure of /proc/self/status, in bytes (the partner serves from a thread of this process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


@pytest.mark.parametrize("make, code, check", UNAUTHENTICATED.values(), ids=UNAUTHENTICATED.keys())
def test_an_unauthenticated_large_request_is_refused_without_being_parsed(partners, senders, make, code, check):
    """Its peak memory is measured: /proc/self/clear_refs resets the high-water mark of the process. Parsed, as
    the server once did, each of these requests cost over 500 MiB."""
    tax = partners.partners["tax"]
    body = make(message(senders.digest))
    assert len(body) > BIG
    work = sorted(tax.intake.work_dir.iterdir())
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # memory freed by earlier tests goes back to the system, to be counted
    before = _memory("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    answer = post(partners, body, "Ping")
    growth = _memory("VmHWM") - before
    assert growth < BIG // 2, f"the refusal cost {growth / 2**20:.0f} MiB"
    assert_refused(answer, code, check)
    assert sorted(tax.intake.work_dir.iterdir()) == work
    assert_still_answering(senders.digest)


@contextmanager
def raw_post(partners, declared: int, first: bytes) -> Iterator[ssl.SSLSocket]:
    """A POST over TLS that says it has ``declared`` bytes and sends ``first`` of them, left open for the test."""
    context = ssl.create_default_context(cafile=str(partners.pki.root_ca))
    plain = socket.create_connection(("127.0.0.1", partners.partners["tax"].server.port), timeout=30)
    with context.wrap_socket(plain, server_hostname="127.0.0.1") as tls:
        head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n\r\n"
        tls.sendall(head.encode() + first)
        yield tls


def test_a_body_over_the_limit_is_refused_by_its_length_before_it_is_read(partners, senders):
    tax = partners.partners["tax"]
    work = sorted(tax.intake.work_dir.iterdir())
    with raw_post(partners, MAX_REQUEST_BYTES + 1, b"<") as tls:
        answer = b"".join(iter(lambda: tls.recv(65536), b""))  # the server answers at once and closes
    head, _, body = answer.partition(b"\r\n\r\n")
    faultstring = etree.fromstring(body).findtext(".//faultstring")
    assert head.startswith(b"HTTP/1.1 500") and faultstring.startswith("body_size: ")
    assert sorted(tax.intake.work_dir.iterdir()) == work
    assert_still_answering(senders.digest)


def test_an_upload_broken_off_in_the_middle_leaves_no_file_and_no_traceback(partners, senders, caplog):
    tax = partners.partners["tax"]

    def spooled() -> list[Path]:
        return list(tax.intake.work_dir.glob("upload-*"))

    with raw_post(partners, 1024 * 1024, etree.tostring(message(senders.digest)) + b" " * 65536):
        wait_for(spooled, "the upload to be spooled")
    wait_for(lambda: not spooled(), "the broken-off upload to be removed")
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert_still_answering(senders.digest)
