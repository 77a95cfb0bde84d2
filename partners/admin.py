"""The sandbox's admin endpoint: plain HTTP on 127.0.0.1, a bearer token from ``<state>/admin-token``.

GET    /faults                   every partner's pending faults and what fired
POST   /faults/{partner}         {"faults": [{"kind": "status", "status": 503, "times": 3}, …]} adds faults
DELETE /faults/{partner}         clears them
POST   /partners/{partner}/stop  stops the partner's server (clients see refused connections)
POST   /partners/{partner}/start starts it again on the same port
"""

from __future__ import annotations

import hmac
import secrets
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.errors import shown
from exchange.payload import strict_json
from partners.base import write_private
from partners.faults import Fault
from partners.http import BodyTooLarge, ServerThread, problem, read_body

MAX_FAULTS_BYTES = 64 * 1024  # a plan is a few faults; the body is read whole, so it is bounded like any other

if TYPE_CHECKING:
    from pathlib import Path

    from partners.base import Partner


class AdminServer:
    """The admin endpoint over a sandbox's running partners (by name), its token kept in ``state_dir``."""

    def __init__(self, partners: dict[str, Partner], state_dir: Path) -> None:
        self.partners = partners
        self.token_file = state_dir / "admin-token"
        self.token = secrets.token_urlsafe(24)
        write_private(self.token_file, self.token + "\n")
        routes = [
            Route("/faults", self.list_faults, methods=["GET"]),
            Route("/faults/{partner}", self.add_faults, methods=["POST"]),
            Route("/faults/{partner}", self.clear_faults, methods=["DELETE"]),
            Route("/partners/{partner}/{action}", self.control, methods=["POST"]),
        ]
        self.server = ServerThread(Starlette(routes=routes), "partners-admin")

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def _refused(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return problem(401, "the admin token is required")
        return None

    def _partner(self, request: Request):
        return self.partners.get(request.path_params["partner"])

    async def list_faults(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        return JSONResponse({name: {"pending": p.faults.pending(), "fired": dict(p.faults.fired)}
                             for name, p in self.partners.items()})  # fmt: skip

    async def add_faults(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        partner = self._partner(request)
        if partner is None:
            return problem(404, "no such partner in this sandbox")
        try:
            document = strict_json(await read_body(request, MAX_FAULTS_BYTES))
            faults = [Fault.from_dict(item) for item in document["faults"]]
        except BodyTooLarge as error:
            return problem(413, str(error))
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            return problem(400, f"expected {{'faults': [...]}}: {shown(str(error))}")
        partner.faults.add(*faults)
        return JSONResponse({"pending": partner.faults.pending()})

    async def clear_faults(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        partner = self._partner(request)
        if partner is None:
            return problem(404, "no such partner in this sandbox")
        partner.faults.clear()
        return JSONResponse({"pending": []})

    async def control(self, request: Request) -> Response:
        if refused := self._refused(request):
            return refused
        partner, action = self._partner(request), request.path_params["action"]
        if partner is None or action not in ("stop", "start"):
            return problem(404, "POST /partners/<partner>/stop or /start")
        await run_in_threadpool(partner.stop if action == "stop" else partner.start)
        return JSONResponse({"partner": partner.name, "state": "stopped" if action == "stop" else "running"})
