"""The exchange DAGs, generated from the sharing agreements (``schemas/agreements/*.yaml``).

Adding a partner on an existing transport takes an agreement file and an Airflow connection: each agreement with an
outbound direction gets ``<agreement>.outbound`` (incremental, when the change log advances, at once again while a
window cut at the agreement's ``max_package_citizens`` left changes waiting, and on the agreement's schedule) and
``<agreement>.snapshot`` (a full snapshot on demand, one mapped task per worker slot, each a share of the
provinces); each agreement with an inbound direction gets ``<agreement>.inbound``. The change log's Asset, which
the outbound DAGs wait on, is watched in the triggerer (``feeds.change_log_events``): a committed life event starts
them within seconds; ``population.change-log`` is the watcher's safety net, announcing every five minutes a head it
missed. ``ledger.audit`` checks the ledger daily and ``lienthong.retention`` deletes expired payloads and staging
files daily (``feeds.retention``). An agreement file that does not load loses only its own DAGs: its error
(``file:line: rule``) is this file's import error in Airflow.

Thin on purpose: every task is one call into ``feeds.tasks`` (or ``feeds.snapshot``, ``feeds.inbound``,
``feeds.audit``); XComs carry references and counts. Tasks that talk to a partner run in the partner's pool. What
differs between transports is the hook's to say (``connectors.base.PartnerHook``), never a transport's name here.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from airflow.sdk import (
    DAG,
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    AssetWatcher,
    CronTriggerTimetable,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from connectors.transport import hook_class
from feeds import tasks as feeds
from feeds.change_log_events import ChangeLogTrigger
from population.log_masking import install_log_masking

install_log_masking()  # no personal ID in the task logs, from the parse on (the plugin's listener again per task)

log = logging.getLogger(__name__)
SIGNATURE_SAMPLE, CERTIFICATE_WARNING_DAYS = 20, 30
# The change log's Asset, watched in the triggerer (``feeds.change_log_events``): a committed life event starts
# the outbound feeds within seconds (PostgreSQL NOTIFY, and a poll for what a notification misses).
CHANGE_LOG = Asset(
    name="population_change_log",
    uri="lienthong://population/change-log",
    watchers=[AssetWatcher(name="population_change_log_advanced", trigger=ChangeLogTrigger())],
)
TIMEZONE = "Asia/Ho_Chi_Minh"
START = datetime(2026, 1, 1, tzinfo=UTC)
RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}


def exchange_dag(**settings) -> DAG:
    """A DAG with what every exchange DAG shares: no catch-up, one run at a time (feeds are sequential), the
    retries with backoff."""
    return DAG(start_date=START, catchup=False, max_active_runs=1, default_args=RETRIES, **settings)


def run_step(step, *args):
    """Run a step; a failure no retry can fix (a blocked dataset, a failed verification, a partner's refusal for
    good) fails the task at once instead of being retried (``feeds.is_final``)."""
    try:
        return step(*args)
    except Exception as error:
        if feeds.is_final(error):
            raise AirflowFailException(f"{type(error).__name__}: {error}") from error
        raise


def on_asset_or_cron(agreement, asset: Asset):
    """Run when the asset has news, and on the agreement's cron (in Viet Nam's time) when it has one."""
    if not agreement.schedule:
        return asset
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(agreement.schedule, timezone=TIMEZONE), assets=asset)


def deliver_and_verify(agreement, sealed, pool: str):
    """Deliver, then verify the receipt: at once when the transport answers the delivery with it; when it comes
    later (an SFTP partner writes it when done), after a deferred wait by the transport's own sensor."""
    name, transport = agreement.name, hook_class(agreement.transport)
    if transport.receipt_comes_later:

        @task(pool=pool)
        def deliver(sealed: dict) -> str:
            run_step(feeds.send, name, sealed)
            return feeds.package_name(sealed)

        deadline = agreement.directions["outbound"].delivery_deadline_hours or 24  # the receipt is due by then
        wait = transport.receipt_sensor(
            task_id="wait_for_receipt",
            conn_id=agreement.connection_id,
            package_name=deliver(sealed),
            pool=pool,
            timeout=timedelta(hours=deadline),
            poke_interval=2.0,
        )

        @task
        def keep_receipt(sealed: dict, receipt: dict) -> str:
            return feeds.keep_receipt(sealed, receipt)

        receipt_dir = keep_receipt(sealed, wait.output)
    else:

        @task(pool=pool)
        def deliver(sealed: dict) -> str:
            return run_step(feeds.send, name, sealed)

        receipt_dir = deliver(sealed)

    @task
    def verify_receipt(sealed: dict, receipt_dir: str) -> dict:
        return run_step(feeds.check_receipt, sealed, receipt_dir)

    return verify_receipt(sealed, receipt_dir)


