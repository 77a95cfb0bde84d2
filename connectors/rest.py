"""REST partners (health, business): JSON over HTTPS with OAuth2 client credentials and/or mutual TLS.

Every request runs under the connection's retry policy: connection failures, timeouts, resets, 5xx and 429 are
retried with jittered exponential backoff, waiting at least the partner's ``Retry-After``; other 4xx fail at
once. Every POST carries an ``Idempotency-Key`` that is the same on every retry (a package's id, or a hash of
the request), so a partner that stored the first attempt answers the retry with what it stored. Answers are
read as a stream and refused past ``max_response_bytes``; uploads and downloads stream from and to files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

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
    TransientError,
)
from connectors.retry import retrying

IDEMPOTENCY_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:lienthong:idempotency")
CHUNK = 1 << 20
TOKEN_MARGIN_SECONDS = 30.0
_TRUST_FAILURES = ("CERTIFICATE_VERIFY_FAILED",)
_CLIENT_CERT_REFUSED = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise MalformedResponse(f"the partner answered HTTP {self.status} with a body that is not JSON") from None


@dataclass
class _Token:
    value: str
    expires_at: float


def idempotency_key(*parts: str | bytes) -> str:
    """A UUID derived from the request's parts: the same request always gets the same key."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\0")
    return str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, digest.hexdigest()))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            yield block


