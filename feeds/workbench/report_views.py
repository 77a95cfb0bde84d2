"""The workbench's reconciliation, trends and operators pages as the plugin serves them, in ``views``' manner:
each function takes what the request said and gives an ``Answer`` (or a file). Synchronous, no Airflow import
(the operators' page asks Airflow's models only through the reader it is given)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlencode

from feeds.workbench import data_docs
from feeds.workbench import mismatches as mismatch_pages
from feeds.workbench import operators as operator_pages
from feeds.workbench import trends as trend_pages
from feeds.workbench.i18n import LOCAL_ZONE, Words, local_time
from feeds.workbench.pages import DIMENSION_KEYS, BadFilter
from feeds.workbench.views import Answer, Request, population_session
from validation.outcome import DIMENSIONS

log = logging.getLogger("lienthong.workbench")


@dataclass(frozen=True)
class Download:
    """A file to hand over: ``content`` with its type, saved as ``filename``."""

    content: bytes
    media_type: str
    filename: str | None = None


def _back(request: Request, back: str | None, page: str) -> str:
    """Where a form sends the steward back: this page of the workbench, never elsewhere."""
    path = f"{request.root}{page}"
    if back and (back == path or back.startswith(path + "?")) and "//" not in back:
        return back
    return path


# -- reconciliation ----------------------------------------------------------------------------------------------


def mismatches(request: Request, query: Mapping[str, str]) -> Answer:
    base = f"{request.root}mismatches"
    known = mismatch_pages.partners()
    try:
        where = mismatch_pages.mismatch_filter(query, known)
        after = int(query.get("after") or 0)
    except ValueError as error:  # BadFilter, or an "after" that is not a number
        return request.refused(400, str(error), base)
    with population_session() as session:
        page = mismatch_pages.mismatch_page(session, where, after, base, known)
        recent = mismatch_pages.recent_resolutions(session, where.partner)
    words = Words(request.lang)
    resolved = query.get("resolved", "")
    notice = f"{words('notice.resolved')} {int(resolved):,} {words('mismatches_found')}" if resolved.isdigit() else None
    shown = {k: v for k, v in query.items() if k not in ("lang", "resolved")}
    return request.page(
        "mismatches.html",
        base,
        shown,
        page=page,
        recent=recent,
        resolutions=mismatch_pages.RESOLUTIONS,
        notice=notice,
    )


def resolve(request: Request, form: Mapping[str, list[str]]) -> Answer:
    """A steward's resolution of one mismatch or many; recorded under the signed-in user's name, never a form's."""
    from validation.reconciliation import ResolutionError, resolve_mismatches

    back = _back(request, (form.get("back") or [""])[0], "mismatches")
    if not request.visitor.is_steward:
        return request.refused(403, "only stewards resolve mismatches", back)
    try:
        posted = mismatch_pages.resolution_form(form)
    except BadFilter as error:
        return request.refused(400, str(error), back)
    with population_session() as session:
        try:
            done = resolve_mismatches(
                session, posted.mismatch_ids, posted.resolution, posted.reason, request.visitor.name
            )
        except ResolutionError as error:
            session.rollback()
            return request.refused(409, str(error), back)
    log.info("%s resolved %d mismatch(es): %s", request.visitor.name, len(done), posted.resolution)
    return Answer(303, redirect=f"{back}{'&' if '?' in back else '?'}{urlencode({'resolved': len(done)})}")


def corrections_csv(request: Request, query: Mapping[str, str]) -> Answer | Download:
    """The corrections a partner must make, as CSV (formulas neutralised), for stewards only: it holds whole
    personal IDs, the partner's own records."""
    from validation.reconciliation import write_corrections_csv

    base = f"{request.root}mismatches"
    if not request.visitor.is_steward:
        return request.refused(403, "only stewards take the corrections away", base)
    partner, known = (query.get("partner") or "").strip(), mismatch_pages.partners()
    if partner not in known:
        return request.refused(400, f"partner is one of {', '.join(known)}", base)
    handle = io.StringIO()
    with population_session() as session:
        lines = write_corrections_csv(session, partner, handle)
    log.info("%s took %s's corrections away: %d line(s)", request.visitor.name, partner, lines)
    today = datetime.now(LOCAL_ZONE).strftime("%Y%m%d")
    return Download(handle.getvalue().encode("utf-8"), "text/csv; charset=utf-8", f"corrections-{partner}-{today}.csv")


