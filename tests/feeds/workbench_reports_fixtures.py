"""The quarantine world of ``workbench_fixtures`` with what the reconciliation, trends and operators pages read,
made by the real code paths: the health feed validated again a day later, the tax and health partners' datasets
reconciled (one tax row named with a hostile ``<script>`` that starts like a spreadsheet formula), a file checked
with its Great Expectations Data Docs, and receipts back from the health partner in the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sqlalchemy import select

from exchange import ledger
from exchange.agreements import load_agreements
from feeds.outbound import extract as feed_extract
from feeds.outbound import validate
from population.db import session_factory
from population.extract import export_csv
from population.simulation import DaySimulation
from tests.feeds.workbench_fixtures import QueueWorld, queue_world
from validation.models import ReconciliationMismatch, ValidationRun
from validation.outcome import DatasetBlocked
from validation.partner_sample import partner_sample
from validation.reconciliation import reconcile
from validation.runner import check_file

HOSTILE_PARTNER_NAME = '=HYPERLINK("http://example.invalid")<script>alert(2)</script>'
SIGNER = "ab" * 32


@dataclass
class ReportsWorld:
    queue: QueueWorld
    docs_run: int  # a validation run with Data Docs on disk
    hostile_mismatch: int  # the tax mismatch whose partner value is HOSTILE_PARTNER_NAME
    hostile_personal_id: str  # that row's personal ID, as the partner gave it

    @property
    def engine(self):
        return self.queue.engine


def _receipt(agreement: str, sequence: int, count: int) -> ledger.LedgerRecord:
    return ledger.LedgerRecord(
        "receipt_received",
        agreement,
        "outbound",
        "health",
        "population",
        f"outbound-{sequence}-package",
        sequence,
        f"{sequence:064x}",
        count,
        SIGNER,
        "accepted",
    )


def reports_world(root: Path, sqlite_template: Path) -> ReportsWorld:
    world = queue_world(root, sqlite_template)
    engine = world.engine
    DaySimulation(session_factory(engine), 12, date(2026, 7, 3)).run(40)  # a second day: a second run, a trend
    health = load_agreements()["health-identity"]
    validate(engine, health, feed_extract(engine, health, mode="full"), root / "staging-again")
    extract = root / "extract.csv"
    export_csv(engine, extract, limit=80)
    try:
        outcome = check_file("citizen-extract", extract, world.var / "reports" / "citizen-extract" / "1", engine)
        docs_run = outcome.run_id
    except DatasetBlocked:  # written all the same; the run is the latest of its dataset
        with session_factory(engine)() as session:
            docs_run = session.scalar(select(ValidationRun.id).where(ValidationRun.report.is_not(None)))
    hostile_personal_id = None
    for partner in ("tax", "health"):
        sample = partner_sample(engine, partner, 60, seed=5, disagreement_rate=0.3)
        if partner == "tax":
            row = next(i for i in sample.rows.index if i not in sample.truth)
            sample.rows.loc[row, "full_name"] = HOSTILE_PARTNER_NAME
            hostile_personal_id = sample.rows.loc[row, "personal_id"]
        reconcile(engine, partner, [sample.rows], source=f"{partner}: the tests' sample")
    with session_factory(engine)() as session:
        hostile = session.scalar(
            select(ReconciliationMismatch.id).where(ReconciliationMismatch.partner_value == HOSTILE_PARTNER_NAME)
        )
        world.personal_ids |= {p for p in session.scalars(select(ReconciliationMismatch.personal_id)) if p}
    with session_factory(engine).begin() as session:
        ledger.append(session, _receipt("health-identity", 1, 10))
        ledger.append(session, _receipt("health-identity", 2, 12))
    return ReportsWorld(world, docs_run, hostile, hostile_personal_id)
