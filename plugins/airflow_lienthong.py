"""The Liên thông plugin: one page for data stewards and operators inside Airflow's UI, and its JSON.

- ``GET /lienthong/``: where each agreement's exchanges stand (feed checkpoint, packages and receipts from the
  ledger, rows quarantined and records held, the latest reconciliation's classes), the ledger's length and head
  hash, and where the packages and reports are; server-rendered HTML, no script.
- ``GET /lienthong/api/overview``: the same figures as JSON, for monitoring.

The stewards' workbench (``feeds.workbench``), server-rendered in Vietnamese (``?lang=en``: English), no script:

- ``GET /lienthong/quarantine``: the held records with their facets (agreement, dimension, severity, rule,
  province, status; codes and ids in the query, never a personal ID), paged by id;
- ``GET /lienthong/quarantine/{id}``: one record, failing fields marked, personal IDs masked;
- ``POST /lienthong/quarantine/{id}/whole-id``: the same, whole, for a steward, once the view is logged;
- ``POST /lienthong/quarantine/decisions``: a steward's release or reject of one record or many, with a reason,
  recorded under the signed-in Airflow user's name.

Beside it (``feeds.workbench.report_views``):

- ``GET /lienthong/mismatches``: each partner's reconciliation mismatches by class, both values side by side;
  ``POST /lienthong/mismatches/resolutions``: a steward's resolution of one or many, with a reason;
  ``GET /lienthong/mismatches/corrections.csv?partner=…``: what a partner must correct, for stewards only;
- ``GET /lienthong/trends``: the four dimension scores and the quarantine rate per feed over its runs (SVG), each
  partner's lag and last receipt; ``GET /lienthong/runs/{id}/data-docs/…``: a run's Data Docs, confined to its
  folder, their CDN assets rewritten to copies vendored from npm (``/lienthong/data-docs-assets/…``);
- ``GET /lienthong/operators``: per feed its checkpoint, last package and receipt, its partner up or down, and
  the failed tasks of the last 24 hours with a link to each log in Airflow's UI.

Viewers read, stewards decide (``feeds.workbench.access`` maps Airflow's auth manager); every POST carries the
session's anti-forgery token or is refused (403).

The overview pages are read-only and carry no personal data. Every page asks for a signed-in Airflow user (the
UI's session cookie, or a ``Authorization: Bearer`` token from ``POST /auth/token``).

The citizen portal's API, service to service, under ``/lienthong-portal`` (``feeds.access_portal``): an OAuth2
client-credentials token endpoint and the data-subject access report, never open:

- ``POST /lienthong-portal/oauth/token``: the portal's client id and secret (HTTP Basic) and
  ``grant_type=client_credentials`` give a bearer token for five minutes;
- ``POST /lienthong-portal/access-reports`` with that token and ``{"personal_id": "…", "since": "YYYY-MM-DD"}``
  (the ID in the body, never in the URL) gives the signed report: ``{"format": …, "files": {name: base64}}``.

The token is checked before a byte of the body is read, bodies are read up to 4 KiB, and every refusal is an
OAuth2 error with a one-line description that holds no personal data. The figures come from ``feeds.overview`` (plain
Python); the population database is ``LIENTHONG_DB_URL`` and the workspace ``LIENTHONG_VAR_DIR``, as for the DAGs.

The plugin also keeps personal IDs out of Airflow's logs (``population.log_masking``): masking is installed when
the plugin loads (every Airflow component loads the plugins) and again by its listener as each task starts,
after Airflow configured the task's logging.

This file is only the Airflow layer: the FastAPI app, mounted by Airflow's API server, and the nav entry under
Browse that shows it in the UI.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from population.log_masking import install_log_masking

URL_PREFIX = "/lienthong"
PORTAL_PREFIX = "/lienthong-portal"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
install_log_masking()


def _overview():
    from feeds.overview import exchange_overview
    from feeds.tasks import population_database
    from lienthong.settings import Workspace

    with population_database() as engine:
        return exchange_overview(engine, Workspace.from_environment().var)


async def signed_in(request: Request):
    """A signed-in Airflow user, as Airflow's own API asks (401 otherwise). Airflow's API security is imported
    on the first request, not when the plugin loads: every Airflow process loads the plugins."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


