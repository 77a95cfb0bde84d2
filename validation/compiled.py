"""A suite's row rules evaluated in one pass over a table, with the SQL conditions Great Expectations itself uses.

Great Expectations' SQL engine runs a suite as several queries per expectation (counts, the failing values, the
failing rows' index, the missing values) — about 125 queries for the population extract, each a scan of the
table, plus about a second of building its metric graph per validation in Python. For a snapshot sharded into
35 provinces that overhead is most of the run.

Here each row-level expectation's *unexpected condition* is asked of Great Expectations once: the
``<metric>.condition`` metric its metric provider defines for the SQL engine (stock or ours in
``validation.expectations``), resolved by GE's own validator against the table's columns. Those conditions are
then evaluated together, in one scan listing the failing rows and which rules they fail (the failures are counted
from it); a second, cheap scan counts the rows each rule judged. What a rule "judged" follows Great Expectations'
results: every row for the null/not-null expectations, the rows where the column is present for other column
expectations, and for pairs and column lists the rows their ``ignore_row_if`` keeps. Table-level expectations
(the columns' shape) are still validated by Great Expectations itself.

>>> rules = compile_rules(engine, suite, "validation_snapshot_x")       # once per suite and process
>>> total, judged = judged_counts(connection, rules, "validation_snapshot_x")    # rows, [judged, ...] per rule
>>> failing = failing_rows(connection, rules, "validation_snapshot_x", "row_number")  # [(rule, [row, ...]), ...]

``tests/validation/test_compiled.py`` checks that this finds what Great Expectations' own runs find.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from great_expectations.expectations.expectation import (
    ColumnMapExpectation,
    ColumnPairMapExpectation,
    Expectation,
    MulticolumnMapExpectation,
)
from great_expectations.validator.metric_configuration import MetricConfiguration
from great_expectations.validator.validator import Validator
from sqlalchemy import Engine

from validation.context import new_context, unique_name
from validation.suites import DatasetSuite, columns_of

UNEXPECTED_COUNT = "unexpected_count"
CONDITION = "condition"
JUDGES_EVERY_ROW = {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}


@dataclass(frozen=True)
class CompiledRule:
    """One row-level expectation: its configuration, and SQL for the rows it judged and the rows that fail it."""

    config: Any  # ExpectationConfiguration: type, kwargs, meta (rule, dimension, severity), description
    judged: Any  # SQLAlchemy boolean clause over the table's columns
    unexpected: Any

    @property
    def columns(self) -> tuple[str, ...]:
        return columns_of(self.config.kwargs)


_compiled: dict[tuple[str, str], list[CompiledRule]] = {}


def row_expectations(suite: DatasetSuite) -> list[Expectation]:
    return [e for e in suite.suite.expectations if columns_of(e.configuration.kwargs)]


def table_expectations(suite: DatasetSuite) -> list[Expectation]:
    return [e for e in suite.suite.expectations if not columns_of(e.configuration.kwargs)]


def compile_rules(engine: Engine, suite: DatasetSuite, table: str) -> list[CompiledRule]:
    """The suite's row-level rules as SQL, resolved by Great Expectations against ``table`` (any table with the
    suite's columns: only their names and types are read). Cached per suite content and database."""
    expectations = row_expectations(suite)
    configs = [e.configuration for e in expectations]
    key = (engine.url.render_as_string(hide_password=True),
           json.dumps([c.to_json_dict() for c in configs], sort_keys=True, default=str))  # fmt: skip
    if key not in _compiled:
        _compiled[key] = _resolve(engine, expectations, configs, table)
    return _compiled[key]


def _resolve(engine: Engine, expectations: list[Expectation], configs: list, table: str) -> list[CompiledRule]:
    context = new_context()
    url = engine.url.render_as_string(hide_password=False)
    name = unique_name("rules")
    add = context.data_sources.add_sqlite if engine.dialect.name == "sqlite" else context.data_sources.add_postgres
    source = add(name, connection_string=url)
    try:
        batch = source.add_table_asset("rules", table_name=table).add_batch_definition_whole_table("all").get_batch()
        execution_engine = batch.data.execution_engine
        validator = Validator(execution_engine=execution_engine, data_context=context, batches=[batch])
        wanted = []
        for expectation in expectations:
            if expectation.configuration.kwargs.get("row_condition"):
                raise NotImplementedError(f"{expectation.meta['rule']}: row conditions are not compiled")
            dependencies = expectation.get_validation_dependencies(
                execution_engine=execution_engine, runtime_configuration={"result_format": "BASIC"}
            )
            count = dependencies.get_metric_configuration(f"{expectation.map_metric}.{UNEXPECTED_COUNT}")
            wanted.append(MetricConfiguration(f"{expectation.map_metric}.{CONDITION}", count.metric_domain_kwargs,
                                              count.metric_value_kwargs))  # fmt: skip
        resolved, failures = validator.compute_metrics(wanted, runtime_configuration=None)
        if failures:
            raise RuntimeError(f"Great Expectations could not resolve the rules' conditions: {failures}")
    finally:
        source.get_engine().dispose()
    rules = []
    for expectation, config, metric in zip(expectations, configs, wanted, strict=True):
        condition = resolved[metric.id][0]
        judged = _judged(expectation, config, metric.metric_domain_kwargs)
        rules.append(CompiledRule(config, judged, sa.and_(judged, condition)))
    return rules


