"""Where the exchanges stand, read from the population database: per partner for the demo's table
(``partner_figures``), per agreement for the stewards' and operators' page in Airflow (``exchange_overview``,
served by the plugin in ``plugins/airflow_lienthong.py`` as HTML and JSON).

Read-only, and no personal data: counts, package ids, change numbers, hashes and folder paths only (no personal
ID, masked or not, is needed or read). Every figure comes from the tables the pipeline writes: the feed
checkpoints, the ledger, the validation runs with their quarantined records, the reconciliation runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Engine, func, select
from sqlalchemy.orm import Session

from exchange.agreements import Agreement, load_agreements
from feeds.checkpoint import Checkpoint, read_checkpoint


def _ledger_counts(session: Session, agreement: str) -> dict[tuple[str, str | None], tuple[int, int]]:
    """The agreement's ledger entries by kind and status: (entries, records)."""
    from population.models import LedgerEntry

    query = (select(LedgerEntry.kind, LedgerEntry.status, func.count(), func.sum(LedgerEntry.record_count))
             .where(LedgerEntry.agreement == agreement).group_by(LedgerEntry.kind, LedgerEntry.status))  # fmt: skip
    return {(kind, status): (count, records or 0) for kind, status, count, records in session.execute(query)}


def _by_kind(counts: dict[tuple[str, str | None], tuple[int, int]]) -> dict[str, tuple[int, int]]:
    kinds: dict[str, tuple[int, int]] = {}
    for (kind, _), (count, records) in counts.items():
        before = kinds.get(kind, (0, 0))
        kinds[kind] = (before[0] + count, before[1] + records)
    return kinds


def _quarantined(session: Session, runs: ColumnElement[bool]) -> int:
    """Rows the matching validation runs quarantined."""
    from validation.models import ValidationRun

    return session.scalar(select(func.coalesce(func.sum(ValidationRun.quarantined), 0)).where(runs))


# -- per partner: the demo's table -------------------------------------------------------------------------------


@dataclass
class PartnerFigures:
    partner: str
    sent: int = 0
    packages_sent: int = 0
    receipts: int = 0
    quarantined_out: int = 0
    received: int = 0
    packages_received: int = 0
    quarantined_in: int = 0
    links: int = 0
    mismatches: int = 0


def partner_figures(engine: Engine) -> list[PartnerFigures]:
    """What crossed per partner, from the ledger, the validation runs and the reconciliation runs."""
    from population.db import session_factory
    from validation.models import ReconciliationRun, ValidationRun

    figures: dict[str, PartnerFigures] = {}
    with session_factory(engine)() as session:
        for agreement in load_agreements().values():
            row = figures.setdefault(agreement.partner, PartnerFigures(agreement.partner))
            for kind, (count, records) in _by_kind(_ledger_counts(session, agreement.name)).items():
                if kind == "package_sent":  # a partner's agreements add up: each is a feed of its own
                    row.packages_sent, row.sent = row.packages_sent + count, row.sent + records
                elif kind == "receipt_received":
                    row.receipts += count
                elif kind == "package_received":
                    row.packages_received, row.received = row.packages_received + count, row.received + records
            outbound = agreement.directions.get("outbound")
            if outbound is not None:  # the pipeline's runs: "<agreement>: …", in the outbound dataset
                outbound_runs = ValidationRun.source.like(f"{agreement.name}:%") & (
                    ValidationRun.dataset == outbound.dataset)  # fmt: skip
                row.quarantined_out += _quarantined(session, outbound_runs)
            inbound = agreement.directions.get("inbound")
            if inbound is None:
                continue
            row.quarantined_in = _quarantined(session, ValidationRun.dataset == inbound.dataset)
            runs = select(ReconciliationRun.links_written, ReconciliationRun.classes)
            for links, classes in session.execute(runs.where(ReconciliationRun.partner == agreement.partner)):
                row.links += links or 0
                row.mismatches += sum(n for kind, n in (classes or {}).items() if kind != "matched")
    return list(figures.values())


# -- per agreement: the stewards' and operators' page ------------------------------------------------------------


@dataclass
class Quarantine:
    """One direction's validation: rows quarantined by all its runs, records still held for a steward, the
    latest run."""

    runs: int = 0
    rows_quarantined: int = 0
    held_now: int = 0
    latest_run_at: datetime | None = None
    latest_run_rows: int | None = None
    latest_run_quarantined: int | None = None
    latest_report: str | None = None


