"""``lienthong partners``: run the four reference partner registries on loopback, misbehave on request, and test an
agreement's connection."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import urllib.error
import urllib.request
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from lienthong.commands.common import (
    DbOption,
    PkiOption,
    VarOption,
    database_url,
    fail,
    key_password,
    pki_directory,
    population_engine,
    say,
    writable,
)
from lienthong.settings import Workspace
from partners.faults import KINDS, Fault

partners_app = typer.Typer(
    help="The reference partner registries (health, tax, land, business) as real servers on loopback.",
    no_args_is_help=True,
)

StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        callback=writable("directory"),
        help="Where the partners keep their stores and files. Default: var/partners.",
    ),
]


@partners_app.command("serve")
def serve(
    only: Annotated[
        str | None, typer.Option(help="Comma-separated partners to start. Default: every agency with a sandbox part.")
    ] = None,
    state_dir: StateOption = None,
    pki: PkiOption = None,
    db: DbOption = None,
    citizens: Annotated[int, typer.Option(min=10, help="Without a populated --db: citizens to generate.")] = 2_000,
    seed: Annotated[
        int, typer.Option(help="Seed of the registries' disagreements (and of a generated population).")
    ] = 2026,
    require_tax_signature: Annotated[bool, typer.Option(help="The tax service demands XML-signed bodies.")] = False,
) -> None:
    """Seed the registries (once), start them, write <state-dir>/endpoints.json, and serve until Ctrl-C."""
    from partners.sandbox import Sandbox

    directory, state_dir = pki_directory(pki), state_dir or Workspace.from_environment().partners
    if not directory.root_ca.exists():
        fail(f"no PKI in {directory.path}: run 'lienthong pki init' first")
    names = [name.strip() for name in only.split(",") if name.strip()] if only else None
    try:
        sandbox = Sandbox(state_dir, directory, key_password(), only=names,
                          require_tax_signature=require_tax_signature)  # fmt: skip
    except ValueError as error:
        fail(error)
    if not all(p.store.is_seeded() for p in sandbox.partners.values()):
        sandbox.seed(_population(db, state_dir, citizens, seed), seed)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    sandbox.start()
    try:
        for line in sandbox.addresses().values():
            say(line)
        connections = sandbox.endpoints()["connections_env"]
        say(f"endpoints: {state_dir / 'endpoints.json'}; Airflow connections: {connections}")
        say("serving; Ctrl-C stops")
        stopping.wait()
    finally:
        sandbox.stop()
    say("stopped")


def _population(db: str | None, state_dir: Path, citizens: int, seed: int):
    """Citizens from the population database when it has some, else a generated population of our own."""
    from sqlalchemy import func, inspect, select

    from partners.seed import citizens_from
    from population.db import create_population_engine
    from population.models import Citizen

    url = database_url(db)
    missing = url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
    if not missing and inspect(engine := population_engine(db)).has_table("citizen"):
        with engine.connect() as connection:
            if connection.scalar(select(func.count()).select_from(Citizen)):
                say(f"seeding from {engine.url.render_as_string(hide_password=True)}")
                return list(citizens_from(engine))
    from population.db import session_factory
    from population.generator import generate
    from population.migrate import upgrade
    from population.simulation import DaySimulation

    path = state_dir / "population.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    generated = create_population_engine(f"sqlite:///{path}")
    upgrade(generated)
    generate(generated, citizens, seed, 0.0)
    DaySimulation(session_factory(generated), seed, date(2026, 7, 2)).run(max(10, citizens // 4))
    say(f"seeding from a generated population of {citizens:,} citizens and a day of life events ({path})")
    return list(citizens_from(generated))


# -- faults through the admin endpoint ---------------------------------------------------------------------------


def _admin(state_dir: Path | None, method: str, path: str, document: dict | None = None) -> dict:
    endpoints_file = (state_dir or Workspace.from_environment().partners) / "endpoints.json"
    if not endpoints_file.exists():
        fail(f"no {endpoints_file}: is 'lienthong partners serve' running?")
    try:
        admin = json.loads(endpoints_file.read_text(encoding="utf-8")).get("admin")
        if admin is None:
            fail("this sandbox runs without the admin endpoint")
        url, token = admin["url"] + path, Path(admin["token_file"]).read_text(encoding="utf-8").strip()
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as error:
        fail(f"{endpoints_file} cannot be used ({type(error).__name__}): is 'lienthong partners serve' running?")
    data = json.dumps(document).encode() if document is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as error:
        fail(f"admin endpoint: HTTP {error.code}: {error.read().decode('utf-8', 'replace')}")
    except urllib.error.URLError as error:
        fail(f"admin endpoint unreachable ({error.reason}): is 'lienthong partners serve' running?")


@partners_app.command("fault")
def fault(
    partner: Annotated[str, typer.Argument(help="The partner agency, e.g. health, tax, land or business.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")],
    operation: Annotated[str, typer.Option(help="Glob over operation names (packages, records, token …).")] = "*",
    times: Annotated[int, typer.Option(min=1, help="How many requests it spoils.")] = 1,
    status: Annotated[int, typer.Option(help="status: the HTTP status.")] = 503,
    retry_after: Annotated[float | None, typer.Option(help="status: Retry-After seconds.")] = None,
    seconds: Annotated[float, typer.Option(help="latency: seconds.")] = 0.0,
    code: Annotated[str, typer.Option(help="soap_fault: the fault code.")] = "soap:Server.Busy",
    size: Annotated[int, typer.Option(help="oversized: bytes.")] = 32 * 1024 * 1024,
    after_bytes: Annotated[int, typer.Option(help="disconnect: bytes before the SFTP connection drops.")] = 0,
    state_dir: StateOption = None,
) -> None:
    """Add a fault to a running partner's plan."""
    try:
        planned = Fault(kind, operation, times, seconds, status, retry_after, code, size, after_bytes)
    except ValueError as error:
        fail(error)
    answer = _admin(state_dir, "POST", f"/faults/{partner}", {"faults": [asdict(planned)]})
    say(f"{partner}: {len(answer['pending'])} fault(s) pending")


