"""Where Liên thông reads and writes, and the key password: every command and every task resolves them here.

- ``LIENTHONG_VAR_DIR``: the workspace (packages, staging files, reports, inbound packages, ledger anchors,
  partners' state); default ``var`` in the working directory.
- ``LIENTHONG_DB_URL`` (or ``--db``): the population database; default ``<var>/lienthong.db`` (SQLite).
- ``LIENTHONG_PKI_DIR`` (or ``--pki``): the PKI made by ``lienthong pki init``; default ``<var>/pki``.
- ``LIENTHONG_KEYS``: where the exchanges find the platform's keys and the PKI's certificates (``exchange.keys``):
  ``files``, the PKI folder (the default), or ``airflow``, Airflow's secrets backends: each private key the password
  of the connection ``lienthong_key_<agency>_<purpose>`` (PEM, encrypted with the key password), the certificates
  and the CRL the Variable ``lienthong_pki_certificates`` (JSON: path in the PKI folder → PEM); no folder needed.
- ``LIENTHONG_SCHEMAS_PATH``: folders of extra agreements, agencies and dataset schemas, searched before the
  packaged ``schemas/`` (``os.pathsep``-separated); how a new partner agency is added without Python.
- the key password: the password of the Airflow connection ``lienthong_keys``, else ``LIENTHONG_KEY_PASSWORD``.
- the disclosure key (the HMAC key of the disclosure index, ``population.disclosures``): the password of the Airflow
  connection ``lienthong_disclosure_key``, else ``LIENTHONG_DISCLOSURE_KEY``.
- the citizen portal's OAuth2 client (``feeds.access_portal``): the login and password of the Airflow connection
  ``lienthong_citizen_portal``, else ``LIENTHONG_PORTAL_CLIENT_ID`` and ``LIENTHONG_PORTAL_CLIENT_SECRET``.
- ``LIENTHONG_REPORT_FONT``: the TrueType font of the PDF access report; default DejaVu Sans, found by fontconfig.
- ``LIENTHONG_FAST_PATH_CITIZENS``: the largest incremental window (changed citizens) an outbound DAG sends in one
  task, the fast path; default 500, 0 turns it off.
- ``LIENTHONG_SNAPSHOT_TASKS``: how many mapped tasks validate a full snapshot's provinces: the task slots that run
  at once (a cluster's workers times their concurrency); default this machine's cores.
- ``LIENTHONG_PARTNERS_HOST``: the address the sandbox partners listen on and their connections name; default
  127.0.0.1 (the native cluster serves them from a network namespace of their own, ``lienthong.cluster``).
- ``LIENTHONG_ARTIFACTS``: the artifact store between tasks (``feeds.artifacts``): unset, the workspace folder (one
  machine); ``s3://bucket[/prefix]`` on a cluster, an S3-compatible store reached as boto3 is configured.

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
PORTAL_CONNECTION = "lienthong_citizen_portal"
PORTAL_CLIENT_ID_ENV, PORTAL_CLIENT_SECRET_ENV = "LIENTHONG_PORTAL_CLIENT_ID", "LIENTHONG_PORTAL_CLIENT_SECRET"
REPORT_FONT_ENV = "LIENTHONG_REPORT_FONT"
REPORT_FONT = "DejaVu Sans"  # Debian's fonts-dejavu-core: every Vietnamese letter, regular and bold
FAST_PATH_ENV = "LIENTHONG_FAST_PATH_CITIZENS"
FAST_PATH_CITIZENS = 500
SNAPSHOT_TASKS_ENV = "LIENTHONG_SNAPSHOT_TASKS"
KEYS_ENV = "LIENTHONG_KEYS"
KEYS_FROM_FILES, KEYS_FROM_AIRFLOW = "files", "airflow"
CERTIFICATES_VARIABLE = "lienthong_pki_certificates"


class KeyPasswordMissing(RuntimeError):
    """Neither the Airflow connection ``lienthong_keys`` nor ``LIENTHONG_KEY_PASSWORD`` gives the key password."""


class KeysMissing(RuntimeError):
    """A key or certificate that ``LIENTHONG_KEYS`` says is in Airflow's secrets backends is not there (the message
    names the connection or Variable, never key material)."""


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


def keys_source() -> str:
    """Where the platform's keys and certificates come from: ``files`` (the PKI folder) or ``airflow``."""
    source = os.environ.get(KEYS_ENV) or KEYS_FROM_FILES
    if source not in (KEYS_FROM_FILES, KEYS_FROM_AIRFLOW):
        raise ValueError(f"{KEYS_ENV} must be {KEYS_FROM_FILES} or {KEYS_FROM_AIRFLOW}, not {source!r}")
    return source


def key_connection(agency: str, purpose: str) -> str:
    """The Airflow connection whose password holds an agency's private key for a purpose (PEM, encrypted with the
    key password): ``lienthong_key_population_signing``; a ``-`` becomes ``_`` (an environment variable's name)."""
    return f"lienthong_key_{agency}_{purpose}".replace("-", "_")


def secret_key_pem(agency: str, purpose: str) -> bytes:
    """An agency's private key (encrypted PEM) from Airflow's secrets backends, in memory only."""
    connection = key_connection(agency, purpose)
    try:
        from airflow.sdk import BaseHook

        pem = BaseHook.get_connection(connection).password
    except Exception as error:  # noqa: BLE001 - not found, or a backend that fails: named, never shown
        raise KeysMissing(
            f"no {purpose} key for {agency}: the Airflow connection {connection!r} ({KEYS_ENV}=airflow) cannot be "
            f"read ({type(error).__name__})"
        ) from None
    if not pem or "PRIVATE KEY-----" not in pem:
        raise KeysMissing(f"no {purpose} key for {agency}: the Airflow connection {connection!r} has no PEM key "
                          "as its password")  # fmt: skip
    return pem.encode()


