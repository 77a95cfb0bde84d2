"""The suite's row rules compiled into one pass (``validation.compiled``) find exactly what Great Expectations' own
SQL run finds on the same table: per rule, the rows it judged, the rows that fail it, and which rows they are."""

from __future__ import annotations

import pytest

from tests.validation.conftest import AS_OF
from validation.compiled import compile_rules, failing_rows, judged_counts, row_expectations
from validation.context import new_context, unique_name
from validation.outcome import DatasetBlocked
from validation.pushdown import DatabaseValidation
from validation.runner import RESULT_FORMAT
from validation.suites import ROW_NUMBER, build_suite


def great_expectations_run(engine, suite, table: str) -> dict:
    """Great Expectations' own SQL validation of the whole table: per rule, (judged, unexpected, failing rows)."""
    context = new_context()
    url = engine.url.render_as_string(hide_password=False)
    add = context.data_sources.add_sqlite if engine.dialect.name == "sqlite" else context.data_sources.add_postgres
    source = add(unique_name("reference"), connection_string=url)
    try:
        batch = source.add_table_asset("extract", table_name=table).add_batch_definition_whole_table("all").get_batch()
        result = batch.validate(suite.suite, result_format={**RESULT_FORMAT, "partial_unexpected_count": 100_000,
                                                            "unexpected_index_column_names": [ROW_NUMBER]})  # fmt: skip
    finally:
        source.get_engine().dispose()
    figures = {}
    for item in result.results:
        stats = item.result or {}
        if "unexpected_count" not in stats:
            continue  # table-level
        rows = sorted(int(found[ROW_NUMBER]) for found in stats.get("unexpected_index_list") or [])
        judged = stats["element_count"] - stats.get("missing_count", 0)
        figures[item.expectation_config.meta["rule"]] = (judged, stats["unexpected_count"], rows)
    return figures


def test_the_compiled_rules_find_what_great_expectations_finds(population):
    suite = build_suite("citizen-extract", as_of=AS_OF)
    with DatabaseValidation(population, suite) as run:
        expected = great_expectations_run(population, suite, run.snapshot)
        rules = compile_rules(population, suite, run.snapshot)
        with population.connect() as connection:
            total, judged = judged_counts(connection, rules, run.snapshot)
            failing = failing_rows(connection, rules, run.snapshot, ROW_NUMBER)
    assert total == 3_000
    found = {rule.config.meta["rule"]: (count, len(rows), rows)
             for (rule, rows), count in zip(failing, judged, strict=True)}  # fmt: skip
    assert set(found) == set(expected) == {e.configuration.meta["rule"] for e in row_expectations(suite)}
    for name, figures in expected.items():
        assert found[name] == figures, name
    assert sum(unexpected for _, unexpected, _ in found.values()) > 100  # the 5% defects are there to find


def test_the_rules_are_resolved_once_per_suite(population):
    suite = build_suite("citizen-extract", as_of=AS_OF)
    with DatabaseValidation(population, suite) as run:
        first = compile_rules(population, suite, run.snapshot)
    again = build_suite("citizen-extract", as_of=AS_OF)  # the same rules, built anew (as each shard does)
    with DatabaseValidation(population, again) as run:
        assert compile_rules(population, again, run.snapshot) is first
    later = build_suite("citizen-extract", as_of=AS_OF.replace(year=2027))  # another freshness window
    with DatabaseValidation(population, later) as run:
        assert compile_rules(population, later, run.snapshot) is not first


def test_a_table_that_is_not_the_contract_blocks_and_every_rule_is_reported(population):
    suite = build_suite("citizen-extract", as_of=AS_OF)
    shape = next(e for e in suite.suite.expectations if e.expectation_type == "expect_table_columns_to_match_set")
    shape.column_set = [*shape.column_set, "blood_group"]  # a column the extract does not have
    with DatabaseValidation(population, suite) as run, pytest.raises(DatasetBlocked) as blocked:
        run.validate()
    assert "expect_table_columns_to_match_set" in str(blocked.value)  # and the columns it saw
    assert len(blocked.value.outcome.rules) == len(suite.suite.expectations)
