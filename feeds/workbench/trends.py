"""The trends page's data: per dataset and feed, the four dimension scores and the quarantine rate over its
validation runs, drawn as server-side SVG line charts (a text table beside them); and per partner, how far its
feed lags and how old its last receipt is.

A run belongs to its feed (``validation_run.agreement``) or, for a file's check, to its dataset. Lag comes from
``feeds.overview`` (``exchange_overview``); the last receipt from the ledger. No personal data is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from validation.models import ValidationRun
from validation.outcome import DIMENSIONS
from validation.reports import SCORE_COLUMNS

RUNS_SHOWN = 60  # the latest runs of each feed: two months of a daily feed
CHART_WIDTH, CHART_HEIGHT, MARGIN = 560, 180, 36
# One colour and one dash per dimension: told apart without colour too (a legend names each).
RATE_LINE = ("#9b1111", "")
SCALES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)  # a rate chart's top: the smallest that holds every run
LINES = {"đúng": ("#0b5cad", ""), "đủ": ("#a8480c", "6 3"), "sạch": ("#1f7a3d", "2 3"), "sống": ("#6b2fa3", "10 3 2 3")}


@dataclass
class RunPoint:
    id: int
    started_at: datetime
    rows: int
    quarantined: int
    scores: dict[str, float | None]  # dimension -> share of rows passing, 0..1
    has_report: bool

    @property
    def quarantine_rate(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0


@dataclass
class Trend:
    key: str  # the feed (agreement), or the dataset for runs made for no feed
    dataset: str
    is_feed: bool
    runs: list[RunPoint]  # oldest first


def trends(session: Session, limit: int = RUNS_SHOWN) -> list[Trend]:
    """Every feed's and dataset's latest ``limit`` runs, oldest first; feeds first, then datasets, by name."""
    groups = session.execute(select(ValidationRun.dataset, ValidationRun.agreement).distinct()).all()
    found = []
    for dataset, agreement in sorted(groups, key=lambda g: (g[1] is None, g[1] or "", g[0])):
        same = ValidationRun.agreement == agreement if agreement is not None else ValidationRun.agreement.is_(None)
        query = select(ValidationRun).where(ValidationRun.dataset == dataset, same)
        runs = session.scalars(query.order_by(ValidationRun.id.desc()).limit(limit)).all()
        points = [
            RunPoint(
                r.id,
                r.started_at,
                r.rows or 0,
                r.quarantined or 0,
                {d: getattr(r, SCORE_COLUMNS[d]) for d in DIMENSIONS},
                bool(r.report),
            )
            for r in reversed(runs)
        ]
        found.append(Trend(agreement or dataset, dataset, agreement is not None, points))
    return found


def run_report(session: Session, run_id: int) -> str | None:
    """Where a run's Data Docs are (its ``index.html``), or None."""
    return session.scalar(select(ValidationRun.report).where(ValidationRun.id == run_id))


# -- charts -------------------------------------------------------------------------------------------------------


def _x(index: int, count: int) -> float:
    return MARGIN + (CHART_WIDTH - 2 * MARGIN) * (index / max(count - 1, 1))


def _y(share: float, scale: float) -> float:
    return MARGIN / 2 + (CHART_HEIGHT - MARGIN) * (1 - max(0.0, min(1.0, share / scale)))


def rate_scale(values: list[float]) -> float:
    """The top of a rate chart: quarantine rates are a few percent, which a 0-100 % axis would flatten."""
    highest = max(values, default=0.0)
    return next((top for top in SCALES if highest <= top), 1.0)


def latest_words(trend: Trend, legend: dict[str, str]) -> str:
    """The latest run's scores in words, for a chart's description."""
    if not trend.runs:
        return ""
    scores = trend.runs[-1].scores
    return " " + ", ".join(f"{legend[d]}: {scores[d]:.1%}" for d in DIMENSIONS if scores[d] is not None) + "."


