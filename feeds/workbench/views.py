"""The workbench's pages as the plugin serves them: each function takes what the request said (query or form, the
visitor, the language) and gives an ``Answer``: a page with its status, or where to go next. Synchronous (the
plugin runs them in a thread); no Airflow import, so the tests drive them as they are."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlencode

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from feeds.workbench import pages
from feeds.workbench.access import Visitor
from feeds.workbench.i18n import Words
from feeds.workbench.render import render


@dataclass(frozen=True)
class Answer:
    status: int
    html: str | None = None
    redirect: str | None = None


@dataclass(frozen=True)
class Request:
    """What every page needs of the request: who, in which language, where the plugin is mounted, the form token."""

    visitor: Visitor
    lang: str
    root: str  # the plugin's path with a trailing slash, e.g. /lienthong/
    csrf: str

    def page(self, template: str, path: str, query: Mapping[str, str], status: int = 200, **page) -> Answer:
        html = render(
            template,
            lang=self.lang,
            path=path,
            query=dict(query),
            visitor=self.visitor,
            csrf=self.csrf,
            root=self.root,
            **page,
        )
        return Answer(status, html)

    def refused(self, status: int, message: str, back: str | None = None) -> Answer:
        return self.page(
            "message.html", f"{self.root}quarantine", {}, status, message=message, back=back or f"{self.root}quarantine"
        )


@lru_cache(maxsize=4)
def _engine(url: str) -> Engine:
    from population.db import create_population_engine

    return create_population_engine(url)


@contextmanager
def population_session() -> Iterator[Session]:
    """A session on the population database (``LIENTHONG_DB_URL``); its engine is kept for the next request."""
    from lienthong.settings import database_url
    from population.db import session_factory

    with session_factory(_engine(database_url(None)))() as session:
        yield session


def _notice(words: Words, query: Mapping[str, str]) -> str | None:
    decided, decision = query.get("decided", ""), query.get("decision", "")
    if decided.isdigit() and decision in ("release", "reject"):
        return f"{words('notice.decided')} {int(decided):,} {words('records_found')}: {words('decision.' + decision)}"
    return None


def queue(request: Request, query: Mapping[str, str]) -> Answer:
    try:
        where = pages.queue_filter(query)
        after = int(query.get("after") or 0)
    except ValueError as error:  # BadFilter, or an "after" that is not a number
        return request.refused(400, str(error))
    base = f"{request.root}quarantine"
    with population_session() as session:
        page = pages.queue_page(session, where, after, base)
    shown = {k: v for k, v in query.items() if k not in ("lang", "decided", "decision")}
    return request.page("queue.html", base, shown, page=page, notice=_notice(Words(request.lang), query))


def record(request: Request, record_id: int, query: Mapping[str, str], *, whole_id: bool = False) -> Answer:
    """One record's page; with ``whole_id`` (a steward's POST) its personal IDs whole, once the view is logged."""
    from lienthong.settings import DisclosureKeyMissing
    from validation.quarantine import DecisionError, quarantined_record

    path = f"{request.root}quarantine/{record_id}"
    if whole_id and not request.visitor.is_steward:
        return request.refused(403, "only stewards are shown whole personal IDs", path)
    error = None
    with population_session() as session:
        try:
            found = quarantined_record(session, record_id)
        except DecisionError as no_record:
            return request.refused(404, str(no_record))
        shown = pages.record_page(found)
        if whole_id:
            try:
                shown = pages.show_whole(session, found, request.visitor.name)
            except DisclosureKeyMissing as missing:
                session.rollback()
                error = Words(request.lang)("whole_id_unavailable") + str(missing)
    back = _safe_back(request, query.get("back"))  # the queue as the steward left it, filters and all
    self_href = path if back == f"{request.root}quarantine" else f"{path}?{urlencode({'back': back})}"
    return request.page(
        "record.html",
        path,
        {"back": back},
        r=shown,
        back=back,
        self_href=self_href,
        error=error,
        notice=_notice(Words(request.lang), query),
    )


def _safe_back(request: Request, back: str | None) -> str:
    """Where a form sends the steward back: a page of the workbench, never elsewhere."""
    queue_path = f"{request.root}quarantine"
    if back and (back == queue_path or back.startswith((queue_path + "?", queue_path + "/"))) and "//" not in back:
        return back
    return queue_path


def decide(request: Request, form: Mapping[str, list[str]]) -> Answer:
    """A steward's decision on one record or many; recorded under the signed-in user's name, never a form's."""
    from validation.quarantine import DecisionError
    from validation.quarantine import decide as record_decisions

    back = _safe_back(request, (form.get("back") or [""])[0])
    if not request.visitor.is_steward:
        return request.refused(403, "only stewards decide on quarantined records", back)
    try:
        posted = pages.decision_form(form)
    except pages.BadFilter as error:
        return request.refused(400, str(error), back)
    with population_session() as session:
        try:
            decided = record_decisions(
                session,
                posted.record_ids,
                posted.decision,
                posted.reason,
                request.visitor.name,
                all_feeds=posted.all_feeds,
            )
        except DecisionError as error:
            session.rollback()
            return request.refused(409, str(error), back)
    done = urlencode({"decided": len(decided), "decision": posted.decision})
    return Answer(303, redirect=f"{back}{'&' if '?' in back else '?'}{done}")
