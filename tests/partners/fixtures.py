"""Fixtures shared by the partner and connector tests: a sandbox PKI, a small synthetic population, the four
partner servers running on loopback for the test session (one per xdist worker), a real OpenSSH sshd, and
helpers to build exchange packages and to point Airflow connections at the servers."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from exchange.agreements import Agreement, Direction
from exchange.package import Manifest, PackageBuilder, SchemaRef, zip_package
from exchange.pki import (
    ENCRYPTION,
    POPULATION,
    CertifiedKey,
    PkiDirectory,
    Signer,
    init_pki,
    key_path,
    load_certificate,
    load_recipient,
    load_signer,
)
from exchange.signature import TrustAnchors
from partners import intake
from partners.intake import PackageIntake, PartnerKeys
from partners.land import InboxWatcher
from partners.openssh import OpenSshMissing, OpenSshServer, write_key
from partners.sandbox import Sandbox
from partners.seed import Citizen, citizens_from
from partners.store import RegistryStore
from population.db import create_population_engine
from population.migrate import upgrade

PASSWORD = b"partners test key password"
DISCLOSURE_KEY = "partners test disclosure key"
SCHEMA = SchemaRef("citizen-extract", "1")
RECORDS = [
    {"personal_id": "001200012345", "full_name": "Nguyễn Thị Thuỷ", "date_of_birth": "2000-01-02", "died": None},
    {"personal_id": "079085001234", "full_name": "Trần Văn Bé", "date_of_birth": "1985-03-04", "died": None},
    {"personal_id": "096191000077", "full_name": "Đặng Hoà Phước", "date_of_birth": "1991-12-31", "died": "2026-05-01"},
]


@pytest.fixture(scope="session")
def key_password_env():
    """The key password where the hooks and the PKI look for it (the environment)."""
    before = os.environ.get("LIENTHONG_KEY_PASSWORD")
    os.environ["LIENTHONG_KEY_PASSWORD"] = PASSWORD.decode()
    yield PASSWORD
    if before is None:
        os.environ.pop("LIENTHONG_KEY_PASSWORD", None)
    else:
        os.environ["LIENTHONG_KEY_PASSWORD"] = before


@pytest.fixture(scope="session")
def sandbox_pki(tmp_path_factory, key_password_env) -> PkiDirectory:
    return init_pki(tmp_path_factory.mktemp("partners-pki") / "pki", PASSWORD, rsa_bits=2048)


@pytest.fixture(scope="session")
def stranger_pki(tmp_path_factory) -> PkiDirectory:
    """Another PKI with its own root: nothing it issues chains to the sandbox's."""
    return init_pki(tmp_path_factory.mktemp("stranger-pki") / "pki", PASSWORD, rsa_bits=2048)


@pytest.fixture(scope="session")
def population_engine(tmp_path_factory):
    """A small synthetic population, then a day of life events (deaths among them), made once per session."""
    from population.db import session_factory
    from population.generator import generate
    from population.simulation import DaySimulation

    engine = create_population_engine(f"sqlite:///{tmp_path_factory.mktemp('population') / 'population.db'}")
    upgrade(engine)
    generate(engine, 400, 11, 0.0)
    DaySimulation(session_factory(engine), 11, date(2026, 7, 2)).run(120)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def citizens(population_engine) -> list[Citizen]:
    return list(citizens_from(population_engine))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory, sandbox_pki, citizens) -> Sandbox:
    """The four partners, seeded and running, for the whole session."""
    running = Sandbox(tmp_path_factory.mktemp("partners") / "state", sandbox_pki, PASSWORD)
    running.seed(citizens, 7)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def partners(sandbox, monkeypatch) -> Sandbox:
    """The sandbox with its Airflow connections in the environment; every fault cleared after the test and
    every stopped partner started again."""
    for variable, value in sandbox.connection_environment().items():
        monkeypatch.setenv(variable, value)
    yield sandbox
    for partner in sandbox.partners.values():
        partner.faults.clear()
        partner.start()


@pytest.fixture
def outboxes_restored(sandbox):
    """Packages a test publishes into the session's partner outboxes are removed after it (other tests count
    what the sandbox itself published)."""
    before = {name: set(partner.published()) for name, partner in sandbox.partners.items()}
    yield
    for name, partner in sandbox.partners.items():
        for path in set(partner.published()) - before[name]:
            path.unlink()


def define_connection(monkeypatch, conn_id: str, document: Mapping[str, Any]) -> str:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(document))
    return conn_id


