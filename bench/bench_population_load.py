"""Benchmark: generating and loading a synthetic population (issue 2).

Measures, in one run on this machine:
  1. ``generate`` of N citizens into PostgreSQL (drawing the population and COPY of households, citizens, cards);
  2. the same into SQLite (executemany in one transaction);
  3. the baseline: a plain ``COPY … FROM`` of the very same rows (dumped from step 1) into an empty, identically
     migrated PostgreSQL database.
Each step runs in its own process so that peak memory is its own. Targets: PostgreSQL under 60 s, SQLite under
120 s for 1,000,000 citizens. The last line printed is one JSON object with every figure.

    make bench                      # 1,000,000 citizens
    .venv/bin/python bench/bench_population_load.py --citizens 100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

PG_SERVER_URL = os.environ.get("LIENTHONG_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TABLES = ("household", "citizen", "id_card", "injected_defect")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _database(name: str) -> str:
    return PG_SERVER_URL.rsplit("/", 1)[0] + "/" + name


def _admin(sql: str) -> None:
    engine = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(sql))
    engine.dispose()


def run_generate(url: str, citizens: int, seed: int, defect_rate: float) -> dict:
    from population.db import create_population_engine
    from population.generator import generate
    from population.migrate import upgrade

    engine = create_population_engine(url)
    upgrade(engine)
    result = generate(engine, citizens, seed, defect_rate)
    return {"seconds": round(result.seconds, 2), "citizens": result.citizens, "households": result.households,
            "cards": result.cards, "peak_rss_mb": round(_peak_rss_mb(), 1)}  # fmt: skip


def run_dump(url: str, folder: str) -> dict:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
        for table in TABLES:
            with (
                open(Path(folder) / f"{table}.copy", "wb") as out,
                connection.cursor().copy(f"COPY {table} TO STDOUT") as copy,
            ):
                for block in copy:
                    out.write(block)
    return {}


def run_copy_from(url: str, folder: str) -> dict:
    import psycopg

    from population.db import create_population_engine
    from population.migrate import upgrade

    upgrade(create_population_engine(url))
    started = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as connection:
        for table in TABLES:
            with (
                open(Path(folder) / f"{table}.copy", "rb") as source,
                connection.cursor().copy(f"COPY {table} FROM STDIN") as copy,
            ):
                while block := source.read(1 << 20):
                    copy.write(block)
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def _in_child(step: str, *args) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--step", step, *map(str, args)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--defect-rate", type=float, default=0.02)
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        step, *rest = args.step
        handlers = {"generate": run_generate, "dump": run_dump, "copy_from": run_copy_from}
        converted = [int(rest[1]), int(rest[2]), float(rest[3])] if step == "generate" else []
        print(json.dumps(handlers[step](rest[0], *(converted or rest[1:]))))
        return

    tag = uuid.uuid4().hex[:8]
    generated_db, baseline_db = f"lienthong_bench_gen_{tag}", f"lienthong_bench_copy_{tag}"
    figures: dict = {"benchmark": "population_load", "citizens": args.citizens, "seed": args.seed,
                     "defect_rate": args.defect_rate, "machine": _machine()}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lienthong-bench-") as folder:
        try:
            _admin(f'CREATE DATABASE "{generated_db}"')
            _admin(f'CREATE DATABASE "{baseline_db}"')
            print(f"generating {args.citizens:,} citizens into PostgreSQL …", file=sys.stderr)
            figures["postgresql"] = _in_child("generate", _database(generated_db), args.citizens, args.seed,
                                              args.defect_rate)  # fmt: skip
            _in_child("dump", _database(generated_db), folder)
            figures["copy_bytes"] = sum(f.stat().st_size for f in Path(folder).glob("*.copy"))
            print("plain COPY FROM of the same rows …", file=sys.stderr)
            figures["copy_from_baseline"] = _in_child("copy_from", _database(baseline_db), folder)
        finally:
            _admin(f'DROP DATABASE IF EXISTS "{generated_db}" WITH (FORCE)')
            _admin(f'DROP DATABASE IF EXISTS "{baseline_db}" WITH (FORCE)')
        print(f"generating {args.citizens:,} citizens into SQLite …", file=sys.stderr)
        figures["sqlite"] = _in_child("generate", f"sqlite:///{Path(folder) / 'bench.db'}", args.citizens, args.seed,
                                      args.defect_rate)  # fmt: skip
    pg, sqlite, baseline = figures["postgresql"], figures["sqlite"], figures["copy_from_baseline"]
    figures["postgresql_vs_copy_from"] = round(pg["seconds"] / baseline["seconds"], 2)
    figures["postgresql_rows_per_second"] = round(args.citizens / pg["seconds"])
    figures["sqlite_rows_per_second"] = round(args.citizens / sqlite["seconds"])
    scale = args.citizens / 1_000_000
    figures["targets_met"] = {"postgresql_under_60s_per_million": pg["seconds"] / scale < 60,
                              "sqlite_under_120s_per_million": sqlite["seconds"] / scale < 120}  # fmt: skip
    print(f"PostgreSQL: {pg['seconds']} s ({figures['postgresql_rows_per_second']:,} citizens/s, "
          f"peak {pg['peak_rss_mb']} MB); plain COPY FROM of the same rows: {baseline['seconds']} s "
          f"(ratio {figures['postgresql_vs_copy_from']}×); SQLite: {sqlite['seconds']} s "
          f"(peak {sqlite['peak_rss_mb']} MB)", file=sys.stderr)  # fmt: skip
    print(json.dumps(figures))


def _machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}  # fmt: skip


if __name__ == "__main__":
    main()