def selected(rows) -> str:
    """An agreement's row selection in words, for the DAG's documentation (the tests' values stay in the file)."""
    events = [f"events {', '.join(rows.events)}"] if rows.events else []
    return "; ".join([*events, *(f"a test on {test.field}" for test in rows.where)])


def outbound_waiting(agreement) -> Asset:
    """Changes still wait on the agreement's outbound feed after a run closed its window (it was cut at the
    agreement's ``max_package_citizens``): the feed's next run follows at once, no other feed's."""
    return Asset(name=f"{agreement.name}_outbound_waiting", uri=f"lienthong://{agreement.name}/outbound-waiting")


def outbound_window_closed(agreement) -> AssetAlias:
    """What the steps that close an outbound window announce ``outbound_waiting`` through: an alias has an event
    only when the step adds one, an Asset among a task's outlets one at every success."""
    return AssetAlias(name=f"{agreement.name}_outbound_window_closed")


def outbound_dag(agreement) -> DAG:
    name, pool = agreement.name, feeds.partner_pool(agreement.partner)
    direction = agreement.directions["outbound"]
    waiting, closed = outbound_waiting(agreement), outbound_window_closed(agreement)
    schedule = on_asset_or_cron(agreement, CHANGE_LOG | waiting)

    def announce_changes_waiting(outlet_events) -> None:
        """The window is closed: when changes still wait after it, the feed's next run follows at once."""
        if feeds.changes_waiting(name):
            outlet_events[closed].add(waiting)
            log.info("changes still wait after the checkpoint: the next run follows at once")

    with exchange_dag(
        dag_id=f"{name}.outbound",
        description=f"Changes to {agreement.partner}: {agreement.purpose}",
        schedule=schedule,
        tags=["outbound", agreement.partner, agreement.transport],
        doc_md=f"Incremental feed of **{name}** ({direction.dataset} v{direction.schema_version}, "
        f"{agreement.format}) to **{agreement.partner}** over {agreement.transport}: extract the changes after the "
        "checkpoint → validate → minimise → package → deliver → verify the receipt → ledger → checkpoint; a small "
        "window all in the first task (the fast path), a big one a task a step. A window of more than "
        f"{direction.max_package_citizens} changed citizens (the agreement's `max_package_citizens`) is cut there, "
        "and the next run follows at once for the rest."
        + (f" Only the rows its agreement selects ({selected(direction.rows)})." if direction.rows else ""),
    ) as dag:
        # the fast path skips every later step in one go (a branch would skip only the next, and the scheduler
        # would skip the rest a loop at a time: seconds before the run ends and the feed's next run can start)
        @task.short_circuit(pool=pool, outlets=[closed], ignore_downstream_trigger_rules=True)
        def extract(*, outlet_events) -> dict | None:
            """Open the window. A small one goes out here and now, whole (the fast path: one task), and the later
            steps are skipped; a big one is handed on, a task a step from ``validate`` on."""
            window = feeds.open_window(name)
            if feeds.nothing_to_send(window):
                raise AirflowSkipException(f"no change after {window['after']}: nothing to send")
            if feeds.takes_fast_path(window):
                delivered = run_step(feeds.exchange_window, name, window)
                log.info("fast path: package %s delivered and acknowledged", delivered["package_id"])
                announce_changes_waiting(outlet_events)
                return None
            return window

        @task
        def validate(window: dict) -> dict:
            return run_step(feeds.validate_window, name, window)

        @task
        def package(window: dict, checked: dict) -> dict:
            return feeds.seal(name, window, checked)

        @task(outlets=[closed])
        def advance(window: dict, delivery: dict, *, outlet_events) -> bool:
            moved = feeds.close_window(name, window, delivery)
            announce_changes_waiting(outlet_events)
            return moved

        window = extract()
        sealed = package(window, validate(window))
        advance(window, deliver_and_verify(agreement, sealed, pool))
    return dag


