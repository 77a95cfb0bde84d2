"""``lienthong demo``: the four partners on loopback, every exchange DAG run through Airflow, a table per partner.

It expects the embedded default set up (``make demo`` does it: a population with defects and a day of life
events in ``var/lienthong.db``, the sandbox PKI in ``var/pki``). It then

1. seeds the partner registries from the population and starts them on loopback (``partners.sandbox``), their
   Airflow connections put in the environment of the DAG runs;
2. runs the DAGs with ``dag.test()`` in a process of their own (``lienthong.airflow_runner``; Airflow's home in
   ``var/airflow``, its log in ``var/airflow/demo.log``): the change log announced, each agreement's outbound
   feed, each full snapshot, each inbound feed, then the ledger audit;
3. prints, per partner, what crossed: records and packages sent, receipts back, rows quarantined, packages
   received, registry links and mismatches found, with where the packages and reports are.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from exchange.agreements import load_agreements
from feeds.overview import PartnerFigures, partner_figures
from lienthong.airflow_runner import read_results, run_dags

CONSOLE = Console()


def dag_order() -> list[str]:
    """Every DAG, in the order a day would run them: announce, send, snapshot, receive, audit."""
    agreements = load_agreements().values()
    outbound = [a.name for a in agreements if "outbound" in a.directions]
    inbound = [a.name for a in agreements if "inbound" in a.directions]
    return ["population.change-log", *(f"{name}.outbound" for name in outbound),
            *(f"{name}.snapshot" for name in outbound), *(f"{name}.inbound" for name in inbound),
            "ledger.audit"]  # fmt: skip


def run_all(dag_ids: list[str], var: Path, env: dict[str, str]) -> list[dict]:
    """Run the DAGs in their own process, showing which one runs; their results."""
    log, results = var / "airflow" / "demo.log", var / "airflow" / "demo-results.jsonl"
    results.unlink(missing_ok=True)
    process = run_dags(dag_ids, var, log=log, results=results, env=env)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} DAG runs"),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=CONSOLE) as progress:
        bar = progress.add_task("starting Airflow", total=len(dag_ids))
        while True:
            done = read_results(results)
            running = dag_ids[len(done)] if len(done) < len(dag_ids) else "done"
            progress.update(bar, completed=len(done), description=f"Airflow: {running}")
            if process.poll() is not None:
                break
            time.sleep(0.5)
    done = read_results(results)
    for run in done:
        mark = "[green]success[/]" if run["state"] == "success" else f"[red]{run['state']}[/]"
        CONSOLE.print(f"  {run['dag_id']:<34} {mark} in {run['seconds']:.0f} s")
    if len(done) < len(dag_ids):
        CONSOLE.print(f"[red]the DAG runs stopped early; see {log}[/]")
    return done


FIGURES = (
    ("records sent", "sent"),
    ("  quarantined, held back", "quarantined_out"),
    ("packages sent", "packages_sent"),
    ("signed receipts back", "receipts"),
    ("records received", "received"),
    ("  quarantined", "quarantined_in"),
    ("packages received", "packages_received"),
    ("registry links written", "links"),
    ("mismatches found", "mismatches"),
)


def print_figures(figures: list[PartnerFigures], var: Path) -> None:
    table = Table(title="What crossed, per partner", title_justify="left")
    table.add_column("")
    for partner in figures:
        table.add_column(partner.partner, justify="right")
    for label, field in FIGURES:
        table.add_row(label, *(f"{getattr(partner, field):,}" for partner in figures))
    CONSOLE.print(table)
    CONSOLE.print(f"packages: {var / 'packages'}/<agreement>/  (each with its .receipt/ folder)")
    CONSOLE.print(f"inbound packages: {var / 'inbound'}/<agreement>/")
    CONSOLE.print(f"reports: {var / 'reports'}/<agreement>/  (validation, quarantine.csv, mismatches.csv)")
    CONSOLE.print(f"trust root: {var / 'pki' / 'root-ca.pem'}; Airflow log: {var / 'airflow' / 'demo.log'}")
    CONSOLE.print(f"ledger anchors (signed heads, outside the database): {var / 'ledger-anchors'}/")


@contextmanager
def partners_running(var: Path, key_password: bytes) -> Iterator[dict[str, str]]:
    """The four partners seeded from the population (once) and running on loopback; yields the environment the
    exchange DAGs' tasks need: the partners' Airflow connections, the database, the PKI and its key password."""
    from exchange.pki import PkiDirectory
    from lienthong.settings import DISCLOSURE_KEY_ENV, database_url, disclosure_key
    from partners.sandbox import Sandbox
    from partners.seed import citizens_from
    from population.db import create_population_engine

    url = database_url(None)
    pki = PkiDirectory(var / "pki")
    with CONSOLE.status("seeding the partner registries from the population and starting them on loopback"):
        sandbox = Sandbox(var / "partners", pki, key_password)
        if not all(p.store.is_seeded() for p in sandbox.partners.values()):
            engine = create_population_engine(url)
            sandbox.seed(list(citizens_from(engine)), 2026)
            engine.dispose()
        sandbox.start()
    try:
        for line in sandbox.addresses().values():
            CONSOLE.print(f"  partner {line}", highlight=False)
        yield sandbox.connection_environment() | {"LIENTHONG_DB_URL": url, "LIENTHONG_PKI_DIR": str(pki.path),
                                                  "LIENTHONG_KEY_PASSWORD": key_password.decode(),
                                                  DISCLOSURE_KEY_ENV: disclosure_key().decode()}  # fmt: skip
    finally:
        sandbox.stop()


def run_demo(var: Path, key_password: bytes) -> bool:
    """Start the partners, run every DAG, print the figures; True when every DAG run succeeded."""
    from lienthong.settings import database_url
    from population.db import create_population_engine

    var = var.resolve()
    with partners_running(var, key_password) as env:
        runs = run_all(dag_order(), var, env)
    engine = create_population_engine(database_url(None))
    print_figures(partner_figures(engine), var)
    engine.dispose()
    return len(runs) == len(dag_order()) and all(run["state"] == "success" for run in runs)


# The simple auth manager's users (name:role): the workbench's stewards decide (role op; two of them, for the
# releases that take four eyes), its viewer reads (feeds.workbench.access). Passwords are made on the first start
# and kept in var/airflow/simple_auth_manager_passwords.json.generated; an exported setting wins.
DEMO_USERS = "admin:admin,steward:op,steward2:op,viewer:viewer"

# What ``airflow standalone`` starts, with the log servers left out: Airflow binds them to every interface (ports
# 8793-8794, hard-coded), and on one machine the web UI reads the task logs from their files anyway.
AIRFLOW_COMPONENTS = {
    "api-server": ["api-server"],  # on 127.0.0.1 (AIRFLOW__API__HOST)
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def serve_airflow(var: Path, key_password: bytes) -> int:
    """``make airflow``: the partners on loopback and Airflow (web UI and API, scheduler, DAG processor,
    triggerer) with the exchange DAGs, their connections, pools and the plugin, until Ctrl-C or until a component
    stops."""
    var = var.resolve()
    signal.signal(signal.SIGTERM, _stop)  # stopped by a service manager as by Ctrl-C: the components go too
    with partners_running(var, key_password) as env, airflow_running(var, env) as components:
        home = var / "airflow"
        CONSOLE.print(f"Airflow at http://127.0.0.1:8080 (users admin, steward, steward2 and viewer; passwords in "
                      f"{home}/simple_auth_manager_passwords.json.generated); the stewards' workbench at "
                      f"http://127.0.0.1:8080/lienthong/quarantine; logs in {home}/; Ctrl-C stops")  # fmt: skip
        try:
            while True:
                for name, process in components.items():
                    if process.poll() is not None:
                        CONSOLE.print(f"Airflow's {name} stopped (exit {process.returncode}): see {home}/{name}.log")
                        return process.returncode or 1
                time.sleep(1)
        except KeyboardInterrupt:
            return 0


@contextmanager
def airflow_running(var: Path, env: dict[str, str]) -> Iterator[dict[str, subprocess.Popen]]:
    """Airflow's components (``AIRFLOW_COMPONENTS``) running with the exchange DAGs, its home in ``var/airflow``
    (migrated, a pool per partner) and ``env`` on top of its environment; yields their processes by name. Each
    component's output goes to ``var/airflow/<component>.log``; all are stopped on the way out."""
    from lienthong.airflow_runner import airflow_environment, sandbox_connections_apart

    env, connections = sandbox_connections_apart(env)  # into the metadata database: the engineer's own win
    environment = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": DEMO_USERS,
        **os.environ,
        **airflow_environment(var),
        **env,
    }
    home = Path(environment["AIRFLOW_HOME"])
    # Every component signs and checks the tasks' tokens with one secret; left to Airflow, a component that starts
    # before the configuration file is written makes up its own, and every task then fails to authenticate.
    environment["AIRFLOW__API_AUTH__JWT_SECRET"] = _instance_secret(home / "jwt-secret")
    # So with the key that encrypts what the metadata database keeps (connections, the triggers' arguments): a
    # triggerer with a key of its own cannot read the change log watcher's arguments, and dies.
    environment["AIRFLOW__CORE__FERNET_KEY"] = _instance_secret(home / "fernet-key", fernet=True)
    # migrate, pools, the sandbox's connections (one line each: which is used, from where)
    subprocess.run([sys.executable, "-m", "lienthong.airflow_runner"], env=environment | connections, check=True)
    airflow = Path(sys.executable).with_name("airflow")
    components: dict[str, subprocess.Popen] = {}
    try:
        for name, arguments in AIRFLOW_COMPONENTS.items():
            with (home / f"{name}.log").open("ab") as log:
                components[name] = subprocess.Popen([str(airflow), *arguments], env=environment, stdout=log,
                                                    stderr=subprocess.STDOUT)  # fmt: skip
        yield components
    finally:
        for process in components.values():
            process.terminate()
        for process in components.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()  # it did not stop within 30 s: killed, and reaped so that it is gone on return
                process.wait()


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _instance_secret(path: Path, *, fernet: bool = False) -> str:
    """This Airflow instance's secret, made once and kept in ``path`` (under var/, git-ignored, owner only): a
    Fernet key (32 random bytes, URL-safe base64) when ``fernet``."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode() if fernet else secrets.token_urlsafe(64))
    return path.read_text().strip()
