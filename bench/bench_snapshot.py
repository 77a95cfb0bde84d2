"""Benchmark (issue 6): a full snapshot of the population to one partner, end to end, against ``COPY … TO`` of the
same rows and against a straightforward pipeline built from stock parts, all in the same run.

A fresh PostgreSQL database is generated (seed 1, 2% defects, ``ANALYZE``d); a real OpenSSH ``sshd`` serves the
land partner's folder on a loopback port, and the land intake (``partners.land.InboxWatcher``) answers packages in
its inbox with signed receipts, in this (the parent) process. Then, each measured step in its own process (peak RSS
is that process's ``VmHWM``):

- ``ours``: ``feeds.snapshot`` end to end for the land agreement (CSV, encrypted for the land office, SFTP):
  the window, 35 shards validated with the agreement's suite (quarantine), minimised, staged (by default as the
  DAG does, push-down + COPY on PostgreSQL; ``--fast python`` for the streamed path; ``--workers N`` validates the
  shards in N worker processes, as mapped tasks side by side, whose peaks are added up); one package sealed
  (manifest, CMS signature, CMS encryption, zip), uploaded over SFTP, the partner's receipt collected and verified,
  the checkpoint moved (``partner_intake_s``: of the wait for the receipt, the land intake's own time);
- ``copy``: ``COPY (extract query) TO 'file' (FORMAT csv, HEADER)`` run by the server (the same rows, all columns);
- ``stock``: ``pandas.read_sql`` of the extract query, Great Expectations 1.x with default settings (an ephemeral
  context, a pandas data frame asset, the default result format) validating the equivalent column-level
  expectations of the suite (stock expectation types only: not null, in set, value lengths, regular expressions),
  ``DataFrame.to_csv`` of the agreement's fields, and ``SFTPHook.store_file`` of the Airflow SFTP provider (an
  ``AIRFLOW_CONN_*`` connection with the key file and the pinned host key). Stock parts neither sign, encrypt nor
  quarantine, and nothing acknowledges the upload: that work is ours alone.

    .venv/bin/python bench/bench_snapshot.py --citizens 1000000        # about 15 minutes on 2 cores
    .venv/bin/python bench/bench_snapshot.py --citizens 100000         # a quick run

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVER_URL = os.environ.get("LIENTHONG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "bench snapshot key password"
AS_OF = date(2026, 7, 1)
CONNECTION = "bench_land"
STOCK_CONNECTION = "bench_land_stock"
AGREEMENT_ENV = "LIENTHONG_BENCH_AGREEMENT"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the parent's over exec)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmHWM"))) / 1024


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))  # fmt: skip
    return {"cpus": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1), "cpu": cpu,
            "python": platform.python_version()}  # fmt: skip


def database_url(name: str) -> str:
    return SERVER_URL.rsplit("/", 1)[0] + "/" + name


def make_database(name: str, citizens: int) -> float:
    from sqlalchemy import create_engine, text

    from population.db import create_population_engine
    from population.generator import generate
    from population.migrate import upgrade

    admin = create_engine(SERVER_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_population_engine(database_url(name))
    upgrade(engine)
    started = time.perf_counter()
    generate(engine, citizens, seed=1, defect_rate=0.02, as_of=AS_OF)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE"))  # as autovacuum would
    engine.dispose()
    return time.perf_counter() - started


def drop_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(SERVER_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# -- the partner: sshd + land intake ---------------------------------------------------------------------------


class Land:
    def __init__(self, work: Path, pki) -> None:
        from partners.intake import PackageIntake, PartnerKeys
        from partners.land import InboxWatcher
        from partners.openssh import OpenSshServer, write_key
        from partners.store import RegistryStore

        self.server = OpenSshServer(work / "sshd")
        self.client_key = work / "client_ed25519"
        self.server.authorize(write_key(self.client_key).export_public_key("openssh").decode())
        self.store = RegistryStore(work / "land" / "registry.db")
        self.intake_seconds: list[float] = []  # each package's intake, from the zip found to the receipt signed

        class TimedIntake(PackageIntake):
            def receive(intake, package_path: Path):
                started = time.perf_counter()
                try:
                    return super().receive(package_path)
                finally:
                    self.intake_seconds.append(round(time.perf_counter() - started, 3))

        keys = PartnerKeys.load(pki, "land", PASSWORD.encode())
        intake = TimedIntake(keys, self.store, work / "land" / "work")
        self.watcher = InboxWatcher(self.server.root, intake, work / "land" / "done", interval=0.1)

    def start(self) -> None:
        self.server.start()
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.server.stop()
        self.store.dispose()

    def environment(self) -> dict[str, str]:
        ours = {"conn_type": "lienthong_sftp", "host": "127.0.0.1", "port": self.server.port,
                "login": self.server.user, "extra": {"host_key": self.server.host_key_line,
                                                     "remote_folder": str(self.server.root),
                                                     "private_key_file": str(self.client_key)}}  # fmt: skip
        stock = {"conn_type": "sftp", "host": "127.0.0.1", "port": self.server.port, "login": self.server.user,
                 "extra": {"key_file": str(self.client_key), "host_key": self.server.host_key_line,
                           "no_host_key_check": False}}  # fmt: skip
        return {f"AIRFLOW_CONN_{CONNECTION.upper()}": json.dumps(ours),
                f"AIRFLOW_CONN_{STOCK_CONNECTION.upper()}": json.dumps(stock)}  # fmt: skip


# -- the steps, each in a child process ----------------------------------------------------------------------------


def write_land_agreement(folder: Path) -> None:
    """This run's own land agreement (a new feed, even in a kept database), as an operator adds one: a file on
    ``LIENTHONG_SCHEMAS_PATH``, which the land partner reads too (a partner takes only its own agreements)."""
    from lienthong.settings import SCHEMAS_ENV, schema_file

    name = f"land-owners-bench-{uuid.uuid4().hex[:8]}"
    text = schema_file("agreements/land.yaml").read_text(encoding="utf-8")
    text = text.replace("agreement: land-owners\n", f"agreement: {name}\n", 1)
    text = text.replace("connection_id: lienthong_land", f"connection_id: {CONNECTION}", 1)
    (folder / "agreements").mkdir(parents=True)
    (folder / "agreements" / f"{name}.yaml").write_text(text, encoding="utf-8")
    os.environ[SCHEMAS_ENV] = str(folder)  # this process (the land partner) and the children
    os.environ[AGREEMENT_ENV] = name


def land_agreement():
    from exchange.agreements import load_agreements

    return load_agreements()[os.environ[AGREEMENT_ENV]]


def children_peak_rss_mib() -> float:
    """The largest peak RSS of this process's finished children (ru_maxrss: it counts what a spawned child
    inherited before its exec, so it is an upper bound)."""
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def child_ours(url: str, work: Path, fast: str, workers: int) -> dict:
    from exchange.pki import PkiDirectory
    from feeds import outbound
    from feeds.snapshot import seal_snapshot, snapshot_shards, validate_shards
    from population.db import create_population_engine

    engine = create_population_engine(url)
    agreement, pki = land_agreement(), PkiDirectory(work / "pki")
    marks = {}
    started = time.perf_counter()
    window = outbound.extract(engine, agreement, mode="full")
    shards = snapshot_shards(engine, agreement, window)
    marks["shards_s"] = time.perf_counter() - started
    path = {"auto": None, "copy": True, "python": False}[fast]
    results = validate_shards(engine, agreement, window, shards, work / "ours" / "staging", AS_OF, fast=path,
                              workers=workers)  # fmt: skip
    workers_peak = workers * children_peak_rss_mib() if workers > 1 else 0.0  # their peaks, as if at once
    marks["validated_s"] = time.perf_counter() - started
    sealed = seal_snapshot(engine, agreement, window, results, pki, work / "ours" / "packages")
    marks["sealed_s"] = time.perf_counter() - started
    receipt = outbound.deliver(agreement, sealed)
    marks["delivered_s"] = time.perf_counter() - started
    while receipt is None:
        time.sleep(0.2)
        receipt = outbound.collect_receipt(agreement, sealed)
    marks["receipt_s"] = time.perf_counter() - started
    delivery = outbound.verify(engine, sealed, receipt, pki)
    outbound.close_window(engine, agreement, window, delivery)
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), **{k: round(v, 3) for k, v in marks.items()},
            "peak_rss_mib": round(peak_rss_mib() + workers_peak, 1), "workers": workers,
            "main_peak_rss_mib": round(peak_rss_mib(), 1), "workers_peak_rss_mib": round(workers_peak, 1),
            "rows": sum(r.rows for r in results),
            "passed": sum(r.passed for r in results), "quarantined": sum(r.quarantined for r in results),
            "paths": sorted({r.path for r in results}), "status": delivery.status,
            "receipt_records": delivery.record_count, "package_bytes": Path(sealed.path).stat().st_size,
            "slowest_shard_s": max(r.seconds for r in results)}  # fmt: skip


def stock_expectations():
    """The suite's column-level rules that stock Great Expectations can express, as stock expectations."""
    import great_expectations.expectations as gxe

    from validation.suites import build_suite

    built = build_suite("citizen-extract", as_of=AS_OF)
    chosen = []
    for expectation in built.suite.expectations:
        kwargs = expectation.configuration.kwargs
        kind = expectation.expectation_type
        if kind == "expect_column_values_to_not_be_null":
            chosen.append(gxe.ExpectColumnValuesToNotBeNull(column=kwargs["column"]))
        elif kind == "expect_column_values_to_be_in_set":
            chosen.append(gxe.ExpectColumnValuesToBeInSet(column=kwargs["column"], value_set=kwargs["value_set"]))
        elif kind == "expect_column_value_lengths_to_be_between":
            chosen.append(gxe.ExpectColumnValueLengthsToBeBetween(column=kwargs["column"], min_value=1,
                                                                  max_value=kwargs["max_value"]))  # fmt: skip
        elif kind == "expect_column_values_to_match_code_pattern":
            chosen.append(gxe.ExpectColumnValuesToMatchRegex(column=kwargs["column"], regex=kwargs["pattern"],
                                                             mostly=kwargs.get("mostly") or 1.0))  # fmt: skip
    return chosen