def connection_like(sandbox: Sandbox, conn_id: str, **changes: Any) -> dict[str, Any]:
    """A sandbox connection with some fields changed; ``extra`` entries are merged, None removes one."""
    document = json.loads(json.dumps(sandbox.connections()[conn_id]))
    extra = document.get("extra", {}) | changes.pop("extra", {})
    document["extra"] = {key: value for key, value in extra.items() if value is not None}
    return document | changes


# -- packages ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZippedPackage:
    path: Path
    manifest: Manifest
    manifest_sha256: str


@pytest.fixture(scope="session")
def population_signer(sandbox_pki) -> Signer:
    return load_signer(sandbox_pki, POPULATION, PASSWORD)


@pytest.fixture(scope="session")
def population_key(sandbox_pki) -> CertifiedKey:
    certificate = sandbox_pki.certificate(POPULATION, ENCRYPTION)
    return load_recipient(certificate, key_path(certificate), PASSWORD)


@pytest.fixture(scope="session")
def trust(sandbox_pki) -> TrustAnchors:
    return TrustAnchors.from_files(sandbox_pki.root_ca, [sandbox_pki.crl])


@pytest.fixture
def exchange_engine(tmp_path):
    """The population side's own feeds and ledger, fresh for each test."""
    engine = create_population_engine(f"sqlite:///{tmp_path / 'sender.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


TEST_FIELDS = ("personal_id", "full_name", "date_of_birth", "died", "note")  # what the tests' packages carry


def own_agreement(name: str, partner: str, fields: Iterable[str] = TEST_FIELDS) -> Agreement:
    """An agreement of the tests' own: the population's outbound feed of ``SCHEMA`` to ``partner`` with ``fields``."""
    outbound = Direction("outbound", SCHEMA.name, int(SCHEMA.version), "incremental", dict.fromkeys(fields, "test"),
                         False, None, None, None)  # fmt: skip
    return Agreement(name, partner, ("test",), "test", None, "rest", f"lienthong_{partner}", 1, "csv",
                     {"outbound": outbound}, Path(f"{name}.yaml"))  # fmt: skip


@pytest.fixture
def partner_agreements(monkeypatch) -> dict[str, Agreement]:
    """Agreements the partners' intake knows besides ``schemas/agreements``, for this test only (a partner refuses a
    package under an agreement it does not have): add a test's own to it, by name."""
    added: dict[str, Agreement] = {}
    known = intake.load_agreements
    monkeypatch.setattr(intake, "load_agreements", lambda: known() | added)
    return added


@pytest.fixture
def agreement_for(partner_agreements) -> Callable[[str], str]:
    """The name of an agreement with the partner that is new for this test (``test-…-<partner>``: its feed starts at
    package 1), carrying ``TEST_FIELDS`` of ``SCHEMA``."""
    feed = f"test-{uuid.uuid4().hex[:12]}"

    def name(partner: str) -> str:
        partner_agreements.setdefault(f"{feed}-{partner}", own_agreement(f"{feed}-{partner}", partner))
        return f"{feed}-{partner}"

    return name


@pytest.fixture
def make_package(
    tmp_path, exchange_engine, population_signer, sandbox_pki, agreement_for
) -> Callable[..., ZippedPackage]:
    """Build, seal and zip the next package of a feed that is new for this test (an agreement of its own with each
    recipient, ``agreement_for``)."""

    def make(recipient: str, records: Iterable[Mapping[str, Any]] = RECORDS, *, encrypt: bool = True,
             signer: Signer | None = None, csv: bytes | None = None) -> ZippedPackage:  # fmt: skip
        """``csv``: the payload file's bytes as given (a sender's broken file), instead of ``records``."""
        out = tmp_path / "packages"
        out.mkdir(exist_ok=True)
        encrypt_for = load_certificate(sandbox_pki.certificate(recipient, ENCRYPTION)) if encrypt else None
        with PackageBuilder(out, agreement=agreement_for(recipient), recipient=recipient, schema=SCHEMA,
                            signer=signer or population_signer, encrypt_for=encrypt_for) as builder:  # fmt: skip
            if csv is None:
                builder.add_records("citizens.csv", records)
            else:
                (tmp_path / "given.csv").write_bytes(csv)
                builder.add_file("citizens.csv", tmp_path / "given.csv", csv.count(b"\n") - 1)
            built = builder.seal(exchange_engine)
        return ZippedPackage(zip_package(built.path), built.manifest, built.manifest_sha256)

    return make


# -- OpenSSH ----------------------------------------------------------------------------------------------------


@dataclass
class OpenSshLand:
    """A real sshd serving a land folder, a client key it accepts, and the land intake watching the folder."""

    server: OpenSshServer
    client_key: Path
    watcher: InboxWatcher
    store: RegistryStore

    @property
    def root(self) -> Path:
        return self.server.root

    def connection(self, **extra: Any) -> dict[str, Any]:
        settings = {
            "host_key": self.server.host_key_line,
            "remote_folder": str(self.root),
            "private_key_file": str(self.client_key),
            "backoff_initial": 0.01,
            "backoff_max": 0.05,
        } | extra
        return {"conn_type": "lienthong_sftp", "host": "127.0.0.1", "port": self.server.port,
                "login": self.server.user, "extra": {k: v for k, v in settings.items() if v is not None}}  # fmt: skip


@pytest.fixture(scope="session")
def openssh_land(tmp_path_factory, sandbox_pki) -> OpenSshLand:
    directory = tmp_path_factory.mktemp("openssh")
    try:
        server = OpenSshServer(directory / "sshd")
    except OpenSshMissing as error:
        pytest.fail(str(error), pytrace=False)
    client_key = directory / "client_ed25519"
    server.authorize(write_key(client_key).export_public_key("openssh").decode())
    store = RegistryStore(directory / "land" / "registry.db")
    intake = PackageIntake(PartnerKeys.load(sandbox_pki, "land", PASSWORD), store, directory / "land" / "work")
    watcher = InboxWatcher(server.root, intake, directory / "land" / "done")
    server.start()
    yield OpenSshLand(server, client_key, watcher, store)
    server.stop()
    store.dispose()


def record_waits(hook, also: Callable[[], Any] | None = None) -> list[float]:
    """Make a hook record its retry waits instead of sleeping them (``also`` runs at each, e.g. to restart a
    server); returns the list of waits."""
    waits: list[float] = []

    def record(seconds: float) -> None:
        waits.append(seconds)
        if also is not None:
            also()

    hook.sleep = record
    return waits


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Poll until ``condition()`` is truthy (for work a server does in its own thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- a whole exchange world: population, partners seeded from it, the environment the feeds read ------------------


@dataclass
class ExchangeWorld:
    """A generated population with defects and a day of life events (SQLite under ``var``), the four partners
    seeded from it and running on loopback (a sandbox of its own, so that feeds under the real agreement names
    start at package 1), and ``env``: what the exchange feeds and the DAGs read (database, folders, PKI, key
    password, the partners' Airflow connections)."""

    var: Path
    engine: Any
    sandbox: Sandbox
    env: dict[str, str]

    def records_held(self, partner: str, agreement: str) -> list[dict]:
        """The records the partner stored from the agreement's packages, one per record received."""
        from sqlalchemy import select

        from partners.store import package, record

        with self.sandbox.partners[partner].store.engine.connect() as connection:
            query = (select(record.c.content).join(package, package.c.package_id == record.c.package_id)
                     .where(package.c.agreement == agreement))  # fmt: skip
            return [json.loads(content) for (content,) in connection.execute(query)]

    def new_day(self, day: int, events: int = 30) -> None:
        from datetime import timedelta

        from population.db import session_factory
        from population.simulation import DaySimulation

        DaySimulation(session_factory(self.engine), 100 + day, date(2026, 7, 2) + timedelta(days=day)).run(events)


def exchange_world(
    var: Path,
    pki: PkiDirectory,
    seed: int,
    citizens: int = 400,
    defects: float = 0.03,
    kind: type = ExchangeWorld,
    only: Iterable[str] | None = None,
):
    """``only``: the partners the sandbox plays (default: every agency with a sandbox part)."""
    from population.db import session_factory
    from population.generator import generate
    from population.simulation import DaySimulation

    var.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{var / 'lienthong.db'}"
    engine = create_population_engine(url)
    upgrade(engine)
    generate(engine, citizens, seed, defects)
    DaySimulation(session_factory(engine), seed, date(2026, 7, 2)).run(citizens // 3)
    sandbox = Sandbox(var / "partners", pki, PASSWORD, only=only)
    sandbox.seed(list(citizens_from(engine)), seed)
    sandbox.start()
    env = sandbox.connection_environment()
    env |= {"LIENTHONG_DB_URL": url, "LIENTHONG_VAR_DIR": str(var), "LIENTHONG_PKI_DIR": str(pki.path),
            "LIENTHONG_KEY_PASSWORD": PASSWORD.decode(), "LIENTHONG_DISCLOSURE_KEY": DISCLOSURE_KEY}  # fmt: skip
    return kind(var, engine, sandbox, env)
