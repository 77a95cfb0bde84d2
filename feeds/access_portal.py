"""The citizen portal's way to a data-subject access report (issue 19): service to service, OAuth2 client
credentials (RFC 6749, section 4.4), never open.

- One client, the citizen portal, configured through the secrets interface (``lienthong.settings.portal_client``:
  the Airflow connection ``lienthong_citizen_portal``'s login and password). With none configured every request is
  refused.
- ``issue_token``: the client authenticates with its id and secret (HTTP Basic, or ``client_id`` and
  ``client_secret`` in the form) and gets a bearer token: a JWT (HS256) for the scope ``access-report``, valid five
  minutes, keyed by a key derived from the client's secret, so that changing the secret revokes every token.
- ``authorize``: a request's ``Authorization: Bearer`` token checked (signature, audience, issuer, expiry, scope)
  before anything of the request is read.
- ``report_for``: the signed report of one citizen (``feeds.disclosures``), its files base64-encoded; each one
  given is logged (the client, the masked personal ID).

Errors are ``PortalRefused`` with the HTTP status, the OAuth2 error code and a one-line description that never
holds the personal ID. The Airflow plugin (``plugins.airflow_lienthong``) is only the HTTP layer over this.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs

from sqlalchemy import Engine

from exchange.pki import Signer
from feeds.disclosures import (
    REPORT_FORMAT,
    InvalidPersonalId,
    access_report,
    lookup,
    report_files,
)
from lienthong import settings
from population.identity import is_personal_id, mask_personal_id

log = logging.getLogger("lienthong.portal")

SCOPE = "access-report"
AUDIENCE = "lienthong-access-report"
ISSUER = "lienthong"
TOKEN_SECONDS = 300
MAX_REQUEST_BYTES = 4096  # a token request or a report request: a few short fields


@dataclass(frozen=True)
class PortalRefused(Exception):
    status: int  # 400, 401, 403, 404 or 503
    error: str  # RFC 6749 section 5.2 / RFC 6750 section 3.1 error code
    description: str
    challenge: str | None = None  # the WWW-Authenticate header of a 401

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"


def _client() -> tuple[str, str]:
    try:
        client = settings.portal_client()
    except ValueError as error:
        raise PortalRefused(503, "temporarily_unavailable", str(error)) from None
    if client is None:
        raise PortalRefused(503, "temporarily_unavailable", "no citizen portal client is configured")
    return client


def _token_key(secret: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), b"lienthong citizen portal access tokens", hashlib.sha256).digest()


def issue_token(authorization: str | None, body: bytes) -> dict:
    """The token response (RFC 6749 section 5.1) for a client-credentials request: ``authorization`` is the
    request's Authorization header, ``body`` its ``application/x-www-form-urlencoded`` body."""
    import jwt

    client_id, secret = _client()
    try:
        form = {k: v[0] for k, v in parse_qs(body.decode("ascii"), strict_parsing=bool(body)).items()}
    except (UnicodeDecodeError, ValueError):
        raise PortalRefused(400, "invalid_request", "the body is not a URL-encoded form") from None
    given = _basic(authorization) if authorization else (form.get("client_id"), form.get("client_secret"))
    if not given[0] or not given[1]:
        raise PortalRefused(401, "invalid_client", "the client authenticates with its id and secret",
                            'Basic realm="lienthong"')  # fmt: skip
    same_id = hmac.compare_digest(given[0].encode(), client_id.encode())
    if not (hmac.compare_digest(given[1].encode(), secret.encode()) and same_id):
        raise PortalRefused(401, "invalid_client", "unknown client or wrong secret", 'Basic realm="lienthong"')
    if form.get("grant_type") != "client_credentials":
        raise PortalRefused(400, "unsupported_grant_type", "only the client_credentials grant is offered")
    if form.get("scope", SCOPE) != SCOPE:
        raise PortalRefused(400, "invalid_scope", f"the only scope is {SCOPE!r}")
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": client_id, "scope": SCOPE, "iat": now,
              "exp": now + TOKEN_SECONDS, "jti": secrets.token_hex(16)}  # fmt: skip
    token = jwt.encode(claims, _token_key(secret), algorithm="HS256")
    return {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS, "scope": SCOPE}


