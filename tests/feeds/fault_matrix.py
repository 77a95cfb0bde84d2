"""The fault matrix (``tests/feeds/test_fault_matrix.py``): its cells, and the machinery that causes each fault for
real and recovers from it the way production does.

A cell is (transport, direction and step, fault). The transports are those of the sandbox's partners: REST
(``health-identity``, the health partner), SOAP (``tax-identity``, tax) and SFTP (``land-owners``, land); each
agreement has an outbound feed (extract, validate, package, deliver, receipt, verify, advance) and an inbound one
(fetch, verify, validate, reconcile, acknowledge), run step by step as their DAGs' tasks run them
(``tests.feeds.feed_steps``). The faults:

``sigkill``            the task's process is killed (SIGKILL) at a named point of the step; the feed goes on as
                       Airflow retries the task (the finished tasks' XComs kept) or as the next DAG run does
``partner_down``       the partner's server is stopped (its port refuses) for the step's first attempt
``partner_restarted``  the partner is stopped and started again from its state folder (a new server: what it kept
                       in memory is gone) between the step's first attempt and its retry, or while a package or
                       receipt waits for its intake
``reset``              the connection is cut in the middle of a body: a request's, by a loopback TCP proxy in front
                       of the partner (REST, SOAP) or by the SFTP server after half the file; an answer's, by the
                       server after it has done the work
``disk_full``          the partner's state folder (a tmpfs of its own) is filled until writes fail with ENOSPC, then
                       freed
``db_restart``         the population database (a private PostgreSQL server) restarts (``pg_ctl restart -m fast``)
                       just before the step's n-th commit, or its first query when it only reads
``intake_crash``       the partner runs in a process of its own that is killed (SIGKILL) in the middle of storing
                       a package or a receipt; it is then started again from its state folder

Recovery is what production does: a failed task is retried by Airflow (``feeds.tasks.is_final`` must not call the
failure final), and the ``-new_run`` cells start the next DAG run instead. Every cell ends with each record held
exactly once, the feed's checkpoint (outbound) or sequence (inbound) at the end, and the ledgers verifying with one
entry of each kind for the cell's package.

One world per test process (``MatrixWorld``): a private PostgreSQL server, the three partners on loopback with their
state on tmpfs mounts, and a process server (``multiprocessing``'s forkserver, with the feeds and partners imported
once) from which killed tasks and crashing partners are forked. Cells run in it one after another as days: an
outbound cell delivers the changes of a new day of life events, an inbound cell the partner's next publication.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, select, text

from exchange import ledger
from exchange.agreements import load_agreements
from exchange.pki import PkiDirectory
from exchange.sequence import RECEIVED, state
from feeds import tasks as feeds
from feeds.checkpoint import read_checkpoint
from feeds.inbound import inbound_feed, sequence_of
from partners.faults import Fault
from partners.sandbox import Sandbox, connection_ids, start_on
from partners.seed import citizens_from
from population.changelog import last_sequence
from population.db import create_population_engine, session_factory
from population.generator import generate
from population.migrate import upgrade
from population.models import RegistryLink
from population.simulation import DaySimulation
from tests.feeds import feed_steps
from tests.feeds.changes import changed_personal_ids
from tests.partners.fixtures import PASSWORD, ExchangeWorld, wait_for
from validation.models import QuarantinedRecord, ValidationRun

# -- the cells ---------------------------------------------------------------------------------------------------

TRANSPORTS = {"rest": ("health-identity", "health"), "soap": ("tax-identity", "tax"), "sftp": ("land-owners", "land")}
PARTNERS = tuple(partner for _agreement, partner in TRANSPORTS.values())
KILL, DOWN, RESTARTED, RESET, DISK, DB, CRASH = (
    "sigkill", "partner_down", "partner_restarted", "reset", "disk_full", "db_restart", "intake_crash")  # fmt: skip
FAULTS = (KILL, DOWN, RESTARTED, RESET, DISK, DB, CRASH)
STEPS = [("outbound", step) for step in feed_steps.OUTBOUND_STEPS] + [
    ("inbound", step) for step in feed_steps.INBOUND_STEPS
]
RETRY, NEW_RUN = "retry", "new run"


@dataclass(frozen=True)
class Cell:
    transport: str
    direction: str
    step: str
    fault: str
    variant: str = ""  # tells apart cells of the same fault at the same step
    point: str | None = None  # sigkill: where the task dies; intake_crash: where the partner does
    rerun: str = RETRY  # sigkill: the task retried with the XComs kept, or a new DAG run
    db_at: tuple[str, int] = ("commit", 1)  # db_restart: before the n-th commit, or ("query", n)

    @property
    def id(self) -> str:
        return "-".join(part for part in (self.transport, self.direction, self.step, self.fault, self.variant) if part)

    @property
    def agreement(self) -> str:
        return TRANSPORTS[self.transport][0]

    @property
    def partner(self) -> str:
        return TRANSPORTS[self.transport][1]


def _kill(transport: str, direction: str, step: str, point: str, what: str, rerun: str = RETRY) -> Cell:
    """A sigkill cell: ``what`` says what the killed task had done (its id's last part)."""
    return Cell(transport, direction, step, KILL, what + ("-new_run" if rerun == NEW_RUN else ""), point, rerun)


def _cells_of(transport: str) -> list[Cell]:
    http = transport != "sftp"
    t = transport
    cells = [
        # outbound: the steps that touch only the population database and the files
        _kill(t, "outbound", "extract", "feeds.outbound:extract:after", "window_fixed"),
        Cell(t, "outbound", "extract", DB, db_at=("query", 1)),
        _kill(t, "outbound", "validate", "validation.quarantine:QuarantineStore.add:after", "mid_quarantine"),
        Cell(t, "outbound", "validate", DB, db_at=("commit", 2)),  # the run recorded; its findings or figures
        _kill(t, "outbound", "package", "feeds.outbound:hold_pending:after", "held_not_sealed"),
        _kill(t, "outbound", "package", "feeds.outbound:zip_package:before", "sealed_not_zipped"),
        _kill(t, "outbound", "package", "feeds.outbound:package:after", "zipped", NEW_RUN),
        Cell(t, "outbound", "package", DB, db_at=("commit", 2)),  # the seal's: sequence and package_sent
        # delivery
        Cell(t, "outbound", "deliver", DOWN),
        Cell(t, "outbound", "deliver", RESET, "request"),
        Cell(t, "outbound", "deliver", DISK),
    ]
    if http:  # the partner answers the delivery with its receipt
        point = "connectors.base:DeliveredReceipt.write_to:before"  # stored; the answer lost with the task
        cells += [
            _kill(t, "outbound", "deliver", point, "answer_lost"),
            _kill(t, "outbound", "deliver", point, "answer_lost", NEW_RUN),
            Cell(t, "outbound", "deliver", RESET, "response"),
            Cell(t, "outbound", "deliver", RESTARTED),  # stored, the answer cut, restarted before the retry
            Cell(t, "outbound", "deliver", CRASH, point="partners.store:RegistryStore.store_package:before"),
        ]
    else:  # uploaded into the inbox; the receipt comes later, from the partner's intake
        point = "connectors.sftp:SftpHook.deliver_package:after"
        cells += [
            _kill(t, "outbound", "deliver", point, "uploaded"),
            _kill(t, "outbound", "deliver", point, "uploaded", NEW_RUN),
            _kill(t, "outbound", "receipt", "feeds.tasks:keep_receipt:before", "fetched_not_kept"),
            Cell(t, "outbound", "receipt", DOWN),
            Cell(t, "outbound", "receipt", RESET, "response"),
            Cell(t, "outbound", "receipt", RESTARTED),  # restarted while the package waits in the inbox
            Cell(t, "outbound", "receipt", DISK),  # the intake cannot store it: it waits, tried each pass
            Cell(t, "outbound", "receipt", CRASH, point="partners.store:RegistryStore.store_package:before"),
        ]
    cells += [
        _kill(t, "outbound", "verify", "feeds.outbound:record_receipt:after", "recorded_not_returned"),
        Cell(t, "outbound", "verify", DB),  # the receipt's ledger entry
        _kill(t, "outbound", "advance", "feeds.outbound:move_checkpoint:after", "moved_not_returned"),
        Cell(t, "outbound", "advance", DB),  # the checkpoint's move
        # inbound
        _kill(t, "inbound", "fetch", "feeds.inbound:fetch:after", "downloaded_not_returned"),
        Cell(t, "inbound", "fetch", DOWN),
        Cell(t, "inbound", "fetch", RESET, "response"),  # the package's download cut
        Cell(t, "inbound", "fetch", DB, db_at=("query", 1)),
        _kill(t, "inbound", "verify", "feeds.inbound:_plain_payload:after", "decrypted_not_returned"),
        Cell(t, "inbound", "verify", DB, db_at=("query", 1)),
        _kill(t, "inbound", "validate", "validation.quarantine:QuarantineStore.add:after", "mid_quarantine"),
        Cell(t, "inbound", "validate", DB, db_at=("commit", 2)),
        _kill(t, "inbound", "reconcile", "validation.reconciliation:write_mismatch_csv:before", "links_written"),
        Cell(t, "inbound", "reconcile", DB, db_at=("commit", 2)),
        _kill(t, "inbound", "acknowledge", "feeds.inbound:_send_receipt:after", "sent_not_recorded"),
        _kill(t, "inbound", "acknowledge", "feeds.inbound:_send_receipt:after", "sent_not_recorded", NEW_RUN),
        _kill(t, "inbound", "acknowledge", "feeds.inbound:acknowledge:after", "recorded_not_returned"),
        Cell(t, "inbound", "acknowledge", DOWN),
        Cell(t, "inbound", "acknowledge", RESET, "request"),
        Cell(t, "inbound", "acknowledge", RESTARTED),
        Cell(t, "inbound", "acknowledge", DISK),
        Cell(t, "inbound", "acknowledge", CRASH, point="partners.store:RegistryStore.store_acknowledgement:before"),
        Cell(t, "inbound", "acknowledge", DB),  # sent; the feed's move and the ledger entry in one transaction
    ]
    if http:
        cells.append(Cell(t, "inbound", "acknowledge", RESET, "response"))  # kept; the answer cut
    if transport == "soap":
        cells.append(Cell(t, "inbound", "fetch", DISK))  # every SOAP request is spooled to the partner's disk
    return cells


CELLS: list[Cell] = [cell for transport in TRANSPORTS for cell in _cells_of(transport)]


def matrix_table(cells: list[Cell] = CELLS) -> str:
    """The matrix as docs/reliability.md prints it: a row per step, a column per fault, in each the number of cells
    for REST / SOAP / SFTP."""
    counts = Counter((c.direction, c.step, c.fault, c.transport) for c in cells)
    lines = ["| direction | step | " + " | ".join(f"`{fault}`" for fault in FAULTS) + " |",
             "|---|---|" + "---|" * len(FAULTS)]  # fmt: skip
    for direction, step in STEPS:
        row = []
        for fault in FAULTS:
            numbers = [counts[direction, step, fault, transport] for transport in TRANSPORTS]
            row.append(" / ".join(map(str, numbers)) if any(numbers) else "–")
        lines.append(f"| {direction} | {step} | " + " | ".join(row) + " |")
    totals = Counter(c.transport for c in cells)
    lines.append("")
    lines.append("Scenarios: " + ", ".join(f"{t.upper()} {totals[t]}" for t in TRANSPORTS) + f"; {len(cells)} in all.")
    return "\n".join(lines)


# -- a private PostgreSQL server -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivatePostgres:
    """A PostgreSQL server of the matrix's own, made from the installed binaries (``initdb``, ``pg_ctl``) in a
    temporary folder and listening on a free loopback port, so that restarting it disturbs no other test. Run as
    the ``postgres`` user when this process is root (``initdb`` refuses root)."""

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
        pg_ctl = found[-1] if found else shutil.which("pg_ctl")
        if pg_ctl is None:
            pytest.fail("the fault matrix needs PostgreSQL's server binaries (initdb, pg_ctl): install postgresql",
                        pytrace=False)  # fmt: skip
        self.bin = Path(pg_ctl).parent
        self.root = Path(tempfile.mkdtemp(prefix="lienthong-matrix-pg-"))
        self.owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.owner:
            shutil.chown(self.root, "postgres")
        self.port = _free_port()
        self.restarts = 0
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, program: str, *arguments) -> None:
        command = [*self.owner, str(self.bin / program), *map(str, arguments)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(map(str, arguments))}: {done.stderr.strip()[-2000:]}")

    def _ctl(self, *arguments: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-o", options, *arguments)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        """Fast shutdown (open transactions are aborted, connections closed), then up again."""
        self._ctl("-m", "fast", "restart")
        self.restarts += 1

    def create_database(self, name: str) -> str:
        admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                              isolation_level="AUTOCOMMIT")  # fmt: skip
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._ctl("-m", "immediate", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def database_restart_at(postgres: PrivatePostgres, at: tuple[str, int]) -> Iterator[list]:
    """Restart ``postgres`` just before the n-th commit (``("commit", n)``) or query (``("query", n)``) sent to it
    in the block; the list it yields holds True once it has."""
    kind, nth = at
    name = "commit" if kind == "commit" else "before_cursor_execute"
    seen, fired = [0], []

    def restart(connection, *_arguments) -> None:
        if fired or connection.engine.url.port != postgres.port:
            return
        seen[0] += 1
        if seen[0] == nth:
            fired.append(True)
            postgres.restart()

    event.listen(Engine, name, restart)
    try:
        yield fired
    finally:
        event.remove(Engine, name, restart)


# -- the partners' disks -------------------------------------------------------------------------------------------


class PartnerDisks:
    """Each partner's state folder on a tmpfs of its own (``mount -t tmpfs``, as root), so that it can be filled
    until writes fail with ENOSPC. Where mounting is not possible, ``unavailable`` says why (the full-disk cells are
    then skipped with that reason; CI runs as root)."""

    SIZE = "64m"
    FILLER = ".disk-filler"

    def __init__(self, folder: Path, partners: tuple[str, ...]) -> None:
        self.mounted: dict[str, Path] = {}
        self.unavailable: str | None = None
        for partner in partners:
            target = folder / partner
            target.mkdir(parents=True, exist_ok=True)
            try:
                done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.SIZE},mode=0700", "tmpfs",
                                       str(target)], capture_output=True, text=True, timeout=60)  # fmt: skip
                problem = done.stderr.strip() if done.returncode else None
            except OSError as error:
                problem = str(error)
            if problem is not None:
                self.unavailable = f"no tmpfs can be mounted for a partner's state ({problem}); run as root"
                break
            self.mounted[partner] = target

    def fill(self, partner: str) -> int:
        """Write a file into the partner's folder until the file system has no room left; its size."""
        if self.unavailable:
            pytest.skip(self.unavailable)
        filler = self.mounted[partner] / self.FILLER
        written = 0
        with filler.open("wb", buffering=0) as handle:
            for block in (1 << 20, 4096, 1):
                chunk = b"\0" * block
                while True:
                    try:
                        written += handle.write(chunk)
                    except OSError as error:
                        if error.errno != errno.ENOSPC:
                            raise
                        break
        return written

    def free(self, partner: str) -> None:
        (self.mounted[partner] / self.FILLER).unlink(missing_ok=True)

    def close(self) -> None:
        for target in self.mounted.values():
            if subprocess.run(["umount", str(target)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(target)], capture_output=True)
        self.mounted.clear()


# -- a loopback TCP proxy that cuts a request in the middle of its body --------------------------------------------


class CuttingProxy:
    """A loopback TCP proxy in front of a partner's port. Armed with ``cut_after(n)``, it cuts the next connection
    whose client sends more than ``n`` bytes: it forwards the first ``n``, then resets the client's side (RST) and
    closes the partner's, so that the partner sees its client gone in the middle of the request."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self._limit: int | None = None
        self._sent: dict[int, int] = {}  # connection (since armed, the cut one left out) → bytes its client sent
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

    def cut_after(self, limit: int) -> None:
        with self._lock:
            self._limit = limit
            self._sent.clear()

    @property
    def sent(self) -> list[int]:
        """How many bytes the client sent on each connection since the proxy was armed, the one cut left out."""
        with self._lock:
            return list(self._sent.values())

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        sent, key = 0, id(client)
        try:
            while data := client.recv(65536):
                with self._lock:
                    limit = self._limit
                    if limit is not None and sent + len(data) > limit:
                        self._limit, self.cuts = None, self.cuts + 1
                        self._sent.pop(key, None)
                    else:
                        limit = None
                        sent += len(data)
                        self._sent[key] = sent
                if limit is not None:
                    upstream.sendall(data[: limit - sent])
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                    _close(client, upstream)
                    return
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)
        except OSError:
            _close(client, upstream)

    @staticmethod
    def _answers(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
            client.shutdown(socket.SHUT_WR)
        except OSError:
            _close(upstream, client)

    def close(self) -> None:
        self.listener.close()
        _close(*self._sockets)


def _base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _close(*ends: socket.socket) -> None:
    for end in ends:
        with contextlib.suppress(OSError):
            end.close()


# -- processes: a killed task, a crashing partner -------------------------------------------------------------------

_PRELOAD = ["tests.feeds.fault_matrix", "feeds.outbound", "feeds.inbound", "validation.runner", "validation.suites",
            "validation.quarantine", "validation.reconciliation", "connectors.rest", "connectors.soap",
            "connectors.sftp", "connectors.sensors", "partners.sandbox"]  # fmt: skip
_processes: list = []


def processes():
    """A forkserver with the feeds, the connectors and the partners imported once: a task or a partner forked from
    it starts in milliseconds instead of the five seconds its imports take."""
    if not _processes:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        _processes.append(context)
    return _processes[0]


def _child(env: dict[str, str], log: str) -> None:
    os.environ.update(env)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)


def _feed_process(env: dict[str, str], log: str, direction: str, name: str, xcom_file: str, kill: str) -> None:
    """A feed's tasks in order, in a process that SIGKILLs itself at ``kill``."""
    _child(env, log)
    feed_steps.kill_at(kill)
    feed_steps.run_feed(name, {}, Path(xcom_file), direction)


def _partner_process(env: dict[str, str], log: str, state_dir: str, pki_dir: str, name: str, port: int, kill: str,
                     ready) -> None:  # fmt: skip
    """One partner served from its state folder on ``port``, in a process that SIGKILLs itself at ``kill``."""
    _child(env, log)
    feed_steps.kill_at(kill)
    sandbox = Sandbox(Path(state_dir), PkiDirectory(Path(pki_dir)), PASSWORD, only=(name,))
    start_on(sandbox.partners[name], port)
    ready.send("serving")
    ready.close()
    threading.Event().wait()


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


# -- the world -----------------------------------------------------------------------------------------------------


@dataclass
class MatrixWorld(ExchangeWorld):
    """The exchange world of ``tests.partners.fixtures`` on a private PostgreSQL server, the partners' state on
    tmpfs mounts, with the machinery to cause the faults."""

    root: Path = Path()
    postgres: PrivatePostgres | None = None
    disks: PartnerDisks | None = None
    pki: PkiDirectory | None = None
    day: int = 0
    proxies: dict[str, CuttingProxy] = field(default_factory=dict)
    children: list = field(default_factory=list)  # the processes forked for the cells
    links: dict[str, set] = field(default_factory=dict)  # the registry links each partner's publications make

    def end_children(self) -> None:
        """Kill, by their ids, the processes forked for a cell that are still running (a cell that failed midway)."""
        for child in self.children:
            if child.is_alive():
                child.kill()
            child.join()
        self.children.clear()

    def close(self) -> None:
        self.end_children()
        for proxy in self.proxies.values():
            proxy.close()
        if self.sandbox is not None:
            self.sandbox.stop()
        if self.engine is not None:
            self.engine.dispose()
        if self.disks is not None:
            self.disks.close()
        if self.postgres is not None:
            self.postgres.close()

    def partner(self, name: str):
        return self.sandbox.partners[name]

    def partners_up(self) -> None:
        """Whatever a cell left (a fault planned and not taken, a disk full, a server or an intake stopped): each
        partner serving again, for the next cell."""
        self.end_children()
        for name, partner in self.sandbox.partners.items():
            partner.faults.clear()
            if name in self.disks.mounted:
                self.disks.free(name)
            partner.start()
            if hasattr(partner, "watcher"):
                partner.watcher.start()

    def proxy(self, partner: str) -> CuttingProxy:
        if partner not in self.proxies:
            self.proxies[partner] = CuttingProxy(self.partner(partner).endpoint()["port"])
        return self.proxies[partner]

    @contextlib.contextmanager
    def through_proxy(self, partner: str) -> Iterator[CuttingProxy]:
        """The partner's Airflow connections pointed at its cutting proxy for the block."""
        proxy = self.proxy(partner)
        port = str(self.partner(partner).endpoint()["port"])
        saved = {}
        for conn_id in connection_ids(partner):
            variable = f"AIRFLOW_CONN_{conn_id.upper()}"
            saved[variable] = os.environ[variable]
            document = json.loads(saved[variable])
            document["port"] = proxy.port
            if "token_url" in document["extra"]:
                document["extra"]["token_url"] = document["extra"]["token_url"].replace(f":{port}/", f":{proxy.port}/")
            os.environ[variable] = json.dumps(document)
        try:
            yield proxy
        finally:
            os.environ.update(saved)

    def run_process(self, target: Callable, *arguments, name: str):
        """Start ``target(env, log, *arguments)`` in a process forked from the process server."""
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        process = processes().Process(target=target, args=(dict(self.env), str(log), *arguments), name=name)
        process.start()
        process.log = log
        self.children.append(process)
        return process

    def killed_feed(self, cell: Cell, xcom_file: Path) -> dict:
        """The cell's feed from its first step in a process killed at the cell's point; the XComs of the tasks that
        finished (none for a new DAG run)."""
        process = self.run_process(_feed_process, cell.direction, cell.agreement, str(xcom_file), cell.point,
                                   name=cell.id)  # fmt: skip
        process.join(300)
        if process.is_alive():
            process.kill()
            process.join()
        assert process.exitcode == -signal.SIGKILL, f"{cell.point}: exit {process.exitcode}\n{_log_tail(process.log)}"
        if cell.rerun == NEW_RUN or not xcom_file.exists():
            return {}
        return json.loads(xcom_file.read_text(encoding="utf-8"))

    def crashing_partner(self, cell: Cell):
        """The cell's partner served by a process of its own that dies at the cell's point (the in-process server
        is closed first); returns the process once it serves."""
        partner = self.partner(cell.partner)
        port = partner.endpoint()["port"]
        partner.close()
        reader, writer = processes().Pipe(duplex=False)
        process = self.run_process(_partner_process, str(self.sandbox.state_dir), str(self.pki.path), cell.partner,
                                   port, cell.point, writer, name=f"{cell.id}-partner")  # fmt: skip
        writer.close()
        if not reader.poll(120):
            process.kill()
            raise AssertionError(f"the partner process did not start\n{_log_tail(process.log)}")
        reader.recv()
        return process

    @staticmethod
    def crashed(process, point: str) -> None:
        process.join(120)
        if process.is_alive():
            process.kill()
            process.join()
        assert process.exitcode == -signal.SIGKILL, f"the partner did not die at {point}\n{_log_tail(process.log)}"

    # -- days ------------------------------------------------------------------------------------------------------

    def next_day(self) -> None:
        self.day += 1
        self.new_day(self.day, events=25)

    def next_publication(self, cell: Cell) -> int:
        """The sequence of the package the agreement's inbound feed takes next, published if it is not yet."""
        feed = inbound_feed(load_agreements()[cell.agreement])
        wanted = last_received(self.engine, cell.agreement) + 1
        partner = self.partner(cell.partner)
        if not any(sequence_of(feed, path.name) == wanted for path in partner.published()):
            partner.publish(cell.agreement)
        assert any(sequence_of(feed, path.name) == wanted for path in partner.published())
        return wanted


def make_world(root: Path, pki: PkiDirectory, seed: int = 41, citizens: int = 300) -> MatrixWorld:
    """The world: a private PostgreSQL server with the population (few defects: a small window with a few held
    rows passes the agreement's limit, tested elsewhere) and a day of life events, the three partners seeded from it
    and running with their state on tmpfs mounts, and the environment the feeds read. Hooks do not retry: each
    fault fails the task, and the task's retry is the recovery."""
    world = MatrixWorld(var=root / "var", engine=None, sandbox=None, env={}, root=root, pki=pki)
    try:
        world.postgres = PrivatePostgres()
        world.postgres.start()
        url = world.postgres.create_database("lienthong")
        world.disks = PartnerDisks(world.var / "partners", PARTNERS)
        world.engine = create_population_engine(url)
        upgrade(world.engine)
        generate(world.engine, citizens, seed, 0.003)
        DaySimulation(session_factory(world.engine), seed, date(2026, 7, 2)).run(citizens // 3)
        world.sandbox = Sandbox(world.var / "partners", pki, PASSWORD, only=PARTNERS)
        world.sandbox.seed(list(citizens_from(world.engine)), seed)
        world.sandbox.start()
        for conn_id, document in world.sandbox.connections().items():
            document["extra"]["retries"] = 0
            if document["conn_type"] == "lienthong_sftp":  # half a package is several write requests
                document["extra"]["write_chunk"] = 4096
            world.env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(document)
        world.env |= {"LIENTHONG_DB_URL": url, "LIENTHONG_VAR_DIR": str(world.var),
                      "LIENTHONG_PKI_DIR": str(pki.path), "LIENTHONG_KEY_PASSWORD": PASSWORD.decode(),
                      "LIENTHONG_DISCLOSURE_KEY": "fault matrix disclosure key"}  # fmt: skip
    except BaseException:
        world.close()
        raise
    return world


# -- what the population database and the partners hold -------------------------------------------------------------


def last_received(engine: Engine, agreement: str) -> int:
    with session_factory(engine)() as session:
        received = state(session, RECEIVED, inbound_feed(load_agreements()[agreement]))
        return received.last_sequence if received else 0


def ledger_kinds(engine: Engine, package_id: str | None = None) -> Counter[str]:
    """The ledger's entries by kind (of one package, if given), after checking the chain."""
    with session_factory(engine)() as session:
        entries = list(ledger.entries(session))
        assert ledger.verify(session).entries == len(entries)
    return Counter(e.kind for e in entries if package_id is None or e.package_id == package_id)


def last_validation_run(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(ValidationRun.id).order_by(ValidationRun.id.desc()).limit(1)) or 0


def quarantined_since(engine: Engine, agreement: str, after_run: int) -> set[str]:
    """The personal IDs the agreement's validation runs after ``after_run`` held back."""
    with session_factory(engine)() as session:
        runs = select(ValidationRun.id).where(ValidationRun.source.like(f"{agreement}:%"), ValidationRun.id > after_run)
        return set(session.scalars(select(QuarantinedRecord.personal_id).where(QuarantinedRecord.run_id.in_(runs))))


def registry_links(engine: Engine, partner: str) -> list[tuple[str, int]]:
    with session_factory(engine)() as session:
        query = select(RegistryLink.identifier, RegistryLink.citizen_id).where(RegistryLink.partner == partner)
        return [tuple(row) for row in session.execute(query)]


def held_personal_ids(world: MatrixWorld, cell: Cell) -> Counter[str]:
    return Counter(record["personal_id"] for record in world.records_held(cell.partner, cell.agreement))


def head(engine: Engine) -> int:
    with session_factory(engine)() as session:
        return last_sequence(session)


def checkpoint_of(engine: Engine, agreement: str) -> tuple[int, object]:
    checkpoint = read_checkpoint(engine, agreement)
    return checkpoint.last_change_sequence, checkpoint.pending_package


# -- a cell, run -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def said_by(logger: str, words: str) -> Iterator[list[str]]:
    """The messages of ``logger`` holding ``words`` while the block runs (a list that fills as they come)."""
    said: list[str] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if words in (message := record.getMessage()):
                said.append(message)

    listener = Listener(logging.INFO)
    logging.getLogger(logger).addHandler(listener)
    try:
        yield said
    finally:
        logging.getLogger(logger).removeHandler(listener)


def failed(attempt: Callable[[], object], what: str) -> BaseException:
    """Run a task's attempt that must fail with an error Airflow retries (not one ``feeds.is_final`` calls final)."""
    try:
        attempt()
    except Exception as error:  # noqa: BLE001 - any failure of the task; checked below
        assert not feeds.is_final(error), f"{what}: the task failed for good: {type(error).__name__}: {error}"
        return error
    raise AssertionError(f"{what}: the task did not fail")


class CellRun:
    """One cell: the day's window (outbound) or the partner's next publication (inbound), the feed's steps with the
    fault caused at the cell's step and recovered from, then the checks."""

    def __init__(self, world: MatrixWorld, cell: Cell, tmp_path: Path) -> None:
        self.world, self.cell, self.tmp_path = world, cell, tmp_path
        self.run_step = feed_steps.step_runner(cell.direction)

    @property
    def partner(self):
        return self.world.partner(self.cell.partner)

    def attempt(self, step: str, xcoms: dict) -> Callable[[], object]:
        return lambda: self.run_step(step, self.cell.agreement, xcoms)

    def run(self) -> None:
        if self.cell.direction == "outbound":
            self.outbound()
        else:
            self.inbound()

    def steps(self) -> dict:
        cell = self.cell
        if cell.fault == KILL:
            xcoms = self.world.killed_feed(cell, self.tmp_path / "xcoms.json")
            return feed_steps.run_feed(cell.agreement, xcoms, direction=cell.direction)
        xcoms: dict = {}
        for step in feed_steps.STEPS[cell.direction]:
            self.before(step)
            if step == cell.step:
                xcoms[step] = self.faulty(step, xcoms)
            else:
                xcoms[step] = self.attempt(step, xcoms)()
        return xcoms

    # -- the faults -------------------------------------------------------------------------------------------------

    def before(self, step: str) -> None:
        """SFTP: a package or a receipt that must wait for the partner's intake is uploaded while the intake is not
        running, so that the fault meets it there."""
        cell = self.cell
        if cell.transport != "sftp" or step != {"outbound": "deliver", "inbound": "acknowledge"}[cell.direction]:
            return
        if (cell.step, cell.fault) in (("receipt", RESTARTED), ("receipt", DISK), ("receipt", CRASH),
                                       ("acknowledge", RESTARTED), ("acknowledge", CRASH)):  # fmt: skip
            self.partner.watcher.stop()

    def faulty(self, step: str, xcoms: dict):
        cell, world = self.cell, self.world
        attempt = self.attempt(step, xcoms)
        if cell.fault == DOWN:
            self.partner.stop()
            failed(attempt, "a step against a partner that is down")
            self.partner.start()
        elif cell.fault == RESET:
            return self.reset(step, xcoms)
        elif cell.fault == DISK:
            return self.disk_full(step, xcoms)
        elif cell.fault == DB:
            with database_restart_at(world.postgres, cell.db_at) as restarted:
                error = failed(attempt, f"a step whose database restarts at {cell.db_at}")
            assert restarted, f"the database was not restarted at {cell.db_at}: {error!r}"
        elif cell.fault == RESTARTED:
            return self.restarted(step, xcoms)
        elif cell.fault == CRASH:
            return self.intake_crash(step, xcoms)
        else:
            raise ValueError(cell.fault)
        return attempt()

    def http_operation(self, step: str) -> str:
        """The partner's operation for the step's request, as fault plans name them."""
        rest = {"deliver": "packages", "fetch": "outbox_file", "acknowledge": "outbox_receipt"}
        soap = {"deliver": "SubmitPackage", "fetch": "FetchPackage", "acknowledge": "SubmitReceipt"}
        return (rest if self.cell.transport == "rest" else soap)[step]

    def reset(self, step: str, xcoms: dict):
        cell, attempt = self.cell, self.attempt(step, xcoms)
        if cell.transport == "sftp":
            if step == "deliver":  # the package's upload, half-way
                fault = Fault("disconnect", "upload", after_bytes=Path(xcoms["package"]["path"]).stat().st_size // 2)
            elif step == "acknowledge":  # the receipt's signature file, as it is written
                fault = Fault("disconnect", "upload", after_bytes=512)
            else:  # the package's (fetch) or the receipt's (receipt) download
                fault = Fault("disconnect", "download", after_bytes=0)
            self.partner.faults.add(fault)
            failed(attempt, "an SFTP transfer cut")
            assert self.partner.faults.fired[f"disconnect:{fault.operation}"] == 1
        elif cell.variant == "request":
            with self.world.through_proxy(cell.partner) as proxy:
                cut, cuts = self.request_cut(step, xcoms), proxy.cuts
                proxy.cut_after(cut)
                stored = self.partner.store.package_count(), len(self.partner.store.acknowledgements())
                failed(attempt, "a request cut in the middle of its body")
                assert proxy.cuts == cuts + 1
                # cut before the partner had all of it: nothing stored
                assert (self.partner.store.package_count(), len(self.partner.store.acknowledgements())) == stored
                done = attempt()
                # the retry sent the same request whole: the cut came after the start of its payload, before its end
                whole = max(proxy.sent)  # the retry has its answer: its request went whole
                assert whole - self.payload_bytes(step, xcoms, done) < cut < whole, (cut, whole)
                return done
        else:
            operation = self.http_operation(step)
            self.partner.faults.add(Fault("reset", operation))
            failed(attempt, "an answer cut in the middle of its body")
            assert self.partner.faults.fired[f"reset:{operation}"] == 1
        return attempt()

    def request_cut(self, step: str, xcoms: dict) -> int:
        """Where to cut the step's request: after what comes before its payload on the connection (the TLS handshake,
        an OAuth2 token request, the headers, a WS-Security header: 1.4 to 2.3 KB here), taken as 2 KiB, and half the
        payload (a receipt and its signature in base64 are about 2.6 KB)."""
        payload = self.payload_bytes(step, xcoms) if step == "deliver" else 2048
        return 2048 + payload // 2

    def payload_bytes(self, step: str, xcoms: dict, done: object = None) -> int:
        """The bytes at the end of the step's request body that are certainly payload: the zip (REST), or the zip in
        base64 (SOAP); for a receipt, the receipt and its signature in base64."""
        if step == "deliver":
            size = Path(xcoms["package"]["path"]).stat().st_size
            return size if self.cell.transport == "rest" else _base64_length(size)
        folder = Path(done["receipt_dir"])
        return sum(_base64_length(path.stat().st_size) for path in folder.iterdir())

    def disk_full(self, step: str, xcoms: dict):
        disks, attempt = self.world.disks, self.attempt(step, xcoms)
        if (self.cell.direction, step) == ("outbound", "receipt"):
            return self.receipt_waits_for_room(xcoms)
        # REST and SOAP partners answer their own full disk with 503 / soap:Server.Busy and one line, no traceback
        with said_by("", "cannot store now") as said:  # the body reader's line, or the SOAP server's
            disks.fill(self.cell.partner)
            try:
                failed(attempt, "a step against a partner whose disk is full")
            finally:
                disks.free(self.cell.partner)
        assert said or self.cell.transport == "sftp", "the partner did not say it cannot store now"
        return attempt()

    def receipt_waits_for_room(self, xcoms: dict):
        """SFTP: the package waits in the inbox; the partner's intake runs with its disk full and cannot store it.
        The package is not at fault: it stays taken and is tried again each pass, so the sensor only waits longer,
        and once there is room again the package is stored, once, and its receipt written."""
        cell, partner, disks = self.cell, self.partner, self.world.disks
        name = Path(xcoms["package"]["path"]).name
        with said_by("lienthong.partners", f"{name!r} waits") as waiting:
            disks.fill(cell.partner)
            try:
                partner.watcher.start()
                wait_for(lambda: waiting, "the intake failing for want of room")
            finally:
                disks.free(cell.partner)
        return self.attempt("receipt", xcoms)()

    def restarted(self, step: str, xcoms: dict):
        cell, world, attempt = self.cell, self.world, self.attempt(step, xcoms)
        if cell.transport == "sftp":  # the upload waits in the folder while the partner restarts
            if step == "acknowledge":
                done = attempt()
                world.sandbox.restart(cell.partner)
                return done
            world.sandbox.restart(cell.partner)
            return attempt()
        # the partner did the work and answered, the answer was cut, and the partner restarted before the retry:
        # the retry meets a server that kept nothing in memory (no Idempotency-Key answers, no tokens, no nonces)
        operation = self.http_operation(step)
        self.partner.faults.add(Fault("reset", operation))
        failed(attempt, "an answer cut before the partner restarts")
        world.sandbox.restart(cell.partner)
        return attempt()

    def intake_crash(self, step: str, xcoms: dict):
        cell, world, attempt = self.cell, self.world, self.attempt(step, xcoms)
        if cell.transport == "sftp" and step == "acknowledge":  # the receipt is uploaded; the intake takes it later
            done = attempt()
            world.crashed(world.crashing_partner(cell), cell.point)
            world.sandbox.restart(cell.partner)
            return done
        process = world.crashing_partner(cell)
        if cell.transport == "sftp":  # the package waits in the inbox: the partner dies storing it, at once
            world.crashed(process, cell.point)
            failed(attempt, "the receipt's wait against a crashed partner")
        else:
            failed(attempt, "a step against a partner that crashes while storing")
            world.crashed(process, cell.point)
        world.sandbox.restart(cell.partner)
        return attempt()

    # -- the checks ---------------------------------------------------------------------------------------------------

    def outbound(self) -> None:
        cell, world = self.cell, self.world
        if checkpoint_of(world.engine, cell.agreement)[1] is not None:  # left by a cell that failed: finish it first
            feed_steps.run_feed(cell.agreement, {})
        after = checkpoint_of(world.engine, cell.agreement)[0]
        world.next_day()
        up_to = head(world.engine)
        changed = changed_personal_ids(world.engine, after, up_to)
        assert changed, "each day's window has changes"
        held, kinds = held_personal_ids(world, cell), ledger_kinds(world.engine)
        packages, runs = self.partner.store.package_count(), last_validation_run(world.engine)

        xcoms = self.steps()

        assert xcoms["extract"]["up_to"] == up_to and xcoms["verify"]["status"] == "accepted"
        expected = held + Counter(changed - quarantined_since(world.engine, cell.agreement, runs))
        now = held_personal_ids(world, cell)
        assert now == expected, f"the partner holds {now - expected} too many, misses {expected - now}"
        assert checkpoint_of(world.engine, cell.agreement) == (up_to, None)
        added = ledger_kinds(world.engine) - kinds
        assert added == {"package_sent": 1, "receipt_received": 1}, added
        assert self.partner.store.package_count() == packages + 1
        package_id = xcoms["package"]["package_id"]
        assert ledger_kinds(self.partner.store.engine, package_id) == {"package_received": 1, "receipt_sent": 1}

    def inbound(self) -> None:
        cell, world = self.cell, self.world
        sequence = world.next_publication(cell)
        kinds = ledger_kinds(world.engine)

        xcoms = self.steps()

        package_id = xcoms["verify"]["package_id"]
        assert xcoms["verify"]["sequence"] == sequence and xcoms["acknowledge"]["status"] == "accepted"
        assert last_received(world.engine, cell.agreement) == sequence
        added = ledger_kinds(world.engine) - kinds
        assert added == {"package_received": 1, "receipt_sent": 1}, added
        links = registry_links(world.engine, cell.partner)
        assert len(links) == len(set(links)) == xcoms["reconcile"]["links_written"] > 0
        assert world.links.setdefault(cell.partner, set(links)) == set(links), "the same registry, the same links"
        partner = self.partner  # the partner kept our receipt once, with one ledger entry (SFTP: once its intake has
        # taken it from the folder)
        wait_for(lambda: partner.store.acknowledgements(package_id), f"the receipt kept by {cell.partner}")
        assert len(partner.store.acknowledgements(package_id)) == 1
        assert ledger_kinds(partner.store.engine, package_id) == {"package_sent": 1, "receipt_received": 1}
