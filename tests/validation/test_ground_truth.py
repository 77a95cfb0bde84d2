"""The suites against the ground truth of a generated population: every injected defect type is found (recall
100% per type) and fewer than 0.1% of clean records are flagged. Both ways of running agree: streamed in batches
(pandas) and pushed down to the database (SQL), on SQLite and on PostgreSQL."""

import pandas as pd
import pytest

from population.generator import DEFECT_TYPES, generate
from tests.validation.conftest import AS_OF
from validation.ground_truth import FlaggedRecords, score
from validation.pushdown import DatabaseValidation
from validation.reports import FindingsCsv
from validation.runner import StreamValidation, extract_batches
from validation.suites import build_suite


@pytest.mark.slow
def test_every_defect_type_is_found_and_clean_records_stay_clean(db):
    generate(db, 20_000, seed=2026, defect_rate=0.05, as_of=AS_OF)
    flagged = FlaggedRecords()
    run = StreamValidation(build_suite("citizen-extract", as_of=AS_OF), [flagged])
    for _ in run.passing(extract_batches(db)):
        pass
    result = score(db, flagged.personal_ids)
    assert set(result.by_type) == set(DEFECT_TYPES)
    for kind in DEFECT_TYPES:
        assert result.recall(kind) == 1.0, (kind, result.by_type[kind])
    assert result.clean_flagged_share < 0.001, result.clean_flagged


def test_sql_push_down_finds_what_the_stream_finds(population, tmp_path):
    suite = build_suite("citizen-extract", as_of=AS_OF)
    stream = StreamValidation(suite, [FindingsCsv(tmp_path / "stream.csv")])
    for _ in stream.passing(extract_batches(population, batch_rows=1_000)):
        pass
    with DatabaseValidation(population, suite, [FindingsCsv(tmp_path / "sql.csv")]) as run:
        run.validate()
        passing = pd.concat(run.passing(batch_rows=500))
    keys = ["row_number", "personal_id", "expectation", "severity"]
    from_stream = pd.read_csv(tmp_path / "stream.csv", dtype=str)[keys].sort_values(keys).reset_index(drop=True)
    from_sql = pd.read_csv(tmp_path / "sql.csv", dtype=str)[keys].sort_values(keys).reset_index(drop=True)
    assert len(from_stream) > 100
    pd.testing.assert_frame_equal(from_stream, from_sql)
    assert run.outcome.scores == stream.outcome.scores
    assert len(passing) == stream.outcome.passed
    with population.connect() as connection:  # the scratch tables are gone
        from sqlalchemy import inspect

        assert not [t for t in inspect(connection).get_table_names() if t.startswith("validation_snapshot")]