@partners_app.command("faults")
def faults(
    clear: Annotated[str | None, typer.Option(help="Clear this partner's faults.")] = None,
    state_dir: StateOption = None,
) -> None:
    """Show every partner's pending faults and what fired, or clear one partner's."""
    if clear:
        _admin(state_dir, "DELETE", f"/faults/{clear}")
        say(f"{clear}: faults cleared")
        return
    typer.echo(json.dumps(_admin(state_dir, "GET", "/faults"), indent=2))


@partners_app.command("receipts")
def receipts(
    partner: Annotated[str, typer.Argument(help="The partner agency, e.g. health, tax, land or business.")],
    out: Annotated[
        Path, typer.Option(callback=writable("directory"), help="Where to write them: <out>/<package id>/.")
    ],
    state_dir: StateOption = None,
) -> None:
    """Hand over the signed receipts a sandbox partner answered the population database's packages with, from its
    own store: <out>/<package id>/receipt.json and receipt.json.p7s. Each accepted one witnesses the head of the
    population's ledger its package carried: `lienthong ledger audit --receipts OUT` checks the ledger against
    them."""
    from sqlalchemy import select

    from exchange.receipt import RECEIPT, SIGNATURE
    from partners.store import RegistryStore, package

    path = (state_dir or Workspace.from_environment().partners) / partner / "registry.db"
    if not path.is_file():
        fail(f"no {path}: {partner} has no store there (--state-dir)")
    store = RegistryStore(path)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(select(package.c.package_id, package.c.receipt, package.c.signature)).all()
    finally:
        store.dispose()
    for row in rows:
        folder = out / row.package_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / SIGNATURE).write_bytes(row.signature)
        (folder / RECEIPT).write_bytes(row.receipt)
    say(f"{partner}: {len(rows):,} signed receipts written to {out}")


@partners_app.command("endpoints")
def endpoints(state_dir: StateOption = None) -> None:
    """Print endpoints.json of the running sandbox."""
    path = (state_dir or Workspace.from_environment().partners) / "endpoints.json"
    if not path.exists():
        fail(f"no {path}: is 'lienthong partners serve' running?")
    try:
        typer.echo(json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2, ensure_ascii=False))
    except (OSError, ValueError) as error:
        fail(f"{path} cannot be used ({type(error).__name__}): is 'lienthong partners serve' running?")


@partners_app.command("test")
def test(
    agreement: Annotated[str, typer.Argument(help="The agreement whose partner to reach, e.g. health-identity.")],
    var: VarOption = None,
) -> None:
    """Reach an agreement's partner as its DAGs do: its Airflow connection, looked up the way the hooks look it up
    (AIRFLOW_CONN_<ID>, a secrets backend, then the metadata database: make airflow's under <var>/airflow unless
    AIRFLOW_HOME is set), and the hook's test_connection. Prints ok: … or failed: … (exit status 1)."""
    from exchange.agreements import usable_agreements

    agreements, errors = usable_agreements()  # a bad file elsewhere does not stop this one
    if agreement not in agreements:
        unusable = f"; and {len(errors)} file(s) that do not load, the first: {errors[0]}" if errors else ""
        fail(f"no agreement {agreement!r}; there are: {', '.join(sorted(agreements))}{unusable}")
    chosen = agreements[agreement]
    use_airflow_home(var)
    from connectors.transport import partner_hook

    try:
        with partner_hook(chosen.transport, chosen.connection_id) as hook:
            worked, message = hook.test_connection()
    except Exception as error:  # noqa: BLE001 - no such connection, an incomplete one: a line, not a traceback
        worked, message = False, f"{type(error).__name__}: {error}"
    where = f"{agreement} ({chosen.transport}, connection {chosen.connection_id})"
    if not worked:
        say(f"failed: {where}: {message}")
        raise typer.Exit(code=1)
    say(f"ok: {where}: {message}")


def use_airflow_home(var: Path | None) -> None:
    """Look connections up as make airflow's components do: the metadata database as well (as ``airflow
    connections test`` does), and without an Airflow environment of its own, ``<var>/airflow``'s; log errors only.
    Before Airflow is imported, which reads its configuration once."""
    from lienthong.airflow_runner import airflow_environment

    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"  # the hooks' progress lines: the one line says it
    logging.disable(logging.WARNING)  # their libraries' (paramiko's)
    if "AIRFLOW_HOME" not in os.environ:
        environment = airflow_environment(var or Workspace.from_environment().var)
        os.environ.update({name: value for name, value in environment.items() if name not in os.environ})
        if not Path(environment["AIRFLOW_HOME"], "airflow.db").exists():
            return  # no make airflow here yet: the environment and a secrets backend only, no empty database left
    os.environ.setdefault("_AIRFLOW_PROCESS_CONTEXT", "server")