@dataclass
class Outbound:
    dataset: str
    last_change_delivered: int = 0  # the feed checkpoint: every change up to this one delivered
    last_package_id: str | None = None
    pending_up_to: int | None = None  # a sealed package waiting for its verified receipt
    pending_package: str | None = None
    packages_sent: int = 0
    records_sent: int = 0
    receipts_accepted: int = 0
    receipts_rejected: int = 0
    validation: Quarantine = field(default_factory=Quarantine)
    lag: int = 0  # freshness: changes in the log after the checkpoint (the change log's head minus the checkpoint)
    oldest_unacknowledged_at: datetime | None = None  # when the first of them was committed (None: no lag)

    def oldest_unacknowledged_age_s(self, now: datetime | None = None) -> float | None:
        """How long the oldest change not yet acknowledged by the partner has waited, in seconds."""
        if self.oldest_unacknowledged_at is None:
            return None
        at = self.oldest_unacknowledged_at
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        return round(((now or datetime.now(UTC)) - at).total_seconds(), 1)


@dataclass
class Reconciliation:
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    rows: int
    links_written: int
    classes: dict[str, int]  # class -> rows, ``matched`` among them
    mismatches: int  # rows in a class other than matched


@dataclass
class Inbound:
    dataset: str
    packages_received: int = 0
    records_received: int = 0
    receipts_sent: int = 0
    validation: Quarantine = field(default_factory=Quarantine)
    latest_reconciliation: Reconciliation | None = None


@dataclass
class AgreementOverview:
    agreement: str
    partner: str
    transport: str
    outbound: Outbound | None
    inbound: Inbound | None
    folders: dict[str, str]  # packages, inbound packages, reports: where they are on disk


@dataclass
class Overview:
    agreements: list[AgreementOverview]
    ledger_entries: int
    ledger_head_hash: str


def _validation(session: Session, agreement: str, dataset: str) -> Quarantine:
    """The validation runs the pipeline made for one direction of an agreement (their source names it)."""
    from validation.models import QuarantinedRecord, ValidationRun

    runs = ValidationRun.source.like(f"{agreement}:%") & (ValidationRun.dataset == dataset)
    figures = Quarantine(runs=session.scalar(select(func.count()).select_from(ValidationRun).where(runs)),
                         rows_quarantined=_quarantined(session, runs))  # fmt: skip
    held = (select(func.count()).select_from(QuarantinedRecord)
            .join(ValidationRun, QuarantinedRecord.run_id == ValidationRun.id)
            .where(runs, QuarantinedRecord.status == "held"))  # fmt: skip
    figures.held_now = session.scalar(held)
    newest_first = (ValidationRun.started_at.desc(), ValidationRun.id.desc())
    latest = session.scalars(select(ValidationRun).where(runs).order_by(*newest_first).limit(1)).first()
    if latest is not None:
        figures.latest_run_at, figures.latest_run_rows = latest.started_at, latest.rows
        figures.latest_run_quarantined, figures.latest_report = latest.quarantined, latest.report
    return figures


def _latest_reconciliation(session: Session, partner: str) -> Reconciliation | None:
    """The partner's latest reconciliation; its classes counted from its mismatches while it has none (a run
    still going, or one that stopped)."""
    from validation.models import ReconciliationMismatch, ReconciliationRun

    run = session.scalars(select(ReconciliationRun).where(ReconciliationRun.partner == partner)
                          .order_by(ReconciliationRun.id.desc()).limit(1)).first()  # fmt: skip
    if run is None:
        return None
    classes = run.classes
    if classes is None:
        counted = (select(ReconciliationMismatch.mismatch, func.count()).where(ReconciliationMismatch.run_id == run.id)
                   .group_by(ReconciliationMismatch.mismatch))  # fmt: skip
        classes = dict(session.execute(counted).tuples().all())
    classes = dict(sorted(classes.items(), key=lambda item: (-item[1], item[0])))
    mismatches = sum(n for kind, n in classes.items() if kind != "matched")
    return Reconciliation(run.id, run.started_at, run.finished_at, run.rows or 0, run.links_written or 0, classes,
                          mismatches)  # fmt: skip


