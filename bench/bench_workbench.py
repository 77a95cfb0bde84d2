"""Benchmark (issue 18): how fast the stewards' workbench answers on the 1M-citizen database with 100,000 held rows.

A scratch PostgreSQL database is created (migrated by Alembic, dropped at the end) and filled with ``--citizens``
generated citizens (``population.generator``). ``--held`` quarantined records are then made by the server from
those citizens (the row as JSON, its feed among the four outbound agreements, the province of its permanent ward,
one or two findings among six real rules of the four dimensions, one in fifty also failing the block rule on the
personal ID), spread over 100 validation runs; one in ten is released, one in twenty rejected. The shape of the
data is what the pages read; how it was held does not change their queries.

Each page is answered as the plugin answers it (``feeds.workbench.views``: the database reads, the page data and
the HTML), by a steward, in Vietnamese, ``--requests`` times after a warm-up, timed one by one: the queue as it
opens, filtered by feed, by expectation, by dimension and by province, a page deep in the queue, a record, the
mismatches (``--mismatches`` in the partners' latest reconciliations, as many again in the runs before, one in
twenty resolved) as they open and for one partner, and the trends (the 100 validation runs). The operators' page
is left out: it asks each partner whether it is up, which is the partners' time, not the page's.

Baseline, same run, same connection pool: the smallest query a page makes (``SELECT 1``), timed the same way.
The target is each page within 300 ms.

    .venv/bin/python bench/bench_workbench.py          # 1,000,000 citizens, 100,000 held: about 3 minutes

Prints its figures and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_snapshot import database_url, drop_database, log, machine, make_database  # noqa: E402

TARGET_MS = 300
AGREEMENTS = ("health-identity", "tax-identity", "land-owners", "business-founders")
# (rule, column, dimension, severity, reason): rules of the citizen-extract suite, as a run records them
RULES = (
    ("expect_column_values_to_be_free_of_legacy_d(full_name)", "full_name", "sạch", "quarantine",
     "full_name has no legacy 'Ð' (U+00D0) typed for 'Đ'"),
    ("expect_column_values_to_be_nfc(full_name)", "full_name", "sạch", "quarantine", "full_name is stored in NFC"),
    ("expect_administrative_unit_in_force(permanent_ward_code, updated_at)", "permanent_ward_code", "đúng",
     "quarantine", "permanent_ward_code is a ward in force on updated_at"),
    ("expect_column_values_to_not_be_null(ethnicity_code)", "ethnicity_code", "đủ", "quarantine",
     "ethnicity_code is present"),
    ("expect_no_active_card_after_death(date_of_death, card_status)", "date_of_death, card_status", "sống",
     "quarantine", "a dead person holds no active chip card"),
    ("expect_column_values_to_match_code_pattern(personal_id)", "personal_id", "đúng", "quarantine",
     "personal_id is 12 digits"),
)  # fmt: skip
BLOCK_RULE = ("expect_column_values_to_match_code_pattern(personal_id) share", "personal_id", "đúng", "block",
              "at most 1% of personal IDs fail the 12-digit gate")  # fmt: skip


def hold(url: str, held: int) -> dict:
    """``held`` quarantined records with their findings, made by the server from the generated citizens."""
    from sqlalchemy import text

    from population.db import create_population_engine

    engine = create_population_engine(url)
    started = time.perf_counter()
    with engine.begin() as connection:
        for run in range(100):
            connection.execute(
                text(
                    "INSERT INTO validation_run (dataset, agreement, suite, source, started_at, finished_at, rows, "
                    "passed, quarantined, flagged, blocked) VALUES ('citizen-extract', :agreement, "
                    "'citizen-extract.v1', :source, now() - make_interval(hours => :run), now(), 0, 0, 0, 0, false)"
                ),
                {"agreement": AGREEMENTS[run % 4], "source": f"bench run {run}", "run": 100 - run},
            )
        connection.execute(
            text(
                "INSERT INTO quarantined_record (run_id, dataset, agreement, province_code, row_number, personal_id, "
                "record, status, held_at) "
                "SELECT r.id, 'citizen-extract', r.agreement, u.province_code, c.n, c.personal_id, "
                "(to_jsonb(c) - 'n')::json, CASE WHEN c.n % 10 = 0 THEN 'released' WHEN c.n % 20 = 5 THEN 'rejected' "
                "ELSE 'held' END, now() "
                "FROM (SELECT ci.*, row_number() OVER (ORDER BY ci.id) AS n FROM citizen ci LIMIT :held) c "
                "JOIN validation_run r ON r.source = 'bench run ' || (c.n % 100) "
                "LEFT JOIN administrative_unit u ON u.level = 'ward' AND u.code = c.permanent_ward_code "
                "AND u.effective_to IS NULL"
            ).bindparams(held=held)
        )
        for number, (rule, column, dimension, severity, reason) in enumerate((*RULES, BLOCK_RULE)):
            # every record one finding by its number; every seventh a second one; every fiftieth the block rule
            which = (
                "q.id % 50 = 3"
                if severity == "block"
                else f"q.id % {len(RULES)} = {number} OR (q.id % 7 = 0 AND (q.id + 1) % {len(RULES)} = {number})"
            )
            connection.execute(
                text(
                    "INSERT INTO quarantine_finding (record_id, rule, column_name, value, dimension, severity, "
                    "reason, fingerprint) SELECT q.id, CAST(:rule AS text), CAST(:column AS text), "
                    "q.record ->> split_part(CAST(:column AS text), ',', 1), :dimension, :severity, :reason, "
                    "md5(q.id::text || CAST(:rule AS text)) || md5(CAST(:rule AS text)) "
                    f"FROM quarantined_record q WHERE {which}"
                ),
                {"rule": rule, "column": column, "dimension": dimension, "severity": severity, "reason": reason},
            )
        statuses = text("SELECT status, count(*) FROM quarantined_record GROUP BY status")
        counts = dict(connection.execute(statuses).all())
        findings = connection.scalar(text("SELECT count(*) FROM quarantine_finding"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("quarantined_record", "quarantine_finding", "validation_run"):
            connection.execute(text(f"VACUUM ANALYZE {table}"))  # as autovacuum would
    engine.dispose()
    return {"records": counts, "findings": findings, "seconds": round(time.perf_counter() - started, 1)}


PARTNERS = (("health", "health-insured"), ("tax", "tax-registrants"), ("land", "land-owners"),
            ("business", "business-roles"))  # fmt: skip
CLASSES = ("name_differs", "date_of_birth_differs", "sex_differs", "unknown_id", "dead_but_active", "duplicate_link")


def disagree(url: str, mismatches: int) -> dict:
    """Two reconciliations of each partner's registry, each with ``mismatches`` / 4 mismatches made by the server
    from the generated citizens (the second the same disagreements again), one in twenty resolved."""
    from sqlalchemy import text

    from population.db import create_population_engine
    from validation.reconciliation import disagreement_of

    engine = create_population_engine(url)
    per_run = mismatches // len(PARTNERS)
    with engine.begin() as connection:
        for day in (2, 1):
            for partner, dataset in PARTNERS:
                run = connection.execute(
                    text(
                        "INSERT INTO reconciliation_run (partner, dataset, source, started_at, finished_at, rows, "
                        "links_written) VALUES (:partner, :dataset, 'bench', now() - make_interval(days => :day), "
                        "now(), :rows, 0) RETURNING id"
                    ),
                    {"partner": partner, "dataset": dataset, "day": day, "rows": per_run * 10},
                ).scalar()
                connection.execute(
                    text(
                        "INSERT INTO reconciliation_mismatch (run_id, row_number, personal_id, citizen_id, "
                        "identifier, mismatch, partner_value, population_value, disagreement) "
                        "SELECT :run, n, personal_id, id, identifier, mismatch, partner_value, population_value, "
                        # validation.reconciliation.disagreement_of, by the server
                        "encode(sha256(convert_to(concat_ws(chr(31), CAST(:partner AS text), personal_id, "
                        "identifier, mismatch, partner_value, population_value), 'UTF8')), 'hex') "
                        "FROM (SELECT c.n, c.personal_id, c.id, lpad(c.id::text, 10, '0') AS identifier, "
                        "(CAST(:classes AS text[]))[1 + c.n % 6] AS mismatch, "
                        "c.full_name || ' (partner)' AS partner_value, c.full_name AS population_value "
                        "FROM (SELECT ci.*, row_number() OVER (ORDER BY ci.id) AS n FROM citizen ci "
                        "ORDER BY ci.id DESC LIMIT :rows) c) m"
                    ),
                    {"run": run, "rows": per_run, "classes": list(CLASSES), "partner": partner},
                )
        connection.execute(
            text(
                "INSERT INTO mismatch_resolution (mismatch_id, disagreement, resolution, steward, reason, "
                "resolved_at) SELECT id, disagreement, "
                "CASE WHEN id % 2 = 0 THEN 'partner_must_correct' ELSE 'population_right' END, "
                "'bench.steward', 'checked', now() FROM reconciliation_mismatch WHERE id % 20 = 0"
            )
        )
        total = connection.scalar(text("SELECT count(*) FROM reconciliation_mismatch"))
        sample = connection.execute(
            text("SELECT r.partner, m.personal_id, m.identifier, m.mismatch, m.partner_value, m.population_value, "
                 "m.disagreement FROM reconciliation_mismatch m JOIN reconciliation_run r ON r.id = m.run_id LIMIT 1")
        ).one()  # fmt: skip
        assert disagreement_of(*sample[:-1]) == sample[-1], "the server's key is not the platform's"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for table in ("reconciliation_run", "reconciliation_mismatch", "mismatch_resolution"):
            connection.execute(text(f"VACUUM ANALYZE {table}"))
    engine.dispose()
    return {"mismatches": total, "latest_runs": per_run * len(PARTNERS)}


def timed(answer, requests: int) -> dict:
    """``answer()`` once to warm up, then ``requests`` times, each timed: median, p95 and the slowest, in ms."""
    answer()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        answer()
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"median_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1), "max_ms": round(times[-1], 1)}  # fmt: skip


def pages(url: str, requests: int) -> dict:
    """Each page, answered by the plugin's own view functions, timed; and the baseline."""
    from sqlalchemy import text

    from feeds.workbench.access import Visitor
    from feeds.workbench.report_views import mismatches, trends
    from feeds.workbench.views import Request, population_session, queue, record

    os.environ["LIENTHONG_DB_URL"] = url
    steward = Request(Visitor("bench.steward", True, True), "vi", "/lienthong/", "token")
    with population_session() as session:
        deep = session.scalar(text("SELECT id FROM quarantined_record WHERE status = 'held' ORDER BY id DESC "
                                   "OFFSET 60 LIMIT 1"))  # fmt: skip
        one = session.scalar(text("SELECT id FROM quarantined_record WHERE status = 'held' ORDER BY id LIMIT 1"))
        province = session.scalar(text("SELECT province_code FROM quarantined_record WHERE province_code IS NOT NULL "
                                       "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"))  # fmt: skip

    def page(answer, *arguments):
        def run():
            answered = answer(steward, *arguments)
            assert answered.status == 200, answered.html[:300] if answered.html else answered
            return answered

        return run

    cases = {
        "queue as it opens": page(queue, {}),
        "queue, one feed": page(queue, {"agreement": "tax-identity"}),
        "queue, one expectation": page(queue, {"rule": RULES[2][0]}),
        "queue, one dimension": page(queue, {"dimension": "sống"}),
        "queue, one province": page(queue, {"province": province}),
        "queue, deep page": page(queue, {"after": str(deep)}),
        "record": page(record, one, {}),
        "mismatches as they open": page(mismatches, {}),
        "mismatches, one partner": page(mismatches, {"partner": "tax"}),
        "trends": page(trends, {}),
    }
    figures = {name: timed(answer, requests) for name, answer in cases.items()}

    def select_one():
        with population_session() as session:
            session.execute(text("SELECT 1")).scalar()

    figures["baseline: SELECT 1"] = timed(select_one, requests)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--citizens", type=int, default=1_000_000)
    parser.add_argument("--held", type=int, default=100_000)
    parser.add_argument("--mismatches", type=int, default=100_000, help="in each partner's latest runs, together")
    parser.add_argument("--requests", type=int, default=20)
    arguments = parser.parse_args()
    name = f"lienthong_bench_workbench_{uuid.uuid4().hex[:8]}"
    url = database_url(name)
    try:
        log(f"generating {arguments.citizens:,} citizens")
        generated = make_database(name, arguments.citizens)
        log(f"holding {arguments.held:,} records")
        held = hold(url, min(arguments.held, arguments.citizens))
        log(f"held: {held}")
        disagreements = disagree(url, min(arguments.mismatches, arguments.citizens))
        log(f"mismatches: {disagreements}")
        figures = pages(url, arguments.requests)
    finally:
        drop_database(name)
    baseline = figures["baseline: SELECT 1"]["median_ms"]
    print(f"{'page':<28} {'median':>9} {'p95':>9} {'max':>9}  vs SELECT 1 (median)")
    for page, f in figures.items():
        print(f"{page:<28} {f['median_ms']:>7} ms {f['p95_ms']:>7} ms {f['max_ms']:>7} ms  "
              f"{f['median_ms'] / baseline:,.0f}×")  # fmt: skip
    slowest = max(f["p95_ms"] for page, f in figures.items() if not page.startswith("baseline"))
    print(json.dumps({"machine": machine(), "citizens": arguments.citizens, "generate_s": round(generated, 1),
                      "held": held, "mismatches": disagreements, "pages": figures, "slowest_p95_ms": slowest,
                      "target_met": slowest <= TARGET_MS}, ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
