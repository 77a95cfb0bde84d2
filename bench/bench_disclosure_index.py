"""Benchmark (issue 19, part 1): what the disclosure index costs a full snapshot, index on against index off in the
same run, on the same database.

A fresh PostgreSQL database is generated (seed 1, 2% defects, ``ANALYZE``d, as ``bench_snapshot.py`` does). Then,
alternately with the index off and on, each in its own process (peak RSS is that process's ``VmHWM``, plus its
shard workers' peaks), a full snapshot of the land agreement (a new feed each run) up to the sealed package:
``bench_snapshot.py``'s own run of ours, end to end: the window, 35 shards validated and staged (push-down + COPY
by default, as the DAG does; ``--fast python``: the streamed path), one package sealed (signed, encrypted,
zipped), uploaded to the land partner (a real OpenSSH ``sshd``, the land intake in this process), its signed
receipt collected and verified, the checkpoint moved. The index's share is given of the whole snapshot and, more
strictly, of its part up to the sealed package (the index changes nothing after sealing).

- **on**: as shipped: each shard's subjects (HMAC-SHA256 of the personal IDs, in this process) are written to a
  sidecar beside its staged file, and sealing copies them into ``disclosure`` (``COPY … FROM STDIN``, binary) in the
  package's transaction;
- **off**: the same code with the index taken out in the child (no subjects written, ``seal`` without the index).

    .venv/bin/python bench/bench_disclosure_index.py --citizens 1000000 --workers 2 --rounds 2

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_snapshot import (  # noqa: E402
    PASSWORD,
    Land,
    database_url,
    drop_database,
    land_agreement,
    log,
    machine,
    make_database,
    write_land_agreement,
)

DISCLOSURE_KEY = "bench disclosure key"


def index_off() -> None:
    """Take the index out of this process (and the shard workers it forks): no subjects, no index at sealing."""
    from feeds import outbound, snapshot
    from population import disclosures

    def no_subjects(self, target, hasher):
        Path(target).write_bytes(b"")
        return 0

    snapshot._ShardValidation.copy_subjects = no_subjects
    disclosures.SubjectsFile.tap = lambda self, rows, position: rows
    outbound.package_recorder = lambda agreement, direction, sidecars: lambda session, manifest: 0  # records none


def child(url: str, work: Path, index: str, fast: str, workers: int) -> dict:
    from bench_snapshot import child_ours
    from sqlalchemy import func, select

    from population.db import create_population_engine, session_factory
    from population.disclosures import DisclosurePackage

    if index == "off":
        index_off()
    figures = child_ours(url, work, fast, workers)
    engine = create_population_engine(url)
    with session_factory(engine)() as session:
        indexed = session.scalar(
            select(func.coalesce(func.sum(DisclosurePackage.record_count), 0)).where(
                DisclosurePackage.agreement == land_agreement().name
            )
        )
    engine.dispose()
    return {"index": index, **figures, "indexed": int(indexed)}


def in_child(index: str, url: str, work: Path, fast: str, workers: int, environment: dict[str, str]) -> dict:
    from lienthong.settings import SCHEMAS_ENV

    known = os.environ.get(SCHEMAS_ENV, "")
    write_land_agreement(work / f"schemas-{uuid.uuid4().hex[:8]}")  # a new feed for each run, which the partner
    os.environ[SCHEMAS_ENV] = os.pathsep.join(filter(None, [os.environ[SCHEMAS_ENV], known]))  # knows, as the others
    command = [sys.executable, __file__, "--child", index, "--url", url, "--work", str(work), "--fast", fast,
               "--workers", str(workers)]  # fmt: skip
    env = {**os.environ, **environment, "LIENTHONG_KEY_PASSWORD": PASSWORD, "LIENTHONG_DISCLOSURE_KEY": DISCLOSURE_KEY,
           "PYTHONWARNINGS": "ignore"}  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        log(result.stderr[-5000:])
        raise RuntimeError(f"the snapshot with the index {index} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--database", help="use this existing, generated database instead of a fresh one")
    parser.add_argument("--fast", choices=["auto", "copy", "python"], default="auto")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="runs with the index off and on, alternately")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        import logging

        logging.disable(logging.INFO)
        print(json.dumps(child(arguments.url, arguments.work, arguments.child, arguments.fast, arguments.workers)))
        return

    from exchange.pki import init_pki

    name = arguments.database or f"lienthong_bench_disclosures_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    figures: dict = {"benchmark": "disclosure_index", "machine": machine(), "citizens": arguments.citizens,
                     "workers": arguments.workers, "fast": arguments.fast, "runs": []}  # fmt: skip
    try:
        if not arguments.database:
            log(f"generating {arguments.citizens:,} citizens")
            figures["generate_s"] = round(make_database(name, arguments.citizens), 1)
        with tempfile.TemporaryDirectory(prefix="bench-disclosures-") as temporary:
            work = Path(temporary)
            work.chmod(0o755)
            write_land_agreement(work / "schemas")  # the partner starts knowing one; each run adds its own
            pki = init_pki(work / "pki", PASSWORD.encode())
            land = Land(work, pki)
            land.start()
            try:
                for _ in range(arguments.rounds):
                    for index in ("off", "on"):
                        run = in_child(index, url, work, arguments.fast, arguments.workers, land.environment())
                        log(f"index {index}: {run}")
                        figures["runs"].append(run)
            finally:
                land.stop()
    finally:
        if not arguments.database:
            drop_database(name)
    off = [r for r in figures["runs"] if r["index"] == "off"]
    on = [r for r in figures["runs"] if r["index"] == "on"]
    assert all(r["indexed"] == r["passed"] == r["receipt_records"] for r in on) and all(r["indexed"] == 0 for r in off)
    for key, label in (("seconds", "snapshot"), ("sealed_s", "to_sealed")):
        median = {k: statistics.median(r[key] for r in runs) for k, runs in (("off", off), ("on", on))}
        figures[f"{label}_median_s"] = median
        figures[f"index_share_of_{label}"] = round((median["on"] - median["off"]) / median["off"], 4)
    figures["index_share"] = figures["index_share_of_snapshot"]
    figures["index_share_target_met"] = figures["index_share"] <= 0.10
    figures["seal_step_s"] = {k: statistics.median(r["sealed_s"] - r["validated_s"] for r in runs)
                              for k, runs in (("off", off), ("on", on))}  # fmt: skip
    figures["peak_rss_mib"] = {"off": max(r["peak_rss_mib"] for r in off), "on": max(r["peak_rss_mib"] for r in on)}
    figures["peak_rss_on_vs_off"] = round(figures["peak_rss_mib"]["on"] / figures["peak_rss_mib"]["off"], 3)
    for key, value in figures.items():
        if key != "runs":
            log(f"{key}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