def line_chart(
    chart_id: str,
    title: str,
    description: str,
    series: dict[str, list[float | None]],
    styles: dict[str, tuple[str, str]],
    legend: dict[str, str],
    scale: float = 1.0,
    ends: tuple[str, str] | None = None,
) -> str:
    """An SVG line chart of shares (0..``scale``) over runs, with a ``<title>`` and ``<desc>`` for screen readers;
    every text escaped. A run without a value leaves a gap in its line; ``ends`` name the first and last runs."""
    count = max((len(values) for values in series.values()), default=0)
    parts = [
        f'<svg id="{escape(chart_id)}" class="chart" role="img" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT + 28}" '
        f'width="{CHART_WIDTH}" height="{CHART_HEIGHT + 28}" style="max-width: 100%; height: auto" '
        f'aria-labelledby="{escape(chart_id)}-title" aria-describedby="{escape(chart_id)}-desc" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
        f'<desc id="{escape(chart_id)}-desc">{escape(description)}</desc>',
    ]
    digits = 0 if scale >= 0.1 else 1
    for share in (0.0, scale / 2, scale):
        y = _y(share, scale)
        parts.append(f'<line x1="{MARGIN}" x2="{CHART_WIDTH - MARGIN}" y1="{y:.1f}" y2="{y:.1f}" stroke="#c8ced6"/>')
        tick = f"{share:.{digits}%}"
        parts.append(f'<text x="{MARGIN - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{tick}</text>')
    for name, values in series.items():
        colour, dash = styles[name]
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        segment: list[str] = []
        for index, value in enumerate([*values, None]):
            if value is not None:
                segment.append(f"{_x(index, count):.1f},{_y(value, scale):.1f}")
                continue
            if len(segment) == 1:
                x, y = segment[0].split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>')
            elif segment:
                parts.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dashes} points="{" ".join(segment)}"/>'
                )
            segment = []
    if ends is not None:
        below = _y(0.0, scale) + 14
        parts.append(f'<text x="{MARGIN}" y="{below:.1f}" font-size="11">{escape(ends[0])}</text>')
        if count > 1:
            parts.append(
                f'<text x="{CHART_WIDTH - MARGIN}" y="{below:.1f}" font-size="11" text-anchor="end">'
                f"{escape(ends[1])}</text>"
            )
    x = MARGIN
    for name in series:
        colour, dash = styles[name]
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        y = CHART_HEIGHT + 16
        parts.append(
            f'<line x1="{x}" x2="{x + 24}" y1="{y - 4}" y2="{y - 4}" stroke="{colour}" stroke-width="2"{dashes}/>'
        )
        parts.append(f'<text x="{x + 28}" y="{y}" font-size="12">{escape(legend[name])}</text>')
        x += 40 + 8 * len(legend[name])
    parts.append("</svg>")
    return "".join(parts)


# -- partners: lag and receipts ----------------------------------------------------------------------------------


@dataclass
class Receipt:
    package_id: str
    status: str | None
    recorded_at: datetime


def last_receipts(session: Session) -> dict[str, Receipt]:
    """Each agreement's last receipt back from its partner (the ledger's ``receipt_received``)."""
    from population.models import LedgerEntry

    latest = (
        select(func.max(LedgerEntry.position))
        .where(LedgerEntry.kind == "receipt_received")
        .group_by(LedgerEntry.agreement)
    )
    query = select(LedgerEntry).where(LedgerEntry.position.in_(latest))
    return {e.agreement: Receipt(e.package_id, e.status, e.recorded_at) for e in session.scalars(query)}


def age_seconds(moment: datetime | None, now: datetime | None = None) -> float | None:
    if moment is None:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return max(0.0, ((now or datetime.now(UTC)) - moment).total_seconds())


@dataclass
class PartnerFreshness:
    agreement: str
    partner: str
    lag: int  # changes in the log not yet delivered
    oldest_waiting_s: float | None  # how long the oldest of them has waited
    last_receipt: Receipt | None
    last_receipt_age_s: float | None


def partner_freshness(overview, receipts: dict[str, Receipt], now: datetime | None = None) -> list[PartnerFreshness]:
    """Per outbound feed (``feeds.overview.Overview``): its lag, and the age of its last receipt."""
    now = now or datetime.now(UTC)
    rows = []
    for item in overview.agreements:
        if item.outbound is None:
            continue
        receipt = receipts.get(item.agreement)
        rows.append(
            PartnerFreshness(
                item.agreement,
                item.partner,
                item.outbound.lag,
                item.outbound.oldest_unacknowledged_age_s(now),
                receipt,
                age_seconds(receipt.recorded_at if receipt else None, now),
            )
        )
    return rows


UNITS = {"vi": ("ngày", "giờ", "phút", "giây"), "en": ("days", "h", "min", "s")}


def duration(seconds: float | None, lang: str) -> str:
    """A wait in words a steward reads at a glance: 45 s, 12 min, 5 h, 3 days (in Vietnamese: giây, phút, giờ, ngày)."""
    if seconds is None:
        return "—"
    days, hours, minutes, secs = UNITS.get(lang, UNITS["vi"])
    for unit, size in ((days, 86_400), (hours, 3_600), (minutes, 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} {secs}"