def agreement_overview(
    session: Session, agreement: Agreement, checkpoint: Checkpoint, var: Path, head: int
) -> AgreementOverview:
    """One agreement's feeds; ``head`` is the change log's last change number."""
    counts = _ledger_counts(session, agreement.name)
    kinds = _by_kind(counts)
    outbound = inbound = None
    if (direction := agreement.directions.get("outbound")) is not None:
        outbound = Outbound(direction.dataset)
        outbound.last_change_delivered, outbound.last_package_id = (checkpoint.last_change_sequence,
                                                                    checkpoint.last_package_id)  # fmt: skip
        outbound.pending_up_to = checkpoint.pending_up_to
        outbound.pending_package = None if checkpoint.pending_package is None else str(checkpoint.pending_package)
        outbound.packages_sent, outbound.records_sent = kinds.get("package_sent", (0, 0))
        outbound.receipts_accepted = counts.get(("receipt_received", "accepted"), (0, 0))[0]
        outbound.receipts_rejected = counts.get(("receipt_received", "rejected"), (0, 0))[0]
        outbound.validation = _validation(session, agreement.name, direction.dataset)
        _freshness(session, outbound, head)
    if (direction := agreement.directions.get("inbound")) is not None:
        inbound = Inbound(direction.dataset)
        inbound.packages_received, inbound.records_received = kinds.get("package_received", (0, 0))
        inbound.receipts_sent = kinds.get("receipt_sent", (0, 0))[0]
        inbound.validation = _validation(session, agreement.name, direction.dataset)
        inbound.latest_reconciliation = _latest_reconciliation(session, agreement.partner)
    folders = {"packages": str(var / "packages" / agreement.name), "inbound": str(var / "inbound" / agreement.name),
               "reports": str(var / "reports" / agreement.name)}  # fmt: skip
    return AgreementOverview(agreement.name, agreement.partner, agreement.transport, outbound, inbound, folders)


def _freshness(session: Session, outbound: Outbound, head: int) -> None:
    """The feed's lag behind the change log's ``head`` and when the oldest change it has not delivered was
    committed."""
    from population.models import Change

    outbound.lag = max(0, head - outbound.last_change_delivered)
    if outbound.lag:
        oldest = select(Change.recorded_at).where(Change.sequence > outbound.last_change_delivered)
        outbound.oldest_unacknowledged_at = session.scalar(oldest.order_by(Change.sequence).limit(1))


def exchange_overview(engine: Engine, var: Path) -> Overview:
    """Every agreement's feeds, and the ledger's length and head hash; ``var`` is the workspace's folder."""
    from population.changelog import last_sequence
    from population.db import session_factory
    from population.models import LedgerHead

    var = Path(var).resolve()
    agreements = list(load_agreements().values())
    checkpoints = {a.name: read_checkpoint(engine, a.name) for a in agreements}
    with session_factory(engine)() as session:
        change_log_head = last_sequence(session)  # once for every feed's lag
        overviews = [agreement_overview(session, a, checkpoints[a.name], var, change_log_head) for a in agreements]
        head = session.get(LedgerHead, 1)
    entries, head_hash = (head.last_position, head.last_hash) if head is not None else (0, "")
    return Overview(overviews, entries, head_hash)


def overview_json(overview: Overview) -> dict[str, Any]:
    """The overview as JSON-ready values (times in ISO 8601)."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    document = plain(asdict(overview))
    now = datetime.now(UTC)
    for entry, agreement in zip(document["agreements"], overview.agreements, strict=True):
        if agreement.outbound is not None:
            entry["outbound"]["oldest_unacknowledged_age_s"] = agreement.outbound.oldest_unacknowledged_age_s(now)
    return document


# -- the page ---------------------------------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1a202c; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.15rem; margin-top: 2rem; } h3 { font-size: 1rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin-bottom: .8rem; } td, th { padding: .2rem .8rem .2rem 0; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } code { font-size: .9em; word-break: break-all; }
th.sub { padding-left: 1.2rem; font-weight: normal; }
.pending { color: #b7791f; font-weight: 600; } .muted { color: #718096; }
"""


