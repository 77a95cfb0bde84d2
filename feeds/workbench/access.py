"""Who may do what on the workbench, and the token that keeps its forms safe against cross-site requests.

**Roles come from Airflow's auth manager.** Every signed-in user who may see the custom view ``STEWARD_VIEW``
(``is_authorized_custom_view(method="GET")``) reads; a user it lets ``POST`` to that view is a steward, who
decides and may see whole personal IDs. Airflow's simple auth manager (the demo's) lets every role do everything
on a custom view, so there the role decides: ``op`` and ``admin`` are stewards, ``viewer`` and ``user`` read.

**CSRF: a signed double-submit token.** The first page sets a random nonce in an HttpOnly, SameSite=Strict cookie
scoped to the plugin; every form carries ``HMAC(secret, user name, nonce)``. A POST is refused (403) unless the
form's token matches the cookie's nonce for the signed-in user: a cross-site page can neither read the cookie nor
compute the token, and a token taken from one user's session is worth nothing in another's.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

STEWARD_VIEW = "Liên thông quarantine"
SIMPLE_STEWARD_ROLES = ("OP", "ADMIN")
CSRF_COOKIE = "lienthong_csrf"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Visitor:
    """The signed-in Airflow user as the workbench sees them: the name decisions are recorded under."""

    name: str
    may_read: bool
    is_steward: bool


def visitor(auth_manager: Any, user: Any) -> Visitor:
    """What Airflow's auth manager lets ``user`` do here (see the module's docstring for the mapping)."""
    name = user.get_name()
    if type(auth_manager).__name__ == "SimpleAuthManager":
        return Visitor(name, True, str(getattr(user, "role", "") or "").upper() in SIMPLE_STEWARD_ROLES)
    may = auth_manager.is_authorized_custom_view
    reads = may(method="GET", resource_name=STEWARD_VIEW, user=user)
    return Visitor(name, reads, reads and may(method="POST", resource_name=STEWARD_VIEW, user=user))


class CsrfRefused(PermissionError):
    pass


def new_nonce() -> str:
    return secrets.token_urlsafe(32)


def csrf_token(secret: bytes, user_name: str, nonce: str) -> str:
    message = f"{user_name}\x1f{nonce}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def check_csrf(secret: bytes, user_name: str, nonce: str | None, token: str | None) -> None:
    """Raises ``CsrfRefused`` unless ``token`` is this user's token for the cookie's ``nonce``."""
    if not nonce or not token:
        raise CsrfRefused("the form's anti-forgery token is missing: reload the page and try again")
    if not hmac.compare_digest(csrf_token(secret, user_name, nonce), token):
        raise CsrfRefused("the form's anti-forgery token does not match this session: reload the page")
