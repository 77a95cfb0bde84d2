"""The Airflow plugin: the overview page and its JSON over a small population database whose feeds were moved
through the real code paths (validation with quarantine, checkpoint, ledger, reconciliation), and Airflow's
plugins manager finding the plugin by its entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from exchange import ledger
from exchange.agreements import load_agreements
from feeds.checkpoint import hold_pending, move_checkpoint, read_checkpoint
from feeds.outbound import extract, validate
from feeds.overview import exchange_overview, partner_figures
from lienthong.airflow_runner import PROJECT_ROOT, airflow_environment
from population.changelog import last_sequence
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.models import Change, Citizen
from population.simulation import DaySimulation
from validation.models import QuarantinedRecord
from validation.partner_sample import partner_sample
from validation.quarantine import decide
from validation.reconciliation import reconcile

# a run of 12 digits standing alone: what a personal ID looks like in text (a UUID's last group follows a hyphen)
TWELVE_DIGITS = re.compile(r"(?<![\w-])\d{12}(?![\w-])")
SIGNER = "ab" * 32


@dataclass
class World:
    engine: Engine
    var: Path
    url: str
    passed: int
    quarantined: int
    released: int
    reconciliation_run: int
    classes: dict[str, int]
    personal_ids: set[str]


def _record(kind: str, agreement: str, direction: str, sequence: int, count: int, status: str | None = None):
    sender, recipient = ("population", "health") if direction == "outbound" else ("health", "population")
    if kind.startswith("receipt"):
        sender, recipient = recipient, sender
    return ledger.LedgerRecord(kind, agreement, direction, sender, recipient, f"{direction}-{sequence}-package",
                               sequence, f"{sequence:064x}", count, SIGNER, status)  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory, sqlite_template) -> World:
    """A population with defects and a day of events; health's feed validated (rows quarantined, one released by
    a steward), sent and acknowledged, its checkpoint moved, a package received and reconciled; tax's package
    sealed and pending."""
    root = tmp_path_factory.mktemp("plugin-world")
    path = root / "population.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = create_population_engine(url)
    generate(engine, 250, 11, 0.03)
    DaySimulation(session_factory(engine), 11, date(2026, 7, 2)).run(60)
    agreements = load_agreements()
    health, tax = agreements["health-identity"], agreements["tax-identity"]

    window = extract(engine, health, mode="full")  # every citizen: some of the injected defects are quarantined
    checked = validate(engine, health, window, root / "staging")
    assert checked.quarantined > 0, "the world needs quarantined rows"
    with session_factory(engine)() as session:
        held = session.scalars(select(QuarantinedRecord.id).where(QuarantinedRecord.run_id == checked.validation_run))
        decide(session, [next(iter(held))], "release", "checked against the civil status register", "steward")
    with session_factory(engine).begin() as session:
        ledger.append(session, _record("package_sent", health.name, "outbound", 1, checked.passed))
        ledger.append(session, _record("receipt_received", health.name, "outbound", 1, checked.passed, "accepted"))
        ledger.append(session, _record("package_received", health.name, "inbound", 1, 80))
        ledger.append(session, _record("receipt_sent", health.name, "inbound", 1, 80, "accepted"))
    hold_pending(engine, health.name, window.up_to, root / "var" / "packages" / health.name / "p.zip")
    assert move_checkpoint(engine, health.name, window.up_to, "outbound-1-package")
    hold_pending(engine, tax.name, 42, root / "var" / "packages" / tax.name / "pending.zip")

    sample = partner_sample(engine, "health", 80, seed=4, disagreement_rate=0.2)
    report = reconcile(engine, "health", [sample.rows], source=f"{health.name}: inbound package inbound-1-package")
    with session_factory(engine)() as session:
        personal_ids = set(session.scalars(select(Citizen.personal_id)))
        personal_ids |= {p for p in session.scalars(select(QuarantinedRecord.personal_id)) if p}
    yield World(engine, root / "var", url, checked.passed, checked.quarantined, 1, report.run_id,
                dict(report.counts), personal_ids)  # fmt: skip
    engine.dispose()


@pytest.fixture
def client(world, monkeypatch):
    """The plugin's app, as Airflow's API server mounts it, with a signed-in user."""
    from plugins.airflow_lienthong import app, signed_in

    monkeypatch.setenv("LIENTHONG_DB_URL", world.url)
    monkeypatch.setenv("LIENTHONG_VAR_DIR", str(world.var))
    app.dependency_overrides[signed_in] = lambda: None
    yield TestClient(app)
    app.dependency_overrides.clear()


def assert_no_personal_id(text: str, world: World) -> None:
    assert not TWELVE_DIGITS.search(text)
    assert not [p for p in world.personal_ids if p in text]


def test_the_page_shows_each_agreement_and_its_figures(client, world):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    for agreement in load_agreements().values():
        assert f'<section id="{agreement.name}"><h2>{agreement.name}</h2>' in page
        assert f"{world.var.resolve() / 'reports' / agreement.name}" in page
    health = page[page.index('<section id="health-identity">') : page.index("</section>", page.index("health-id"))]
    assert f'<th>records sent</th><td class="n">{world.passed:,}</td>' in health
    assert '<th>signed receipts back, accepted</th><td class="n">1</td>' in health
    assert f'<th>rows quarantined</th><td class="n">{world.quarantined:,}</td>' in health
    held = world.quarantined - world.released
    assert f'<th>records held now, awaiting a steward</th><td class="n">{held:,}</td>' in health
    assert f"Latest reconciliation (run {world.reconciliation_run}," in health
    mismatches = sum(n for kind, n in world.classes.items() if kind != "matched")
    assert f'<th>mismatches</th><td class="n">{mismatches:,}</td>' in health
    assert "pending" not in health
    tax = page[page.index('<section id="tax-identity">') :]
    assert "pending: package for changes up to 42" in tax and "pending.zip" in tax
    assert "Ledger: 4 entries, head hash <code>" in page
    assert "<script" not in page
    assert_no_personal_id(page, world)


def test_the_json_has_the_same_figures(client, world):
    response = client.get("/api/overview")
    assert response.status_code == 200
    body = response.json()
    overview = exchange_overview(world.engine, world.var)
    assert body["ledger_entries"] == 4 and body["ledger_head_hash"] == overview.ledger_head_hash != ""
    by_name = {item["agreement"]: item for item in body["agreements"]}
    assert set(by_name) == set(load_agreements())
    health = by_name["health-identity"]
    outbound, inbound = health["outbound"], health["inbound"]
    checkpoint = read_checkpoint(world.engine, "health-identity")
    assert outbound["last_change_delivered"] == checkpoint.last_change_sequence > 0
    assert outbound["last_package_id"] == "outbound-1-package" and outbound["pending_up_to"] is None
    assert (outbound["packages_sent"], outbound["records_sent"]) == (1, world.passed)
    assert (outbound["receipts_accepted"], outbound["receipts_rejected"]) == (1, 0)
    assert outbound["validation"]["rows_quarantined"] == world.quarantined
    assert outbound["validation"]["held_now"] == world.quarantined - world.released
    assert (inbound["packages_received"], inbound["records_received"], inbound["receipts_sent"]) == (1, 80, 1)
    latest = inbound["latest_reconciliation"]
    assert latest["run_id"] == world.reconciliation_run and latest["classes"] == world.classes
    assert latest["mismatches"] == sum(n for kind, n in world.classes.items() if kind != "matched")
    tax = by_name["tax-identity"]["outbound"]
    assert tax["pending_up_to"] == 42 and tax["pending_package"].endswith("pending.zip")
    assert tax["packages_sent"] == 0 and by_name["tax-identity"]["inbound"]["latest_reconciliation"] is None
    # freshness: the lag behind the change log's head, and how long the oldest change not delivered has waited
    with session_factory(world.engine)() as session:
        head = last_sequence(session)
        first_change = session.scalar(select(func.min(Change.recorded_at)))
    assert outbound["lag"] == head - checkpoint.last_change_sequence
    assert tax["lag"] == head > 0 and tax["oldest_unacknowledged_at"].startswith(first_change.isoformat()[:19])
    assert 0 <= tax["oldest_unacknowledged_age_s"] < 86_400
    assert_no_personal_id(response.text, world)


def test_the_demo_table_reads_the_same_ledger(world):
    figures = {row.partner: row for row in partner_figures(world.engine)}
    assert (figures["health"].packages_sent, figures["health"].sent, figures["health"].receipts) == (
        1,
        world.passed,
        1,
    )
    assert figures["health"].received == 80 and figures["tax"].packages_sent == 0


def test_the_page_asks_for_a_signed_in_airflow_user(world):
    from plugins.airflow_lienthong import app

    anonymous = TestClient(app)
    assert anonymous.get("/").status_code == 401
    assert anonymous.get("/api/overview").status_code == 401


def test_airflow_finds_the_plugin_by_its_entry_point(tmp_path):
    """In a process of its own: Airflow reads AIRFLOW__CORE__PLUGINS_FOLDER when it is first imported."""
    check = textwrap.dedent("""
        import json
        from fastapi import FastAPI
        from airflow import plugins_manager
        from airflow.api_fastapi.app import init_plugins
        from airflow.api_fastapi.core_api.datamodels.plugins import PluginResponse

        info = [PluginResponse.model_validate(p).model_dump() for p in plugins_manager.get_plugin_info()]
        app = FastAPI()
        init_plugins(app)
        print(json.dumps({"plugins": info, "errors": plugins_manager.get_import_errors(),
                          "mounted": [route.path for route in app.routes]}, default=str))
    """)
    env = {**os.environ, **airflow_environment(tmp_path / "var")}
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] != str(PROJECT_ROOT / "plugins")
    done = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["errors"]
    plugin = next(p for p in result["plugins"] if p["name"] == "lienthong")
    assert "plugins.airflow_lienthong:LienThongPlugin" in plugin["source"]  # the airflow.plugins entry point
    apps = [(a["name"], a["url_prefix"]) for a in plugin["fastapi_apps"]]
    assert apps == [("lienthong", "/lienthong"), ("lienthong-portal", "/lienthong-portal")]
    views = [(v["href"], v["url_route"], v["category"], v["destination"]) for v in plugin["external_views"]]
    assert views == [
        ("lienthong/", "lienthong", "browse", "nav"),  # the exchanges' overview
        ("lienthong/quarantine", "lienthong-workbench", "browse", "nav"),  # the stewards' workbench
    ]
    assert {"/lienthong", "/lienthong-portal"} <= set(result["mounted"])


def test_no_module_of_the_plugins_or_dags_folder_shadows_a_project_package():
    """Airflow puts its plugins and DAGs folders on sys.path: a module there named like one of the project's
    packages (plugins/lienthong.py once did) hides that package from the scheduler's DAG processor."""
    root = Path(__file__).resolve().parents[2]
    packages = {path.parent.name for path in root.glob("*/__init__.py")}
    modules = {path.stem for folder in ("plugins", "dags") for path in (root / folder).glob("*.py")}
    assert packages and not modules & packages
