"""The tax partner: a SOAP 1.1 service (``schemas/wsdl/tax-exchange.v1.wsdl``) over TLS.

Every request is parsed with DTDs and entities refused, checked against the XSD, and authenticated by its
WS-Security header: a UsernameToken (PasswordDigest over nonce and created time, or PasswordText), a
``wsu:Timestamp`` that has not expired, a nonce not seen before. When the body is XML-signed — required when the
partner is set up so — the signature must cover the body and timestamp, verify with the certificate in the
BinarySecurityToken, and that certificate must chain to the sandbox root with the signing key usage.

Inbound, the partner serves its published packages: ``ListOutbox``, ``FetchPackage`` (the zip, base64) and
``SubmitReceipt`` (the population database's signed receipt for one, verified and kept once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Scope

from exchange.safe_xml import InvalidDocument, UnsafeDocument, parse_untrusted, validate
from lienthong.settings import schema_file
from partners.base import NoSuchPackage, Partner, decode_cursor, encode_cursor
from partners.http import FaultInjection, ServerThread, TlsSettings, read_body_to_file
from partners.intake import IntakeRefused, PartnerKeys, ReceiptRefused, outbox_package, sha256_file
from partners.xml_signature import SignatureRefused, verify_body_signature

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
TNS = "urn:lienthong:tax:exchange:v1"
PATH = "/soap/exchange/v1"
WSDL = schema_file("wsdl/tax-exchange.v1.wsdl")
XSD = schema_file("xsd/tax-exchange.v1.xsd")
MAX_REQUEST_BYTES = 256 * 1024 * 1024
CLOCK_SKEW = timedelta(minutes=5)
MAX_PAGE = 5000
_NS = {"soap": SOAP, "wsse": WSSE, "wsu": WSU, "ds": DS}
E = ElementMaker(namespace=TNS, nsmap={"tns": TNS})
SOAP_E = ElementMaker(namespace=SOAP, nsmap={"soap": SOAP})


class SoapRefusal(Exception):
    """Answered as a SOAP fault with ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def fault_envelope(code: str, message: str = "") -> bytes:
    fault = SOAP_E.Fault(etree.Element("faultcode"), etree.Element("faultstring"))
    fault[0].text = code
    fault[1].text = message or code
    return etree.tostring(SOAP_E.Envelope(SOAP_E.Body(fault)), xml_declaration=True, encoding="utf-8")


def envelope(body: etree._Element) -> bytes:
    return etree.tostring(SOAP_E.Envelope(SOAP_E.Body(body)), xml_declaration=True, encoding="utf-8")