def _basic(authorization: str) -> tuple[str | None, str | None]:
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise PortalRefused(401, "invalid_client", "the token endpoint takes HTTP Basic client authentication",
                            'Basic realm="lienthong"')  # fmt: skip
    try:
        client_id, colon, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        client_id, colon, secret = "", "", ""
    return (client_id, secret) if colon else (None, None)


def authorize(authorization: str | None) -> str:
    """The client id of a request bearing a valid access token (RFC 6750), else ``PortalRefused`` 401/403."""
    import jwt

    client_id, secret = _client()
    challenge = 'Bearer realm="lienthong", error="invalid_token"'
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise PortalRefused(401, "invalid_request", "an access token is required (Authorization: Bearer)",
                            'Bearer realm="lienthong"')  # fmt: skip
    try:
        claims = jwt.decode(token.strip(), _token_key(secret), algorithms=["HS256"], audience=AUDIENCE,
                            issuer=ISSUER, options={"require": ["exp", "iat", "sub", "scope"]})  # fmt: skip
    except jwt.ExpiredSignatureError:
        raise PortalRefused(401, "invalid_token", "the access token has expired", challenge) from None
    except jwt.InvalidTokenError:
        raise PortalRefused(401, "invalid_token", "the access token is not valid here", challenge) from None
    if claims["sub"] != client_id:
        raise PortalRefused(401, "invalid_token", "the access token is not valid here", challenge)
    if SCOPE not in str(claims["scope"]).split():
        raise PortalRefused(403, "insufficient_scope", f"the access token lacks the scope {SCOPE!r}")
    return client_id


def report_request(body: bytes) -> tuple[str, date | None]:
    """The personal ID and the optional ``since`` of a report request's JSON body."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise PortalRefused(400, "invalid_request", "the body is not JSON") from None
    if not isinstance(request, dict) or set(request) - {"personal_id", "since"}:
        raise PortalRefused(400, "invalid_request", 'the body is {"personal_id": "…", "since": "YYYY-MM-DD"}')
    personal_id, since = request.get("personal_id"), request.get("since")
    if not isinstance(personal_id, str) or not is_personal_id(personal_id):
        raise PortalRefused(400, "invalid_request", "personal_id: a personal ID is exactly 12 digits")
    if since is None:
        return personal_id, None
    if isinstance(since, str) and len(since) == 10:
        try:
            return personal_id, date.fromisoformat(since)
        except ValueError:
            pass
    raise PortalRefused(400, "invalid_request", "since: a date is YYYY-MM-DD")


def report_for(engine: Engine, client_id: str, personal_id: str, since: date | None, signer: Signer) -> dict:
    """The signed access report of one citizen, as the portal receives it: each file base64-encoded."""
    try:
        found = lookup(engine, personal_id, since)
    except InvalidPersonalId:
        raise PortalRefused(400, "invalid_request", "personal_id: a personal ID is exactly 12 digits") from None
    except settings.DisclosureKeyMissing:
        raise PortalRefused(503, "temporarily_unavailable", "the disclosure index has no key configured") from None
    files = report_files(access_report(found), signer)
    log.info("access report of %s given to the citizen portal client %s", mask_personal_id(personal_id), client_id)
    encoded = {name: base64.b64encode(data).decode("ascii") for name, data in files.items()}
    return {"format": REPORT_FORMAT, "files": encoded}


def workspace_report(client_id: str, personal_id: str, since: date | None) -> dict:
    """``report_for`` on the workspace's population database, signed with the population agency's key from the
    workspace's PKI (as the DAGs find them)."""
    from exchange.keys import platform_keys
    from feeds.tasks import population_database

    try:
        signer = platform_keys().signer()
    except (OSError, ValueError, settings.KeyPasswordMissing, settings.KeysMissing):
        raise PortalRefused(503, "temporarily_unavailable", "the signing key is not available") from None
    with population_database() as engine:
        return report_for(engine, client_id, personal_id, since, signer)
