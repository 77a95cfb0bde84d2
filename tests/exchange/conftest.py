"""Short-lived test PKIs (RSA 2048 for speed), signers, and exchange-ready databases."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from exchange.package import BuiltPackage, PackageBuilder, SchemaRef
from exchange.pki import (
    PROFILES,
    SIGNING,
    CertifiedKey,
    PkiDirectory,
    Signer,
    init_pki,
    key_path,
    load_certificate,
    load_private_key,
    load_signer,
    make_agency_certificate,
)
from exchange.signature import TrustAnchors

PASSWORD = b"test key password"
SCHEMA = SchemaRef("citizen-extract", "1")
CITIZENS = [
    {"personal_id": "001200012345", "full_name": "Nguyễn Thị Thuỷ", "date_of_birth": "2000-01-02", "sex": "F"},
    {"personal_id": "079085001234", "full_name": 'Trần Văn "Bé", con', "date_of_birth": None, "sex": "M"},
    {"personal_id": "096191000077", "full_name": "Đặng Hoà\nPhước", "date_of_birth": "1991-12-31", "sex": None},
]


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> PkiDirectory:
    return init_pki(tmp_path_factory.mktemp("pki") / "pki", PASSWORD, rsa_bits=2048)


@pytest.fixture(scope="session")
def other_pki(tmp_path_factory) -> PkiDirectory:
    """A second PKI with its own root: what it issues must not chain to the first."""
    return init_pki(tmp_path_factory.mktemp("other-pki") / "pki", PASSWORD, rsa_bits=2048)


@pytest.fixture(scope="session")
def trust(pki) -> TrustAnchors:
    return TrustAnchors.from_pki(pki)


@pytest.fixture(scope="session")
def issuing_ca(pki) -> CertifiedKey:
    return CertifiedKey(load_certificate(pki.issuing_ca), load_private_key(key_path(pki.issuing_ca), PASSWORD))


@pytest.fixture(scope="session")
def population_signer(pki) -> Signer:
    return load_signer(pki, "population", PASSWORD)


@pytest.fixture(scope="session")
def health_signer(pki) -> Signer:
    return load_signer(pki, "health", PASSWORD)


def signer_with(issuing_ca: CertifiedKey, agency: str = "population", **overrides) -> Signer:
    """A signer whose certificate comes from the real issuing CA but with other dates or key usage."""
    issued = make_agency_certificate(issuing_ca, agency, SIGNING, **overrides)
    return Signer(issued.certificate, issued.private_key, (issuing_ca.certificate,))


def expired_signer(issuing_ca: CertifiedKey) -> Signer:
    now = datetime.now(UTC)
    return signer_with(issuing_ca, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))


def not_yet_valid_signer(issuing_ca: CertifiedKey) -> Signer:
    now = datetime.now(UTC)
    return signer_with(issuing_ca, not_before=now + timedelta(days=1), not_after=now + timedelta(days=30))


def signature_only_signer(issuing_ca: CertifiedKey) -> Signer:
    """digitalSignature without nonRepudiation."""
    return signer_with(issuing_ca, profile=replace(PROFILES[SIGNING], key_usage=frozenset({"digital_signature"})))


def reset_exchange_tables(engine) -> None:
    """The PostgreSQL test database lives for the session: empty the feeds and the ledger between tests."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(text("TRUNCATE ledger_entry, package_feed"))
            connection.execute(text("UPDATE ledger_head SET last_position = 0, last_hash = :h"), {"h": "0" * 64})


@pytest.fixture
def exchange_engine(engine):
    """An upgraded, empty population database on each backend, with no feeds and an empty ledger."""
    reset_exchange_tables(engine)
    return engine


@pytest.fixture
def exchange_postgres(postgres_engine):
    reset_exchange_tables(postgres_engine)
    return postgres_engine


def build(
    engine,
    out: Path,
    signer: Signer,
    records: Iterable[Mapping[str, Any]] = CITIZENS,
    *,
    name: str = "citizens.csv",
    agreement: str = "health-identity",
    **settings,
) -> BuiltPackage:
    out.mkdir(parents=True, exist_ok=True)
    settings = {"recipient": "health", "schema": SCHEMA} | settings
    with PackageBuilder(out, agreement=agreement, signer=signer, **settings) as builder:
        builder.add_records(name, records)
        return builder.seal(engine)


def tamper_ledger(engine, statement: str, parameters: dict | None = None) -> None:
    """Change the ledger behind the application's back, as someone with database rights could."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("ALTER TABLE ledger_entry DISABLE TRIGGER ledger_entry_append_only"))
            connection.execute(text(statement), parameters or {})
            connection.execute(text("ALTER TABLE ledger_entry ENABLE TRIGGER ledger_entry_append_only"))
        else:
            connection.execute(text("DROP TRIGGER IF EXISTS ledger_entry_no_update"))
            connection.execute(text("DROP TRIGGER IF EXISTS ledger_entry_no_delete"))
            connection.execute(text(statement), parameters or {})


def rewrite_chain(engine, position: int, **changes: Any) -> None:
    """Change entry ``position`` of the ledger and recompute the hash of every entry from it on, and the head row,
    as someone with database rights who drops the ledger's triggers could: the chain verifies again (only what
    is kept outside the database, anchors and partners' receipts, can tell)."""
    from sqlalchemy import select

    from exchange import ledger
    from population.db import session_factory
    from population.models import LedgerEntry

    with session_factory(engine)() as session:
        entries = list(session.scalars(select(LedgerEntry).where(LedgerEntry.position >= position - 1)
                                       .order_by(LedgerEntry.position)))  # fmt: skip
        session.expunge_all()
    previous = ledger.GENESIS_HASH if position == 1 else entries.pop(0).entry_hash
    for entry in entries:
        if entry.position == position:
            for key, value in changes.items():
                setattr(entry, key, value)
        entry.previous_hash = previous
        entry.entry_hash = previous = ledger.entry_hash(entry)
        columns = {**changes, "previous_hash": entry.previous_hash, "entry_hash": entry.entry_hash}
        if entry.position != position:
            columns = {"previous_hash": entry.previous_hash, "entry_hash": entry.entry_hash}
        assignments = ", ".join(f"{column} = :{column}" for column in columns)
        tamper_ledger(engine, f"UPDATE ledger_entry SET {assignments} WHERE position = :position",
                      {**columns, "position": entry.position})  # fmt: skip
    tamper_ledger(engine, "UPDATE ledger_head SET last_hash = :h WHERE id = 1", {"h": previous})
    with session_factory(engine)() as session:
        ledger.verify(session)  # the chain alone holds


@pytest.fixture
def population(tmp_path):
    """A generated population with defects (SQLite), then a day of life events: what the pipeline tests feed."""
    from datetime import date

    from population.db import create_population_engine, session_factory
    from population.generator import generate
    from population.migrate import upgrade
    from population.simulation import DaySimulation

    engine = create_population_engine(f"sqlite:///{tmp_path / 'population.db'}")
    upgrade(engine)
    generate(engine, 300, 23, 0.03)
    DaySimulation(session_factory(engine), 23, date(2026, 7, 2)).run(80)
    yield engine
    engine.dispose()