def snapshot_dag(agreement) -> DAG:
    name, pool = agreement.name, feeds.partner_pool(agreement.partner)
    with exchange_dag(
        dag_id=f"{name}.snapshot",
        description=f"Full snapshot to {agreement.partner}, on demand",
        schedule=None,
        tags=["snapshot", agreement.partner, agreement.transport],
        doc_md=f"Every citizen to **{agreement.partner}** under **{name}**, the provinces dealt to one mapped "
        "task per worker slot (`LIENTHONG_SNAPSHOT_TASKS`): each validates its provinces' citizens, quarantines "
        "the failing and stages the rest minimised; one package of every province's file is sealed, delivered "
        "and acknowledged, and the feed's checkpoint moves to the change log's head as it was when the snapshot "
        "began.",
    ) as dag:

        @task
        def extract() -> dict:
            return feeds.open_window(name, "full")

        @task
        def shards(window: dict) -> list[dict]:
            return feeds.snapshot_shards(name, window)

        @task(map_index_template="{{ provinces }}")
        def validate_provinces(window: dict, shards: list[dict]) -> list[dict]:
            # the provinces' codes (Airflow keeps 250 characters of a mapped task's name; 35 codes fit)
            get_current_context()["provinces"] = ", ".join(shard["code"] for shard in shards)
            return run_step(feeds.validate_shards, name, window, shards)

        @task(trigger_rule="none_failed")  # no province to validate: the sealed snapshot is resent
        def package(window: dict, results: list[dict]) -> dict:
            return run_step(feeds.seal_snapshot, name, window, list(results or []))

        @task
        def advance(window: dict, delivery: dict) -> bool:
            return feeds.close_window(name, window, delivery)

        window = extract()
        results = validate_provinces.partial(window=window).expand(shards=shards(window))
        sealed = package(window, results)
        advance(window, deliver_and_verify(agreement, sealed, pool))
    return dag


def change_log_dag() -> DAG:
    with exchange_dag(
        dag_id="population.change-log",
        description="The safety net of the change log's watcher: announce a head it has not announced",
        schedule=CronTriggerTimetable("*/5 * * * *", timezone=TIMEZONE),
        tags=["population"],
    ) as dag:

        @task(inlets=[CHANGE_LOG], outlets=[CHANGE_LOG])
        def announce(*, inlet_events, outlet_events) -> int:
            announced = inlet_events[CHANGE_LOG]
            last = announced_head(announced[-1].extra) if len(announced) else 0
            head = feeds.change_log_head()
            if head <= last:
                raise AirflowSkipException(f"the change log is at {head}, announced already")
            outlet_events[CHANGE_LOG].extra = {"head": head}
            return head

        announce()
    return dag


def announced_head(extra: dict) -> int:
    """The head an event of the change log's Asset announced: this DAG's (``head``) or the watcher's (the
    trigger's payload)."""
    return int(extra.get("head") or (extra.get("payload") or {}).get("head") or 0)


def inbound_pending(agreement) -> Asset:
    """Packages the partner published are still waiting on the agreement's inbound feed."""
    return Asset(name=f"{agreement.name}_inbound_waiting", uri=f"lienthong://{agreement.name}/inbound-waiting")


def inbound_dag(agreement) -> DAG:
    name, pool = agreement.name, feeds.partner_pool(agreement.partner)
    direction = agreement.directions["inbound"]
    waiting = inbound_pending(agreement)
    schedule = on_asset_or_cron(agreement, waiting)
    with exchange_dag(
        dag_id=f"{name}.inbound",
        description=f"{agreement.partner}'s {direction.dataset} into the population database",
        schedule=schedule,
        tags=["inbound", agreement.partner, agreement.transport],
        doc_md=f"The packages **{agreement.partner}** publishes on **{name}** ({direction.dataset} "
        f"v{direction.schema_version}), one per run in sequence: fetch → verify → validate → reconcile → registry "
        "links and mismatch report → receipt back. When more are waiting, the run announces it and the next run "
        "follows at once.",
    ) as dag:

        @task(pool=pool)
        def fetch() -> dict:
            fetched = run_step(feeds.fetch_inbound, name)
            if fetched["next"] is None:
                raise AirflowSkipException(f"no new package in {agreement.partner}'s outbox")
            return fetched

        @task
        def verify(fetched: dict) -> dict:
            verified = run_step(feeds.verify_inbound, name, fetched["next"])
            if verified["status"] == "rejected":  # the partner has our signed rejected receipt saying why
                raise AirflowFailException(f"package {verified['name']} rejected: {verified['problem']}")
            if verified["status"] == "already_received":
                raise AirflowSkipException(f"package {verified['name']} was accepted by another run meanwhile")
            return verified

        @task
        def validate(verified: dict) -> dict:
            return run_step(feeds.validate_inbound, name, verified)

        @task
        def reconcile(checked: dict) -> dict:
            return feeds.reconcile_inbound(name, checked)

        @task(pool=pool)
        def acknowledge(verified: dict, reconciled: dict) -> dict:
            return run_step(feeds.acknowledge_inbound, name, verified)

        @task(outlets=[waiting])
        def more_waiting(fetched: dict, acknowledged: dict) -> int:
            if not fetched["waiting"]:
                raise AirflowSkipException("no other package waiting")
            return fetched["waiting"]

        fetched = fetch()
        verified = verify(fetched)
        more_waiting(fetched, acknowledge(verified, reconcile(validate(verified))))
    return dag


