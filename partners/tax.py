"""The tax partner: a SOAP 1.1 service (``schemas/wsdl/tax-exchange.v1.wsdl``) over TLS.

A request is authenticated before its Body is parsed (``partners.xml_signature`` reads only the header, bounded):
its WS-Security header must hold a ``wsu:Timestamp`` that has not expired and a UsernameToken (PasswordDigest over
nonce and created time, or PasswordText) with a nonce and a created time, the nonce not seen before. When the
body is XML-signed — required when the partner is set up so — the signature must cover the body and timestamp,
be by the population database's signing certificate, verify, and not have been seen before. Then the request is
parsed, bounded, and checked against the XSD. Every refusal is a SOAP fault whose message starts with the name
of its check (``credentials``, ``nonce``, ``created``, ``replay``, ``timestamp``, ``signature``, ``signer``, …).

Inbound, the partner serves its published packages: ``ListOutbox``, ``FetchPackage`` (the zip, base64) and
``SubmitReceipt`` (the population database's signed receipt for one, verified and kept once).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from dataclasses import dataclass
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

from exchange.errors import VerificationError
from exchange.pki import POPULATION
from exchange.safe_xml import MAX_BYTES, InvalidDocument, validate
from lienthong.settings import partners_host, schema_file
from partners.base import NoSuchPackage, Partner, decode_cursor, encode_cursor
from partners.http import (
    BODY_ERRORS,
    CLOSE,
    BodyTooLarge,
    FaultInjection,
    ServerThread,
    TlsSettings,
    read_body_to_file,
)
from partners.intake import IntakeRefused, PartnerKeys, ReceiptRefused, outbox_package, sha256_file
from partners.store import STORE_FAULTS
from partners.xml_signature import (
    AUTHENTICATION,
    DS,
    INVALID,
    SOAP,
    WSSE,
    WSU,
    SecurityHeader,
    SignedHeader,
    SoapRefusal,
    check_signature_form,
    read_envelope,
    read_security_header,
    verification_refusal,
    verify_signature,
)

TNS = "urn:lienthong:tax:exchange:v1"
PATH = "/soap/exchange/v1"
WSDL = schema_file("wsdl/tax-exchange.v1.wsdl")
XSD = schema_file("xsd/tax-exchange.v1.xsd")
# exchange.safe_xml's cap on one XML document from outside: a package travels in base64 (4/3 of its size), so a
# zipped package of up to 48 MiB.
MAX_REQUEST_BYTES = MAX_BYTES
CLOCK_SKEW = timedelta(minutes=5)
MAX_PAGE = 5000
# zeep sends 16 random bytes; 64 keeps what the nonce cache holds for each request small.
MAX_NONCE_BYTES = 64
_TOKEN_PROFILE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
PASSWORD_TEXT, PASSWORD_DIGEST = f"{_TOKEN_PROFILE}#PasswordText", f"{_TOKEN_PROFILE}#PasswordDigest"
_NS = {"soap": SOAP, "wsse": WSSE, "wsu": WSU, "ds": DS}
E = ElementMaker(namespace=TNS, nsmap={"tns": TNS})
SOAP_E = ElementMaker(namespace=SOAP, nsmap={"soap": SOAP})
log = logging.getLogger(__name__)


def fault_envelope(code: str, message: str = "") -> bytes:
    fault = SOAP_E.Fault(etree.Element("faultcode"), etree.Element("faultstring"))
    fault[0].text = code
    fault[1].text = message or code
    return etree.tostring(SOAP_E.Envelope(SOAP_E.Body(fault)), xml_declaration=True, encoding="utf-8")


def envelope(body: etree._Element) -> bytes:
    return etree.tostring(SOAP_E.Envelope(SOAP_E.Body(body)), xml_declaration=True, encoding="utf-8")


class SeenOnce:
    """Keys remembered until they expire: a nonce, or a signed timestamp, is good once. Only authenticated
    requests add keys, and none outlives its message's ten minutes at most, so the memory stays small."""

    def __init__(self) -> None:
        self._until: dict[Hashable, datetime] = {}
        self._lock = threading.Lock()

    def first_time(self, key: Hashable, until: datetime) -> bool:
        now = datetime.now(UTC)
        with self._lock:
            for seen, expiry in list(self._until.items()):
                if expiry < now:
                    del self._until[seen]
            if key in self._until:
                return False
            self._until[key] = until
            return True


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
        self.signer = POPULATION  # the agency whose signing certificate must sign a signed body
        self.seen = SeenOnce()
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
            "host": partners_host(),
            "port": self.server.port,
            "path": PATH.lstrip("/"),
            "binding": f"{{{TNS}}}TaxExchangeBinding",
            "auth": "ws-security UsernameToken (PasswordDigest), Timestamp"
            + (", XML signature of the body required" if self.require_signature else ""),
        }

    # -- the app ----------------------------------------------------------------------------------------------

    def _app(self):
        routes = [Route(PATH, self.describe, methods=["GET"]), Route(PATH, self.call, methods=["POST"])]
        app = Starlette(routes=routes, exception_handlers=BODY_ERRORS)  # a client gone mid-body: no traceback
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
            message = f"{BodyTooLarge.check}: the request is over {MAX_REQUEST_BYTES:,} bytes"
            return _fault_response(INVALID, message, CLOSE)
        try:
            answer = await run_in_threadpool(self._dispatch, upload)
        except SoapRefusal as refusal:
            return _fault_response(refusal.code, str(refusal))
        except STORE_FAULTS as error:  # the partner's own fault: the client's retry sends it again later
            log.warning("tax: cannot store now (%s); answered soap:Server.Busy", type(error).__name__)
            return _fault_response("soap:Server.Busy", "server: the partner cannot store this now; send it again later")
        except Exception as error:  # noqa: BLE001 - a client gets a fault, never a traceback; the log gets no data
            frame = traceback.extract_tb(error.__traceback__)[-1]
            log.error("tax: %s at %s:%s", type(error).__name__, Path(frame.filename).name, frame.lineno)
            return _fault_response("soap:Server", "server: the request could not be answered")
        finally:
            upload.unlink(missing_ok=True)
        return Response(envelope(answer), media_type="text/xml; charset=utf-8")

    def _dispatch(self, upload: Path) -> etree._Element:
        """Authenticate on the header alone; only then parse the request, verify its signature, check its schema."""
        with upload.open("rb") as stream:
            header = read_security_header(stream)
        expires = _check_timestamp(_single(header.security, "wsu:Timestamp", "timestamp"))
        signed = self._authenticate(header)
        root = read_envelope(upload)
        request = _request_of(root)
        operation = self._operations().get(request.tag)
        if operation is None:
            raise SoapRefusal(INVALID, "envelope", "the Body holds no operation of this service")
        if signed is not None:
            try:
                verify_signature(root, signed)
            except VerificationError as error:
                raise verification_refusal(error) from None
            if not self.seen.first_time(("signed", signed.replay_key), expires):
                raise SoapRefusal(AUTHENTICATION, "replay", "this signed timestamp was used before")
        try:
            validate(request, XSD)  # its message names the line, element and rule, never the value
        except InvalidDocument as error:
            raise SoapRefusal(INVALID, "envelope", str(error)) from None
        return operation(request)

    def _operations(self) -> dict[str, Callable[[etree._Element], etree._Element]]:
        return {
            f"{{{TNS}}}PingRequest": lambda _request: E.PingResponse(E.status("up"), E.partner(self.name)),
            f"{{{TNS}}}SubmitPackageRequest": self._submit,
            f"{{{TNS}}}ListRecordsRequest": self._list,
            f"{{{TNS}}}ListOutboxRequest": lambda _request: self._list_outbox(),
            f"{{{TNS}}}FetchPackageRequest": self._fetch_package,
            f"{{{TNS}}}SubmitReceiptRequest": self._take_receipt,
        }

    # -- WS-Security --------------------------------------------------------------------------------------------

    def _authenticate(self, header: SecurityHeader) -> SignedHeader | None:
        """The user's password, the nonce (once), and the signature's form and signer: all from the header.
        Returns the signature still to verify over the parsed request, if there is one."""
        token = _username_token(_single(header.security, "wsse:UsernameToken", "credentials"))
        expected = self.users.get(token.username)
        if expected is None or not token.password_matches(expected):
            raise SoapRefusal(AUTHENTICATION, "credentials", "the WS-Security credentials were refused")
        if not self.seen.first_time(("nonce", token.username, token.nonce), token.created_at + CLOCK_SKEW):
            raise SoapRefusal(AUTHENTICATION, "replay", "the nonce was used before")
        signature = _single(header.security, "ds:Signature", "signature")
        if signature is None:
            if self.require_signature:
                raise SoapRefusal(AUTHENTICATION, "signature", "this service requires an XML signature of the body")
            return None
        try:
            return check_signature_form(header, signature, self.keys.trust, self.issuing_ca, self.signer)
        except VerificationError as error:
            raise verification_refusal(error) from None

    # -- operations -----------------------------------------------------------------------------------------------

    def _submit(self, request: etree._Element) -> etree._Element:
        package_id = request.findtext("tns:packageId", namespaces={"tns": TNS})
        data = base64.b64decode(request.findtext("tns:package", namespaces={"tns": TNS}) or "")
        upload = self.intake.work_dir / f"soap-{package_id}-{time.monotonic_ns()}.zip"
        upload.write_bytes(data)
        try:
            result = self.intake.receive(upload)
        except IntakeRefused as error:
            raise SoapRefusal(INVALID, "package", str(error)) from None
        finally:
            upload.unlink(missing_ok=True)
        if result.package_id != package_id:
            raise SoapRefusal(INVALID, "package", "packageId is not the package's id")
        return E.SubmitPackageResponse(
            E.status(result.status),
            E.duplicate("true" if result.duplicate else "false"),
            E.receipt(base64.b64encode(result.receipt).decode("ascii")),
            E.signature(base64.b64encode(result.signature).decode("ascii")),
        )

    def _list(self, request: etree._Element) -> etree._Element:
        try:
            after = decode_cursor(request.findtext("tns:cursor", namespaces={"tns": TNS}))
        except ValueError:
            raise SoapRefusal(INVALID, "cursor", "the cursor was not made by this server") from None
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
            raise SoapRefusal("soap:Client.NotFound", "package", "no such package in the outbox")
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
        except NoSuchPackage:
            raise SoapRefusal("soap:Client.NotFound", "package", "no such package in the outbox") from None
        except ReceiptRefused as error:
            raise SoapRefusal("soap:Client.ReceiptRefused", "receipt", str(error)) from None
        return E.SubmitReceiptResponse(E.status(taken.status), E.duplicate("true" if taken.duplicate else "false"),
                                       E.packageId(taken.package_id))  # fmt: skip


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