def child_stock(url: str, work: Path) -> dict:
    import great_expectations as gx
    import pandas as pd
    from airflow.providers.sftp.hooks.sftp import SFTPHook
    from sqlalchemy import create_engine

    from exchange.agreements import load_agreements
    from population.extract import extract_query

    expectations = stock_expectations()
    fields = list(load_agreements()["land-owners"].directions["outbound"].fields)
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    sql = str(extract_query().compile(engine, compile_kwargs={"literal_binds": True}))
    marks = {}
    started = time.perf_counter()
    frame = pd.read_sql(sql, engine)
    marks["read_sql_s"] = time.perf_counter() - started
    context = gx.get_context(mode="ephemeral")
    batch = (context.data_sources.add_pandas("population").add_dataframe_asset("extract")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": frame}))  # fmt: skip
    suite = context.suites.add(gx.ExpectationSuite(name="citizen-extract", expectations=expectations))
    result = batch.validate(suite)
    marks["validated_s"] = time.perf_counter() - started
    target = work / "stock" / "citizens.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame[fields].to_csv(target, index=False)
    marks["written_s"] = time.perf_counter() - started
    hook = SFTPHook(ssh_conn_id=STOCK_CONNECTION)
    remote = json.loads(os.environ[f"AIRFLOW_CONN_{CONNECTION.upper()}"])["extra"]["remote_folder"]
    hook.store_file(f"{remote}/stock-citizens.csv", str(target))
    hook.close_conn()
    seconds = time.perf_counter() - started
    failed = sum(1 for r in result.results if not r.success)
    return {"seconds": round(seconds, 3), **{k: round(v, 3) for k, v in marks.items()},
            "peak_rss_mib": round(peak_rss_mib(), 1), "rows": len(frame), "expectations": len(expectations),
            "expectations_failed": failed, "bytes": target.stat().st_size}  # fmt: skip


def copy_to_file(url: str, target: Path) -> dict:
    from sqlalchemy import text

    from population.db import create_population_engine
    from population.extract import extract_query

    engine = create_population_engine(url)
    sql = str(extract_query().compile(engine, compile_kwargs={"literal_binds": True}))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o777)
    started = time.perf_counter()
    with engine.begin() as connection:
        rows = connection.execute(text(f"COPY ({sql}) TO '{target}' WITH (FORMAT csv, HEADER true)")).rowcount
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": round(seconds, 3), "rows": rows, "bytes": target.stat().st_size}


