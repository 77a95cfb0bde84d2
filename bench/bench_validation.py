"""Benchmark: validating the extracted population with the full suite, against the extraction alone.

For each size, a scratch PostgreSQL database is created, a population generated into it (seed 1, 2% defects),
and then, each in its own process so that peak RSS is its own:
- ``extract``: stream the canonical extract (``population.extract.iter_extract``) and turn it into batches of
  text, as validation receives it (``validation.runner.extract_batches``), doing nothing else;
- ``stream``: the same stream validated with the full suite in batches of 100,000 (Great Expectations, pandas),
  findings to the quarantine table, the CSV and the run's Data Docs: the packaging path;
- ``pushdown``: the suite run as SQL in PostgreSQL (first size only).
Validation time over extraction time is the ratio the target speaks of (at most 3x). The database is dropped.

    .venv/bin/python bench/bench_validation.py --citizens 1000000 --memory-citizens 2000000

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
AS_OF = date(2026, 7, 1)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step(name: str, url: str, scratch: str) -> dict:
    """Run one step in this process; return its figures."""
    from population.db import create_population_engine

    engine = create_population_engine(url)
    started = time.perf_counter()
    if name == "extract":
        from validation.runner import extract_batches

        rows = sum(len(batch) for batch in extract_batches(engine))
        return dict(rows=rows, seconds=time.perf_counter() - started, peak_rss_mb=_peak_rss_mb())
    from validation.quarantine import QuarantineStore
    from validation.reports import FindingsCsv
    from validation.suites import build_suite

    suite = build_suite("citizen-extract", as_of=AS_OF)
    out = Path(scratch) / name
    store = QuarantineStore(engine, suite.spec.name, suite.suite.name, name)
    sinks = [FindingsCsv(out / "quarantine.csv"), store]
    if name == "stream":
        from validation.runner import StreamValidation, extract_batches

        run = StreamValidation(suite, sinks, store.waivers, "database", out / "data-docs")
        passed = sum(len(batch) for batch in run.passing(extract_batches(engine)))
        outcome = run.outcome
    else:
        from validation.pushdown import DatabaseValidation

        with DatabaseValidation(engine, suite, sinks, store.waivers, data_docs_dir=out / "data-docs") as run:
            outcome = run.validate()
            passed = outcome.passed
    return dict(rows=outcome.rows, passed=passed, quarantined=outcome.quarantined, flagged=outcome.flagged,
                scores={d: round(s, 5) for d, s in outcome.scores.items()},
                seconds=time.perf_counter() - started, peak_rss_mb=_peak_rss_mb())  # fmt: skip


def _in_process(name: str, url: str, scratch: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--step", name, "--url", url, "--scratch", scratch],
        check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(citizens: int, server: str, steps: tuple[str, ...]) -> dict:
    from sqlalchemy import create_engine, text

    from population.db import create_population_engine
    from population.generator import generate
    from population.migrate import upgrade

    name = f"lienthong_bench_validation_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        engine = create_population_engine(url)
        upgrade(engine)
        started = time.perf_counter()
        generate(engine, citizens, seed=1, defect_rate=0.02, as_of=AS_OF)
        print(f"generated {citizens:,} citizens in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("ANALYZE"))  # as autovacuum would: without statistics the extract's plan is bad
        engine.dispose()
        figures = {}
        with tempfile.TemporaryDirectory() as scratch:
            for name_ in steps:
                figures[name_] = _in_process(name_, url, scratch)
                print(f"  {citizens:,} {name_}: {figures[name_]}", file=sys.stderr)
        return figures
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--memory-citizens", type=int, default=4_000_000, help="second size, for peak memory")
    parser.add_argument(
        "--server", default=os.environ.get("LIENTHONG_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(step(args.step, args.url, args.scratch)))
        return
    from population.db import normalise_url

    server = normalise_url(args.server)
    first = measure(args.citizens, server, ("extract", "stream", "pushdown"))
    second = measure(args.memory_citizens, server, ("stream",))
    ratio = first["stream"]["seconds"] / first["extract"]["seconds"]
    memory_growth = second["stream"]["peak_rss_mb"] / first["stream"]["peak_rss_mb"] - 1
    print(f"validation / extraction at {args.citizens:,}: {ratio:.2f}x (target <= 3x)")
    print(
        f"peak RSS of validation: {first['stream']['peak_rss_mb']:.0f} MB at {args.citizens:,}, "
        f"{second['stream']['peak_rss_mb']:.0f} MB at {args.memory_citizens:,} ({memory_growth:+.1%}; target ±20%)"
    )
    print(json.dumps({"benchmark": "validation", "citizens": args.citizens, "memory_citizens": args.memory_citizens,
                      "extract_seconds": round(first["extract"]["seconds"], 1),
                      "stream_seconds": round(first["stream"]["seconds"], 1),
                      "pushdown_seconds": round(first["pushdown"]["seconds"], 1),
                      "ratio": round(ratio, 2),
                      "peak_rss_mb": {str(args.citizens): round(first["stream"]["peak_rss_mb"]),
                                      str(args.memory_citizens): round(second["stream"]["peak_rss_mb"])},
                      "memory_growth": round(memory_growth, 3), "first": first, "second": second}))  # fmt: skip


if __name__ == "__main__":
    main()