def _single(security: etree._Element, path: str, check: str) -> etree._Element | None:
    """The one element of its kind in the Security header, or None; two would mean two readings of one message."""
    found = security.findall(path, _NS)
    if len(found) > 1:
        raise SoapRefusal(AUTHENTICATION, check, f"the WS-Security header has more than one {path.split(':')[-1]}")
    return found[0] if found else None


def _check_timestamp(timestamp: etree._Element | None) -> datetime:
    """A ``wsu:Timestamp`` with times in a time zone, not expired, not from the future, at most ten minutes
    long; returns when it expires."""
    if timestamp is None:
        raise SoapRefusal(AUTHENTICATION, "timestamp", "no wsu:Timestamp")
    created = _time(timestamp.findtext("wsu:Created", namespaces=_NS), "timestamp", "the wsu:Timestamp's Created")
    expires = _time(timestamp.findtext("wsu:Expires", namespaces=_NS), "timestamp", "the wsu:Timestamp's Expires")
    now = datetime.now(UTC)
    if expires < now or created > now + CLOCK_SKEW or not created <= expires <= created + 2 * CLOCK_SKEW:
        raise SoapRefusal(AUTHENTICATION, "timestamp", "the message has expired or its timestamp is not valid")
    return expires


@dataclass(frozen=True)
class UsernameToken:
    """A UsernameToken as sent. Its Nonce and Created are required with either kind of password, so that a
    message is good once."""

    username: str
    password: str
    password_type: str
    nonce: str
    created: str
    created_at: datetime

    def password_matches(self, expected: str) -> bool:
        if self.password_type == PASSWORD_TEXT:
            return hmac.compare_digest(self.password.encode(), expected.encode())
        if self.password_type != PASSWORD_DIGEST:
            return False
        digest = hashlib.sha1(base64.b64decode(self.nonce) + self.created.encode() + expected.encode()).digest()
        return hmac.compare_digest(base64.b64encode(digest), self.password.encode())


