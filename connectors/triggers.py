"""Waiting for an SFTP partner's receipt without holding a worker slot: the trigger runs in Airflow's triggerer.

An SFTP partner takes a package from its inbox and writes the signed receipt later, as a folder
``receipts/<package file name>/`` (``SftpHook.fetch_receipt``). ``SftpReceiptTrigger`` looks for it every
``poll_interval`` seconds (the hook is synchronous, so each look runs in a thread) and fires once with the receipt
and its signature, base64-encoded, or with ``timeout`` when the partner has not answered in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from connectors.transport import SFTP, partner_hook

if TYPE_CHECKING:
    from connectors.base import DeliveredReceipt

RECEIVED, TIMEOUT = "received", "timeout"


class SftpReceiptTrigger(BaseTrigger):
    def __init__(self, sftp_conn_id: str, package_name: str, poll_interval: float = 5.0, timeout: float = 3600.0):
        super().__init__()
        self.sftp_conn_id, self.package_name = sftp_conn_id, package_name
        self.poll_interval, self.timeout = poll_interval, timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        arguments = {
            "sftp_conn_id": self.sftp_conn_id,
            "package_name": self.package_name,
            "poll_interval": self.poll_interval,
            "timeout": self.timeout,
        }
        return f"{type(self).__module__}.{type(self).__qualname__}", arguments

    def _look(self) -> DeliveredReceipt | None:
        with partner_hook(SFTP, self.sftp_conn_id) as hook:
            return hook.fetch_receipt(self.package_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = time.monotonic() + self.timeout
        while True:
            receipt = await asyncio.to_thread(self._look)
            if receipt is not None:
                yield TriggerEvent({"status": RECEIVED, "package": self.package_name, **receipt.as_base64()})
                return
            if time.monotonic() >= deadline:
                yield TriggerEvent({"status": TIMEOUT, "package": self.package_name})
                return
            await asyncio.sleep(self.poll_interval)
