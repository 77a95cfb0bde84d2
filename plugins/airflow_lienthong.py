"""The Liên thông plugin: one page for data stewards and operators inside Airflow's UI, and its JSON.

- ``GET /lienthong/``: where each agreement's exchanges stand (feed checkpoint, packages and receipts from the
  ledger, rows quarantined and records held, the latest reconciliation's classes), the ledger's length and head
  hash, and where the packages and reports are; server-rendered HTML, no script.
- ``GET /lienthong/api/overview``: the same figures as JSON, for monitoring.

Both are read-only, carry no personal data, and ask for a signed-in Airflow user (the UI's session cookie, or a
``Authorization: Bearer`` token from ``POST /auth/token``). The figures come from ``feeds.overview`` (plain
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
from fastapi.responses import HTMLResponse

from population.log_masking import install_log_masking

URL_PREFIX = "/lienthong"
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


class PersonalIdMasking:
    """A listener: as a task starts, in the process that runs it and once its logging is configured, personal
    IDs are masked in whatever it logs (``population.log_masking``)."""

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance) -> None:
        install_log_masking()


class LienThongPlugin(AirflowPlugin):
    name = "lienthong"
    listeners = [PersonalIdMasking()]
    fastapi_apps = [{"name": "lienthong", "app": app, "url_prefix": URL_PREFIX}]
    external_views = [
        {
            "name": "Liên thông exchanges",
            "href": "lienthong/",  # relative to Airflow's base URL; shown in the UI under /plugin/lienthong
            "url_route": "lienthong",
            "destination": "nav",
            "category": "browse",
        }
    ]
