"""``lienthong disclosures`` end to end: an outbound feed delivers to the real health partner of the sandbox, then the
command lists, for a changed citizen, the partner, the agreement, the fields and the accepted receipt; the signed
access report verifies with stock OpenSSL and holds nothing of another citizen; bad input gets one line."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import replace
from datetime import date

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from exchange.agreements import load_agreements
from feeds.outbound import run_outbound
from lienthong.cli import app
from partners.store import record as partner_record
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.migrate import upgrade
from population.models import Citizen as PopulationCitizen
from population.simulation import DaySimulation
from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures: sandbox_pki, partners …

runner = CliRunner()


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


def disclosures(*args: str, db: str, **env: str):
    return runner.invoke(app, ["disclosures", *args, "--db", db], env={"COLUMNS": "250", **env})


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


def test_the_partner_agreement_fields_and_receipt_are_listed_for_a_changed_citizen(sent, people, health_agreement):
    run, records = sent
    db = str(people.url)
    changed = records[0]["personal_id"]
    shown = disclosures(changed, db=db)
    assert shown.exit_code == 0, shown.output
    assert "health" in shown.output and "Bảo hiểm xã hội Việt Nam" in shown.output
    assert health_agreement.name in shown.output
    assert f"fields: {', '.join(health_agreement.directions['outbound'].fields)}" in shown.output
    assert "receipt: accepted at " in shown.output and "Law on Identification No. 26/2023/QH15" in shown.output
    assert "stewards' workbench does not exist" in shown.output

    document = json.loads(disclosures(changed, "--json", db=db).stdout)
    (entry,) = document["disclosures"]
    assert entry["partner"] == "health" and entry["agreement"] == health_agreement.name
    assert entry["fields"] == list(health_agreement.directions["outbound"].fields)
    assert entry["package_id"] == run.package.package_id and entry["records"] == 1
    assert entry["receipt"]["status"] == "accepted" and entry["receipt"]["at"] >= entry["sent_at"]
    assert entry["legal_basis"] == list(health_agreement.legal_basis) and entry["purpose"] == health_agreement.purpose
    assert document["received_from_partners"] == [] and document["steward_full_views"]["logged"] is False
    # --since after the package: nothing
    later = disclosures(changed, "--since", "2999-01-01", db=db)
    assert later.exit_code == 0 and "no disclosure of citizen" in later.output and changed not in later.output


def test_the_access_report_verifies_with_openssl_and_holds_no_other_citizen(
    sent, people, sandbox_pki, key_password_env, tmp_path
):
    run, records = sent
    assert len(records) >= 2
    first, other = records[0]["personal_id"], records[1]["personal_id"]  # in the same package
    with session_factory(people)() as session:
        other_name = session.scalar(select(PopulationCitizen.full_name).where(PopulationCitizen.personal_id == other))
    out = tmp_path / "report"
    made = disclosures(first, "--report", str(out), "--pki", str(sandbox_pki.path), db=str(people.url))
    assert made.exit_code == 0, made.output
    report, signature, html = out / "report.json", out / "report.json.p7s", out / "report.html"
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature), "-content", str(report),
         "-CAfile", str(sandbox_pki.root_ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "Verification successful" in verified.stderr
    document = json.loads(report.read_text(encoding="utf-8"))
    assert document["subject"]["personal_id"] == first
    assert [d["package_id"] for d in document["disclosures"]] == [run.package.package_id]
    page = html.read_text(encoding="utf-8")
    assert "Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân" in page and first in page
    assert "Bảo hiểm xã hội Việt Nam" in page and "đã xác nhận tiếp nhận" in page
    for written in (report.read_bytes(), html.read_bytes(), signature.read_bytes()):
        assert other.encode() not in written and other_name.encode() not in written

    # the report changed by one byte no longer verifies
    report.write_bytes(report.read_bytes().replace(first.encode(), other.encode()))
    tampered = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", str(signature), "-content", str(report),
         "-CAfile", str(sandbox_pki.root_ca), "-purpose", "any", "-out", "/dev/null"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert tampered.returncode != 0


def test_everything_in_the_page_is_escaped():
    from feeds.disclosures import render_html

    document = {
        "controller": {"organisation": "<b>population</b>"},
        "subject": {"personal_id": "001200012345", "in_population_database": True},
        "generated_at": "2026-07-02T00:00:00Z",
        "since": None,
        "disclosures": [
            {"sent_at": "x", "sequence": 1, "mode": "full", "partner_organisation": "<script>alert(1)</script>",
             "agreement": "a&b", "legal_basis": ["<i>law</i>"], "purpose": '"quoted"', "fields": ["<f>"],
             "receipt": {"status": None, "at": None}}
        ],
        "received_from_partners": [],
    }  # fmt: skip
    page = render_html(document)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>population</b>" not in page and "<i>law</i>" not in page and "&lt;f&gt;" in page
    assert "a&amp;b" in page and "chưa có biên nhận" in page


def test_bad_input_gets_one_clear_line(people, monkeypatch):
    db = str(people.url)
    with session_factory(people)() as session:
        citizen = session.scalar(select(PopulationCitizen.personal_id).limit(1))
    for given in ("12345", "00120001234x", "0012000123456", "' OR 1=1 --"):
        refused = disclosures(given, db=db)
        assert refused.exit_code == 1
        assert refused.output.strip() == "error: a personal ID is exactly 12 digits (số định danh cá nhân)"
        assert "Traceback" not in refused.output
    unknown = disclosures("999999999999", db=db)
    assert unknown.exit_code == 0 and unknown.output.strip().startswith("no citizen with personal ID 999******999")
    none_yet = disclosures(citizen, db=db)
    assert none_yet.exit_code == 0 and len(none_yet.output.strip().splitlines()) == 1
    assert "no disclosure of citizen" in none_yet.output and citizen not in none_yet.output  # masked
    bad_date = disclosures(citizen, "--since", "yesterday", db=db)
    assert bad_date.exit_code == 1 and "--since must be a date" in bad_date.output
    monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
    keyless = disclosures(citizen, db=db)
    assert keyless.exit_code == 1 and "no disclosure key: set LIENTHONG_DISCLOSURE_KEY" in keyless.output


def test_a_feed_without_the_disclosure_key_is_refused_before_it_validates(people, health_agreement, monkeypatch,
                                                                          tmp_path):  # fmt: skip
    from feeds.outbound import extract, validate
    from lienthong.settings import DisclosureKeyMissing

    monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
    window = extract(people, health_agreement)
    with pytest.raises(DisclosureKeyMissing, match="lienthong_disclosure_key"):
        validate(people, health_agreement, window, tmp_path / "staging")


def test_the_disclosure_key_comes_from_the_environment_else_refused(monkeypatch):
    from lienthong.settings import DISCLOSURE_CONNECTION, DISCLOSURE_KEY_ENV, DisclosureKeyMissing, disclosure_key

    monkeypatch.delenv(f"AIRFLOW_CONN_{DISCLOSURE_CONNECTION.upper()}", raising=False)
    monkeypatch.setenv(DISCLOSURE_KEY_ENV, "from the environment")
    assert disclosure_key() == b"from the environment"
    monkeypatch.delenv(DISCLOSURE_KEY_ENV)
    with pytest.raises(DisclosureKeyMissing, match=f"{DISCLOSURE_KEY_ENV}.*{DISCLOSURE_CONNECTION}"):
        disclosure_key()


@pytest.mark.slow
def test_the_disclosure_key_prefers_the_airflow_connection(monkeypatch):
    """Imports Airflow (seconds): AIRFLOW_CONN_LIENTHONG_DISCLOSURE_KEY here, the metadata database or a secrets
    backend in a deployment."""
    from lienthong.settings import DISCLOSURE_CONNECTION, DISCLOSURE_KEY_ENV, disclosure_key

    monkeypatch.setenv(DISCLOSURE_KEY_ENV, "from the environment")
    monkeypatch.setenv(f"AIRFLOW_CONN_{DISCLOSURE_CONNECTION.upper()}", '{"conn_type": "generic", "password": "k"}')
    assert disclosure_key() == b"k"
