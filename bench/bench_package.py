"""Benchmarks of exchange packages (issue 3); figures go to docs/BENCHMARKS.md, the last line printed is JSON.

(a) Hashing and signing a 1 GiB payload (the real build path: the file linked into a package, hashed, the
    manifest written and signed, the package numbered and ledgered) against ``openssl dgst -sha256`` of the same
    file, in the same run, page cache warm, best of 3 each. Target: at least 80% of OpenSSL's throughput.
(b) Packing the citizen extract of a 1,000,000-citizen PostgreSQL database into a signed CSV package against
    ``COPY (SELECT …) TO 'file'`` of the same query, same run. Target: within 2x. Each packing runs in a fresh
    process that reports its peak RSS, at 250,000 and at 1,000,000 rows: memory must not grow with rows.
    Both ways of packing are measured: PostgreSQL formatting the CSV (COPY TO STDOUT streamed into the hashing
    writer) and Python formatting it from the server-side cursor of ``population.extract.iter_extract``.

    .venv/bin/python bench/bench_package.py [--citizens 1000000] [--payload-mib 1024] [--keep-database]

Needs the PostgreSQL server (LIENTHONG_BENCH_PG_URL, default the local one with trust auth); makes and drops
the scratch database ``lienthong_bench_pkg``.
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
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchange.package import PackageBuilder, SchemaRef  # noqa: E402
from exchange.pki import init_pki, load_signer  # noqa: E402
from population.db import create_population_engine, normalise_url  # noqa: E402
from population.extract import extract_columns, extract_query, iter_extract  # noqa: E402
from population.migrate import upgrade  # noqa: E402

SERVER_URL = normalise_url(os.environ.get("LIENTHONG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
DATABASE = "lienthong_bench_pkg"
PASSWORD = b"bench key password"
SCHEMA = SchemaRef("citizen-extract", "1")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))  # fmt: skip
    openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "memory_gib": round(memory_kib / 2**20, 1), "cpu": cpu, "openssl": openssl,
            "python": platform.python_version()}  # fmt: skip


def best_of(runs: int, action) -> float:
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        timings.append(time.perf_counter() - start)
    return min(timings)


# -- (a) hashing and signing a large payload -------------------------------------------------------------------


def bench_hash_and_sign(work: Path, payload_mib: int) -> dict:
    payload = work / "payload.csv"
    log(f"(a) writing a {payload_mib} MiB payload")
    with payload.open("wb") as handle:
        for _ in range(payload_mib // 64):
            handle.write(os.urandom(64 << 20))
    size = payload.stat().st_size
    subprocess.run(["cat", str(payload)], stdout=subprocess.DEVNULL, check=True)  # page cache warm for both
    pki = init_pki(work / "pki", PASSWORD)
    signer = load_signer(pki, "population", PASSWORD)
    engine = create_population_engine(f"sqlite:///{work / 'a.db'}")
    upgrade(engine)
    counter = iter(range(1_000_000))

    def openssl() -> None:
        subprocess.run(["openssl", "dgst", "-sha256", str(payload)], check=True, stdout=subprocess.DEVNULL)

    def ours() -> None:
        out = work / "packages" / str(next(counter))
        out.mkdir(parents=True)
        with PackageBuilder(out, agreement="bench-hash", recipient="health", schema=SCHEMA, signer=signer) as b:
            b.add_file("payload.csv", payload, record_count=0, link=True)
            b.seal(engine)

    openssl_s, ours_s = best_of(3, openssl), best_of(3, ours)
    result = {
        "bytes": size,
        "openssl_dgst_s": round(openssl_s, 3),
        "package_s": round(ours_s, 3),
        "openssl_mib_s": round(size / 2**20 / openssl_s, 1),
        "package_mib_s": round(size / 2**20 / ours_s, 1),
        "throughput_vs_openssl": round(openssl_s / ours_s, 3),
    }
    log(f"(a) {json.dumps(result)}")
    payload.unlink()
    return result


# -- (b) packing citizens from PostgreSQL ------------------------------------------------------------------------


def database_url() -> str:
    return SERVER_URL.rsplit("/", 1)[0] + "/" + DATABASE


def make_database(citizens: int) -> None:
    from population.generator import generate

    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{DATABASE}"'))
    admin.dispose()
    engine = create_population_engine(database_url())
    upgrade(engine)
    log(f"(b) generating {citizens:,} citizens")
    start = time.perf_counter()
    generate(engine, citizens, seed=1)
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    log(f"(b) generated in {time.perf_counter() - start:.0f} s")
    engine.dispose()


def drop_database() -> None:
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)'))
    admin.dispose()


def extract_sql(engine, rows: int) -> str:
    return str(extract_query(rows).compile(engine, compile_kwargs={"literal_binds": True}))


def copy_to_file(rows: int, target: Path) -> float:
    """The baseline: the server writes the same query's CSV to a file itself."""
    engine = create_population_engine(database_url())
    sql = extract_sql(engine, rows)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.parent.chmod(0o777)
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(text(f"COPY ({sql}) TO '{target}' WITH (FORMAT csv, HEADER true)"))
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def pack_in_child(way: str, rows: int, work: Path) -> dict:
    """Run one packing in a fresh process; it reports its time and peak RSS."""
    command = [sys.executable, __file__, "--child", way, "--rows", str(rows), "--work", str(work)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(way: str, rows: int, work: Path) -> None:
    engine = create_population_engine(database_url())
    signer = load_signer(init_pki(work / f"pki-{way}-{rows}", PASSWORD), "population", PASSWORD)
    out = work / f"packages-{way}-{rows}"
    out.mkdir(parents=True)
    start = time.perf_counter()
    with PackageBuilder(out, agreement=f"bench-{way}", recipient="health", schema=SCHEMA, signer=signer) as builder:
        if way == "copy":
            builder.add_postgres_copy("citizens.csv", engine, extract_query(rows))
        else:
            builder.add_rows("citizens.csv", extract_columns(), iter_extract(engine, rows))
        built = builder.seal(engine)
    elapsed = time.perf_counter() - start
    # VmHWM: this process's peak RSS. (ru_maxrss would not do: Linux keeps it across exec, from the parent.)
    status = Path("/proc/self/status").read_text().splitlines()
    peak_mib = int(next(line.split()[1] for line in status if line.startswith("VmHWM"))) / 1024
    print(json.dumps({"seconds": round(elapsed, 3), "peak_rss_mib": round(peak_mib, 1),
                      "records": built.manifest.record_count, "bytes": built.manifest.files[0].bytes}))  # fmt: skip


def bench_citizens(work: Path, citizens: int) -> dict:
    make_database(citizens)
    sizes = sorted({min(250_000, citizens), citizens})
    result: dict = {"citizens": citizens}
    for rows in sizes:
        baseline = min(copy_to_file(rows, work / f"copy-{rows}-{n}" / "citizens.csv") for n in range(2))
        copy = min((pack_in_child("copy", rows, work / f"copy-run-{n}") for n in range(2)), key=lambda r: r["seconds"])
        python = pack_in_child("python", rows, work / "python-run")
        result[str(rows)] = {
            "copy_to_file_s": round(baseline, 3),
            "package_copy_s": copy["seconds"],
            "package_copy_ratio": round(copy["seconds"] / baseline, 3),
            "package_copy_peak_rss_mib": copy["peak_rss_mib"],
            "package_python_s": python["seconds"],
            "package_python_ratio": round(python["seconds"] / baseline, 3),
            "package_python_peak_rss_mib": python["peak_rss_mib"],
            "payload_bytes": copy["bytes"],
        }
        log(f"(b) {rows:,} rows: {json.dumps(result[str(rows)])}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--payload-mib", type=int, default=1024)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--child", choices=["copy", "python"])
    parser.add_argument("--rows", type=int)
    parser.add_argument("--work", type=Path)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, arguments.rows, arguments.work)
        return
    with tempfile.TemporaryDirectory(prefix="bench-package-") as temporary:
        work = Path(temporary)
        work.chmod(0o755)  # the PostgreSQL server writes the COPY baseline in here
        hashing = bench_hash_and_sign(work, arguments.payload_mib)
        try:
            citizens = bench_citizens(work, arguments.citizens)
        finally:
            if not arguments.keep_database:
                drop_database()
    print(json.dumps({"benchmark": "packages", "machine": machine(), "hash_and_sign": hashing,
                      "citizens_package": citizens}))  # fmt: skip


if __name__ == "__main__":
    main()