class RestHook(PartnerHook):
    """A REST partner. Connection: host (or a full base URL), port, schema = base path (``v1``); login and
    password = OAuth2 client id and secret when ``token_url`` is set; extras for TLS, limits and retries."""

    conn_name_attr = "rest_conn_id"
    default_conn_name = "lienthong_rest_default"
    conn_type = "lienthong_rest"
    hook_name = "Liên thông REST partner"

    def __init__(self, rest_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(rest_conn_id, **kwargs)
        self._token: _Token | None = None
        self._token_lock = threading.Lock()

    # -- configuration ----------------------------------------------------------------------------------------

    @cached_property
    def base_url(self) -> str:
        conn = self.connection
        if not conn.host:
            raise ConfigurationError(f"connection {self.conn_id!r} has no host")
        if "://" in conn.host:
            base = conn.host.rstrip("/")
        else:
            port = f":{conn.port}" if conn.port else ""
            base = f"{self.extras.text('scheme', 'https')}://{conn.host}{port}"
        path = (conn.schema or "").strip("/")
        return f"{base}/{path}/" if path else f"{base}/"

    @cached_property
    def max_response_bytes(self) -> int:
        return answer_limit(self.extras)

    def get_conn(self) -> httpx.Client:
        return self.client

    @cached_property
    def client(self) -> httpx.Client:
        timeout = httpx.Timeout(
            self.extras.number("timeout", 60.0), connect=self.extras.number("connect_timeout", 10.0)
        )
        verify = tls_context(self.extras) if self.base_url.startswith("https") else True
        return httpx.Client(base_url=self.base_url, verify=verify, timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # -- OAuth2 client credentials ------------------------------------------------------------------------------

    @property
    def uses_oauth(self) -> bool:
        return self.extras.text("token_url") is not None

    def _access_token(self, *, renew: bool = False) -> str:
        """The cached token, fetched again when it is missing, about to expire, or refused (``renew``)."""
        with self._token_lock:
            if renew or self._token is None or self._token.expires_at - TOKEN_MARGIN_SECONDS <= time.monotonic():
                self._token = self._fetch_token()
            return self._token.value

    def _fetch_token(self) -> _Token:
        conn = self.connection
        if not conn.login or not conn.password:
            raise ConfigurationError(f"connection {self.conn_id!r}: OAuth2 needs login (client id) and password")
        form = {"grant_type": "client_credentials"}
        if scope := self.extras.text("scope"):
            form["scope"] = scope
        token_url = self.extras.required("token_url")

        def fetch() -> Answer:
            # RFC 6749 §2.3.1: client id and secret are form-encoded, then HTTP Basic
            basic = base64.b64encode(f"{quote(conn.login, safe='')}:{quote(conn.password, safe='')}".encode())
            basic = basic.decode("ascii")
            headers = {"Authorization": f"Basic {basic}"}
            request = self.client.build_request("POST", token_url, data=form, headers=headers)
            return self._send(request, "POST token")

        answer = self._with_retries("POST token", fetch)
        document = answer.json()
        if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
            raise MalformedResponse("the token endpoint answered without an access_token")
        lifetime = float(document.get("expires_in") or 300)
        self.log.info("OAuth2 token obtained for client of connection %s, valid %.0f s", self.conn_id, lifetime)
        return _Token(document["access_token"], time.monotonic() + lifetime)

    # -- requests -------------------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        content: Callable[[], Iterable[bytes] | bytes] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        """One request under the retry policy. ``content`` makes a fresh body for each attempt (so a stream
        can be sent again). A POST without an ``idempotency_key`` gets one derived from its path and body."""
        method = method.upper()
        headers = dict(headers or {})
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if method == "POST":
            if idempotency_key is None:
                if body is None:
                    raise ValueError("a streamed POST needs an explicit idempotency_key")
                idempotency_key = idempotency_key_for(path, body)
            headers["Idempotency-Key"] = idempotency_key
        action = f"{method} {path}"

        def build() -> httpx.Request:
            fresh = body if content is None else content()
            return self.client.build_request(method, path.lstrip("/"), params=params, content=fresh, headers=headers)

        return self._exchange(action, build)

    def _exchange(
        self,
        action: str,
        build: Callable[[], httpx.Request],
        receive: Callable[[httpx.Response], Answer] | None = None,
    ) -> Answer:
        """Build, authorise and send a request under the retry policy. A refused token is renewed once."""

        def attempt() -> Answer:
            for renew in (False, True):
                request = build()
                if self.uses_oauth:
                    request.headers["Authorization"] = f"Bearer {self._access_token(renew=renew)}"
                try:
                    return self._send(request, action, receive)
                except AuthenticationFailed:
                    if renew or not self.uses_oauth:
                        raise
                    self.log.info("%s: token refused, fetching a new one", action)
            raise AssertionError("unreachable")

        return self._with_retries(action, attempt)

    def _with_retries(self, action: str, attempt: Callable[[], Answer]) -> Answer:
        for attempt_state in retrying(self.retry_policy, self.log, action, self.sleep):
            with attempt_state:
                return attempt()
        raise AssertionError("unreachable")

    def _send(
        self, request: httpx.Request, action: str, receive: Callable[[httpx.Response], Answer] | None = None
    ) -> Answer:
        """Send one request; errors become typed connector errors. ``receive`` consumes a successful answer's
        stream (default: read it into memory within ``max_response_bytes``)."""
        try:
            response = self.client.send(request, stream=True)
        except httpx.ConnectError as error:
            raise _connect_error(action, error) from None
        except httpx.TimeoutException as error:
            raise TransientError(f"{action}: timed out ({type(error).__name__})") from None
        except httpx.TransportError as error:
            raise _transport_error(action, error) from None
        try:
            if response.status_code >= 400:
                body = self._read_limited(response, action)
                self.log.info("%s → HTTP %d", action, response.status_code)
                if response.status_code in (401, 403):
                    raise AuthenticationFailed(
                        f"{action}: the partner refused the credentials (HTTP {response.status_code})"
                    )
                raise HttpStatusError(
                    f"{action}: HTTP {response.status_code} {_problem(body)}",
                    response.status_code,
                    _retry_after(response.headers.get("Retry-After")),
                )
            if receive is not None:
                return receive(response)
            body = self._read_limited(response, action)
            self.log.info("%s → HTTP %d (%d bytes)", action, response.status_code, len(body))
            return Answer(response.status_code, response.headers, body)
        except httpx.TimeoutException:
            raise TransientError(f"{action}: timed out reading the answer") from None
        except httpx.TransportError as error:
            raise _transport_error(action, error) from None
        finally:
            response.close()

    def _read_limited(self, response: httpx.Response, action: str) -> bytes:
        try:
            return read_within(response.iter_raw(), response.headers.get("Content-Length"), self.max_response_bytes)
        except ResponseTooLarge as error:
            raise ResponseTooLarge(f"{action}: {error}") from None

    # -- what the exchange needs ---------------------------------------------------------------------------------

    def post_json(self, path: str, document: Any, idempotency_key: str | None = None) -> Any:
        return self.request("POST", path, json_body=document, idempotency_key=idempotency_key).json()

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def upload(self, path: str, source: Path, *, idempotency_key: str, media_type: str) -> Answer:
        """POST a file as the request body, streamed from disk (read again from the start on each retry)."""
        size = source.stat().st_size
        headers = {"Content-Type": media_type, "Content-Length": str(size)}
        return self.request(
            "POST", path, content=lambda: _file_chunks(source), headers=headers, idempotency_key=idempotency_key
        )

    def deliver_package(self, package_zip: Path, package_id: str, path: str = "packages") -> DeliveredReceipt:
        """Deliver a zipped exchange package; the idempotency key is the package id, so retries of this
        delivery, even from another task run, can never make the partner store the package twice."""
        answer = self.upload(path, package_zip, idempotency_key=package_id, media_type="application/zip")
        return receipt_from_json(answer.json())

    def paginate(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        items_key: str = "items",
        cursor_key: str = "next_cursor",
        cursor_param: str = "cursor",
    ) -> Iterator[dict]:
        """Every item of a cursor-paginated collection, page by page (one page in memory at a time)."""
        query = dict(params or {})
        query.setdefault("limit", int(self.extras.number("page_size", 500)))
        while True:
            page = self.get_json(path, query)
            items = page.get(items_key) if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise MalformedResponse(f"GET {path}: the page has no list {items_key!r}")
            yield from items
            cursor = page.get(cursor_key)
            if not cursor:
                return
            query[cursor_param] = cursor

    def download(self, path: str, target: Path) -> int:
        """Stream a file to ``target``: into ``target.partial``, resumed with a Range request after a broken
        transfer, then renamed into place. Bound by ``max_download_bytes``, not ``max_response_bytes``.
        Returns the size."""
        partial = target.with_name(target.name + ".partial")
        partial.unlink(missing_ok=True)
        limit = int(self.extras.number("max_download_bytes", 8 * 1024**3))
        action = f"GET {path}"

        def build() -> httpx.Request:
            offset = partial.stat().st_size if partial.exists() else 0
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            return self.client.build_request("GET", path.lstrip("/"), headers=headers)

        def receive(response: httpx.Response) -> Answer:
            resumed = response.status_code == 206
            written = partial.stat().st_size if resumed else 0
            with partial.open("ab" if resumed else "wb") as handle:
                for block in response.iter_raw():
                    written += len(block)
                    if written > limit:
                        raise ResponseTooLarge(f"{action}: the file is over {limit:,} bytes")
                    handle.write(block)
            self.log.info("%s → %s bytes%s", action, f"{written:,}", " (resumed)" if resumed else "")
            return Answer(response.status_code, response.headers, b"")

        self._exchange(action, build, receive)
        partial.replace(target)
        return target.stat().st_size

    # -- inbound: the partner's outbox -------------------------------------------------------------------------

    @property
    def outbox_path(self) -> str:
        return self.extras.text("outbox_path", "outbox").strip("/")

    def outbox_packages(self) -> list[str]:
        """The names of the packages the partner has published for us (``GET outbox``), sorted."""
        page = self.get_json(self.outbox_path)
        items = page.get("items") if isinstance(page, dict) else None
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise MalformedResponse(f"GET {self.outbox_path}: the answer has no list of items")
        return sorted(package_file_name(item.get("name")) for item in items)

    def download_package(self, name: str, target_dir: Path) -> Path:
        """Download a published package into ``target_dir`` (through a ``.partial`` file, resumed after a break)."""
        target = Path(target_dir) / package_file_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.download(f"{self.outbox_path}/{quote(name)}", target)
        return target

    def send_receipt(self, name: str, receipt: DeliveredReceipt) -> None:
        """Answer a published package with our signed receipt (``POST outbox/<name>/receipt``); the idempotency
        key comes from the receipt's bytes, and the partner keeps a receipt once."""
        self.post_json(f"{self.outbox_path}/{quote(package_file_name(name))}/receipt", receipt.as_base64())

    # -- Airflow ------------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Reach the partner's health resource with the configured credentials (a token is fetched first)."""
        path = self.extras.text("health_path", "health")
        try:
            self.request("GET", path)
        except Exception as error:  # noqa: BLE001 - the UI wants a message, not a traceback
            return False, f"{type(error).__name__}: {error}"
        return True, f"reached {self.base_url}{path}"


def idempotency_key_for(path: str, body: bytes) -> str:
    return idempotency_key("POST", path, body)


def receipt_from_json(document: Any) -> DeliveredReceipt:
    """The partners answer a delivery with {"receipt": base64, "signature": base64}."""
    try:
        return DeliveredReceipt.from_base64(document)
    except (KeyError, TypeError, binascii.Error):
        raise MalformedResponse("the delivery answer carries no base64 receipt and signature") from None


def _problem(body: bytes) -> str:
    """A short, printable account of an error body (the partner's ``detail`` when it sends JSON)."""
    try:
        document = json.loads(body)
        text = document.get("detail") or document.get("error") if isinstance(document, dict) else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        text = None
    text = text if isinstance(text, str) else body[:200].decode("utf-8", "replace")
    return " ".join(text.split())[:200]


def _ssl_reason(error: BaseException) -> str:
    seen = error
    while seen is not None:
        if hasattr(seen, "reason") and getattr(seen, "reason", None):
            return str(seen.reason)
        seen = seen.__cause__ or seen.__context__
    return str(error)


def _connect_error(action: str, error: httpx.ConnectError) -> Exception:
    reason = _ssl_reason(error).upper() + " " + str(error).upper()
    if any(marker in reason for marker in _TRUST_FAILURES):
        return CertificateRejected(f"{action}: the partner's TLS certificate is not trusted ({_first_line(error)})")
    if any(marker in reason for marker in _CLIENT_CERT_REFUSED):
        return AuthenticationFailed(f"{action}: the partner refused the client certificate ({_first_line(error)})")
    return TransientError(f"{action}: cannot connect ({_first_line(error)})")


def _transport_error(action: str, error: httpx.TransportError) -> Exception:
    reason = _ssl_reason(error).upper() + " " + str(error).upper()
    if any(marker in reason for marker in _CLIENT_CERT_REFUSED):
        return AuthenticationFailed(f"{action}: the partner refused the client certificate ({_first_line(error)})")
    return TransientError(f"{action}: the connection broke ({type(error).__name__}: {_first_line(error)})")


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:200]