app = FastAPI(
    title="Liên thông",
    description="Where the exchanges with the partner registries stand (read-only, no personal data).",
    dependencies=[Depends(signed_in)],
)


@app.get("/", response_class=HTMLResponse)
async def overview_page() -> HTMLResponse:
    from feeds.overview import overview_html

    return HTMLResponse(overview_html(await run_in_threadpool(_overview)))


@app.get("/api/overview")
async def overview_api() -> dict[str, Any]:
    from feeds.overview import overview_json

    return overview_json(await run_in_threadpool(_overview))


# -- the stewards' workbench (feeds.workbench): the quarantine queue, a record, decisions -------------------------

MAX_FORM_BYTES = 64 * 1024  # a decision on a page of 50 records with a long reason is a few KiB


async def workbench_visitor(user: Annotated[Any, Depends(signed_in)]):
    """What the signed-in user may do on the workbench, from Airflow's auth manager (``feeds.workbench.access``)."""
    from airflow.api_fastapi.app import get_auth_manager
    from fastapi import HTTPException

    from feeds.workbench.access import visitor

    seen = visitor(get_auth_manager(), user)
    if not seen.may_read:
        raise HTTPException(403, "not allowed to read the stewards' workbench")
    return seen


Visiting = Annotated[Any, Depends(workbench_visitor)]


def _csrf_secret() -> bytes:
    """The key of the forms' tokens: the JWT secret Airflow's API servers share, so every worker checks alike."""
    from airflow.configuration import conf

    return (conf.get("api_auth", "jwt_secret", fallback="") or _PROCESS_SECRET).encode()


_PROCESS_SECRET = secrets.token_hex(32)  # only without Airflow's JWT secret (one process then)


def _workbench_request(request: Request, visitor):
    from feeds import workbench

    lang = workbench.pick_language(request.query_params.get("lang"), request.cookies.get(workbench.LANGUAGE_COOKIE))
    nonce = request.cookies.get(workbench.CSRF_COOKIE) or workbench.new_nonce()
    root = request.scope.get("root_path", "").rstrip("/") + "/"
    token = workbench.csrf_token(_csrf_secret(), visitor.name, nonce)
    return workbench.Request(visitor, lang, root, token), nonce


