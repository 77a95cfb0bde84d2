"""HTTP plumbing shared by the health, business and tax servers: a uvicorn server in its own thread on a
loopback port, TLS (optionally mutual, with the client certificate handed to the app), request bodies read within
a limit per endpoint, and fault injection."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from exchange.errors import VerificationError
from lienthong.settings import partners_host
from partners.faults import FaultPlan
from partners.store import STORE_FAULTS

log = logging.getLogger("lienthong.partners")

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>\n'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>&lol2;</soap:Body>'
    b"</soap:Envelope>"
)


@dataclass(frozen=True)
class TlsSettings:
    certificate: Path
    key: Path
    key_password: bytes
    client_ca: Path | None = None  # set: clients must present a certificate chaining to it (mutual TLS)

    def context(self) -> ssl.SSLContext:
        purpose = ssl.Purpose.CLIENT_AUTH
        context = ssl.create_default_context(purpose, cafile=str(self.client_ca) if self.client_ca else None)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.certificate, self.key, password=self.key_password)
        context.verify_mode = ssl.CERT_REQUIRED if self.client_ca else ssl.CERT_NONE
        return context


class ServerThread:
    """An ASGI app served by uvicorn in a daemon thread on the partners' address (``partners_host``, 127.0.0.1).
    ``stop`` closes the listening socket and every connection (a client then sees refused connections); ``start``
    again takes the same port."""

    def __init__(self, app: ASGIApp, name: str, tls: TlsSettings | None = None, port: int = 0) -> None:
        self.app, self.name, self.tls, self.port = app, name, tls, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{partners_host()}:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            return
        logging.getLogger("uvicorn.error").addFilter(_quiet_stop)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((partners_host(), self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        tls = self.tls
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=0,
            http=_TlsPeerProtocol,
            ssl_context_factory=(lambda _config, _default: tls.context()) if tls else None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, name=self.name, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the {self.name} server did not start")
            time.sleep(0.01)
        listener.close()  # uvicorn serves on its own duplicate of the socket
        self._server, self._thread = server, thread

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True  # like a crash: open connections are dropped, not drained
        self._thread.join(timeout=15)
        self._server = self._thread = None


def _quiet_stop(record: logging.LogRecord) -> bool:
    """Drop uvicorn's "Cancel N running task(s), timeout graceful shutdown exceeded": a sandbox partner is stopped
    at once on purpose (``stop``), and the demo should not print an ERROR line for each partner it stops."""
    return not str(record.msg).startswith("Cancel %s running task(s)")


# -- request bodies ----------------------------------------------------------------------------------------------


class BodyTooLarge(VerificationError):
    """A request body over its endpoint's limit: answered 413 (``BODY_ERRORS``) without reading any more of it."""

    check = "body_size"

    def __init__(self, limit: int) -> None:
        super().__init__(f"a request body here may have at most {limit:,} bytes")


