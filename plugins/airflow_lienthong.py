"""The Liên thông plugin: one page for data stewards and operators inside Airflow's UI, and its JSON.

- ``GET /lienthong/``: where each agreement's exchanges stand (feed checkpoint, packages and receipts from the
  ledger, rows quarantined and records held, the latest reconciliation's classes), the ledger's length and head
  hash, and where the packages and reports are; server-rendered HTML, no script.
- ``GET /lienthong/api/overview``: the same figures as JSON, for monitoring.

Both are read-only, carry no personal data, and ask for a signed-in Airflow user (the UI's session cookie, or a
``Authorization: Bearer`` token from ``POST /auth/token``).

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

from typing import Any

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


async def signed_in(request: Request) -> None:
    """A signed-in Airflow user, as Airflow's own API asks (401 otherwise). Airflow's API security is imported
    on the first request, not when the plugin loads: every Airflow process loads the plugins."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    await get_user(request, None, await bearer_scheme(request))


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
        }
    ]