# -- trends and Data Docs ----------------------------------------------------------------------------------------


def _overview(session):
    from feeds.overview import exchange_overview
    from lienthong.settings import Workspace

    return exchange_overview(session.get_bind(), Workspace.from_environment().var)


def _run_label(words: Words, run: trend_pages.RunPoint) -> str:
    return f"{words('col.run')} {run.id}, {local_time(run.started_at)[:10]}"


def trends(request: Request, query: Mapping[str, str]) -> Answer:
    words = Words(request.lang)
    with population_session() as session:
        found = trend_pages.trends(session)
        freshness = trend_pages.partner_freshness(_overview(session), trend_pages.last_receipts(session))
    legend = {d: words(f"dimension.{key}") for d, key in DIMENSION_KEYS.items()}
    charts = []
    for index, trend in enumerate(found):
        scores = {d: [run.scores[d] for run in trend.runs] for d in DIMENSIONS}
        rates = {"rate": [run.quarantine_rate for run in trend.runs]}
        ends = (_run_label(words, trend.runs[0]), _run_label(words, trend.runs[-1]))
        charts.append(
            {
                "scores": trend_pages.line_chart(
                    f"scores-{index}",
                    f"{words('trends.scores')}: {trend.key}",
                    words("trends.scores_desc") + trend_pages.latest_words(trend, legend),
                    scores,
                    trend_pages.LINES,
                    legend,
                    ends=ends,
                ),
                "quarantine": trend_pages.line_chart(
                    f"quarantine-{index}",
                    f"{words('trends.quarantine')}: {trend.key}",
                    words("trends.quarantine_desc"),
                    rates,
                    {"rate": trend_pages.RATE_LINE},
                    {"rate": words("col.rate")},
                    scale=trend_pages.rate_scale(rates["rate"]),
                    ends=ends,
                ),
            }
        )
    return request.page(
        "trends.html",
        f"{request.root}trends",
        {},
        trends=found,
        charts=charts,
        freshness=freshness,
        dimensions=DIMENSIONS,
        duration=partial(trend_pages.duration, lang=request.lang),
    )


def run_data_docs(request: Request, run_id: int, asked: str) -> Answer | Download:
    """A file of a run's Data Docs, confined to the run's report folder, its pages made to work offline."""
    back = f"{request.root}trends"
    with population_session() as session:
        report = trend_pages.run_report(session, run_id)
    try:
        folder = data_docs.docs_folder(report)
        found = data_docs.doc_file(
            folder, asked, f"{request.root}data-docs-assets/", f"{request.root}runs/{run_id}/data-docs/static/"
        )
    except data_docs.NotServed as error:
        return request.refused(404, str(error), back)
    return Download(found.content, found.media_type)


def data_docs_asset(asked: str) -> Download | None:
    """A vendored front-end asset of the Data Docs (None: no such asset)."""
    try:
        found = data_docs.vendored(asked)
    except data_docs.NotServed:
        return None
    return Download(found.content, found.media_type)


# -- operators ---------------------------------------------------------------------------------------------------


def _airflow_failures(agreements, since):
    return operator_pages.airflow_failures(agreements, since)


def operators(
    request: Request,
    query: Mapping[str, str],
    *,
    checks: operator_pages.PartnerChecks | None = None,
    failures: Callable | None = None,
) -> Answer:
    """Per feed: checkpoint, last package and receipt, the partner up or down; the failed tasks of the last 24
    hours (``failures(agreements, since)``: Airflow's metadata database unless a test gives another reader)."""
    from exchange.agreements import load_agreements

    agreements = load_agreements()
    states = (checks or operator_pages.partner_checks()).states(agreements.values())
    now = datetime.now(UTC)
    read, error = None, None
    try:
        read = (failures or _airflow_failures)(list(agreements), now - operator_pages.FAILURE_WINDOW)
    except Exception as failed:  # noqa: BLE001 - no metadata database here: the page says so and shows the rest
        error = type(failed).__name__
    with population_session() as session:
        page = operator_pages.operators_page(
            _overview(session), trend_pages.last_receipts(session), states, read, error, now
        )
    airflow_root = request.root.rstrip("/").rsplit("/", 1)[0] + "/"
    return request.page(
        "operators.html",
        f"{request.root}operators",
        {},
        page=page,
        airflow_root=airflow_root,
        duration=partial(trend_pages.duration, lang=request.lang),
    )