def _judged(expectation: Expectation, config, domain: dict):
    """The rows Great Expectations counts as evaluated for this expectation (element count less missing)."""
    columns = [sa.column(c) for c in columns_of(config.kwargs)]
    if config.type in JUDGES_EVERY_ROW:
        return sa.true()
    if isinstance(expectation, ColumnMapExpectation):
        return columns[0].isnot(None)
    ignore = domain.get("ignore_row_if")
    if isinstance(expectation, ColumnPairMapExpectation):
        a, b = columns
        return {
            "both_values_are_missing": sa.or_(a.isnot(None), b.isnot(None)),
            "either_value_is_missing": sa.and_(a.isnot(None), b.isnot(None)),
            "neither": sa.true(),
        }[ignore or "both_values_are_missing"]
    if isinstance(expectation, MulticolumnMapExpectation):
        return {
            "all_values_are_missing": sa.or_(*(c.isnot(None) for c in columns)),
            "any_value_is_missing": sa.and_(*(c.isnot(None) for c in columns)),
            "never": sa.true(),
        }[ignore or "all_values_are_missing"]
    raise NotImplementedError(f"{config.type}: not a map expectation")


def _flag(condition):
    return sa.case((condition, 1), else_=0)


SCRATCH = "scratch"  # the name the rules' statements give the table they read
_statements: dict[tuple[int, str, str], tuple[list[CompiledRule], str]] = {}


def _statement(connection: sa.Connection, rules: list[CompiledRule], kind: str, build) -> str:
    """A statement over the rules, compiled once per rule list and dialect (a suite's rules are compiled in the
    SQL of every shard the same way: compiling them anew cost a tenth of a second a shard). It reads the table
    as ``scratch``; the caller puts the table in front."""
    key = (id(rules), connection.dialect.name, kind)
    cached = _statements.get(key)
    if cached is None or cached[0] is not rules:
        sql = str(build().compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        cached = _statements[key] = (rules, sql)
    return cached[1]


def _over(table: str, statement: str) -> str:
    return f"WITH {SCRATCH} AS (SELECT * FROM {table}) {statement}"


def judged_counts(connection: sa.Connection, rules: list[CompiledRule], table: str) -> tuple[int, list[int]]:
    """The table's rows, and per rule the rows it judged (null checks only: one cheap scan)."""

    def build():
        counts = (sa.func.sum(_flag(rule.judged)) for rule in rules)
        return sa.select(sa.func.count(), *counts).select_from(sa.table(SCRATCH))

    statement = _statement(connection, rules, "judged", build)
    row = connection.exec_driver_sql(_over(table, statement)).one()
    return int(row[0]), [int(count or 0) for count in row[1:]]


def failing_rows(
    connection: sa.Connection, rules: list[CompiledRule], table: str, index: str
) -> list[tuple[CompiledRule, list[int]]]:
    """Per rule, the rows (by ``index``) that fail it, in order: one scan evaluating every rule, failing rows
    only leave the database."""
    if not rules:
        return []

    def build():
        flags = [_flag(rule.unexpected).label(f"rule_{i}") for i, rule in enumerate(rules)]
        return (sa.select(sa.column(index), *flags).select_from(sa.table(SCRATCH))
                .where(sa.or_(*(rule.unexpected for rule in rules))).order_by(sa.column(index)))  # fmt: skip

    statement = _statement(connection, rules, f"failing by {index}", build)
    rows: list[list[int]] = [[] for _ in rules]
    for row in connection.exec_driver_sql(_over(table, statement)):
        for i, flag in enumerate(row[1:]):
            if flag:
                rows[i].append(int(row[0]))
    return list(zip(rules, rows, strict=True))