def _username_token(token: etree._Element | None) -> UsernameToken:
    """The token's parts; its Nonce must be base64 of 1 to 64 bytes, its Created within the clock skew of now."""
    if token is None:
        raise SoapRefusal(AUTHENTICATION, "credentials", "no UsernameToken")
    nonce = token.findtext("wsse:Nonce", namespaces=_NS)
    if not nonce:
        raise SoapRefusal(AUTHENTICATION, "nonce", "the UsernameToken has no Nonce")
    try:
        size = len(base64.b64decode(nonce, validate=True))
    except binascii.Error:
        raise SoapRefusal(AUTHENTICATION, "nonce", "the Nonce is not base64") from None
    if not 0 < size <= MAX_NONCE_BYTES:
        raise SoapRefusal(AUTHENTICATION, "nonce", f"the Nonce must have 1 to {MAX_NONCE_BYTES} bytes")
    created = token.findtext("wsu:Created", namespaces=_NS) or ""
    created_at = _time(created, "created", "the UsernameToken's Created")
    if abs(datetime.now(UTC) - created_at) > CLOCK_SKEW:
        raise SoapRefusal(AUTHENTICATION, "created", "the UsernameToken was not created within 5 minutes of now")
    password = token.find("wsse:Password", _NS)
    return UsernameToken(
        username=token.findtext("wsse:Username", namespaces=_NS) or "",
        password="" if password is None else password.text or "",
        password_type=PASSWORD_TEXT if password is None else password.get("Type", PASSWORD_TEXT),
        nonce=nonce,
        created=created,
        created_at=created_at,
    )


