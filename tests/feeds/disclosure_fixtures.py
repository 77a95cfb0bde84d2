"""Fixtures shared by the tests of who received a citizen's data (the command line and the citizen portal): a
generated population with a day of life events, a health agreement of the test's own, and the day's changes
delivered to the real health partner of the sandbox and acknowledged."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from exchange.agreements import load_agreements
from feeds.outbound import run_outbound
from partners.store import record as partner_record
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.migrate import upgrade
from population.simulation import DaySimulation


@pytest.fixture
def people(tmp_path):
    """A generated population with a day of life events (SQLite)."""
    engine = create_population_engine(f"sqlite:///{tmp_path / 'population.db'}")
    upgrade(engine)
    generate(engine, 300, 29, 0.0)
    DaySimulation(session_factory(engine), 29, date(2026, 7, 2)).run(80)
    yield engine
    engine.dispose()


@pytest.fixture
def health_agreement(partner_agreements):
    agreement = replace(load_agreements()["health-identity"], name=f"health-identity-{uuid.uuid4().hex[:8]}")
    partner_agreements[agreement.name] = agreement
    return agreement


def delivered(partners, package_id: str) -> list[dict]:
    with partners.partners["health"].store.engine.connect() as connection:
        rows = connection.execute(select(partner_record.c.content).where(partner_record.c.package_id == package_id))
        return [json.loads(content) for (content,) in rows]


@pytest.fixture
def sent(partners, sandbox_pki, people, health_agreement, tmp_path):
    """The day's changes delivered to the health partner, acknowledged with its signed receipt."""
    run = run_outbound(people, health_agreement, sandbox_pki, tmp_path / "work")
    assert run.delivery.status == "accepted"
    return run, delivered(partners, run.package.package_id)


def openssl_cms_verify(signature: Path, content: Path, root_ca: Path) -> subprocess.CompletedProcess:
    """Stock OpenSSL on a detached CMS signature, as a citizen or a court would check a report."""
    return subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature), "-content", str(content),
         "-CAfile", str(root_ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True,
    )  # fmt: skip


def pdf_text(pdf: Path) -> str:
    """The PDF's text as poppler's pdftotext reads it."""
    return subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True
    ).stdout.decode()
