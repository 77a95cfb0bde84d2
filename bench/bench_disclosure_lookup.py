"""Benchmark (issue 19, part 2): looking up one citizen's disclosures with 10 million index rows.

A scratch PostgreSQL database is created (migrated by Alembic, then dropped at the end) and filled directly with
SQL: ``--packages`` packages spread over the four partners' agreements, each with its receipt in the ledger, and
``--rows`` index rows over ``--citizens`` citizens (personal IDs ``000000000000`` upward, a citizen in about
rows/citizens packages). Each row's subject is the real HMAC-SHA256 of the personal ID under the benchmark's key,
computed by the server from the key's inner and outer pads (RFC 2104; only here, to make 10 million rows quickly: the
platform itself never sends the key to the database), so that the lookup measured is the command's own:
``feeds.disclosures.lookup(engine, personal_id)`` (the HMAC, "is it a citizen?", the index, the packages, the
receipts from the ledger), for ``--lookups`` random citizens, after a warm-up, timed one by one.

Baseline, same run, same connection pool: the smallest query a lookup makes (``SELECT 1``), timed the same way.

    .venv/bin/python bench/bench_disclosure_lookup.py --rows 10000000     # about 3 minutes on 2 cores

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_snapshot import SERVER_URL, database_url, drop_database, log, machine  # noqa: E402

KEY = b"bench disclosure key"
AGREEMENTS = (("health-identity", "health"), ("tax-identity", "tax"), ("land-owners", "land"),
              ("business-founders", "business"))  # fmt: skip


def pads(key: bytes) -> tuple[bytes, bytes]:
    block = (key if len(key) <= 64 else hashlib.sha256(key).digest()).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def fill(url: str, rows: int, citizens: int, packages: int) -> dict:
    """The scratch database migrated, then filled by the server: packages, their receipts, the index rows."""
    from sqlalchemy import create_engine, text

    from population.db import create_population_engine
    from population.migrate import upgrade

    admin = create_engine(SERVER_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    engine = create_population_engine(url)
    upgrade(engine)
    inner, outer = pads(KEY)
    marks = {}
    started = time.perf_counter()
    values = ", ".join(f"('{a}', '{p}')" for a, p in AGREEMENTS)
    with engine.begin() as connection:
        connection.execute(text(f"""
            INSERT INTO disclosure_package (id, package_id, agreement, direction, sender, recipient, mode, sequence,
                fields, legal_basis, purpose, record_count, created_at, recorded_at)
            SELECT g, md5(g::text)::uuid::text, a.agreement, 'outbound', 'population', a.partner, 'incremental',
                g, '["personal_id", "full_name", "date_of_birth", "updated_at"]',
                '["Law on Identification No. 26/2023/QH15, art. 10"]', 'bench', 0,
                timestamptz '2026-01-01' + g * interval '1 hour', timestamptz '2026-01-01' + g * interval '1 hour'
            FROM generate_series(1, :packages) g
            JOIN (SELECT row_number() OVER () - 1 AS n, * FROM (VALUES {values}) v(agreement, partner)) a
              ON a.n = g % 4"""), {"packages": packages})  # fmt: skip
        connection.execute(text("""
            INSERT INTO ledger_entry (position, kind, agreement, direction, sender, recipient, package_id, sequence,
                manifest_sha256, record_count, status, signer_fingerprint, recorded_at, previous_hash, entry_hash)
            SELECT id, 'receipt_received', agreement, direction, recipient, sender, package_id, sequence,
                repeat('0', 64), 1, 'accepted', repeat('f', 64), recorded_at + interval '5 minutes', repeat('0', 64),
                repeat('0', 64)
            FROM disclosure_package"""))  # fmt: skip
    marks["packages_s"] = time.perf_counter() - started
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_disclosure_subject"))  # built once, after the rows
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        connection.execute(
            text("""
            INSERT INTO disclosure (subject, package)
            SELECT sha256(:outer || sha256(:inner || convert_to(lpad((g % :citizens)::text, 12, '0'), 'UTF8'))),
                   1 + ((g::bigint * 7919 + (g / :citizens) * 104729) % :packages)  -- each time another package
            FROM generate_series(0, :rows - 1) g"""),
            {"inner": inner, "outer": outer, "citizens": citizens, "packages": packages, "rows": rows},
        )
    marks["rows_s"] = time.perf_counter() - started - marks["packages_s"]
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("SET maintenance_work_mem = '512MB'"))
        connection.execute(text("CREATE INDEX ix_disclosure_subject ON disclosure (subject, package)"))
        connection.execute(text("VACUUM ANALYZE disclosure"))
        connection.execute(text("ANALYZE"))
        size = connection.execute(
            text("SELECT pg_total_relation_size('disclosure'), pg_relation_size('ix_disclosure_subject')")
        ).one()
    marks["index_s"] = time.perf_counter() - started - marks["packages_s"] - marks["rows_s"]
    engine.dispose()
    return {k: round(v, 1) for k, v in marks.items()} | {"table_and_index_mib": round(size[0] / 2**20),
                                                          "index_mib": round(size[1] / 2**20)}  # fmt: skip


def timed(action, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"p50_ms": round(statistics.median(ordered), 3), "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 3),
            "max_ms": round(ordered[-1], 3), "mean_ms": round(statistics.fmean(ordered), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--citizens", type=int, default=2_000_000)
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200)
    arguments = parser.parse_args()
    os.environ["LIENTHONG_DISCLOSURE_KEY"] = KEY.decode()

    from sqlalchemy import text

    from feeds.disclosures import lookup
    from population.db import create_population_engine

    name = f"lienthong_bench_lookup_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    citizens = min(arguments.citizens, arguments.rows)
    figures: dict = {"benchmark": "disclosure_lookup", "machine": machine(), "rows": arguments.rows,
                     "citizens": citizens, "packages": arguments.packages, "lookups": arguments.lookups}  # fmt: skip
    try:
        log(f"filling {arguments.rows:,} index rows")
        figures["fill"] = fill(url, arguments.rows, citizens, arguments.packages)
        log(f"filled: {figures['fill']}")
        engine = create_population_engine(url)
        chosen = [f"{n:012d}" for n in random.Random(19).sample(range(citizens), min(arguments.lookups, citizens))]
        for personal_id in chosen[:20]:  # warm-up: the pool, the plans, the index's upper levels
            lookup(engine, personal_id)
        found = [lookup(engine, personal_id) for personal_id in chosen]
        figures["disclosures_per_citizen"] = round(statistics.fmean(len(f.sent) for f in found), 2)
        assert all(f.sent and all(d.receipt_status == "accepted" for d in f.sent) for f in found)
        pending = iter(chosen)
        lookup_times = timed(lambda: lookup(engine, next(pending)), len(chosen))
        figures["lookup"] = summary(lookup_times)

        def select_one() -> None:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        figures["baseline_select_1"] = summary(timed(select_one, len(chosen)))
        engine.dispose()
    finally:
        drop_database(name)
    figures["lookup_p95_vs_baseline_p95"] = round(
        figures["lookup"]["p95_ms"] / figures["baseline_select_1"]["p95_ms"], 1
    )
    figures["lookups_over_50_ms"] = sum(1 for t in lookup_times if t > 50)
    figures["target_met"] = figures["lookup"]["max_ms"] <= 50
    for key, value in figures.items():
        log(f"{key}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
