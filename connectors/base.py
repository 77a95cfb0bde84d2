"""The delivery protocol every transport implements (``PartnerHook``), and what the hooks share: reading the
Airflow connection, TLS contexts, receipts handed back (``DeliveredReceipt``)."""

from __future__ import annotations

import base64
import re
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseHook

from connectors import MAX_RESPONSE_BYTES
from connectors.errors import ConfigurationError, MalformedResponse, ResponseTooLarge
from connectors.retry import RetryPolicy
from lienthong.settings import key_password

if TYPE_CHECKING:
    from airflow.sdk import BaseSensorOperator, XComArg

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


def answer_limit(extras: Extras) -> int:
    """The largest answer a hook that reads answers into memory takes (the connection's ``max_response_bytes``): a
    longer one is refused before it is read to the end (``ResponseTooLarge``)."""
    return int(extras.number("max_response_bytes", MAX_RESPONSE_BYTES))


def read_within(blocks: Iterable[bytes], declared: str | None, limit: int) -> bytes:
    """An answer's body from its ``blocks``, refused (``ResponseTooLarge``) as soon as it declares (``declared``,
    its Content-Length) or reaches more than ``limit`` bytes: never read to the end."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"the answer has {int(declared):,} bytes, over the limit")
    received = bytearray()
    for block in blocks:
        received += block
        if len(received) > limit:
            raise ResponseTooLarge(f"the answer is over {limit:,} bytes")
    return bytes(received)


class PartnerHook(BaseHook, ABC):
    """A partner's transport, behind the one delivery protocol the feeds use whatever the transport.

    Exchange code gets a hook from ``connectors.transport.partner_hook(kind, conn_id)`` and calls only what this
    class declares, so that any partner works on any transport by configuration alone. A transport fills in:

    - ``deliver_package`` — send a sealed, zipped package; the partner's receipt when it answers with one;
    - ``receipt_comes_later`` — True when the partner writes its receipt after the delivery (then
      ``deliver_package`` returns None) and, for such a transport, ``fetch_receipt`` (look once) and
      ``receipt_sensor`` (wait, deferred, in a DAG);
    - ``outbox_packages``, ``download_package``, ``send_receipt`` — the inbound direction: what the partner
      published for us, one package fetched, our signed receipt sent back;
    - ``get_conn``, ``test_connection`` — for Airflow (the connection form's *Test* button).

    Failures are ``connectors.errors``: a ``TransientError`` is retried by the hook (``retry_policy``, from the
    connection's extras) and then by Airflow; a ``PermanentError`` fails the task at once. A new transport is
    a subclass registered in ``connectors.transport.TRANSPORTS`` and declared in ``get_provider_info``.
    The connection is read once, lazily; ``with hook:`` keeps one connection for several operations.
    """

    conn_name_attr: ClassVar[str]
    default_conn_name: ClassVar[str]
    conn_type: ClassVar[str]
    hook_name: ClassVar[str]
    receipt_comes_later: ClassVar[bool] = False
    """Whether the partner writes its receipt after the delivery instead of answering the delivery with it."""

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

    # -- outbound ---------------------------------------------------------------------------------------------

    @abstractmethod
    def deliver_package(self, package_zip: Path, package_id: str) -> DeliveredReceipt | None:
        """Deliver a sealed, zipped package (``package_id`` is its manifest's). Returns the partner's signed
        receipt when the transport answers the delivery with it, None when it comes later
        (``receipt_comes_later``). Partners deduplicate by package id, so delivering again is harmless and is
        answered with the receipt of the first delivery."""

    def fetch_receipt(self, package_name: str) -> DeliveredReceipt | None:
        """Override when ``receipt_comes_later``: the partner's signed receipt for a delivered package
        (``package_name``: its zip's name without ``.zip``) once it is there, None until then."""
        raise NotImplementedError(f"{type(self).__name__} answers the delivery with the receipt")

    @classmethod
    def receipt_sensor(
        cls, *, task_id: str, conn_id: str, package_name: str | XComArg, **operator_args: Any
    ) -> BaseSensorOperator:
        """Override when ``receipt_comes_later``: the deferrable sensor that waits, in a DAG, for the receipt of a
        package delivered on ``conn_id`` (``package_name`` as for ``fetch_receipt``, templated: a task's output
        will do). Its XCom is the receipt as ``DeliveredReceipt.as_base64`` gives it. ``operator_args`` are the
        sensor's (pool, timeout, poke_interval…)."""
        raise NotImplementedError(f"{cls.__name__} answers the delivery with the receipt")

    # -- inbound ----------------------------------------------------------------------------------------------

    @abstractmethod
    def outbox_packages(self) -> list[str]:
        """The names of the packages the partner has published for the population database, sorted; each a plain
        package file name (``package_file_name``)."""

    @abstractmethod
    def download_package(self, name: str, target_dir: Path) -> Path:
        """Fetch one published package into ``target_dir`` under its name: complete, or not at all."""

    @abstractmethod
    def send_receipt(self, name: str, receipt: DeliveredReceipt) -> None:
        """Answer a published package with the population database's signed receipt; the partner keeps a receipt
        once, so sending it again is harmless."""

    # -- Airflow ----------------------------------------------------------------------------------------------

    @abstractmethod
    def get_conn(self) -> Any:
        """The transport's client (an HTTP client, a zeep client, an SFTP session)."""

    def close(self) -> None:
        """Release the connection (hooks holding one override this)."""

    def __enter__(self):
        """``with hook:`` keeps one connection for several operations and closes it after."""
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @abstractmethod
    def test_connection(self) -> tuple[bool, str]:
        """Reach the partner with the connection's credentials: (worked, a message for the connection form)."""


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
    """A signed receipt as the exact bytes its signer signed: the partner's for a delivered package, or ours for
    one the partner published. ``write_to`` lays it out as ``exchange.receipt.verify_receipt`` reads it."""

    receipt: bytes
    signature: bytes

    @classmethod
    def from_base64(cls, document: Mapping[str, Any]) -> DeliveredReceipt:
        """From ``{"receipt": base64, "signature": base64}`` (``as_base64``); a ``binascii.Error`` or a
        ``KeyError`` when the document is not that."""
        return cls(
            base64.b64decode(document["receipt"], validate=True), base64.b64decode(document["signature"], validate=True)
        )

    def as_base64(self) -> dict[str, str]:
        """``{"receipt": base64, "signature": base64}``: how a receipt travels in JSON (a REST body, a trigger
        event, an XCom)."""
        return {
            "receipt": base64.b64encode(self.receipt).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    def write_to(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        # the signature first: a kept receipt.json always has its signature beside it (the ledger audit checks
        # every kept receipt that witnesses the ledger's head)
        (directory / RECEIPT_SIGNATURE).write_bytes(self.signature)
        (directory / RECEIPT).write_bytes(self.receipt)
        return directory


def package_file_name(name: object) -> str:
    """A published package's file name as a partner gives it (``<agreement>-<sender>-inbound-<sequence>.zip``):
    a plain name, never a path; anything else is a ``MalformedResponse``."""
    if not isinstance(name, str) or not _PACKAGE_NAME.fullmatch(name):
        raise MalformedResponse(f"the partner names a package {str(name)[:80]!r}, which is not a package file name")
    return name
