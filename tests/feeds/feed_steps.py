"""A feed run step by step as its DAG's tasks run it (the same ``feeds.tasks`` calls, the XCom values kept in a
dict and, when asked, a JSON file), and killed with SIGKILL at a chosen point.

Outbound (``<agreement>.outbound``): extract, validate, package, deliver, receipt (SFTP: the sensor's wait and
``keep_receipt``; otherwise the delivery's answer), verify, advance. Inbound (``<agreement>.inbound``): fetch,
verify, validate, reconcile, acknowledge.

``kill_at("MODULE:ATTRIBUTE:before|after")`` replaces ``ATTRIBUTE`` of ``MODULE`` (a function, or
``Class.method``) with one that sends SIGKILL to this process before or after calling the original: no cleanup, no
exception handler, no flushed buffer runs. The fault matrix (``tests.feeds.fault_matrix``) runs a feed in a process
of its own with a kill point, then resumes it from the step that was killed with the XComs of the steps that had
finished, as Airflow retries a task (or from the start, as the next DAG run would). ``python -m
tests.feeds.feed_steps AGREEMENT XCOM_FILE --kill POINT [--direction inbound]`` does the same from a shell.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from connectors.transport import hook_class
from feeds import tasks as feeds

OUTBOUND_STEPS = ("extract", "validate", "package", "deliver", "receipt", "verify", "advance")
INBOUND_STEPS = ("fetch", "verify", "validate", "reconcile", "acknowledge")
STEPS = {"outbound": OUTBOUND_STEPS, "inbound": INBOUND_STEPS}


def wait_for_sftp_receipt(name: str, sealed: dict, timeout: float = 60.0) -> dict:
    """What the deferred ``wait_for_receipt`` task does, without the triggerer: look until the receipt is there.
    A failed look (the partner down, the connection broken) fails the task, as the sensor's poke does."""
    from connectors.sensors import SftpReceiptSensor

    sensor = SftpReceiptSensor(task_id="wait_for_receipt", sftp_conn_id=feeds.agreement(name).connection_id,
                               package_name=feeds.package_name(sealed))  # fmt: skip
    deadline = time.monotonic() + timeout
    while not (found := sensor.poke(None)):
        assert time.monotonic() < deadline, f"no receipt for {sealed['package_id']}"
        time.sleep(0.1)
    return found.xcom_value


def run_step(step: str, name: str, xcoms: dict) -> object:
    """One task of the outbound DAG."""
    if step == "extract":
        return feeds.open_window(name)
    if step == "validate":
        return feeds.validate_window(name, xcoms["extract"])
    if step == "package":
        return feeds.seal(name, xcoms["extract"], xcoms["validate"])
    if step == "deliver":
        return feeds.send(name, xcoms["package"])
    if step == "receipt":
        if not hook_class(feeds.agreement(name).transport).receipt_comes_later:
            return xcoms["deliver"]  # the partner answered the delivery with the receipt
        return feeds.keep_receipt(xcoms["package"], wait_for_sftp_receipt(name, xcoms["package"]))
    if step == "verify":
        return feeds.check_receipt(xcoms["package"], xcoms["receipt"])
    if step == "advance":
        return feeds.close_window(name, xcoms["extract"], xcoms["verify"])
    raise ValueError(step)


def run_inbound_step(step: str, name: str, xcoms: dict) -> object:
    """One task of the inbound DAG (a run whose fetch finds no new package is skipped by the DAG: the caller
    checks ``xcoms["fetch"]["next"]``)."""
    if step == "fetch":
        return feeds.fetch_inbound(name)
    if step == "verify":
        verified = feeds.verify_inbound(name, xcoms["fetch"]["next"])
        assert verified["status"] == "verified", f"{name}: package {verified['name']} is {verified['status']}"
        return verified
    if step == "validate":
        return feeds.validate_inbound(name, xcoms["verify"])
    if step == "reconcile":
        return feeds.reconcile_inbound(name, xcoms["validate"])
    if step == "acknowledge":
        return feeds.acknowledge_inbound(name, xcoms["verify"])
    raise ValueError(step)


def step_runner(direction: str) -> Callable[[str, str, dict], object]:
    return run_step if direction == "outbound" else run_inbound_step


def run_feed(name: str, xcoms: dict, xcom_file: Path | None = None, direction: str = "outbound") -> dict:
    """Run the steps that have no XCom yet, in order, keeping each step's XCom (in ``xcom_file`` too)."""
    run = step_runner(direction)
    for step in STEPS[direction]:
        if step in xcoms:
            continue
        xcoms[step] = run(step, name, xcoms)
        if xcom_file is not None:
            xcom_file.write_text(json.dumps(xcoms), encoding="utf-8")
    return xcoms


def kill_at(target: str) -> None:
    """Make ``MODULE:ATTRIBUTE:before|after`` send SIGKILL to this process."""
    module_name, attribute, when = target.split(":")
    owner = importlib.import_module(module_name)
    *path, last = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, last)

    def killing(*args, **kwargs):
        if when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, last, killing)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("agreement")
    parser.add_argument("xcom_file", type=Path)
    parser.add_argument("--kill", required=True)
    parser.add_argument("--direction", choices=sorted(STEPS), default="outbound")
    arguments = parser.parse_args()
    kill_at(arguments.kill)
    run_feed(arguments.agreement, {}, arguments.xcom_file, arguments.direction)


if __name__ == "__main__":
    main()