def bounded_stream(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's blocks, refused with ``BodyTooLarge`` as soon as it is over ``limit`` bytes: by its Content-Length
    now, before a byte is read, else (a chunked body, or one longer than it said) by counting as it arrives."""
    declared = request.headers.get("content-length", "")
    # the HTTP parser has checked it is a number; more digits than any limit here is over it (and int() refuses
    # strings of thousands of digits)
    if declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        raise BodyTooLarge(limit)
    return _counted(request.stream(), limit)


async def _counted(blocks: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for block in blocks:
        size += len(block)
        if size > limit:
            raise BodyTooLarge(limit)
        yield block


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body in memory, for endpoints whose bodies are small (a receipt, a token request)."""
    return b"".join([block async for block in bounded_stream(request, limit)])


@asynccontextmanager
async def body_file(request: Request, limit: int, directory: Path) -> AsyncIterator[Path]:
    """The body streamed into a temporary file in ``directory``, removed when the block ends, whatever ends it."""
    path = await _spool(request, limit, directory)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


async def read_body_to_file(request: Request, limit: int, directory: Path) -> Path | None:
    """The body in a temporary file that the caller removes; None when it is over ``limit`` bytes (nothing is left
    on disk then, nor when the client goes away mid-body: ``ClientDisconnect`` is raised)."""
    try:
        return await _spool(request, limit, directory)
    except BodyTooLarge:
        return None


async def _spool(request: Request, limit: int, directory: Path) -> Path:
    """The body written to a new temporary file; the file is removed again if anything stops the writing (a body
    over the limit, a client gone mid-body, a server stopping)."""
    blocks = bounded_stream(request, limit)  # a Content-Length over the limit is refused before a file exists
    with tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", suffix=".zip", delete=False) as handle:
        path = Path(handle.name)
        try:
            async for block in blocks:
                handle.write(block)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
    return path


def problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


CLOSE = {"Connection": "close"}  # on a refusal before the body is read: the client may not send the rest of it


async def _too_large(request: Request, error: Exception) -> Response:
    return problem(413, str(error), CLOSE)


async def _client_gone(request: Request, error: Exception) -> Response:
    """Nobody is left to read the answer; answering keeps a broken-off upload from logging a traceback."""
    return Response(status_code=400, headers=CLOSE)


async def _busy(request: Request, error: Exception) -> Response:
    """The partner cannot store now (a full disk, a failing store): one line, no traceback, and the client is asked
    to send again later, which its retries do; nothing was kept (the store's transaction rolled back)."""
    logging.getLogger("lienthong.partners").warning(
        "%s: cannot store now (%s); answered 503", request.url.path, type(error).__name__
    )
    return problem(503, "the partner cannot store this now; send it again later", {"Retry-After": "5"})


# Starlette's ``exception_handlers`` for an app that reads bodies with the readers above, and stores what it reads.
BODY_ERRORS = {BodyTooLarge: _too_large, ClientDisconnect: _client_gone, **dict.fromkeys(STORE_FAULTS, _busy)}


# -- the client certificate ----------------------------------------------------------------------------------------

PEER_CERTIFICATE = "tls_peer_certificate"


class _TlsPeerProtocol(AutoHTTPProtocol):
    """uvicorn's HTTP protocol, putting the client certificate of a TLS connection (DER, or None) in the state of
    each of its requests' scope: ASGI has no place for it, and a partner must check more than the handshake does
    (the agency, revocation, the extended key usage)."""

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        self.app_state = {**self.app_state, PEER_CERTIFICATE: certificate}


def peer_certificate(request: Request) -> bytes | None:
    """The client certificate the TLS handshake of the request's connection received (DER), if any."""
    return request.scope.get("state", {}).get(PEER_CERTIFICATE)


class FaultInjection:
    """ASGI middleware that spoils requests as the partner's fault plan says (see ``partners.faults``).
    ``operation_of`` names the operation a request is for; ``flavour`` is ``json`` or ``soap``."""

    def __init__(
        self,
        app: ASGIApp,
        plan: FaultPlan,
        operation_of: Callable[[Scope], str],
        flavour: str,
        soap_fault: Callable[[str], bytes] | None = None,
    ) -> None:
        self.app, self.plan, self.operation_of, self.flavour = app, plan, operation_of, flavour
        self.soap_fault = soap_fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fault = self.plan.take(self.operation_of(scope), kinds=_HTTP_KINDS)
        if fault is None:
            await self.app(scope, receive, send)
            return
        if fault.kind == "latency":
            await asyncio.sleep(fault.seconds)
            await self.app(scope, receive, send)
        elif fault.kind == "status":
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            await _answer(send, fault.status, b'{"detail": "injected failure"}', "application/json", headers)
        elif fault.kind == "soap_fault" and self.soap_fault is not None:
            await _answer(send, 500, self.soap_fault(fault.code), "text/xml; charset=utf-8")
        elif fault.kind == "malformed":
            body = b'{"items": [{"personal_id": ' if self.flavour == "json" else b"<soap:Envelope><soap:Body><unclosed>"
            await _answer(send, 200, body, _media_type(self.flavour))
        elif fault.kind == "oversized":
            await _stream_padding(send, fault.size, _media_type(self.flavour))
        elif fault.kind == "unsafe_xml":
            await _answer(send, 200, BILLION_LAUGHS, "text/xml; charset=utf-8")
        elif fault.kind == "reset":
            await _reset_mid_body(self.app, scope, receive, send)
        else:
            await self.app(scope, receive, send)


_HTTP_KINDS = ("latency", "status", "soap_fault", "reset", "malformed", "oversized", "unsafe_xml")


class InjectedReset(ConnectionError):
    """Raised inside the server to make uvicorn drop the connection half-way through an answer."""


def _media_type(flavour: str) -> str:
    return "application/json" if flavour == "json" else "text/xml; charset=utf-8"


async def _answer(send: Send, status: int, body: bytes, media_type: str, headers: dict[str, str] | None = None):
    raw = [(b"content-type", media_type.encode()), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _stream_padding(send: Send, size: int, media_type: str) -> None:
    """``size`` bytes, chunked (no Content-Length), so the client only learns the size by reading."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", media_type.encode())]})
    block = b" " * 65536
    sent = 0
    while sent < size:
        part = block[: min(len(block), size - sent)]
        sent += len(part)
        await send({"type": "http.response.body", "body": part, "more_body": sent < size})


async def _reset_mid_body(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Let the app do its work (so a POST has its effect), then send half of its answer and drop the line."""
    messages: list[Message] = []

    async def capture(message: Message) -> None:
        messages.append(message)

    await app(scope, receive, capture)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    raise InjectedReset("fault injection: connection dropped mid-body")
