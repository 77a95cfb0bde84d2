"""The REST partners: health insurance (OAuth2 client credentials over TLS, ``schemas/openapi/health.v1.yaml``),
business registration (mutual TLS, items per ``schemas/jsonschema/business-enterprise-role.v1.json``), and any
agency whose file asks for ``server: {kind: rest, auth: oauth2 | mutual-tls, collection: …}``.

All accept packages at ``POST /v1/packages`` (Idempotency-Key required: a repeated key with the same body
gets the first answer again, with another body 409), serve their registry page by page at
``GET /v1/<collection>?cursor=&limit=`` and their published packages at ``GET /v1/outbox[/<name>]``, and take
the population database's signed receipt for a published package at ``POST /v1/outbox/<name>/receipt``
({"receipt": base64, "signature": base64}, as they answer deliveries): 200 with {status, duplicate,
package_id} once verified and kept, 404 for a name not in the outbox, 422 for a receipt that does not verify.

A caller is authenticated from its connection and headers before any body is read (the bearer token; or the client
certificate, checked beyond the handshake by ``partners.trust``), and each body is bounded by its endpoint's limit
(``partners.http``: 413). Every refusal is a one-line ``{"detail": "<check>: …"}`` without personal data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from exchange.errors import VerificationError
from exchange.pki import POPULATION, load_certificates
from lienthong.settings import partners_host
from partners.base import NoSuchPackage, Partner, decode_cursor, encode_cursor
from partners.http import (
    BODY_ERRORS,
    CLOSE,
    FaultInjection,
    ServerThread,
    TlsSettings,
    body_file,
    peer_certificate,
    problem,
    read_body,
)
from partners.intake import IntakeRefused, PartnerKeys, ReceiptRefused, outbox_package, sha256_file
from partners.trust import check_client_certificate

log = logging.getLogger("lienthong.partners")

# The body limits, one per endpoint that takes a body (``partners.http.bounded_stream``):
# a package: the largest province's shard of a full snapshot (Hồ Chí Minh City, ~10 M people at ~100 bytes a
# record, encrypted) stays under it; it is streamed to disk, never held in memory, and only after authentication.
MAX_PACKAGE_BYTES = 1024**3
# a receipt: receipt v1 is a few hundred bytes plus its errors and the CMS signature with its chain ~2 KB, a third
# more in base64; 1 MiB leaves room for a long list of errors and is read into memory.
MAX_RECEIPT_BYTES = 1024**2
# a token request: grant_type, client_id and client_secret form-encoded are under 200 bytes; it is read before the
# client is known, so it gets little.
MAX_TOKEN_REQUEST_BYTES = 8 * 1024
MAX_TOKEN_FIELDS = 8  # grant_type, client_id, client_secret, scope, and room for a client's extras
MAX_PAGE = 5000
MAX_ROW_ID = 2**63 - 1  # SQLite's largest integer: a cursor past it would overflow the query
_OPERATIONS = {  # path prefix → operation name for fault plans (first match wins)
    "oauth": "token",
    "v1/packages": "packages",
    "v1/outbox/": "outbox_file",
    "v1/outbox": "outbox",
    "v1/health": "health",
}


class RestPartner(Partner):
    transport = "rest"

    def __init__(
        self,
        keys: PartnerKeys,
        state_dir: Path,
        *,
        collection: str,
        root_ca: Path,
        oauth_clients: dict[str, str] | None = None,
        mutual_tls: bool = False,
        token_lifetime: float = 300.0,
        openapi: str | None = None,
        item_schema: str | None = None,
    ) -> None:
        """``openapi``, ``item_schema``: the descriptions of its API and items that ``endpoint`` names (paths
        under ``schemas/``)."""
        super().__init__(keys, state_dir)
        self.collection = collection
        self.openapi, self.item_schema = openapi, item_schema
        self.oauth_clients = oauth_clients or {}
        self.mutual_tls = mutual_tls
        self.token_lifetime = token_lifetime
        self.root_ca = root_ca
        self._tokens: dict[str, float] = {}
        self._idempotent: dict[str, tuple[str, int, dict]] = {}  # key → (body sha256, status, answer)
        self._client_issuers = tuple(load_certificates(keys.issuing_ca))  # what a client's chain passes through
        tls = TlsSettings(self.tls_chain, keys.tls_key, keys.key_password, root_ca if mutual_tls else None)
        self.server = ServerThread(self._app(), f"partner-{self.name}", tls)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def endpoint(self) -> dict[str, Any]:
        document = {
            "transport": "rest",
            "url": f"{self.server.url}/v1",
            "host": partners_host(),
            "port": self.server.port,
            "base_path": "v1",
            "collection": f"/v1/{self.collection}",
            "packages": "/v1/packages",
            "outbox": "/v1/outbox",
            "auth": "mutual_tls" if self.mutual_tls else "oauth2_client_credentials",
        }
        if self.oauth_clients:
            document["token_url"] = f"{self.server.url}/oauth/token"
        if self.openapi:
            document["openapi"] = f"schemas/{self.openapi}"
        if self.item_schema:
            document["item_schema"] = f"schemas/{self.item_schema}"
        return document

    def revoke_tokens(self) -> None:
        """Forget every token issued (as a partner restarting its authorisation server would)."""
        self._tokens.clear()

    # -- the app ----------------------------------------------------------------------------------------------

    def _app(self):
        routes = [
            Route("/v1/health", self.health, methods=["GET"]),
            Route("/v1/packages", self.receive_package, methods=["POST"]),
            Route(f"/v1/{self.collection}", self.list_items, methods=["GET"]),
            Route("/v1/outbox", self.list_outbox, methods=["GET"]),
            Route("/v1/outbox/{name}", self.get_outbox_file, methods=["GET"]),
            Route("/v1/outbox/{name}/receipt", self.receive_receipt, methods=["POST"]),
        ]
        if self.oauth_clients:
            routes.append(Route("/oauth/token", self.token, methods=["POST"]))
        app = Starlette(routes=routes, exception_handlers=BODY_ERRORS)
        return FaultInjection(app, self.faults, self._operation, "json")

    def _operation(self, scope: Scope) -> str:
        path = scope["path"].strip("/")
        if path.startswith("v1/outbox/") and path.endswith("/receipt"):
            return "outbox_receipt"
        for prefix, operation in _OPERATIONS.items():
            if path.startswith(prefix):
                return operation
        return "records"

    def _authorised(self, request: Request) -> Response | None:
        """None when the caller may proceed. Decided from the connection and the headers alone, before any body is
        read: the client certificate of mutual TLS (the handshake checked its chain; the agency, revocation and
        key usage are checked here), or the OAuth2 bearer token."""
        if self.mutual_tls:
            try:
                check_client_certificate(peer_certificate(request), POPULATION, self._client_issuers, self.keys.trust)
            except VerificationError as error:
                log.warning("%s: refused a client certificate: %s", self.name, error)
                return problem(403, str(error), CLOSE)
        if self.oauth_clients:
            header = request.headers.get("authorization", "")
            token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
            expires = self._tokens.get(token)
            if not token or expires is None or expires < time.monotonic():
                challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"', **CLOSE}
                return problem(401, "token: a valid bearer token is required", challenge)
        return None

    async def token(self, request: Request) -> Response:
        try:
            form = _form(await read_body(request, MAX_TOKEN_REQUEST_BYTES))
        except ValueError:
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        client_id, secret = _basic_credentials(request) or (form.get("client_id"), form.get("client_secret"))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        expected = self.oauth_clients.get(str(client_id or ""))
        if expected is None or not hmac.compare_digest(expected.encode(), str(secret or "").encode()):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = secrets.token_urlsafe(32)
        self._tokens[token] = time.monotonic() + self.token_lifetime
        return JSONResponse(
            {"access_token": token, "token_type": "Bearer", "expires_in": int(self.token_lifetime)},
            headers={"Cache-Control": "no-store"},
        )

    async def health(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        return JSONResponse({"status": "up", "partner": self.name})

    async def receive_package(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        key = request.headers.get("idempotency-key", "")
        if not 8 <= len(key) <= 200:
            return problem(400, "idempotency_key: an Idempotency-Key header (8 to 200 characters) is required", CLOSE)
        async with body_file(request, MAX_PACKAGE_BYTES, self.intake.work_dir) as upload:
            return await run_in_threadpool(self._receive, key, upload)

    def _receive(self, key: str, upload: Path) -> Response:
        body_sha256 = sha256_file(upload)
        seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != body_sha256:
                return problem(409, "idempotency_key: this Idempotency-Key was used with another body")
            return JSONResponse(seen[2], status_code=seen[1])
        try:
            result = self.intake.receive(upload)
        except IntakeRefused as error:
            return problem(400, str(error))
        status = 422 if result.status == "rejected" else (200 if result.duplicate else 201)
        answer = result.as_json()
        if result.status == "accepted":
            self._idempotent[key] = (body_sha256, status, answer)
        return JSONResponse(answer, status_code=status)

    async def list_items(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        try:
            after: int | None = decode_cursor(request.query_params.get("cursor"))
        except ValueError:
            after = None
        if after is None or after > MAX_ROW_ID:
            return problem(400, "cursor: unknown cursor")
        try:
            limit = int(request.query_params.get("limit", "500"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_PAGE:
            return problem(400, f"limit: limit must be a number from 1 to {MAX_PAGE}")
        people, last = await run_in_threadpool(self.store.people_page, after, limit)
        return JSONResponse({"items": [p.as_item() for p in people], "next_cursor": encode_cursor(last)})

    async def list_outbox(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        items = [{"name": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in self.published()]
        return JSONResponse({"items": items})

    async def get_outbox_file(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        path = self._published(request.path_params["name"])
        if path is None:
            return problem(404, "outbox: no such package in the outbox")
        return FileResponse(path, media_type="application/zip")

    async def receive_receipt(self, request: Request) -> Response:
        if refused := self._authorised(request):
            return refused
        name = request.path_params["name"]
        if self._published(name) is None:  # before the body is read
            return problem(404, "outbox: no such package in the outbox", CLOSE)
        try:
            document = json.loads(await read_body(request, MAX_RECEIPT_BYTES))
            receipt = base64.b64decode(document["receipt"], validate=True)
            signature = base64.b64decode(document["signature"], validate=True)
        except (ValueError, KeyError, TypeError, RecursionError):  # binascii.Error and UnicodeError are ValueErrors
            return problem(400, 'receipt: the body must be {"receipt": base64, "signature": base64}')
        try:
            taken = await run_in_threadpool(self.take_receipt, name, receipt, signature)
        except NoSuchPackage:
            return problem(404, "outbox: no such package in the outbox")
        except ReceiptRefused as error:
            return problem(422, str(error))
        return JSONResponse(taken.as_json())

    def _published(self, name: str) -> Path | None:
        """A package of the outbox by its name from the URL; None for any other name, one the file system refuses
        (too long, a NUL) included."""
        try:
            return outbox_package(self.outbox, name)
        except (OSError, ValueError):
            return None


def _form(body: bytes) -> dict[str, str]:
    """A form-encoded token request (RFC 6749 §4.4.2); ValueError for one that is not UTF-8, has too many fields or
    repeats one (§3.2: parameters must not be included more than once)."""
    pairs = parse_qsl(body.decode("utf-8"), max_num_fields=MAX_TOKEN_FIELDS)
    form = dict(pairs)
    if len(form) != len(pairs):
        raise ValueError("a repeated parameter")
    return form


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)
