"""SOAP partners (tax): zeep with hardened XML, WS-Security UsernameToken with a timestamp, and an XML signature
over the body and timestamp when the connection asks for one.

The WSDL comes from ``schemas/`` (a path relative to it) or a URL; the connection's host, port and schema
give the endpoint address, overriding the one in the WSDL. zeep parses with DTDs, entities and external
references forbidden, so an answer carrying any of them is refused (``UnsafeXml``). Connection failures,
timeouts and HTTP 5xx answers that are not SOAP faults are retried; SOAP faults become ``SoapFault``, whose
``retryable`` says whether the partner declared itself busy or unavailable (``soap:Server.Busy``) — those are
retried too — or refused the request (``soap:Client.*``), which fails at once.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from requests.adapters import HTTPAdapter
from zeep import Client, Settings
from zeep import exceptions as zeep_errors
from zeep import ns as zeep_ns
from zeep.helpers import serialize_object
from zeep.transports import Transport
from zeep.wsse import Compose
from zeep.wsse import utils as wsse_utils
from zeep.wsse.signature import BinarySignature
from zeep.wsse.username import UsernameToken

from connectors.base import (
    DeliveredReceipt,
    PartnerHook,
    answer_limit,
    package_file_name,
    read_within,
    tls_context,
)
from connectors.errors import (
    AuthenticationFailed,
    CertificateRejected,
    ConfigurationError,
    HttpStatusError,
    MalformedResponse,
    ResponseTooLarge,
    SoapFault,
    TransferIncomplete,
    TransientError,
    UnsafeXml,
)
from connectors.retry import retrying
from lienthong.settings import key_password, schema_file

TIMESTAMP_LIFETIME = timedelta(minutes=5)


def hardened_settings() -> Settings:
    """zeep settings with DTDs, entities and external references refused and no huge trees."""
    return Settings(strict=True, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=False)


class BoundedTransport(Transport):
    """zeep's transport, with each answer (and a WSDL fetched from the partner) read as a stream and refused past
    ``max_response_bytes``: zeep would read one of any size into memory before parsing it."""

    def __init__(self, *args: Any, max_response_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_response_bytes = max_response_bytes

    def post(self, address: str, message: bytes, headers: dict[str, str]) -> requests.Response:
        response = self.session.post(
            address, data=message, headers=headers, timeout=self.operation_timeout, stream=True
        )
        response._content = self._read(response)  # where requests keeps an answer once read: zeep parses it there
        return response

    def _load_remote_data(self, url: str) -> bytes:
        response = self.session.get(url, timeout=self.load_timeout, stream=True)
        response.raise_for_status()
        return self._read(response)

    def _read(self, response: requests.Response) -> bytes:
        try:  # decoded blocks: a compressed answer is bounded as it unfolds
            return read_within(
                response.iter_content(64 * 1024), response.headers.get("Content-Length"), self.max_response_bytes
            )
        finally:
            response.close()


class TimestampedUsernameToken(UsernameToken):
    """A UsernameToken (password digest with nonce and created time, by default) and a fresh ``wsu:Timestamp``
    (Created, Expires) on every message, so that a captured message cannot be replayed for long. A password in
    clear travels with a nonce and created time too (zeep sends none), so that a partner takes each message once."""

    def apply(self, envelope, headers):
        now = datetime.now(UTC).replace(microsecond=0)
        self.timestamp_token = wsse_utils.WSU.Timestamp(
            wsse_utils.WSU.Created(now.strftime("%Y-%m-%dT%H:%M:%SZ")),
            wsse_utils.WSU.Expires((now + TIMESTAMP_LIFETIME).strftime("%Y-%m-%dT%H:%M:%SZ")),
        )
        self.created = now
        self.zulu_timestamp = True
        envelope, headers = super().apply(envelope, headers)
        if not self.use_digest and self.password is not None:
            token = wsse_utils.get_security_header(envelope).find(f"{{{zeep_ns.WSSE}}}UsernameToken")
            token.extend(
                [
                    wsse_utils.WSSE.Nonce(
                        base64.b64encode(os.urandom(16)).decode("ascii"),
                        EncodingType=f"{self.soap_message_secutity_ns}#Base64Binary",
                    ),
                    wsse_utils.WSU.Created(wsse_utils.get_timestamp(self.created, self.zulu_timestamp)),
                ]
            )
        return envelope, headers


class _BodySignature(BinarySignature):
    """zeep's BinarySignature for requests only: the partners do not sign their SOAP answers (what matters in
    them, the receipt, carries its own CMS signature, checked by ``exchange.receipt.verify_receipt``)."""

    def verify(self, envelope):
        return envelope


class _TlsAdapter(HTTPAdapter):
    """requests with our TLS context: the partner's CA, and a client certificate whose key is encrypted."""

    def __init__(self, context) -> None:
        self.context = context
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self.context
        return super().init_poolmanager(*args, **kwargs)