def secret_certificates() -> dict[str, bytes]:
    """The PKI's public files (path in the PKI folder → PEM): the Airflow Variable ``lienthong_pki_certificates``."""
    try:
        from airflow.sdk import Variable

        found = Variable.get(CERTIFICATES_VARIABLE, deserialize_json=True)
    except Exception as error:  # noqa: BLE001 - not found, not JSON, or a backend that fails
        raise KeysMissing(
            f"no certificates: the Airflow Variable {CERTIFICATES_VARIABLE!r} ({KEYS_ENV}=airflow) cannot be read "
            f"({type(error).__name__})"
        ) from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise KeysMissing(f"the Airflow Variable {CERTIFICATES_VARIABLE!r} is not a JSON object of PEM texts")
    return {str(path): pem.encode() for path, pem in found.items()}


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


def portal_client() -> tuple[str, str] | None:
    """The citizen portal's OAuth2 client (id, secret), or None when none is configured (then every request of the
    portal is refused). A secret shorter than 32 characters is refused: it also keys the portal's tokens."""
    login, secret = _airflow_login_password(PORTAL_CONNECTION)
    if not secret:
        login, secret = os.environ.get(PORTAL_CLIENT_ID_ENV), os.environ.get(PORTAL_CLIENT_SECRET_ENV)
    if not login or not secret:
        return None
    if len(secret) < 32:
        raise ValueError(f"the citizen portal's client secret must be at least 32 characters ({PORTAL_CONNECTION})")
    return login, secret


class SettingInvalid(ValueError):
    """A setting's value is not what it must be (the message names the setting and the rule)."""


def whole_number(env: str, default: int, minimum: int = 0) -> int:
    """A setting that counts something: a whole number, at least ``minimum``; ``default`` when unset."""
    given = os.environ.get(env, "").strip()
    if not given:
        return default
    if not (given.isascii() and given.isdigit()) or int(given) < minimum:  # not "²", which isdigit() takes
        raise SettingInvalid(f"{env} must be a whole number of {minimum} or more, not {given[:20]!r}")
    return int(given)


def fast_path_citizens() -> int:
    """The largest incremental window, in changed citizens, that an outbound DAG sends in one task (0: none)."""
    return whole_number(FAST_PATH_ENV, FAST_PATH_CITIZENS)


def snapshot_tasks() -> int:
    """How many mapped tasks validate a full snapshot (``feeds.snapshot.task_shares``): one per task slot. Each task
    pays a worker's start-up (seconds on a cluster), so one per province would pay it 35 times."""
    return whole_number(SNAPSHOT_TASKS_ENV, os.cpu_count() or 1, minimum=1)


ARTIFACTS_ENV = "LIENTHONG_ARTIFACTS"
PARTNERS_HOST_ENV = "LIENTHONG_PARTNERS_HOST"


def partners_host() -> str:
    """The address the sandbox partners listen on (their TLS certificates name it: ``pki init --server-address``)."""
    return os.environ.get(PARTNERS_HOST_ENV) or "127.0.0.1"


def artifacts_url() -> str | None:
    """The artifact store's URL (``s3://bucket[/prefix]``), or None: the workspace folder is the store."""
    return os.environ.get(ARTIFACTS_ENV) or None


class ReportFontMissing(RuntimeError):
    """No TrueType font for the PDF access report."""


def report_font(style: str = "Book") -> Path:
    """The TrueType file of the PDF report's font in ``style`` (Book or Bold): ``LIENTHONG_REPORT_FONT`` (regular;
    bold is the file with ``-Bold`` before its suffix when there is one), else DejaVu Sans as fontconfig finds it."""
    given = os.environ.get(REPORT_FONT_ENV)
    if given:
        path = Path(given)
        if style != "Book":
            bold = path.with_name(f"{path.stem}-Bold{path.suffix}")
            path = bold if bold.is_file() else path
    else:
        import subprocess

        try:
            found = subprocess.run(["fc-match", "--format=%{file}", f"{REPORT_FONT}:style={style}"],
                                   capture_output=True, text=True, timeout=10, check=False).stdout  # fmt: skip
        except OSError:
            found = ""
        path = Path(found)
        if REPORT_FONT.replace(" ", "") not in path.name:  # fontconfig answers with some other font when it has none
            path = Path()
    if path.suffix.lower() != ".ttf" or not path.is_file():
        raise ReportFontMissing(
            f"no TrueType font for the PDF report: install {REPORT_FONT} (Debian: apt-get install fonts-dejavu-core "
            f"fontconfig) or set {REPORT_FONT_ENV} to a .ttf file with Vietnamese letters"
        )
    return path


def _airflow_password(connection: str) -> str | None:
    return _airflow_login_password(connection)[1]


def _airflow_login_password(connection: str) -> tuple[str | None, str | None]:
    """A connection's login and password, only when Airflow is in play (inside a task, or the connection is in the
    environment): importing it costs seconds, and a command line outside Airflow should not pay that."""
    if "airflow.sdk" not in sys.modules and f"AIRFLOW_CONN_{connection.upper()}" not in os.environ:
        return None, None
    try:
        from airflow.sdk import BaseHook

        found = BaseHook.get_connection(connection)
        return found.login or None, found.password or None
    except Exception:  # noqa: BLE001 - no such connection or no Airflow here: fall back to the environment
        return None, None


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