def _time(text: str | None, check: str, what: str) -> datetime:
    """An xsd:dateTime of WS-Security, which must carry its time zone (a time without one means nothing)."""
    try:
        moment = datetime.fromisoformat((text or "").replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise SoapRefusal(AUTHENTICATION, check, f"{what} has no time zone")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise SoapRefusal(AUTHENTICATION, check, f"{what} is not a time") from None


def _request_of(root: etree._Element) -> etree._Element:
    """The one element in the Body of an Envelope of a Header and a Body."""
    children = [child for child in root if isinstance(child.tag, str)]
    if [child.tag for child in children] != [f"{{{SOAP}}}Header", f"{{{SOAP}}}Body"]:
        raise SoapRefusal(INVALID, "envelope", "not a SOAP 1.1 Envelope of a Header and a Body")
    body = [child for child in children[1] if isinstance(child.tag, str)]
    if len(body) != 1:
        raise SoapRefusal(INVALID, "envelope", "the Body must hold one request")
    return body[0]


def _operation(scope: Scope) -> str:
    """The SOAP operation from the SOAPAction header (``…#SubmitPackage``); ``wsdl`` for GETs."""
    if scope["method"] == "GET":
        return "wsdl"
    for name, value in scope["headers"]:
        if name == b"soapaction":
            return value.decode("latin-1").strip('"').rsplit("#", 1)[-1]
    return "unknown"


def _fault_response(code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(fault_envelope(code, message), 500, headers, media_type="text/xml; charset=utf-8")