class SoapHook(PartnerHook):
    """A SOAP partner whose service offers Ping, SubmitPackage and ListRecords, as the tax authority's
    ``schemas/wsdl/tax-exchange.v1.wsdl`` does. Connection: host, port, schema = endpoint path; login and
    password = the WS-Security user; extras for the WSDL, signing, TLS, timeouts and retries."""

    conn_name_attr = "soap_conn_id"
    default_conn_name = "lienthong_soap_default"
    conn_type = "lienthong_soap"
    hook_name = "Liên thông SOAP partner (WS-Security)"

    def __init__(self, soap_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(soap_conn_id, **kwargs)

    # -- configuration ----------------------------------------------------------------------------------------

    @cached_property
    def wsdl(self) -> str:
        value = self.extras.text("wsdl", "wsdl/tax-exchange.v1.wsdl")
        if "://" in value:
            return value
        path = Path(value)
        path = path if path.is_absolute() else schema_file(value)
        if not path.is_file():
            raise ConfigurationError(f"connection {self.conn_id!r}: the WSDL {path} does not exist")
        return str(path)

    @cached_property
    def endpoint(self) -> str | None:
        conn = self.connection
        if not conn.host:
            return None
        if "://" in conn.host:
            return conn.host
        port = f":{conn.port}" if conn.port else ""
        return f"{self.extras.text('scheme', 'https')}://{conn.host}{port}/{(conn.schema or '').lstrip('/')}"

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.mount("https://", _TlsAdapter(tls_context(self.extras)))
        if ca_file := self.extras.path("ca_file"):
            session.verify = str(ca_file)
        return session

    @cached_property
    def client(self) -> Client:
        transport = BoundedTransport(
            session=self.session,
            timeout=self.extras.number("timeout", 30.0),
            operation_timeout=self.extras.number("operation_timeout", 60.0),
            max_response_bytes=answer_limit(self.extras),
        )
        try:
            return Client(self.wsdl, transport=transport, settings=hardened_settings(), wsse=self._wsse())
        except zeep_errors.ExternalReferenceForbidden:
            raise UnsafeXml(
                f"the WSDL {self.wsdl} imports documents over the network, which is refused: use a WSDL under "
                "schemas/ or a self-contained one"
            ) from None
        except (zeep_errors.DTDForbidden, zeep_errors.EntitiesForbidden):
            raise UnsafeXml(f"the WSDL {self.wsdl} carries a DTD or entities") from None

    def get_conn(self) -> Client:
        return self.client

    @cached_property
    def service(self):
        if self.endpoint is None:
            return self.client.service
        binding = self.extras.text("binding")
        if binding is None:
            bindings = list(self.client.wsdl.bindings)
            if len(bindings) != 1:
                raise ConfigurationError(f"connection {self.conn_id!r}: the WSDL has several bindings; set 'binding'")
            binding = bindings[0]
        return self.client.create_service(binding, self.endpoint)

    def _wsse(self) -> Compose | None:
        conn = self.connection
        security: list = []
        if conn.login:
            security.append(
                TimestampedUsernameToken(
                    conn.login, conn.password, use_digest=self.extras.flag("password_digest", default=True)
                )
            )
        if self.extras.flag("sign_body"):
            security.append(self._body_signature())
        return Compose(security) if security else None

    def _body_signature(self):
        """An XML signature (ECDSA or RSA with SHA-256, exclusive C14N) over the body and the timestamp, by the
        agency signing certificate, carried as a BinarySecurityToken."""
        import xmlsec

        certificate, key = self.extras.path("signing_cert"), self.extras.path("signing_key")
        if certificate is None or key is None:
            raise ConfigurationError(f"connection {self.conn_id!r}: sign_body needs signing_cert and signing_key")
        method = xmlsec.Transform.ECDSA_SHA256 if _is_ec(certificate) else xmlsec.Transform.RSA_SHA256
        return _BodySignature(
            str(key),
            str(certificate),
            key_password().decode("utf-8"),
            signature_method=method,
            digest_method=xmlsec.Transform.SHA256,
        )

    # -- calls ------------------------------------------------------------------------------------------------

    def call(self, operation: str, **arguments: Any) -> Any:
        """Call an operation under the retry policy; zeep objects come back as plain dicts and lists."""
        action = f"SOAP {operation}"
        for attempt in retrying(self.retry_policy, self.log, action, self.sleep):
            with attempt:
                result = self._call_once(operation, action, arguments)
        self.log.info("%s answered", action)
        return serialize_object(result, dict)

    def _call_once(self, operation: str, action: str, arguments: dict[str, Any]) -> Any:
        try:
            return getattr(self.service, operation)(**arguments)
        except zeep_errors.Fault as fault:
            code = _fault_code(fault)
            if code.rsplit(":", 1)[-1].startswith("Client.Authentication"):
                raise AuthenticationFailed(
                    f"{action}: the partner refused the WS-Security header: {fault.message}"
                ) from None
            raise SoapFault(f"{action}: SOAP fault {code}: {fault.message}", code) from None
        except zeep_errors.TransportError as error:
            if error.status_code in (401, 403):
                raise AuthenticationFailed(f"{action}: the partner refused the credentials") from None
            if error.status_code < 400:
                unparsed = error.__context__  # zeep's own message quotes the answer: the parser's is told instead
                if isinstance(unparsed, zeep_errors.XMLSyntaxError):
                    detail = _short(unparsed)
                    raise MalformedResponse(f"{action}: the answer is not well-formed XML ({detail})") from None
                raise MalformedResponse(f"{action}: the answer is not a SOAP envelope") from None
            raise HttpStatusError(f"{action}: HTTP {error.status_code}", error.status_code) from None
        except (zeep_errors.DTDForbidden, zeep_errors.EntitiesForbidden, zeep_errors.ExternalReferenceForbidden):
            raise UnsafeXml(f"{action}: the answer carries a DTD, entities or external references") from None
        except (zeep_errors.XMLSyntaxError, zeep_errors.XMLParseError, etree.XMLSyntaxError) as error:
            raise MalformedResponse(f"{action}: the answer is not well-formed XML ({_short(error)})") from None
        except zeep_errors.ValidationError as error:
            raise MalformedResponse(f"{action}: the answer does not follow the WSDL ({_short(error)})") from None
        except ResponseTooLarge as error:
            raise ResponseTooLarge(f"{action}: {error} (the connection's max_response_bytes)") from None
        except requests.exceptions.SSLError as error:
            if "CERTIFICATE_VERIFY_FAILED" in str(error):
                raise CertificateRejected(f"{action}: the partner's TLS certificate is not trusted") from None
            raise TransientError(f"{action}: TLS failed ({_short(error)})") from None
        except requests.exceptions.Timeout:
            raise TransientError(f"{action}: timed out") from None
        except requests.exceptions.RequestException as error:
            raise TransientError(f"{action}: the connection failed ({type(error).__name__})") from None

    def deliver_package(self, package_zip: Path, package_id: str) -> DeliveredReceipt:
        """Submit a zipped exchange package; the partner deduplicates by package id, so a retry is harmless."""
        answer = self.call("SubmitPackage", packageId=package_id, package=package_zip.read_bytes())
        try:
            return DeliveredReceipt(answer["receipt"], answer["signature"])
        except (KeyError, TypeError):
            raise MalformedResponse("SubmitPackage answered without a receipt and signature") from None

    def outbox_packages(self) -> list[str]:
        """The names of the packages the partner has published for us (``ListOutbox``), sorted."""
        answer = self.call("ListOutbox")
        # zeep hands a response whose only part is a repeated element back as that list
        items = answer if isinstance(answer, list) else (answer or {}).get("packages") or []
        if not all(isinstance(item, dict) for item in items):
            raise MalformedResponse("ListOutbox answered with something else than packages")
        return sorted(package_file_name(item.get("name")) for item in items)

    def download_package(self, name: str, target_dir: Path) -> Path:
        """Fetch a published package (``FetchPackage``, the zip in the answer) into ``target_dir``, its SHA-256
        checked against the one the partner states, written under a ``.partial`` name then renamed."""
        target = Path(target_dir) / package_file_name(name)
        answer = self.call("FetchPackage", name=name)
        data = answer.get("package") if isinstance(answer, dict) else None
        if not isinstance(data, bytes) or answer.get("name") != name:
            raise MalformedResponse(f"FetchPackage answered without the package {name}")
        if hashlib.sha256(data).hexdigest() != answer.get("sha256"):
            raise TransferIncomplete(f"FetchPackage {name}: the package does not have the SHA-256 the partner states")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
        return target

    def send_receipt(self, name: str, receipt: DeliveredReceipt) -> None:
        """Answer a published package with our signed receipt (``SubmitReceipt``); the partner keeps it once."""
        self.call("SubmitReceipt", name=package_file_name(name), receipt=receipt.receipt, signature=receipt.signature)

    def paginate(self, operation: str = "ListRecords", page_size: int | None = None) -> Iterator[dict]:
        """Every record of a cursor-paginated list operation ({cursor, limit} → {records, nextCursor})."""
        limit = page_size or int(self.extras.number("page_size", 500))
        cursor: str | None = None
        while True:
            page = self.call(operation, cursor=cursor, limit=limit)
            yield from page.get("records") or []
            cursor = page.get("nextCursor")
            if not cursor:
                return

    # -- Airflow ------------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Load the WSDL and call ``Ping`` with the WS-Security header (so the credentials are checked)."""
        try:
            answer = self.call("Ping")
        except Exception as error:  # noqa: BLE001 - the UI wants a message, not a traceback
            return False, f"{type(error).__name__}: {error}"
        return True, f"{self.endpoint or 'the WSDL endpoint'} answered Ping: {answer}"


def _fault_code(fault: zeep_errors.Fault) -> str:
    code = fault.code
    if isinstance(code, etree.QName):
        code = code.localname
    return str(code or "soap:Server")


def _is_ec(certificate_path: Path) -> bool:
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    return isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def _short(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:200]
