"""The operators' page data: per feed its checkpoint, last package and last receipt (``feeds.overview``'s figures
and the ledger's last receipt), the failed tasks of the last 24 hours with a link to each one's log in Airflow's
UI, and whether each partner answers.

The failures come from Airflow's metadata database, through Airflow's own models (the API server that serves the
plugin has that database); where it cannot be read, the page says so and shows the rest. A partner is asked with
its hook's ``test_connection`` in a small thread pool: the page waits ``CHECK_TIMEOUT_S`` at most, a partner
that has not answered by then shows as down, and an answer is kept ``CHECK_KEPT_S`` so that reloading the page
does not pile up checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from exchange.agreements import Agreement
from feeds.workbench.trends import age_seconds

CHECK_TIMEOUT_S = 2.0  # a partner on loopback answers its health resource in a few ms; 2 s is down for a page
CHECK_KEPT_S = 30.0  # a page reloaded within 30 s shows the same answers
FAILURE_WINDOW = timedelta(hours=24)
FAILURES_SHOWN = 100
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class PartnerState:
    up: bool
    message: str
    checked_at: datetime


def hook_check(agreement: Agreement) -> tuple[bool, str]:
    """The agreement's partner reached as its DAGs reach it: its connection's hook's ``test_connection``."""
    from connectors.transport import partner_hook

    with partner_hook(agreement.transport, agreement.connection_id) as hook:
        return hook.test_connection()


class PartnerChecks:
    """Bounded connection checks: at most one in flight per agreement, answers kept ``kept_s`` seconds."""

    def __init__(
        self,
        check: Callable[[Agreement], tuple[bool, str]] = hook_check,
        timeout_s: float = CHECK_TIMEOUT_S,
        kept_s: float = CHECK_KEPT_S,
        workers: int = 4,
    ):
        self.check, self.timeout_s, self.kept_s = check, timeout_s, kept_s
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lienthong-partner-check")
        self._lock = threading.Lock()
        self._running: dict[str, Future] = {}
        self._known: dict[str, tuple[float, PartnerState]] = {}

    def _ask(self, agreement: Agreement) -> PartnerState:
        try:
            up, message = self.check(agreement)
        except Exception as error:  # noqa: BLE001 - no connection, a refused one: the partner is down, say why
            up, message = False, f"{type(error).__name__}: {error}"
        return PartnerState(bool(up), str(message)[:MESSAGE_CHARS], datetime.now(UTC))

    def states(self, agreements: Iterable[Agreement]) -> dict[str, PartnerState]:
        """Each agreement's partner, up or down, within ``timeout_s`` whatever the partners do."""
        now = time.monotonic()
        asked: dict[str, Future] = {}
        found: dict[str, PartnerState] = {}
        with self._lock:
            for agreement in agreements:
                kept = self._known.get(agreement.name)
                if kept is not None and now - kept[0] < self.kept_s:
                    found[agreement.name] = kept[1]
                    continue
                running = self._running.get(agreement.name)
                if running is None or running.done():
                    running = self._pool.submit(self._ask, agreement)
                    self._running[agreement.name] = running
                asked[agreement.name] = running
        wait(asked.values(), timeout=self.timeout_s)
        with self._lock:
            for name, future in asked.items():
                if future.done():
                    found[name] = future.result()
                    self._known[name] = (time.monotonic(), found[name])
                else:
                    found[name] = PartnerState(False, f"no answer within {self.timeout_s:g} s", datetime.now(UTC))
        return found


_checks: PartnerChecks | None = None


def partner_checks() -> PartnerChecks:
    """The process's checks (one pool, one memory of answers)."""
    global _checks
    if _checks is None:
        _checks = PartnerChecks()
    return _checks


# -- failures from Airflow's metadata database -------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    ended_at: datetime | None
    agreement: str | None  # the feed the DAG is for (its id starts with the agreement's name)

    def log_path(self) -> str:
        """The task instance's page in Airflow's UI, relative to its base URL (its log is the page's first tab)."""
        dag, run, task = (quote(part, safe="") for part in (self.dag_id, self.run_id, self.task_id))
        path = f"dags/{dag}/runs/{run}/tasks/{task}"
        if self.map_index >= 0:
            path += f"/mapped/{self.map_index}"
        return f"{path}?try_number={self.try_number}"


def airflow_failures(agreements: Iterable[str], since: datetime) -> list[Failure]:
    """Task instances that failed since ``since``, newest first, read with Airflow's models (raises when Airflow's
    metadata database is not there)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    names = set(agreements)
    query = (
        select(
            TaskInstance.dag_id,
            TaskInstance.task_id,
            TaskInstance.run_id,
            TaskInstance.map_index,
            TaskInstance.try_number,
            TaskInstance.end_date,
        )
        .where(
            TaskInstance.state.in_([TaskInstanceState.FAILED, TaskInstanceState.UPSTREAM_FAILED]),
            TaskInstance.end_date >= since,
        )
        .order_by(TaskInstance.end_date.desc())
        .limit(FAILURES_SHOWN)
    )
    with create_session() as session:
        rows = session.execute(query).all()
    return [
        Failure(dag, task, run, index, tries, ended, _feed_of(dag, names))
        for dag, task, run, index, tries, ended in rows
    ]


def _feed_of(dag_id: str, agreements: set[str]) -> str | None:
    """The agreement a DAG is for: its id is ``<agreement>.outbound`` (or ``.snapshot``, ``.inbound``)."""
    agreement = dag_id.rsplit(".", 1)[0]
    return agreement if agreement in agreements else None


# -- the page ----------------------------------------------------------------------------------------------------


@dataclass
class FeedRow:
    agreement: str
    partner: str
    transport: str
    checkpoint: int | None  # the last change delivered (outbound feeds)
    pending_up_to: int | None
    lag: int | None
    last_package: str | None
    last_receipt: object  # feeds.workbench.trends.Receipt or None
    last_receipt_age_s: float | None
    packages_received: int | None  # inbound
    state: PartnerState | None
    failures: list[Failure]


@dataclass
class OperatorsPage:
    feeds: list[FeedRow]
    other_failures: list[Failure]  # of DAGs that are no feed's (the change log, the ledger audit, retention)
    failures_known: bool  # False: Airflow's metadata database could not be read here
    failures_error: str | None
    since: datetime


def operators_page(
    overview,
    receipts: dict,
    states: dict[str, PartnerState],
    failures: list[Failure] | None,
    failures_error: str | None = None,
    now: datetime | None = None,
) -> OperatorsPage:
    """The page from ``feeds.overview``'s figures, the ledger's last receipts, the partners' states and the
    failures (None: they could not be read)."""
    now = now or datetime.now(UTC)
    rows = []
    for item in overview.agreements:
        out, inbound = item.outbound, item.inbound
        receipt = receipts.get(item.agreement)
        rows.append(
            FeedRow(
                item.agreement,
                item.partner,
                item.transport,
                out.last_change_delivered if out else None,
                out.pending_up_to if out else None,
                out.lag if out else None,
                out.last_package_id if out else None,
                receipt,
                age_seconds(receipt.recorded_at if receipt else None, now),
                inbound.packages_received if inbound else None,
                states.get(item.agreement),
                [f for f in failures or [] if f.agreement == item.agreement],
            )
        )
    others = [f for f in failures or [] if f.agreement is None]
    return OperatorsPage(rows, others, failures is not None, failures_error, now - FAILURE_WINDOW)