def in_child(
    step: str, url: str, work: Path, environment: dict[str, str], fast: str = "auto", workers: int = 1
) -> dict:
    command = [sys.executable, __file__, "--child", step, "--url", url, "--work", str(work), "--fast", fast,
               "--workers", str(workers)]  # fmt: skip
    env = {**os.environ, **environment, "LIENTHONG_KEY_PASSWORD": PASSWORD, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode:
        log(result.stderr[-5000:])
        raise RuntimeError(f"{step} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--database", help="use this existing, generated database instead of a fresh one")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument(
        "--fast",
        choices=["auto", "copy", "python"],
        default="auto",
        help="our validation path (auto: validate_shard's default and the DAG's, push-down + COPY on PostgreSQL)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes validating the shards")
    parser.add_argument("--skip-stock", action="store_true")
    parser.add_argument("--child", choices=["ours", "stock"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        import logging

        logging.disable(logging.INFO)
        if arguments.child == "ours":
            figures = child_ours(arguments.url, arguments.work, arguments.fast, arguments.workers)
        else:
            figures = child_stock(arguments.url, arguments.work)
        print(json.dumps(figures))
        return

    from exchange.pki import init_pki

    name = arguments.database or f"lienthong_bench_snapshot_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    figures: dict = {"benchmark": "snapshot", "machine": machine(), "citizens": arguments.citizens}
    try:
        if not arguments.database:
            log(f"generating {arguments.citizens:,} citizens")
            figures["generate_s"] = round(make_database(name, arguments.citizens), 1)
            log(f"generated in {figures['generate_s']} s")
        with tempfile.TemporaryDirectory(prefix="bench-snapshot-") as temporary:
            work = Path(temporary)
            work.chmod(0o755)  # the PostgreSQL server writes the COPY baseline in here
            write_land_agreement(work / "schemas")
            pki = init_pki(work / "pki", PASSWORD.encode())
            land = Land(work, pki)
            land.start()
            try:
                environment = land.environment()
                figures["copy"] = copy_to_file(url, work / "copy" / "citizens.csv")
                log(f"COPY TO: {figures['copy']}")
                figures["ours"] = in_child("ours", url, work, environment, arguments.fast, arguments.workers)
                figures["ours"]["partner_intake_s"] = land.intake_seconds[-1]
                log(f"ours: {figures['ours']}")
                if not arguments.skip_stock:
                    figures["stock"] = in_child("stock", url, work, environment)
                    log(f"stock: {figures['stock']}")
            finally:
                land.stop()
    finally:
        if not arguments.database and not arguments.keep_database:
            drop_database(name)
    ours, copy = figures["ours"], figures["copy"]
    rows = ours["rows"]
    figures["ours_rows_per_s"] = round(rows / ours["seconds"])
    figures["ours_to_delivery_rows_per_s"] = round(rows / ours["delivered_s"])
    figures["copy_rows_per_s"] = round(copy["rows"] / copy["seconds"])
    figures["ours_speed_vs_copy"] = round(copy["seconds"] / ours["seconds"], 3)
    if "stock" in figures:
        stock = figures["stock"]
        figures["stock_rows_per_s"] = round(stock["rows"] / stock["seconds"])
        figures["ours_throughput_vs_stock"] = round(stock["seconds"] / ours["seconds"], 3)
        figures["ours_to_delivery_throughput_vs_stock"] = round(stock["seconds"] / ours["delivered_s"], 3)
        figures["ours_peak_rss_vs_stock"] = round(ours["peak_rss_mib"] / stock["peak_rss_mib"], 3)
    for key, value in figures.items():
        if not isinstance(value, dict):
            log(f"{key}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
