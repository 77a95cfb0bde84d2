"""``SftpReceiptSensor``: wait, deferred, for an SFTP partner's signed receipt of a delivered package.

``SftpHook.receipt_sensor`` gives it to the DAGs; it reaches the hook through ``connectors.transport`` (it does not
import the hook that names it)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException

from connectors.transport import SFTP, partner_hook
from connectors.triggers import RECEIVED, SftpReceiptTrigger


class ReceiptNotReceived(AirflowException):
    """The partner did not answer the package within the sensor's timeout; a retry waits again."""


class SftpReceiptSensor(BaseSensorOperator):
    """Returns (as its XCom) the receipt and its signature, base64-encoded, once the partner has written them.

    Deferrable (the default): it looks once, and when the receipt is not there yet it defers to
    ``SftpReceiptTrigger``, which polls from the triggerer, so no worker slot is held while the partner takes its
    time. Otherwise it pokes like any sensor. ``package_name`` is templated: pass the delivering task's output.
    """

    template_fields = ("package_name",)

    def __init__(
        self, *, sftp_conn_id: str, package_name: str, poke_interval: float = 5.0, deferrable: bool = True, **kwargs
    ):
        kwargs.setdefault("timeout", timedelta(hours=1))
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.sftp_conn_id, self.package_name, self.deferrable = sftp_conn_id, package_name, deferrable

    def _fetch(self) -> dict[str, str] | None:
        with partner_hook(SFTP, self.sftp_conn_id) as hook:
            receipt = hook.fetch_receipt(self.package_name)
        return None if receipt is None else receipt.as_base64()

    def poke(self, context) -> PokeReturnValue:
        found = self._fetch()
        return PokeReturnValue(found is not None, found)

    def execute(self, context) -> dict[str, str]:
        if not self.deferrable:
            return super().execute(context)
        found = self._fetch()
        if found is not None:
            return found
        trigger = SftpReceiptTrigger(self.sftp_conn_id, self.package_name, self.poke_interval, float(self.timeout))
        self.defer(trigger=trigger, method_name="execute_complete")

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, str]:
        if event.get("status") != RECEIVED:
            raise ReceiptNotReceived(
                f"no receipt for {self.package_name} from {self.sftp_conn_id} within {self.timeout} s"
            )
        return {"receipt": event["receipt"], "signature": event["signature"]}
