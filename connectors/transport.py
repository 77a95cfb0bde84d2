"""The hook for an agreement's transport: any partner on any transport, by configuration alone (DESIGN.md).

>>> with partner_hook("sftp", "lienthong_land") as hook:
...     hook.deliver_package(package_zip)
"""

from __future__ import annotations

from connectors.base import PartnerHook

TRANSPORTS = ("rest", "soap", "sftp")


def partner_hook(kind: str, conn_id: str) -> PartnerHook:
    """A new hook on the connection ``conn_id`` for the transport ``kind``; use it as a context manager."""
    if kind == "rest":
        from connectors.rest import RestHook

        return RestHook(conn_id)
    if kind == "soap":
        from connectors.soap import SoapHook

        return SoapHook(conn_id)
    if kind == "sftp":
        from connectors.sftp import SftpHook

        return SftpHook(conn_id)
    raise ValueError(f"unknown transport {kind!r}: one of {', '.join(TRANSPORTS)}")