class TaxPartner(Partner):
    transport = "soap"

    def __init__(
        self,
        keys: PartnerKeys,
        state_dir: Path,
        *,
        users: dict[str, str],
        issuing_ca: Path,
        require_signature: bool = False,
    ) -> None:
        super().__init__(keys, state_dir)
        self.users = users
        self.require_signature = require_signature
        self.issuing_ca = issuing_ca
        self._nonces: dict[str, float] = {}
        self._nonce_lock = threading.Lock()
        tls = TlsSettings(self.tls_chain, keys.tls_key, keys.key_password)
        self.server = ServerThread(self._app(), f"partner-{self.name}", tls)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def endpoint(self) -> dict[str, Any]:
        return {
            "transport": "soap",
            "url": f"{self.server.url}{PATH}",
            "wsdl_url": f"{self.server.url}{PATH}?wsdl",
            "wsdl": "schemas/wsdl/tax-exchange.v1.wsdl",
            "host": "127.0.0.1",
            "port": self.server.port,
            "path": PATH.lstrip("/"),
            "binding": f"{{{TNS}}}TaxExchangeBinding",
            "auth": "ws-security UsernameToken (PasswordDigest), Timestamp"
            + (", XML signature of the body required" if self.require_signature else ""),
        }

    # -- the app ----------------------------------------------------------------------------------------------

    def _app(self):
        app = Starlette(routes=[Route(PATH, self.describe, methods=["GET"]), Route(PATH, self.call, methods=["POST"])])
        return FaultInjection(app, self.faults, _operation, "soap", soap_fault=fault_envelope)

    async def describe(self, request: Request) -> Response:
        """``?wsdl``: the WSDL, self-contained (its XSD inlined: hardened clients load nothing further) and
        with this server's address."""
        if "wsdl" not in request.query_params:
            return Response("add ?wsdl", status_code=404)
        return Response(self_contained_wsdl(f"{self.server.url}{PATH}"), media_type="text/xml; charset=utf-8")

    async def call(self, request: Request) -> Response:
        upload = await read_body_to_file(request, MAX_REQUEST_BYTES, self.intake.work_dir)
        if upload is None:
            return _fault_response("soap:Client.Invalid", "the request is too large")
        try:
            answer = await run_in_threadpool(self._dispatch, upload.read_bytes())
        except SoapRefusal as refusal:
            return _fault_response(refusal.code, str(refusal))
        finally:
            upload.unlink(missing_ok=True)
        return Response(envelope(answer), media_type="text/xml; charset=utf-8")

    def _dispatch(self, data: bytes) -> etree._Element:
        try:
            root = parse_untrusted(data, long_text=True)  # SubmitPackage carries the package in base64
        except UnsafeDocument as error:
            raise SoapRefusal("soap:Client.Invalid", f"refused: {error}") from None
        except InvalidDocument as error:
            raise SoapRefusal("soap:Client.Invalid", str(error)) from None
        body = root.find("soap:Body", _NS)
        if root.tag != f"{{{SOAP}}}Envelope" or body is None or len(body) != 1:
            raise SoapRefusal("soap:Client.Invalid", "not a SOAP 1.1 envelope with one body element")
        self._authenticate(root)
        request = body[0]
        try:
            validate(request, XSD)
        except InvalidDocument as error:
            raise SoapRefusal("soap:Client.Invalid", str(error)) from None
        operation = etree.QName(request).localname
        if operation == "PingRequest":
            return E.PingResponse(E.status("up"), E.partner(self.name))
        if operation == "SubmitPackageRequest":
            return self._submit(request)
        if operation == "ListRecordsRequest":
            return self._list(request)
        if operation == "ListOutboxRequest":
            return self._list_outbox()
        if operation == "FetchPackageRequest":
            return self._fetch_package(request)
        if operation == "SubmitReceiptRequest":
            return self._take_receipt(request)
        raise SoapRefusal("soap:Client.Invalid", f"no operation {operation}")

    # -- WS-Security --------------------------------------------------------------------------------------------

    def _authenticate(self, root: etree._Element) -> None:
        security = root.find("soap:Header/wsse:Security", _NS)
        if security is None:
            raise SoapRefusal("soap:Client.Authentication", "no WS-Security header")
        _check_timestamp(security.find("wsu:Timestamp", _NS))
        token = security.find("wsse:UsernameToken", _NS)
        if token is None:
            raise SoapRefusal("soap:Client.Authentication", "no UsernameToken")
        username = token.findtext("wsse:Username", namespaces=_NS) or ""
        password = token.find("wsse:Password", _NS)
        expected = self.users.get(username)
        if expected is None or password is None or not self._password_matches(token, password, expected):
            raise SoapRefusal("soap:Client.Authentication", "the WS-Security credentials were refused")
        signature = security.find("ds:Signature", _NS)
        if signature is not None or self.require_signature:
            self._verify_signature(root, security, signature)

    def _password_matches(self, token: etree._Element, password: etree._Element, expected: str) -> bool:
        if (password.get("Type") or "").endswith("#PasswordText"):
            return hmac.compare_digest((password.text or "").encode(), expected.encode())
        nonce_text = token.findtext("wsse:Nonce", namespaces=_NS) or ""
        created = token.findtext("wsu:Created", namespaces=_NS) or ""
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
        except binascii.Error:
            return False
        if not nonce or not created or not self._fresh_nonce(nonce_text, created):
            return False
        digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + expected.encode()).digest()).decode()
        return hmac.compare_digest(digest.encode(), (password.text or "").encode())

    def _fresh_nonce(self, nonce: str, created: str) -> bool:
        """A nonce is good once, and only with a recent created time (so the cache stays small)."""
        try:
            moment = _instant(created)
        except ValueError:
            return False
        if abs(datetime.now(UTC) - moment) > CLOCK_SKEW:
            return False
        now = time.monotonic()
        with self._nonce_lock:
            for seen, expiry in list(self._nonces.items()):
                if expiry < now:
                    del self._nonces[seen]
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = now + 2 * CLOCK_SKEW.total_seconds()
        return True

    def _verify_signature(self, root, security, signature) -> None:
        if signature is None:
            raise SoapRefusal("soap:Client.Authentication", "this service requires an XML signature of the body")
        try:
            verify_body_signature(root, security, signature, self.keys.trust, self.issuing_ca)
        except SignatureRefused as error:
            raise SoapRefusal("soap:Client.Authentication", f"XML signature refused: {error}") from None

    # -- operations -----------------------------------------------------------------------------------------------

    def _submit(self, request: etree._Element) -> etree._Element:
        package_id = request.findtext("tns:packageId", namespaces={"tns": TNS})
        data = base64.b64decode(request.findtext("tns:package", namespaces={"tns": TNS}) or "")
        upload = self.intake.work_dir / f"soap-{package_id}-{time.monotonic_ns()}.zip"
        upload.write_bytes(data)
        try:
            result = self.intake.receive(upload)
        except IntakeRefused as error:
            raise SoapRefusal("soap:Client.Invalid", str(error)) from None
        finally:
            upload.unlink(missing_ok=True)
        if result.package_id != package_id:
            raise SoapRefusal("soap:Client.Invalid", "packageId is not the package's id")
        return E.SubmitPackageResponse(
            E.status(result.status),
            E.duplicate("true" if result.duplicate else "false"),
            E.receipt(base64.b64encode(result.receipt).decode("ascii")),
            E.signature(base64.b64encode(result.signature).decode("ascii")),
        )

    def _list(self, request: etree._Element) -> etree._Element:
        try:
            after = decode_cursor(request.findtext("tns:cursor", namespaces={"tns": TNS}))
        except ValueError as error:
            raise SoapRefusal("soap:Client.Invalid", str(error)) from None
        limit = min(int(request.findtext("tns:limit", namespaces={"tns": TNS}) or 500), MAX_PAGE)
        people, last = self.store.people_page(after, limit)
        response = E.ListRecordsResponse()
        for person in people:
            record = E.records(E.taxCode(person.details["tax_code"]), E.personalId(person.personal_id),
                               E.fullName(person.full_name))  # fmt: skip
            if person.date_of_birth:
                record.append(E.dateOfBirth(person.date_of_birth))
            record.append(E.status(person.status))
            record.append(E.taxOffice(person.details["tax_office"]))
            response.append(record)
        if (cursor := encode_cursor(last)) is not None:
            response.append(E.nextCursor(cursor))
        return response

    def _list_outbox(self) -> etree._Element:
        response = E.ListOutboxResponse()
        for path in self.published():
            response.append(E.packages(E.name(path.name), E.bytes(str(path.stat().st_size)),
                                       E.sha256(sha256_file(path))))  # fmt: skip
        return response

    def _fetch_package(self, request: etree._Element) -> etree._Element:
        name = request.findtext("tns:name", namespaces={"tns": TNS}) or ""
        path = outbox_package(self.outbox, name)
        if path is None:
            raise SoapRefusal("soap:Client.NotFound", "no such package in the outbox")
        data = path.read_bytes()
        return E.FetchPackageResponse(E.name(name), E.sha256(hashlib.sha256(data).hexdigest()),
                                      E.package(base64.b64encode(data).decode("ascii")))  # fmt: skip

    def _take_receipt(self, request: etree._Element) -> etree._Element:
        namespaces = {"tns": TNS}
        name = request.findtext("tns:name", namespaces=namespaces) or ""
        receipt = base64.b64decode(request.findtext("tns:receipt", namespaces=namespaces) or "")
        signature = base64.b64decode(request.findtext("tns:signature", namespaces=namespaces) or "")
        try:
            taken = self.take_receipt(name, receipt, signature)
        except NoSuchPackage as error:
            raise SoapRefusal("soap:Client.NotFound", str(error)) from None
        except ReceiptRefused as error:
            raise SoapRefusal("soap:Client.ReceiptRefused", str(error)) from None
        return E.SubmitReceiptResponse(E.status(taken.status), E.duplicate("true" if taken.duplicate else "false"),
                                       E.packageId(taken.package_id))  # fmt: skip


