"""What the exchange DAGs' tasks call: the pipeline steps by agreement name, with XCom-sized values in and out.

A DAG task is one line: ``feeds.validate_window("health-identity", window)``. Each function here loads the
agreement, opens the workspace (database, PKI, folders) from the environment, calls the plain step in
``feeds.outbound`` and hands back a dict of references and counts (never records), so that Airflow can pass it
to the next task as an XCom.

The workspace (database, folders, PKI, key password) comes from ``lienthong.settings``, as the ``lienthong``
command line reads it. The files a step writes for the next (staged payloads, packages, receipts, inbound
packages) are published to the artifact store (``feeds.artifacts``), and the XCom value carries each one's URL and
SHA-256 under ``artifacts``: the next step, on any worker, fetches and checks them before it reads a byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from exchange.agreements import Agreement, usable_agreements
from exchange.keys import platform_keys
from lienthong.settings import Workspace, fast_path_citizens, snapshot_tasks


@contextmanager
def population_database() -> Iterator[Engine]:
    """The population database, for one task."""
    from lienthong.settings import database_url
    from population.db import create_population_engine

    engine = create_population_engine(database_url(None))
    try:
        yield engine
    finally:
        engine.dispose()


def agreement(name: str) -> Agreement:
    """The named agreement; another agreement's file that does not load does not stop this one's feed."""
    agreements, errors = usable_agreements()
    if name in agreements:
        return agreements[name]
    unusable = "".join(f"; {error}" for error in errors)
    raise ValueError(f"no agreement named {name!r} in schemas/agreements{unusable}")


def outbound_agreements() -> list[Agreement]:
    """The agreements with an outbound direction, of the files that load."""
    return [a for a in usable_agreements()[0].values() if "outbound" in a.directions]


def inbound_agreements() -> list[Agreement]:
    """The agreements with an inbound direction, of the files that load."""
    return [a for a in usable_agreements()[0].values() if "inbound" in a.directions]


def unusable_agreements() -> list[str]:
    """One line per agreement file that does not load (``file:line: rule``)."""
    return [str(error) for error in usable_agreements()[1]]


# -- XCom values ------------------------------------------------------------------------------------------------

ARTIFACTS = "artifacts"  # in an XCom value: the files it refers to, as published ({url, sha256, bytes} each)


def received(value: dict[str, Any]) -> dict[str, Any]:
    """A previous step's XCom value, its artifacts brought into this worker's workspace and checked; without them."""
    from feeds.artifacts import fetch

    fetch(value.get(ARTIFACTS, ()))
    return {key: item for key, item in value.items() if key != ARTIFACTS}


def handed_on(value: dict[str, Any], *paths: str | Path, sealed: bool = False) -> dict[str, Any]:
    """A step's XCom value with the files it wrote (each file of a folder) published for the next step; a
    ``sealed`` package patiently (``feeds.artifacts.publish``)."""
    from feeds.artifacts import publish

    return value | {ARTIFACTS: publish(paths, sealed=sealed)}


def _staged(files) -> list[Path]:
    """The staged payload files and their subjects sidecars (the disclosure index's input)."""
    from population.disclosures import subjects_path

    return [path for staged in files for path in (Path(staged.path), subjects_path(staged.path))]


def _pending_sealed(window: dict[str, Any]):
    """The window's pending package, sealed perhaps on another worker, brought into this workspace."""
    from feeds.artifacts import artifact_store
    from feeds.outbound import pending_package

    artifact_store().fetch_path(Path(window["pending"]))
    return pending_package(_window(window))


def _sealed_elsewhere(engine: Engine, name: str, window: dict[str, Any]) -> None:
    """Sealing again after the worker that sealed the window's package stopped: that package, from the store, so
    that sealing finds it rather than numbering another (nothing when no package is pending for the window)."""
    from contextlib import suppress

    from feeds.artifacts import ArtifactMissing, artifact_store
    from feeds.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(engine, name)
    if checkpoint.pending_package is not None and checkpoint.pending_up_to == window["up_to"]:
        with suppress(ArtifactMissing):
            artifact_store().fetch_path(checkpoint.pending_package)


def _receipt_here(receipt_dir: str) -> None:
    """A receipt kept perhaps by another worker, in this workspace (checked against the store's record)."""
    from exchange.receipt import RECEIPT, SIGNATURE
    from feeds.artifacts import artifact_store

    store = artifact_store()
    for name in (RECEIPT, SIGNATURE):
        store.fetch_path(Path(receipt_dir) / name)


def _window(value: dict[str, Any]):
    from feeds.outbound import FeedWindow

    return FeedWindow(**value)


def _checked(value: dict[str, Any]):
    from feeds.outbound import CheckedRows, StagedFile

    value = received(value)
    files = tuple(StagedFile(**f) for f in value["files"])
    releases = {key: tuple(value.get(key, ())) for key in ("released", "releases_done")}
    return CheckedRows(**(value | {"window": _window(value["window"]), "files": files} | releases))


def _sealed(value: dict[str, Any]):
    from feeds.outbound import SealedPackage

    value = received(value)
    return SealedPackage(**(value | {"window": _window(value["window"])}))


def _delivery(value: dict[str, Any] | None):
    from feeds.outbound import VerifiedDelivery

    return None if value is None else VerifiedDelivery(**value)


# -- the outbound feed, step by step ------------------------------------------------------------------------------


def change_log_head() -> int:
    """The last change number of the population's change log."""
    from population.changelog import last_sequence
    from population.db import session_factory

    with population_database() as engine, session_factory(engine)() as session:
        return last_sequence(session)


def open_window(name: str, mode: str | None = None) -> dict[str, Any]:
    """Step 1: the window this run delivers (a pending package's window first)."""
    from feeds.outbound import extract

    with population_database() as engine:
        return asdict(extract(engine, agreement(name), mode=mode))


def nothing_to_send(window: dict[str, Any]) -> bool:
    """An incremental window without changes and without a pending package: the run has nothing to do."""
    return window["mode"] == "incremental" and not window["citizens"] and window["pending"] is None


def validate_window(name: str, window: dict[str, Any]) -> dict[str, Any]:
    """Steps 2-3: validate, quarantine, minimise and stage; nothing to do when the window's package is sealed
    already (a rerun resends it)."""
    from feeds.outbound import validate

    if window["pending"] is not None:
        return {"sealed_already": window["pending"]}
    with population_database() as engine:
        workspace = Workspace.from_environment()
        checked = validate(engine, agreement(name), _window(window), workspace.staging,
                           reports_dir=workspace.reports)  # fmt: skip
        return handed_on(asdict(checked), *_staged(checked.files))


def seal(name: str, window: dict[str, Any], checked: dict[str, Any]) -> dict[str, Any]:
    """Step 4: the sealed, zipped package of the window (the pending one, when there is one)."""
    from feeds.outbound import package

    if window["pending"] is not None:
        sealed = _pending_sealed(window)
    else:
        workspace = Workspace.from_environment()
        with population_database() as engine:
            _sealed_elsewhere(engine, name, window)
            sealed = package(engine, agreement(name), _checked(checked), platform_keys(workspace.pki_dir),
                             workspace.packages)  # fmt: skip
    return handed_on(asdict(sealed), sealed.path, sealed=True)


def send(name: str, sealed: dict[str, Any]) -> str | None:
    """Step 5: deliver the package; the receipt folder, or None when the receipt comes later (the transport's
    ``receipt_sensor`` waits for it, ``keep_receipt`` keeps it)."""
    from feeds.outbound import deliver

    receipt_dir = deliver(agreement(name), _sealed(sealed))
    if receipt_dir is not None:
        handed_on({}, receipt_dir)
    return receipt_dir


def keep_receipt(sealed: dict[str, Any], receipt: dict[str, str]) -> str:
    """Write a receipt fetched by a sensor (``DeliveredReceipt.as_base64``) beside its package."""
    from connectors.base import DeliveredReceipt
    from feeds.outbound import receipt_folder

    receipt_dir = DeliveredReceipt.from_base64(receipt).write_to(receipt_folder(_sealed(sealed)))
    handed_on({}, receipt_dir)
    return str(receipt_dir)


def check_receipt(sealed: dict[str, Any], receipt_dir: str) -> dict[str, Any]:
    """Step 6: the receipt is signed by the recipient and bound to the package; recorded in the ledger once."""
    from feeds.outbound import verify

    _receipt_here(receipt_dir)
    with population_database() as engine:
        return asdict(verify(engine, _sealed(sealed), receipt_dir, platform_keys()))


def close_window(name: str, window: dict[str, Any], delivery: dict[str, Any] | None) -> bool:
    """Step 7: move the checkpoint to the window's end; False when it was there already."""
    from feeds.outbound import close_window as close

    with population_database() as engine:
        return close(engine, agreement(name), _window(window), _delivery(delivery))


def changes_waiting(name: str) -> bool:
    """After a run closed its window: whether changes still wait after the feed's checkpoint (the window was cut at
    the agreement's ``max_package_citizens``, or changes came meanwhile), so that the next run follows at once."""
    from feeds.outbound import changes_waiting

    with population_database() as engine:
        return changes_waiting(engine, agreement(name))


FAST_PATH_RECEIPT_WAIT = 120.0  # seconds the one task looks for a receipt that comes later (then it is retried)


def takes_fast_path(window: dict[str, Any]) -> bool:
    """Whether the window goes out in one task (the outbound DAG's first) rather than a task a step: an incremental
    window of at most ``lienthong.settings.fast_path_citizens()`` changed citizens, or the resend of its pending
    package."""
    return window["mode"] == "incremental" and window["citizens"] <= fast_path_citizens()


def exchange_window(name: str, window: dict[str, Any]) -> dict[str, Any]:
    """The fast path: steps 2-7 of a small window in this one process (``feeds.outbound.run_outbound``'s steps:
    validate, seal, deliver, the receipt, looked for every 0.2 s up to ``FAST_PATH_RECEIPT_WAIT`` seconds when it
    comes later, verify, move the checkpoint). Each step is as safe to retry as the task it stands for: a retry
    finds the sealed package pending and resends it."""
    from feeds.outbound import deliver_and_close_window, package, receipt_folder, validate

    workspace = Workspace.from_environment()
    pki, found = platform_keys(workspace.pki_dir), agreement(name)
    with population_database() as engine:
        if window["pending"] is not None:
            sealed = _pending_sealed(window)
        else:
            checked = validate(engine, found, _window(window), workspace.staging, reports_dir=workspace.reports)
            _sealed_elsewhere(engine, name, window)
            sealed = package(engine, found, checked, pki, workspace.packages)
            handed_on({}, sealed.path, sealed=True)  # a retry on another worker resends this very package
        run = deliver_and_close_window(engine, found, sealed, pki, FAST_PATH_RECEIPT_WAIT)
    handed_on({}, receipt_folder(sealed))
    return {"package_id": sealed.package_id, "delivery": None if run.delivery is None else asdict(run.delivery)}


def is_final(error: BaseException) -> bool:
    """A failure a retry cannot fix, to fail the task at once: validation blocked the dataset, a package or
    receipt did not verify (the partner rejected the package, a signature or a binding is wrong), or the partner
    refused the request for good (a connector error that is not retryable: a client fault, a refused key)."""
    from connectors.errors import ConnectorError
    from exchange.errors import VerificationError
    from lienthong.settings import KeyPasswordMissing
    from validation.outcome import DatasetBlocked

    if isinstance(error, ConnectorError):
        return not error.retryable
    return isinstance(error, (DatasetBlocked, VerificationError, KeyPasswordMissing))


def partner_pool(partner: str) -> str:
    """The Airflow pool that limits concurrent tasks against one partner."""
    return f"partner-{partner}"


def partner_pools() -> dict[str, int]:
    """Each partner's pool and its slots: the most that any of the partner's agreements (of the files that load)
    asks for in ``pool_slots``."""
    slots: dict[str, int] = {}
    for each in usable_agreements()[0].values():
        pool = partner_pool(each.partner)
        slots[pool] = max(slots.get(pool, 0), each.pool_slots)
    return slots


def make_partner_pools() -> list[str]:
    """Create or update the partners' pools in Airflow's metadata database, as the agreements say (an agreement's
    ``pool_slots`` wins over an edit in the UI); the pools' names. Needs the metadata database: an Airflow
    component's process (the plugin's listener, as each one starts), never a task's."""
    from airflow.models.pool import Pool
    from sqlalchemy.exc import IntegrityError

    pools = partner_pools()
    for name, slots in sorted(pools.items()):
        description = f"Concurrent tasks against the {name.removeprefix('partner-')} partner (schemas/agreements)"
        try:
            Pool.create_or_update_pool(name, slots, description, include_deferred=False)
        except IntegrityError:  # another component starting at the same moment made it first: it is there
            continue
    return sorted(pools)


def package_name(sealed: dict[str, Any]) -> str:
    """The name of a sealed package (its zip without .zip): what a receipt that comes later is looked for by."""
    return Path(sealed["path"]).stem


# -- the full snapshot, one mapped task per share of provinces ---------------------------------------------------


def snapshot_shards(name: str, window: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The snapshot's shards (a province each) dealt to ``lienthong.settings.snapshot_tasks()`` tasks: a list
    of shards per mapped task; none when the window's package is sealed already."""
    from feeds.snapshot import snapshot_shards, task_shares

    if window["pending"] is not None:
        return []
    with population_database() as engine:
        shards = snapshot_shards(engine, agreement(name), _window(window))
    return [[asdict(shard) for shard in share] for share in task_shares(shards, snapshot_tasks())]


def _shard_result(value: dict[str, Any]):
    from feeds.outbound import StagedFile
    from feeds.snapshot import Shard, ShardResult

    value = received(value)
    return ShardResult(**(value | {"window": _window(value["window"]), "shard": Shard(**value["shard"]),
                                   "file": StagedFile(**value["file"])}))  # fmt: skip


def validate_shards(name: str, window: dict[str, Any], shards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate each province's citizens in turn, quarantine the failing, stage the passing rows minimised: a
    result per province."""
    from feeds.snapshot import Shard, validate_shard

    staging, found, fixed = Workspace.from_environment().staging, agreement(name), _window(window)
    results = []
    with population_database() as engine:
        for shard in shards:
            result = validate_shard(engine, found, fixed, Shard(**shard), staging)
            results.append(handed_on(asdict(result), *_staged([result.file])))
    return results


def seal_snapshot(name: str, window: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """One package of every shard's file (the pending one, when the snapshot is sealed already): ``results``,
    each mapped task's list of results, in task order."""
    from feeds.snapshot import seal_snapshot

    if window["pending"] is not None:
        sealed = _pending_sealed(window)
    else:
        workspace = Workspace.from_environment()
        with population_database() as engine:
            _sealed_elsewhere(engine, name, window)
            shards = [_shard_result(result) for share in results for result in share]
            sealed = seal_snapshot(engine, agreement(name), _window(window), shards, platform_keys(workspace.pki_dir),
                                   workspace.packages)  # fmt: skip
    return handed_on(asdict(sealed), sealed.path, sealed=True)


# -- the inbound feed, step by step ----------------------------------------------------------------------------


def fetch_inbound(name: str) -> dict[str, Any]:
    """Download the partner's new packages on the agreement's inbound feed; the first in sequence is ``next``
    (one package per run: the next depends on this one being accepted), ``waiting`` counts the others."""
    from feeds.inbound import fetch

    with population_database() as engine:
        fetched = fetch(engine, agreement(name), Workspace.from_environment().inbound)
    first = handed_on(asdict(fetched.packages[0]), fetched.packages[0].path) if fetched.packages else None
    return {"listed": fetched.listed, "next": first, "waiting": len(fetched.packages[1:])}


def verify_inbound(name: str, fetched: dict[str, Any]) -> dict[str, Any]:
    """Verify the package; a package that fails gets a signed rejected receipt (``status`` rejected)."""
    from feeds.inbound import FetchedPackage, verify

    with population_database() as engine:
        verified = verify(
            engine,
            agreement(name),
            FetchedPackage(**received(fetched)),
            platform_keys(),
        )
    return handed_on(asdict(verified), verified.path, *verified.payload)


def _verified(value: dict[str, Any]):
    from feeds.inbound import VerifiedInbound

    value = received(value)
    return VerifiedInbound(**(value | {"payload": tuple(value["payload"])}))


def validate_inbound(name: str, verified: dict[str, Any]) -> dict[str, Any]:
    from feeds.inbound import validate

    with population_database() as engine:
        checked = validate(
            engine, agreement(name), _verified(verified), reports_dir=Workspace.from_environment().reports
        )
    return handed_on(asdict(checked), checked.staged)


def reconcile_inbound(name: str, checked: dict[str, Any]) -> dict[str, Any]:
    """Registry links written, mismatches reported (``mismatches`` CSV and ``report`` JSON paths, counts)."""
    from feeds.inbound import CheckedInbound, reconcile

    with population_database() as engine:
        reconciled = reconcile(
            engine, agreement(name), CheckedInbound(**received(checked)), Workspace.from_environment().reports
        )
    return handed_on(asdict(reconciled), reconciled.report, reconciled.mismatches)


def acknowledge_inbound(name: str, verified: dict[str, Any]) -> dict[str, Any]:
    """The accepted receipt sent back, recorded in the ledger; the inbound feed moves."""
    from feeds.inbound import acknowledge

    with population_database() as engine:
        acknowledged = acknowledge(engine, agreement(name), _verified(verified), platform_keys())
    return handed_on(asdict(acknowledged), acknowledged.receipt_dir)


# -- the ledger audit ------------------------------------------------------------------------------------------


def audit_chain() -> dict[str, Any]:
    """The chain verifies from the first entry to the head (``LedgerBroken`` names the first bad entry)."""
    from feeds.audit import audit_chain

    with population_database() as engine:
        return asdict(audit_chain(engine))


def audit_signatures(sample: int, seed: str | None = None) -> dict[str, Any]:
    """Re-verify a sample of the ledger's packages and receipts from the files kept under the workspace (the
    sample is the day's unless a seed is given)."""
    from feeds.audit import audit_signatures

    workspace = Workspace.from_environment()
    with population_database() as engine:
        folders = [workspace.packages, workspace.inbound]
        audit = audit_signatures(engine, folders, platform_keys(workspace.pki_dir), sample=sample, seed=seed)
    return {"seed": audit.seed, "checked": audit.checked, "verified": audit.verified,
            "problems": [str(problem) for problem in audit.problems]}  # fmt: skip


def audit_witnesses() -> dict[str, Any]:
    """The ledger against the heads partners signed in the receipts kept under the workspace."""
    from feeds.audit import audit_witnesses

    workspace = Workspace.from_environment()
    with population_database() as engine:
        folders = [workspace.packages, workspace.inbound]
        audit = audit_witnesses(engine, folders, platform_keys(workspace.pki_dir))
    return {"receipts": audit.receipts, "witnesses": audit.witnesses, "partners": list(audit.partners),
            "newest": audit.newest, "problems": [str(problem) for problem in audit.problems]}  # fmt: skip


def anchor_ledger() -> dict[str, Any]:
    """The ledger's anchors checked against it (``exchange.anchor``); when none contradicts it, the head the audit
    verified anchored under the workspace. Problems are listed, and then nothing is anchored."""
    from exchange.anchor import check_anchors, write_anchor

    workspace = Workspace.from_environment()
    keys = platform_keys(workspace.pki_dir)
    with population_database() as engine:
        check = check_anchors(engine, workspace.ledger_anchors, keys)
        anchor = None
        if check.passed:
            anchor = write_anchor(engine, keys.signer(), workspace.ledger_anchors)
    return {"checked": check.checked, "problems": check.problems, "anchor": str(anchor) if anchor else None}


def expiring_certificates(within_days: int) -> list[str]:
    """The PKI's certificates (and CRL) expiring within the window, one line each."""
    from feeds.audit import expiring_certificates

    return [str(c) for c in expiring_certificates(platform_keys(), within_days=within_days)]
