"""What can go wrong talking to a partner, as typed errors that say whether trying again can help.

``retryable`` is the one question every caller asks: the hooks retry retryable errors themselves (a bounded
number of times), and an Airflow task that still fails with a retryable error may be retried by Airflow; a
permanent error needs a person (wrong credentials, a refused certificate, a request the partner rejects).
Messages name the partner's endpoint and what happened, never credentials or personal data.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """A transport failed. ``retryable``: whether the same request may succeed later."""

    retryable = False


class TransientError(ConnectorError):
    """The partner or the network failed this time (connection refused or reset, timeout, 5xx, 429)."""

    retryable = True


class PermanentError(ConnectorError):
    """Trying again with the same request and configuration will fail the same way."""


class ConfigurationError(PermanentError):
    """The Airflow connection is incomplete or contradictory (a missing host key, an unreadable key file…)."""


class AuthenticationFailed(PermanentError):
    """The partner refused the credentials (OAuth2 client, WS-Security user, SSH key or client certificate)."""


class CertificateRejected(PermanentError):
    """The partner's TLS certificate does not chain to the trusted CA (or the handshake failed on trust)."""


class HostKeyRejected(PermanentError):
    """The SFTP server's host key is not the pinned one: unknown or changed keys are refused."""


class UnsafeXml(PermanentError):
    """An XML document carried a DTD, entity declarations or external references, and was refused."""


class MalformedResponse(PermanentError):
    """The partner answered with something that is not what the contract says (bad JSON, bad XML, bad shape)."""


class ResponseTooLarge(PermanentError):
    """The answer was larger than the connection's ``max_response_bytes``; it was not read to the end."""


class PathOutsideFolder(PermanentError):
    """A remote path would leave the folder agreed with the partner (absolute, ``..``, or through a link)."""


class TransferIncomplete(TransientError):
    """A file arrived with another size than the one sent; the partial file was not published."""


class HttpStatusError(ConnectorError):
    """The partner answered with an HTTP error status. 5xx and 429 are retryable, other 4xx are not."""

    def __init__(self, message: str, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.status >= 500 or self.status == 429


class SoapFault(ConnectorError):
    """A SOAP fault. ``code`` is the fault code (``soap:Server.Busy``, ``soap:Client.Authentication`` …).
    Server faults whose code says the service is busy or unavailable are retryable; client faults never are."""

    RETRYABLE_SUBCODES = ("Busy", "Unavailable", "Timeout")

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        local = self.code.rsplit(":", 1)[-1]
        return local.startswith("Server") and local.rsplit(".", 1)[-1] in self.RETRYABLE_SUBCODES


def is_retryable(error: BaseException) -> bool:
    return isinstance(error, ConnectorError) and error.retryable
