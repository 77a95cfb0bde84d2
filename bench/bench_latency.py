"""Benchmark (issue 17): how long a life event takes to reach each partner, under a running scheduler.

The setup of ``make airflow`` in a temporary workspace: a generated population (SQLite, or ``--db`` PostgreSQL),
the sandbox PKI, the four partners on loopback (REST, SOAP, SFTP) and Airflow's components with the
LocalExecutor (scheduler, DAG processor, triggerer, API server), the exchange DAGs active from the start. The
change log's watcher (``feeds.change_log_events``) starts the outbound feeds; nothing is clicked or triggered.
The measurement starts once the first event has reached every partner (the warm-up) and no DAG run is going any
more: the runs every DAG makes when the scheduler first starts (the inbound feeds, the ledger's audit) are over.

1. ``--events`` life events (deaths, moves, renamings), committed one at a time at random intervals
   (``--gap`` seconds at most). For each event and each outbound agreement that selects it, the latency is the
   time from the commit to the partner's signed receipt, verified and written to the ledger (the
   ``receipt_received`` entry of the package that carried the citizen, as the partner's own store has it).
   Reported per agreement (and so per partner and transport): p50, p95 and max.
2. A burst of ``--burst`` renamings, committed as fast as one transaction each goes: the seconds from the first
   commit to the last change's receipt per agreement, the events per second, and how many packages it made.

With ``--cluster ROOT`` it measures the same on the native cluster running under ROOT (``lienthong cluster up``:
Celery workers each on a host of its own, PostgreSQL, Redis, the object store; ``make bench-latency-cluster``
brings one up, runs this and takes it down): the events are committed into the cluster's population database and
the receipts read from its ledger and its partners' stores.

The baseline is what the issue measured before the watcher: the five-minute tick of ``population.change-log``
(0 to 300 s of wait) plus about 14 s for the chain; targets with the LocalExecutor: p95 <= 15 s for the REST and
SOAP partners, <= 30 s for the SFTP partner.

    .venv/bin/python bench/bench_latency.py --events 200 --burst 10000     # make bench-latency, about 15 minutes
    .venv/bin/python bench/bench_latency.py --events 3 --burst 30          # the bounded run of the test suite
    .venv/bin/python bench/bench_latency.py --cluster /tmp/cluster         # on a cluster that is up, as root

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PASSWORD = b"bench latency key password"
NAMES = ("Lương Thị Thu Hà", "Đặng Văn Khoa", "Hồ Ngọc Ánh", "Phạm Quốc Bảo")
EVENT_TYPES = {"death": {"death"}, "move": {"current_residence_change"}, "rename": {"name_change"}}  # the change log's


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


class World:
    """The workspace, its population and what arrived where."""

    def __init__(self, var: Path, url: str, airflow_url: str) -> None:
        from sqlalchemy import create_engine

        from exchange.agreements import load_agreements
        from population.db import create_population_engine, session_factory
        from population.events import LifeEvents

        self.var, self.url = var, url
        self.engine = create_population_engine(url)
        self.airflow = create_engine(airflow_url)  # Airflow's metadata database: which DAG runs are going
        self.events = LifeEvents(session_factory(self.engine), random.Random(17))
        self.agreements = {a.name: a for a in load_agreements().values() if "outbound" in a.directions}
        self.turn = 0

    def runs_going(self) -> int:
        """DAG runs queued or running now, of every DAG."""
        from sqlalchemy import text

        going = text("SELECT count(*) FROM dag_run WHERE state IN ('queued', 'running')")
        with self.airflow.connect() as connection:
            return connection.execute(going).scalar()

    def living(self, count: int) -> list[tuple[str, str]]:
        """(personal ID, current ward) of living citizens."""
        from sqlalchemy import select

        from population.models import Citizen

        with self.engine.connect() as connection:
            rows = connection.execute(select(Citizen.personal_id, Citizen.current_ward_code)
                                      .where(Citizen.date_of_death.is_(None)).limit(count))  # fmt: skip
            return [(pid, ward) for pid, ward in rows]

    def commit(self, kind: str, pid: str, ward: str) -> float:
        """Commit one life event of ``kind`` on the citizen; returns the wall-clock time of the commit."""
        self.turn += 1
        on = date(2026, 7, 3)
        if kind == "death":
            self.events.record_death(pid, on)
        elif kind == "move":
            self.events.change_residence(pid, "current", ward, f"Số {self.turn} đường Lê Lợi", on)
        else:
            self.events.change_name(pid, NAMES[self.turn % len(NAMES)], on)
        return time.time()

    def packages_holding(self) -> dict[str, dict[str, set[str]]]:
        """Per partner, per personal ID, the packages from the population that carried it (the partners' stores)."""
        held: dict[str, dict[str, set[str]]] = {}
        for store in sorted((self.var / "partners").glob("*/registry.db")):
            with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as partner:
                query = ("SELECT r.personal_id, r.package_id FROM partner_record r JOIN partner_package p "
                         "USING (package_id) WHERE p.sender = 'population'")  # fmt: skip
                for pid, package in partner.execute(query):
                    held.setdefault(store.parent.name, {}).setdefault(pid, set()).add(package)
        return held

    def receipts(self) -> dict[str, tuple[str, float]]:
        """Each package's accepted receipt in the ledger: package id -> (agreement, when it was recorded)."""
        from sqlalchemy import select

        from population.models import LedgerEntry

        with self.engine.connect() as connection:
            rows = connection.execute(select(LedgerEntry.package_id, LedgerEntry.agreement, LedgerEntry.recorded_at)
                                      .where(LedgerEntry.kind == "receipt_received",
                                             LedgerEntry.status == "accepted"))  # fmt: skip
            found = {}
            for package, agreement, at in rows:
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
                found[package] = (agreement, at.timestamp())
            return found

    @staticmethod
    def arrivals(pid: str, after: float, held: dict, receipts: dict) -> dict[str, float]:
        """Per agreement, when the first receipt after ``after`` came for a package carrying ``pid`` (``held``:
        ``packages_holding()``, ``receipts``: ``receipts()``, read once for every event looked at)."""
        found: dict[str, float] = {}
        for partner in held.values():
            for package in partner.get(pid, ()):
                if package in receipts:
                    agreement, at = receipts[package]
                    if at >= after - 1 and (agreement not in found or at < found[agreement]):
                        found[agreement] = at
        return found

    def selects(self, agreement: str, kind: str) -> bool:
        """Whether the agreement's row selection takes an event of this kind (no selection of events: every one)."""
        events = self.agreements[agreement].directions["outbound"].rows.events
        return not events or bool(EVENT_TYPES[kind] & set(events))


def wait_for(world: World, pending: list[tuple[str, str, float]], seconds: float) -> dict[tuple[str, str], float]:
    """The latency of each (event, agreement) expected, waiting up to ``seconds`` for the last of them."""
    got: dict[tuple[str, str], float] = {}
    expected = sum(1 for _, kind, _ in pending for a in world.agreements if world.selects(a, kind))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        held, receipts = world.packages_holding(), world.receipts()  # the stores and the ledger once a look
        for pid, kind, committed in pending:
            arrived = world.arrivals(pid, committed, held, receipts)
            for agreement in world.agreements:
                if world.selects(agreement, kind) and agreement in arrived:
                    got.setdefault((pid, agreement), arrived[agreement] - committed)
        if len(got) >= expected:
            break
        time.sleep(1)
    return got


def transport_of(world: World, agreement: str) -> str:
    return world.agreements[agreement].transport


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--gap", type=float, default=4.0, help="at most this many seconds between two events")
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--citizens", type=int, default=2000)
    parser.add_argument("--db", help="a PostgreSQL URL (an empty database); default SQLite in the workspace")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the last receipts")
    parser.add_argument("--cluster", type=Path, help="the root of a native cluster that is up: measure there")
    options = parser.parse_args()
    if options.cluster is not None:
        on_the_cluster(options)
        return

    var = Path(tempfile.mkdtemp(prefix="lienthong-bench-latency-"))
    url = options.db or f"sqlite:///{var / 'lienthong.db'}"
    os.environ.update({"LIENTHONG_VAR_DIR": str(var), "LIENTHONG_DB_URL": url,
                       "LIENTHONG_KEY_PASSWORD": PASSWORD.decode(),
                       "LIENTHONG_DISCLOSURE_KEY": secrets.token_urlsafe(32)})  # fmt: skip
    from exchange.pki import init_pki
    from lienthong.demo import airflow_running, partners_running
    from population.db import create_population_engine
    from population.generator import generate
    from population.migrate import upgrade

    citizens = max(options.citizens, options.events + options.burst + 100)  # each event on a citizen of its own
    log(f"workspace {var}: {citizens} citizens, the PKI, the partners and Airflow")
    engine = create_population_engine(url)
    upgrade(engine)
    generate(engine, citizens, 2026, 0.0)
    engine.dispose()
    init_pki(var / "pki", PASSWORD, rsa_bits=2048)
    world = World(var, url, f"sqlite:///{var / 'airflow' / 'airflow.db'}")
    people = world.living(options.events + options.burst + 50)
    figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "citizens": citizens, "database": "postgresql" if options.db else "sqlite",
                     "events": options.events, "burst": options.burst,
                     "started_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    started = time.monotonic()
    with socket.socket() as probe:  # Airflow's API server (the tasks' execution API too) on a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api = {"AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}"}
    with partners_running(var, PASSWORD) as env, airflow_running(var, env | api) as components:
        measure(world, people, options, figures, started, lambda: all(p.poll() is None for p in components.values()))
    report(world, figures, options, f"see {var / 'airflow'}/<component>.log")


def on_the_cluster(options) -> None:
    """The measurement on a native cluster that is up (``lienthong.cluster``): its population database on the
    services host, its partners' stores under its root, its components' processes."""
    from lienthong import cluster as topology

    cluster = topology.Cluster.load(options.cluster.resolve())
    values = topology.cluster_values(cluster.root)
    address = topology.host_address(topology.SERVICES)
    world = World(
        cluster.root,
        f"postgresql://lienthong:{values['LIENTHONG_DB_PASSWORD']}@{address}:5432/lienthong",
        f"postgresql+psycopg://airflow:{values['AIRFLOW_DB_PASSWORD']}@{address}:5432/airflow",
    )
    people = world.living(options.events + options.burst + 50)
    if len(people) < options.events + options.burst + 1:
        sys.exit(f"the cluster's population has {len(people)} living citizens: fewer than the events and the burst")
    figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "database": "postgresql", "executor": "CeleryExecutor",
                     "workers": sum(name.startswith("worker-") for name in cluster.processes),
                     "events": options.events, "burst": options.burst,
                     "started_at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    measure(world, people, options, figures, time.monotonic(), lambda: not cluster.stopped())
    report(world, figures, options, f"see {cluster.root / 'logs'}")


def measure(world: World, people: list, options, figures: dict, started: float, alive) -> None:
    """The warm-up, the events one at a time, then the burst, into ``figures``; ``alive()``: whether every
    component still runs."""
    rng = random.Random(2026)
    # warm-up: the first event after the components are up reaches every partner (parsing, the watcher)
    pid, ward = people.pop()
    warm = wait_for(world, [(pid, "rename", world.commit("rename", pid, ward))], 600)
    figures["warm_up_s"] = round(time.monotonic() - started, 1)
    log(f"warmed up in {figures['warm_up_s']} s ({len(warm)} agreements reached)")
    # and settled: the first runs every DAG makes when the scheduler starts (the inbound feeds' fetch, the ledger's
    # audit) are over, so that the events meet the feeds as they run from then on
    settling = time.monotonic()
    while world.runs_going() and time.monotonic() - settling < 600:
        time.sleep(1)
    figures["settled_s"] = round(time.monotonic() - settling, 1)
    log(f"settled in {figures['settled_s']} s more")
    committed = []
    for number in range(options.events):
        kind = rng.choice(("death", "move", "rename"))
        pid, _ = people.pop()
        ward = people[rng.randrange(len(people))][1]
        committed.append((pid, kind, world.commit(kind, pid, ward)))
        time.sleep(rng.uniform(0, options.gap))
        if number % 20 == 19:
            log(f"{number + 1} events committed")
    got = wait_for(world, committed, options.timeout)
    latency = {}
    for agreement in world.agreements:
        values = [got[(pid, agreement)] for pid, kind, _ in committed if (pid, agreement) in got]
        expected = sum(1 for _, kind, _ in committed if world.selects(agreement, kind))
        if not expected:
            continue
        latency[agreement] = {
            "transport": transport_of(world, agreement), "expected": expected, "received": len(values),
            "p50_s": round(statistics.median(values), 2) if values else None,
            "p95_s": round(percentile(values, 0.95), 2) if values else None,
            "max_s": round(max(values), 2) if values else None,
        }  # fmt: skip
        log(f"{agreement:18} {latency[agreement]}")
    figures["latency"] = latency

    packages_before = {a: p for a, p in world_packages(world).items()}
    first = time.time()
    burst = []
    for _ in range(options.burst):
        pid, ward = people.pop()
        burst.append((pid, "rename", world.commit("rename", pid, ward)))
    commit_s = time.time() - first
    last_pid, _, last_at = burst[-1]
    done = wait_for(world, [burst[-1]], options.timeout)
    packages_after = world_packages(world)
    figures["burst_result"] = {
        "commit_s": round(commit_s, 1),
        "per_agreement": {
            agreement: {
                "last_receipt_after_first_commit_s": round(last_at - first + done[(last_pid, agreement)], 1)
                if (last_pid, agreement) in done else None,
                "packages": packages_after.get(agreement, 0) - packages_before.get(agreement, 0),
            }
            for agreement in world.agreements if world.selects(agreement, "rename")
        },
    }  # fmt: skip
    slowest = [v["last_receipt_after_first_commit_s"] for v in figures["burst_result"]["per_agreement"].values()]
    if slowest and None not in slowest:
        figures["burst_result"]["events_per_s"] = round(options.burst / max(slowest), 1)
    log(f"burst: {figures['burst_result']}")
    figures["components_alive"] = alive()


def report(world: World, figures: dict, options, where_logs: str) -> None:
    """Print the JSON line; exit with an error when a change did not arrive or a component stopped."""
    targets = {"rest": 15, "soap": 15, "sftp": 30}
    figures["targets_met"] = all(
        v["p95_s"] is not None and v["p95_s"] <= targets.get(v["transport"], 30) and v["received"] == v["expected"]
        for v in figures["latency"].values()
    )
    world.engine.dispose()
    world.airflow.dispose()
    print(json.dumps(figures, ensure_ascii=False))
    lost = [a for a, v in figures["latency"].items() if v["received"] < v["expected"]]
    slowest = [v["last_receipt_after_first_commit_s"] for v in figures["burst_result"]["per_agreement"].values()]
    if lost or None in slowest:  # a change that never reached a partner is a failure, not a slow figure
        sys.exit(f"changes did not reach {', '.join(lost) or 'every partner in the burst'} within {options.timeout} s")
    if not figures["components_alive"]:  # a triggerer that died leaves the five-minute safety net doing its work
        sys.exit(f"an Airflow component stopped during the run: {where_logs}")


def world_packages(world: World) -> dict[str, int]:
    """Packages sent so far per agreement (the ledger's package_sent entries)."""
    from sqlalchemy import func, select

    from population.models import LedgerEntry

    with world.engine.connect() as connection:
        rows = connection.execute(select(LedgerEntry.agreement, func.count()).where(LedgerEntry.kind == "package_sent")
                                  .group_by(LedgerEntry.agreement))  # fmt: skip
        return dict(rows.all())


if __name__ == "__main__":
    main()
