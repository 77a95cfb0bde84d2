"""Transports as Airflow hooks behind one delivery protocol (``connectors.base.PartnerHook``): SOAP (zeep), REST,
SFTP (paramiko). ``connectors.transport`` gives the hook for an agreement's transport.

``get_provider_info`` is the Airflow provider entry point (``apache_airflow_provider`` in pyproject.toml): it
declares the three connection types and their fields, so each appears in Airflow's connection form. Importing
this package does not import Airflow; the hooks do.
"""

from __future__ import annotations

from typing import Any

MAX_RESPONSE_BYTES = 16 * 1024 * 1024
"""The largest answer a hook reads into memory unless the connection says otherwise (``max_response_bytes``)."""


def _text(label: str, description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    return {"label": label, "description": description, "schema": schema}


def _number(label: str, default: float, description: str = "", kind: str = "number") -> dict[str, Any]:
    field: dict[str, Any] = {"label": label, "schema": {"type": [kind, "null"], "default": default, "minimum": 0}}
    if description:
        field["description"] = description
    return field


_TLS_FIELDS = {
    "ca_file": _text("CA file", "PEM of the CA the partner's TLS certificate must chain to (else the system's)."),
    "client_cert": _text("Client certificate", "PEM certificate and issuing CA, for mutual TLS."),
    "client_key": _text("Client key", "PEM key (PKCS#8, encrypted; password from the lienthong_keys connection)."),
}
_RETRY_FIELDS = {
    "retries": _number(
        "Retries", 4, "Retries after a transient failure (connection, 5xx, 429, busy fault).", "integer"
    ),
    "backoff_initial": _number("Initial backoff (s)", 0.5, "First backoff; it doubles on each retry, full jitter."),
    "backoff_max": _number("Maximum backoff (s)", 30),
    "max_retry_after": _number("Longest Retry-After honoured (s)", 300, "A longer wait asked fails at once."),
}
_TIMEOUT_FIELDS = {"timeout": _number("Timeout (s)", 60)}
_ANSWER_FIELDS = {"max_response_bytes": _number("Largest answer (bytes)", MAX_RESPONSE_BYTES, kind="integer")}
_SCHEME_FIELDS = {"scheme": _text("Scheme", "When host is a bare name (not a whole URL).", "https")}


REST_FIELDS = {
    **_SCHEME_FIELDS,
    "token_url": _text("OAuth2 token URL", "Token endpoint for client credentials; login/password are the client."),
    "scope": _text("OAuth2 scope", "Scope to ask for, if the partner wants one."),
    **_TLS_FIELDS,
    "connect_timeout": _number("Connect timeout (s)", 10),
    **_TIMEOUT_FIELDS,
    **_ANSWER_FIELDS,
    "max_download_bytes": _number("Largest download (bytes)", 8 * 1024**3, kind="integer"),
    "page_size": _number("Page size", 500, kind="integer"),
    "health_path": _text("Health path", "Resource that test_connection reaches.", "health"),
    "outbox_path": _text("Outbox path", "The partner's outbox of packages for us, under the base path.", "outbox"),
    **_RETRY_FIELDS,
}
SOAP_FIELDS = {
    **_SCHEME_FIELDS,
    "wsdl": _text("WSDL", "Path under schemas/ or URL of the WSDL.", "wsdl/tax-exchange.v1.wsdl"),
    "binding": _text("Binding", "Qualified binding name, when the WSDL has several."),
    "password_digest": {
        "label": "Password digest",
        "description": "Send a PasswordDigest (nonce, created) instead of the password text.",
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "sign_body": {
        "label": "Sign the body",
        "description": "XML-sign the body and timestamp with the agency signing certificate.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "signing_cert": _text("Signing certificate", "PEM agency signing certificate (when sign_body)."),
    "signing_key": _text("Signing key", "PEM (PKCS#8, encrypted) key of the signing certificate."),
    **_TLS_FIELDS,
    "timeout": _number("Timeout (s)", 30, "Loading the WSDL and connecting; an operation has its own."),
    "operation_timeout": _number("Operation timeout (s)", 60),
    **_ANSWER_FIELDS,
    "page_size": _number("Page size", 500, kind="integer"),
    **_RETRY_FIELDS,
}
SFTP_FIELDS = {
    "host_key": _text("Pinned host key", "The server's OpenSSH public key line; any other key is refused."),
    "remote_folder": _text("Agreed folder", "Remote folder every path is confined to, e.g. /exchange/population."),
    "private_key_file": _text("Private key file", "OpenSSH or PEM private key; its passphrase is the password."),
    "private_key": {
        "label": "Private key",
        "description": "The private key itself (instead of a file).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "inbox": _text("Inbox folder", "Where packages are delivered.", "inbox"),
    "receipts": _text("Receipts folder", "Where the partner leaves signed receipts.", "receipts"),
    "outbox": _text("Outbox folder", "Where the partner publishes its packages.", "outbox"),
    "acknowledgements": _text(
        "Acknowledgements folder", "Where our receipts for the partner's packages go.", "acknowledgements"
    ),
    "connect_timeout": _number("Connect timeout (s)", 15),
    **_TIMEOUT_FIELDS,
    "window_size": _number("SSH window (bytes)", 64 * 1024 * 1024, kind="integer"),
    "max_packet_size": _number("SSH packet (bytes)", 256 * 1024, kind="integer"),
    "write_chunk": _number("Write request size (bytes)", 255 * 1024, kind="integer"),
    **_RETRY_FIELDS,
}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "lienthong",
        "name": "Liên thông",
        "description": "Transports to the partner registries: SOAP (WS-Security), REST (OAuth2, mutual TLS), SFTP.",
        "hooks": [
            {
                "integration-name": "Liên thông",
                "python-modules": ["connectors.soap", "connectors.rest", "connectors.sftp"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "lienthong_soap",
                "hook-class-name": "connectors.soap.SoapHook",
                "hook-name": "Liên thông SOAP partner (WS-Security)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"login": "WS-Security user", "schema": "Endpoint path"},
                    "placeholders": {"host": "tax.partner.example", "schema": "exchange/v1"},
                },
                "conn-fields": SOAP_FIELDS,
            },
            {
                "connection-type": "lienthong_rest",
                "hook-class-name": "connectors.rest.RestHook",
                "hook-name": "Liên thông REST partner",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {
                        "login": "OAuth2 client id",
                        "password": "OAuth2 client secret",
                        "schema": "Base path",
                    },
                    "placeholders": {"host": "health.partner.example", "schema": "v1"},
                },
                "conn-fields": REST_FIELDS,
            },
            {
                "connection-type": "lienthong_sftp",
                "hook-class-name": "connectors.sftp.SftpHook",
                "hook-name": "Liên thông SFTP partner",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema"],
                    "relabeling": {"login": "User", "password": "Key passphrase"},
                    "placeholders": {"host": "land.partner.example", "port": "22"},
                },
                "conn-fields": SFTP_FIELDS,
            },
        ],
    }