def ledger_audit_dag() -> DAG:
    with exchange_dag(
        dag_id="ledger.audit",
        description="Daily: the ledger's chain, its anchors and the heads partners signed in their receipts, a "
        "sample of its signatures, certificates about to expire; then the verified head anchored",
        schedule=CronTriggerTimetable("30 3 * * *", timezone=TIMEZONE),
        tags=["ledger", "audit"],
    ) as dag:

        @task(retries=0)
        def verify_chain() -> dict:
            return run_step(feeds.audit_chain)

        @task(retries=0)
        def verify_signatures(chain: dict) -> dict:
            audit = feeds.audit_signatures(SIGNATURE_SAMPLE)  # the day's sample: a rerun checks the same entries
            if audit["problems"]:
                raise AirflowFailException(f"{len(audit['problems'])} of {audit['checked']} sampled entries fail: "
                                           + "; ".join(audit["problems"]))  # fmt: skip
            return audit

        @task(retries=0)
        def verify_witnesses(chain: dict) -> dict:
            witnessed = feeds.audit_witnesses()  # every kept receipt carrying a head a partner signed
            if witnessed["problems"]:
                raise AirflowFailException(f"{len(witnessed['problems'])} receipts contradict the ledger or cannot "
                                           "be checked: " + "; ".join(witnessed["problems"]))  # fmt: skip
            return witnessed

        @task(retries=0)
        def anchor_head(chain: dict) -> dict:
            anchored = feeds.anchor_ledger()  # the anchors kept so far, then today's verified head
            if anchored["problems"]:
                raise AirflowFailException(f"{len(anchored['problems'])} of {anchored['checked']} ledger anchors "
                                           "contradict the ledger: " + "; ".join(anchored["problems"]))  # fmt: skip
            return anchored

        @task
        def certificates_expiring() -> list[str]:
            expiring = feeds.expiring_certificates(CERTIFICATE_WARNING_DAYS)
            for line in expiring:
                log.warning("certificate: %s", line)
            return expiring

        chain = verify_chain()
        verify_signatures(chain)
        verify_witnesses(chain)
        anchor_head(chain)
        certificates_expiring()
    return dag


def retention_dag() -> DAG:
    with exchange_dag(
        dag_id="lienthong.retention",
        description="Daily: delete the payloads and staging files whose agreement's retention_days are over (not "
        "under a legal hold, never a package without its final receipt); manifests, receipts and the ledger stay",
        schedule=CronTriggerTimetable("0 4 * * *", timezone=TIMEZONE),
        tags=["retention"],
    ) as dag:

        @task(retries=0)
        def apply_retention() -> dict:
            from feeds.retention import apply_in_workspace

            return apply_in_workspace()

        apply_retention()
    return dag


class UnusableAgreements(DAG):
    """Stands for the agreement files that do not load. Airflow cannot bag it: its check raises the files' errors
    (``file:line: rule``, one a line), which Airflow records as this DAG file's import error, while the DAGs of
    the agreements that load are bagged as usual."""

    def validate(self):
        raise ValueError("agreement files that do not load, their DAGs left out:\n" + (self.doc_md or ""))


def unusable_agreements_dag(errors: list[str]) -> DAG:
    return UnusableAgreements(
        dag_id="lienthong.unusable-agreements", schedule=None, start_date=START, doc_md="\n".join(errors)
    )


for _agreement in feeds.outbound_agreements():
    globals()[f"outbound_{_agreement.name}"] = outbound_dag(_agreement)
    globals()[f"snapshot_{_agreement.name}"] = snapshot_dag(_agreement)
for _agreement in feeds.inbound_agreements():
    globals()[f"inbound_{_agreement.name}"] = inbound_dag(_agreement)
population_change_log = change_log_dag()
ledger_audit = ledger_audit_dag()
retention = retention_dag()
if _unusable := feeds.unusable_agreements():
    unusable_agreements = unusable_agreements_dag(_unusable)
