"""The transports by name: the one place where an agreement's ``transport.kind`` becomes a hook class, so that any
partner works on any transport by configuration alone (DESIGN.md). Everything else asks the hook
(``PartnerHook``): whether its receipt comes later, which sensor waits for it.

>>> with partner_hook("sftp", "lienthong_land") as hook:
...     receipt = hook.deliver_package(package_zip, package_id)  # None: the receipt comes later
...     hook.receipt_comes_later
True

Importing this module imports neither Airflow nor a transport's library; ``hook_class`` imports the one asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import PartnerHook

REST, SOAP, SFTP = "rest", "soap", "sftp"
TRANSPORTS = {
    REST: "connectors.rest.RestHook",
    SOAP: "connectors.soap.SoapHook",
    SFTP: "connectors.sftp.SftpHook",
}


def hook_class(kind: str) -> type[PartnerHook]:
    """The hook class of the transport ``kind`` (its module, and the transport's library, imported now)."""
    try:
        module, _, name = TRANSPORTS[kind].rpartition(".")
    except KeyError:
        raise ValueError(f"unknown transport {kind!r}: one of {', '.join(TRANSPORTS)}") from None
    return getattr(import_module(module), name)


def partner_hook(kind: str, conn_id: str) -> PartnerHook:
    """A new hook on the connection ``conn_id`` for the transport ``kind``; use it as a context manager."""
    return hook_class(kind)(conn_id)