def _answer(request: Request, answer, nonce: str, lang: str):
    from fastapi.responses import RedirectResponse

    from feeds import workbench

    if answer.redirect:
        response = RedirectResponse(answer.redirect, status_code=answer.status)
    else:
        response = HTMLResponse(answer.html, answer.status)
        response.headers["Content-Security-Policy"] = workbench.CONTENT_SECURITY_POLICY
    response.headers.update(NO_STORE | {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"})
    path = request.scope.get("root_path", "") or "/"
    response.set_cookie(workbench.CSRF_COOKIE, nonce, path=path, httponly=True, samesite="strict")
    response.set_cookie(workbench.LANGUAGE_COOKIE, lang, path=path, samesite="lax")
    return response


async def _posted(request: Request, visitor) -> dict[str, list[str]]:
    """The form, once its anti-forgery token is this session's (403 otherwise)."""
    from urllib.parse import parse_qs

    from fastapi import HTTPException

    from feeds import workbench
    from partners.http import BodyTooLarge, read_body

    try:
        form = parse_qs((await read_body(request, MAX_FORM_BYTES)).decode("utf-8", "replace"))
    except BodyTooLarge:
        raise HTTPException(413, "the form is too large") from None
    token = (form.get(workbench.CSRF_FIELD) or [None])[0]
    try:
        workbench.check_csrf(_csrf_secret(), visitor.name, request.cookies.get(workbench.CSRF_COOKIE), token)
    except workbench.CsrfRefused as error:
        raise HTTPException(403, str(error)) from None
    return form


@app.get("/quarantine", response_class=HTMLResponse)
async def quarantine_queue(request: Request, visitor: Visiting):
    from feeds.workbench import queue

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(queue, page, dict(request.query_params))
    return _answer(request, answer, nonce, page.lang)


@app.get("/quarantine/{record_id}", response_class=HTMLResponse)
async def quarantined_record(record_id: int, request: Request, visitor: Visiting):
    from feeds.workbench import record

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(record, page, record_id, dict(request.query_params))
    return _answer(request, answer, nonce, page.lang)


@app.post("/quarantine/{record_id}/whole-id", response_class=HTMLResponse)
async def quarantined_record_whole(record_id: int, request: Request, visitor: Visiting):
    """A steward's full view of a record's personal IDs: logged before it is shown, never a GET (no URL of it)."""
    from feeds.workbench import record

    page, nonce = _workbench_request(request, visitor)
    back = (await _posted(request, visitor)).get("back") or [""]
    answer = await run_in_threadpool(record, page, record_id, {"back": back[0]}, whole_id=True)
    return _answer(request, answer, nonce, page.lang)


@app.post("/quarantine/decisions")
async def quarantine_decisions(request: Request, visitor: Visiting):
    from feeds.workbench import decide

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(decide, page, await _posted(request, visitor))
    return _answer(request, answer, nonce, page.lang)


# -- the workbench's reconciliation, trends and operators (feeds.workbench.report_views) ---------------------------

DATA_DOCS_POLICY = (  # Great Expectations' pages run their own scripts, from here only (assets vendored)
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'none'; frame-ancestors 'self'; base-uri 'self'"
)


def _download(found, policy: str = "default-src 'none'; frame-ancestors 'self'"):
    from fastapi.responses import Response

    headers = NO_STORE | {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": policy}
    if found.filename:
        headers["Content-Disposition"] = f'attachment; filename="{found.filename}"'
    return Response(found.content, media_type=found.media_type, headers=headers)


def _page_or_file(request: Request, answer, nonce: str, lang: str, policy: str | None = None):
    from feeds.workbench.views import Answer

    if isinstance(answer, Answer):
        return _answer(request, answer, nonce, lang)
    return _download(answer, policy) if policy else _download(answer)


@app.get("/mismatches", response_class=HTMLResponse)
async def mismatches_page(request: Request, visitor: Visiting):
    from feeds.workbench.report_views import mismatches

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(mismatches, page, dict(request.query_params))
    return _answer(request, answer, nonce, page.lang)


@app.post("/mismatches/resolutions")
async def mismatch_resolutions(request: Request, visitor: Visiting):
    from feeds.workbench.report_views import resolve

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(resolve, page, await _posted(request, visitor))
    return _answer(request, answer, nonce, page.lang)


@app.get("/mismatches/corrections.csv")
async def mismatch_corrections(request: Request, visitor: Visiting):
    """The corrections a partner must make, for a steward to hand over (whole personal IDs: never for viewers)."""
    from feeds.workbench.report_views import corrections_csv

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(corrections_csv, page, dict(request.query_params))
    return _page_or_file(request, answer, nonce, page.lang)


@app.get("/trends", response_class=HTMLResponse)
async def trends_page(request: Request, visitor: Visiting):
    from feeds.workbench.report_views import trends

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(trends, page, dict(request.query_params))
    return _answer(request, answer, nonce, page.lang)


@app.get("/runs/{run_id}/data-docs/{asked:path}")
async def run_data_docs(run_id: int, asked: str, request: Request, visitor: Visiting):
    """A file of a run's Great Expectations Data Docs, from inside its report folder only."""
    from feeds.workbench.report_views import run_data_docs as data_docs_file

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(data_docs_file, page, run_id, asked)
    return _page_or_file(request, answer, nonce, page.lang, DATA_DOCS_POLICY)


@app.get("/data-docs-assets/{asked:path}")
async def data_docs_assets(asked: str, visitor: Visiting):
    """The Data Docs' front-end assets, vendored (``feeds/workbench/static/data-docs/``)."""
    from fastapi import HTTPException

    from feeds.workbench.report_views import data_docs_asset

    found = data_docs_asset(asked)
    if found is None:
        raise HTTPException(404, "no such asset")
    return _download(found)


@app.get("/operators", response_class=HTMLResponse)
async def operators_page(request: Request, visitor: Visiting):
    from feeds.workbench.report_views import operators

    page, nonce = _workbench_request(request, visitor)
    answer = await run_in_threadpool(operators, page, dict(request.query_params))
    return _answer(request, answer, nonce, page.lang)


portal_app = FastAPI(
    title="Liên thông: the citizen portal's access reports",
    description="OAuth2 client credentials, then one citizen's signed data-subject access report.",
    docs_url=None,
    redoc_url=None,
)


def _refusal(error) -> JSONResponse:
    """An OAuth2 error response (RFC 6749 section 5.2, RFC 6750 section 3)."""
    import logging

    logging.getLogger("lienthong.portal").warning("refused (%s): %s", error.status, error)
    headers = NO_STORE | ({"WWW-Authenticate": error.challenge} if error.challenge else {})
    return JSONResponse({"error": error.error, "error_description": error.description}, error.status, headers=headers)


async def _small_body(request: Request) -> bytes:
    from feeds.access_portal import MAX_REQUEST_BYTES, PortalRefused
    from partners.http import BodyTooLarge, read_body

    try:
        return await read_body(request, MAX_REQUEST_BYTES)
    except BodyTooLarge as error:
        raise PortalRefused(413, "invalid_request", str(error)) from None


@portal_app.post("/oauth/token")
async def portal_token(request: Request) -> JSONResponse:
    from feeds.access_portal import PortalRefused, issue_token

    try:
        body = await _small_body(request)
        return JSONResponse(issue_token(request.headers.get("authorization"), body), headers=NO_STORE)
    except PortalRefused as error:
        return _refusal(error)


@portal_app.post("/access-reports")
async def portal_access_report(request: Request) -> JSONResponse:
    from feeds.access_portal import PortalRefused, authorize, report_request, workspace_report

    try:
        client = authorize(request.headers.get("authorization"))  # before anything of the request is read
        personal_id, since = report_request(await _small_body(request))
        return JSONResponse(await run_in_threadpool(workspace_report, client, personal_id, since), headers=NO_STORE)
    except PortalRefused as error:
        return _refusal(error)


class PersonalIdMasking:
    """A listener: as a task starts, in the process that runs it and once its logging is configured, personal
    IDs are masked in whatever it logs (``population.log_masking``)."""

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance) -> None:
        install_log_masking()


class PartnerPools:
    """A listener: as an Airflow component that runs as a job starts (scheduler, triggerer, DAG processor: the
    processes with the metadata database), the partners' pools are made from the agreements."""

    @hookimpl
    def on_starting(self, component) -> None:
        if type(component).__name__ == "Job":  # a task's process (no metadata database) passes a marker instead
            from feeds.tasks import make_partner_pools

            make_partner_pools()


class LienThongPlugin(AirflowPlugin):
    name = "lienthong"
    listeners = [PersonalIdMasking(), PartnerPools()]
    fastapi_apps = [
        {"name": "lienthong", "app": app, "url_prefix": URL_PREFIX},
        {"name": "lienthong-portal", "app": portal_app, "url_prefix": PORTAL_PREFIX},
    ]
    external_views = [
        {
            "name": "Liên thông exchanges",
            "href": "lienthong/",  # relative to Airflow's base URL; shown in the UI under /plugin/lienthong
            "url_route": "lienthong",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Liên thông workbench",
            "href": "lienthong/quarantine",  # the data stewards' workbench, from its queue
            "url_route": "lienthong-workbench",
            "destination": "nav",
            "category": "browse",
        },
    ]