def _text(value: Any) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return escape(value.strftime("%Y-%m-%d %H:%M:%S"))
    return escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    """Label and value rows; a label starting with two spaces is a part of the row above."""
    cells = []
    for label, value in rows:
        header = '<th class="sub">' if label.startswith("  ") else "<th>"
        cells.append(f'<tr>{header}{escape(label.strip())}</th><td class="n">{_text(value)}</td></tr>')
    return f"<table>{''.join(cells)}</table>"


def _code(value: str | None) -> str:
    return _text(None) if value is None else f"<code>{escape(value)}</code>"


def _validation_rows(figures: Quarantine) -> list[tuple[str, Any]]:
    return [("validation runs", figures.runs), ("rows quarantined", figures.rows_quarantined),
            ("records held now, awaiting a steward", figures.held_now), ("latest run", figures.latest_run_at),
            ("latest run: rows, quarantined", None if figures.latest_run_rows is None
             else f"{figures.latest_run_rows:,}, {figures.latest_run_quarantined:,}")]  # fmt: skip


def _outbound_html(outbound: Outbound) -> str:
    pending = (f'<p class="pending">pending: package for changes up to {outbound.pending_up_to:,}, waiting for its '
               f"verified receipt: {_code(outbound.pending_package)}</p>" if outbound.pending_up_to is not None
               else "")  # fmt: skip
    age = outbound.oldest_unacknowledged_age_s()
    rows = [("last change delivered (checkpoint)", outbound.last_change_delivered),
            ("lag: changes not yet delivered", outbound.lag),
            ("oldest change not yet acknowledged, waiting", None if age is None else f"{age:,.0f} s"),
            ("last package", outbound.last_package_id), ("packages sent", outbound.packages_sent),
            ("records sent", outbound.records_sent), ("signed receipts back, accepted", outbound.receipts_accepted),
            ("signed receipts back, rejected", outbound.receipts_rejected),
            *_validation_rows(outbound.validation)]  # fmt: skip
    report = f"<p>latest validation report: {_code(outbound.validation.latest_report)}</p>"
    return f"<h3>Outbound: {escape(outbound.dataset)}</h3>{pending}{_table(rows)}{report}"


def _inbound_html(inbound: Inbound) -> str:
    rows = [("packages received", inbound.packages_received), ("records received", inbound.records_received),
            ("signed receipts sent back", inbound.receipts_sent), *_validation_rows(inbound.validation)]  # fmt: skip
    html = f"<h3>Inbound: {escape(inbound.dataset)}</h3>{_table(rows)}"
    latest = inbound.latest_reconciliation
    if latest is None:
        return html + '<p class="muted">no reconciliation yet</p>'
    when = _text(latest.finished_at or latest.started_at) + ("" if latest.finished_at else " (not finished)")
    rows = [("rows", latest.rows), ("registry links written", latest.links_written),
            ("mismatches", latest.mismatches), *((f"  {kind}", n) for kind, n in latest.classes.items())]  # fmt: skip
    return html + f"<h3>Latest reconciliation (run {latest.run_id}, {when})</h3>{_table(rows)}"


def overview_html(overview: Overview, api_href: str = "api/overview") -> str:
    """The overview as one server-rendered page (every value escaped; no script)."""
    sections = []
    for item in overview.agreements:
        folders = "".join(f"<li>{escape(name)}: {_code(path)}</li>" for name, path in item.folders.items())
        parts = [f'<section id="{escape(item.agreement)}"><h2>{escape(item.agreement)}</h2>',
                 f"<p>partner <b>{escape(item.partner)}</b>, transport {escape(item.transport)}</p>",
                 _outbound_html(item.outbound) if item.outbound else "",
                 _inbound_html(item.inbound) if item.inbound else "",
                 f"<h3>Folders</h3><ul>{folders}</ul></section>"]  # fmt: skip
        sections.append("".join(parts))
    ledger = (f"<p>Ledger: {overview.ledger_entries:,} entries, head hash {_code(overview.ledger_head_hash or None)}"
              "</p>")  # fmt: skip
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Liên thông: exchanges</title>'
            f"<style>{STYLE}</style></head><body><h1>Liên thông: where the exchanges stand</h1>{ledger}"
            f'<p class="muted">The same figures as JSON: <a href="{escape(api_href)}">{escape(api_href)}</a></p>'
            f"{''.join(sections)}</body></html>")  # fmt: skip
