"""What the three hooks share: reading the Airflow connection, TLS contexts, receipts handed back.

Every hook offers the same exchange operations, so exchange code calls them whatever the transport:

- ``deliver_package`` sends a package to the partner (outbound);
- ``outbox_packages() -> list[str]`` names the packages the partner has published for the population database;
- ``download_package(name, target_dir) -> Path`` fetches one of them into ``target_dir`` (complete or not at all);
- ``send_receipt(name, DeliveredReceipt)`` answers one with the population database's signed receipt; the partner
  keeps a receipt once, so sending it again is harmless.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseHook

from connectors.errors import ConfigurationError, MalformedResponse
from connectors.retry import RetryPolicy
from lienthong.settings import key_password

RECEIPT, RECEIPT_SIGNATURE = "receipt.json", "receipt.json.p7s"
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,119}\.zip")


class Extras:
    """Typed access to a connection's extras, with a clear error naming the connection and the field."""

    def __init__(self, conn_id: str, extras: Mapping[str, Any]) -> None:
        self.conn_id = conn_id
        self.values = dict(extras)

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.values.get(key)
        return default if value in (None, "") else str(value)

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise ConfigurationError(f"connection {self.conn_id!r} needs the extra field {key!r}")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.values.get(key)
        try:
            return default if value in (None, "") else float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"connection {self.conn_id!r}: {key} must be a number") from None

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.values.get(key)
        if value in (None, ""):
            return default
        if isinstance(value, bool):
            return value
        return str(value).strip().lower() in ("1", "true", "yes", "on")

    def path(self, key: str, *, base: Path | None = None) -> Path | None:
        """A file named in the extras; relative paths are taken from ``base`` (the working directory by default)."""
        value = self.text(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        if not path.is_file():
            raise ConfigurationError(f"connection {self.conn_id!r}: {key} names {path}, which is not a file")
        return path


class PartnerHook(BaseHook):
    """Base of the Liên thông hooks: the connection is read once, lazily; retries follow its extras."""

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.conn_id = kwargs.pop(self.conn_name_attr, None) or conn_id or self.default_conn_name
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
        self.sleep = time.sleep  # how retries wait; tests may record waits instead

    @cached_property
    def connection(self):
        return self.get_connection(self.conn_id)

    @cached_property
    def extras(self) -> Extras:
        return Extras(self.conn_id, self.connection.extra_dejson)

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.from_extras(self.extras.values)

    def get_conn(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (hooks holding one override this)."""

    def __enter__(self):
        """``with hook:`` keeps one connection for several operations and closes it after."""
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def test_connection(self) -> tuple[bool, str]:
        raise NotImplementedError


def tls_context(extras: Extras) -> ssl.SSLContext:
    """Server certificates checked against ``ca_file`` (else the system's CAs), host names checked; with
    ``client_cert`` and ``client_key`` the client presents its certificate (mutual TLS)."""
    ca_file = extras.path("ca_file")
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    client_cert, client_key = extras.path("client_cert"), extras.path("client_key")
    if (client_cert is None) != (client_key is None):
        raise ConfigurationError(f"connection {extras.conn_id!r}: give both client_cert and client_key, or neither")
    if client_cert is not None:
        try:
            context.load_cert_chain(client_cert, client_key, password=key_password)
        except ssl.SSLError:
            raise ConfigurationError(
                f"connection {extras.conn_id!r}: cannot load the client certificate and key (wrong key password?)"
            ) from None
    return context


@dataclass(frozen=True)
class DeliveredReceipt:
    """The partner's signed receipt for a delivered package, as the exact bytes it signed.
    ``write_to`` lays it out as ``exchange.receipt.verify_receipt`` reads it."""

    receipt: bytes
    signature: bytes

    def write_to(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / RECEIPT).write_bytes(self.receipt)
        (directory / RECEIPT_SIGNATURE).write_bytes(self.signature)
        return directory


def package_file_name(name: object) -> str:
    """A published package's file name as a partner gives it (``<agreement>-<sender>-inbound-<sequence>.zip``):
    a plain name, never a path; anything else is a ``MalformedResponse``."""
    if not isinstance(name, str) or not _PACKAGE_NAME.fullmatch(name):
        raise MalformedResponse(f"the partner names a package {str(name)[:80]!r}, which is not a package file name")
    return name
