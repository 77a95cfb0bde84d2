"""Where Liên thông reads and writes, and the key password: every command and every task resolves them here.

- ``LIENTHONG_VAR_DIR``: the workspace (packages, staging files, reports, inbound packages, ledger anchors,
  partners' state); default ``var`` in the working directory.
- ``LIENTHONG_DB_URL`` (or ``--db``): the population database; default ``<var>/lienthong.db`` (SQLite).
- ``LIENTHONG_PKI_DIR`` (or ``--pki``): the PKI made by ``lienthong pki init``; default ``<var>/pki``.
- ``LIENTHONG_SCHEMAS_PATH``: folders of extra agreements, agencies and dataset schemas, searched before the
  packaged ``schemas/`` (``os.pathsep``-separated); how a new partner agency is added without Python.
- the key password: the password of the Airflow connection ``lienthong_keys``, else ``LIENTHONG_KEY_PASSWORD``.
- the disclosure key (the HMAC key of the disclosure index, ``population.disclosures``): the password of the Airflow
  connection ``lienthong_disclosure_key``, else ``LIENTHONG_DISCLOSURE_KEY``.

Only the standard library is imported here, so any layer may read its settings from this module.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

VAR_ENV = "LIENTHONG_VAR_DIR"
DB_ENV = "LIENTHONG_DB_URL"
PKI_ENV = "LIENTHONG_PKI_DIR"
SCHEMAS_ENV = "LIENTHONG_SCHEMAS_PATH"
PASSWORD_ENV = "LIENTHONG_KEY_PASSWORD"
KEYS_CONNECTION = "lienthong_keys"
DISCLOSURE_KEY_ENV = "LIENTHONG_DISCLOSURE_KEY"
DISCLOSURE_CONNECTION = "lienthong_disclosure_key"


class KeyPasswordMissing(RuntimeError):
    """Neither the Airflow connection ``lienthong_keys`` nor ``LIENTHONG_KEY_PASSWORD`` gives the key password."""


class DisclosureKeyMissing(RuntimeError):
    """Neither the Airflow connection ``lienthong_disclosure_key`` nor ``LIENTHONG_DISCLOSURE_KEY`` gives the key of
    the disclosure index: no package is sealed or accepted without its disclosures indexed."""


def var_dir() -> Path:
    return Path(os.environ.get(VAR_ENV) or "var")


def database_url(given: str | None = None) -> str:
    """The population database's URL: the one given (``--db``), else the environment's, else SQLite under var."""
    chosen = given or os.environ.get(DB_ENV)
    if chosen:
        return chosen
    path = var_dir() / "lienthong.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def pki_dir(given: Path | None = None) -> Path:
    """The PKI folder: the one given (``--pki``), else ``LIENTHONG_PKI_DIR``, else ``<var>/pki``."""
    if given is not None:
        return Path(given)
    return Path(os.environ.get(PKI_ENV) or var_dir() / "pki")


def schema_folders() -> list[Path]:
    """Where agreements, agencies, dataset schemas, XSD and WSDL are found: the operator's folders
    (``LIENTHONG_SCHEMAS_PATH``, in the order given), then the packaged ``schemas/``."""
    extra = [Path(part) for part in os.environ.get(SCHEMAS_ENV, "").split(os.pathsep) if part]
    return [*extra, Path(str(resources.files("schemas")))]


def schema_file(relative: str) -> Path:
    """A schema file by its path under ``schemas/`` (e.g. ``datasets/citizen-extract.v1.json``): the first
    folder that has it; the packaged one's path when none has (its read then names the missing file)."""
    folders = schema_folders()
    for folder in folders:
        if (folder / relative).is_file():
            return folder / relative
    return folders[-1] / relative


def schema_files(folder: str, pattern: str) -> list[Path]:
    """Every file matching ``pattern`` in ``folder`` of each schema folder; a name found in an earlier folder
    hides the same name in a later one."""
    found: dict[str, Path] = {}
    for root in schema_folders():
        for path in sorted((root / folder).glob(pattern)):
            found.setdefault(path.name, path)
    return list(found.values())


def key_password() -> bytes:
    """The password of the PKCS#8 keys: the Airflow connection ``lienthong_keys``, else the environment."""
    password = _airflow_password(KEYS_CONNECTION) or os.environ.get(PASSWORD_ENV)
    if not password:
        raise KeyPasswordMissing(
            f"no key password: set {PASSWORD_ENV} or the password of the Airflow connection {KEYS_CONNECTION!r}"
        )
    return password.encode("utf-8")


def disclosure_key() -> bytes:
    """The HMAC key of the disclosure index (personal IDs are indexed by their HMAC-SHA256 under it, so the index
    is not one more copy of the IDs): the Airflow connection ``lienthong_disclosure_key``, else the environment.
    The same key must stay in use for as long as the index is looked up: a new key finds none of the old rows."""
    key = _airflow_password(DISCLOSURE_CONNECTION) or os.environ.get(DISCLOSURE_KEY_ENV)
    if not key:
        raise DisclosureKeyMissing(
            f"no disclosure key: set {DISCLOSURE_KEY_ENV} or the password of the Airflow connection "
            f"{DISCLOSURE_CONNECTION!r} (the HMAC key of the disclosure index; packages are not sealed or accepted "
            "without it)"
        )
    return key.encode("utf-8")


def _airflow_password(connection: str) -> str | None:
    """Only when Airflow is in play (inside a task, or the connection is in the environment): importing it
    costs seconds, and a command line outside Airflow should not pay that."""
    in_airflow = "airflow.sdk" in sys.modules or f"AIRFLOW_CONN_{connection.upper()}" in os.environ
    if not in_airflow:
        return None
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(connection).password or None
    except Exception:  # noqa: BLE001 - no such connection or no Airflow here: fall back to the environment
        return None


@dataclass(frozen=True)
class Workspace:
    """Where an exchange run reads and writes."""

    var: Path
    pki_dir: Path

    @classmethod
    def from_environment(cls) -> Workspace:
        return cls(var_dir(), pki_dir())

    @property
    def packages(self) -> Path:
        return self.var / "packages"

    @property
    def staging(self) -> Path:
        return self.var / "staging"

    @property
    def reports(self) -> Path:
        return self.var / "reports"

    @property
    def inbound(self) -> Path:
        return self.var / "inbound"

    @property
    def ledger_anchors(self) -> Path:
        return self.var / "ledger-anchors"

    @property
    def partners(self) -> Path:
        return self.var / "partners"