def _check_timestamp(timestamp: etree._Element | None) -> None:
    if timestamp is None:
        raise SoapRefusal("soap:Client.Authentication", "no wsu:Timestamp")
    try:
        created = datetime.fromisoformat(
            (timestamp.findtext("wsu:Created", namespaces=_NS) or "").replace("Z", "+00:00")
        )
        expires = datetime.fromisoformat(
            (timestamp.findtext("wsu:Expires", namespaces=_NS) or "").replace("Z", "+00:00")
        )
    except ValueError:
        raise SoapRefusal("soap:Client.Authentication", "the wsu:Timestamp is not readable") from None
    now = datetime.now(UTC)
    if expires < now or created > now + CLOCK_SKEW or expires - created > 2 * CLOCK_SKEW:
        raise SoapRefusal("soap:Client.Authentication", "the message has expired or its timestamp is not valid")


def self_contained_wsdl(address: str) -> bytes:
    """The WSDL of ``schemas/`` with the imported XSD put in its types and the service at ``address``."""
    wsdl = etree.parse(str(WSDL), etree.XMLParser(resolve_entities=False, no_network=True))
    types = wsdl.find("{http://schemas.xmlsoap.org/wsdl/}types")
    for child in list(types):
        types.remove(child)
    types.append(etree.parse(str(XSD), etree.XMLParser(resolve_entities=False, no_network=True)).getroot())
    location = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    location.set("location", address)
    return etree.tostring(wsdl, xml_declaration=True, encoding="utf-8")


def _instant(text: str | None) -> datetime:
    moment = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError("a WS-Security time needs its time zone")
    return moment


def _operation(scope: Scope) -> str:
    """The SOAP operation from the SOAPAction header (``…#SubmitPackage``); ``wsdl`` for GETs."""
    if scope["method"] == "GET":
        return "wsdl"
    for name, value in scope["headers"]:
        if name == b"soapaction":
            return value.decode("latin-1").strip('"').rsplit("#", 1)[-1]
    return "unknown"


def _fault_response(code: str, message: str) -> Response:
    return Response(fault_envelope(code, message), status_code=500, media_type="text/xml; charset=utf-8")
