"""Validation pushed down to the database, where the population already sits (PostgreSQL, and SQLite alike).

The extract is materialised once into a scratch table, as text (the same values a CSV export would hold), with
the bookkeeping and cross-row columns computed by window functions: row number, an earlier record of the same
person, an earlier row with the same personal ID. The suite's table-level expectations run in Great Expectations
on that table; its row rules, compiled from Great Expectations' own SQL conditions (``validation.compiled``), are
evaluated in one scan, so that only the failing rows ever leave the database. Households are validated on a
GROUP BY roll-up, in Great Expectations. Data Docs show the whole suite with the run's figures.

>>> with DatabaseValidation(engine, build_suite("citizen-extract"), sinks=[store], waivers=store.waivers) as run:
...     outcome = run.validate()        # raises DatasetBlocked, after recording, if the dataset must stop
...     for batch in run.passing():     # the rows that may go out, as DataFrames of text
...         package.write(batch)

The scratch tables (``validation_snapshot_*``, ``validation_held_*``; UNLOGGED on PostgreSQL) are dropped on exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from uuid import uuid4

import great_expectations as gx
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Engine, func, select

from population.db import is_sqlite
from population.extract import extract_query
from population.models import Citizen
from validation.compiled import compile_rules, failing_rows, judged_counts, table_expectations
from validation.context import new_context, unique_name
from validation.crossrow import CrossRowIndex
from validation.runner import (
    RESULT_FORMAT,
    SAMPLE_VALUES,
    BatchedRun,
    FindingSink,
    ValidationOutcome,
    Waivers,
    findings_of,
    household_findings,
)
from validation.suites import (
    BATCH_NUMBER,
    DUPLICATE_OF,
    HEADS,
    MEMBERS,
    REPEAT_OF_ROW,
    ROW_NUMBER,
    DatasetSuite,
)

FETCH_ROWS = 1_000  # failing rows fetched per query


def _snapshot_query(suite: DatasetSuite):
    """The extract as text, numbered, with the cross-row columns, as one SELECT."""
    extract = extract_query(None).add_columns(Citizen.id.label("_citizen_id"), Citizen.name_fold.label("_fold"))
    e = extract.order_by(None).subquery("e")
    numbered = select(e, func.row_number().over(order_by=e.c._citizen_id).label(ROW_NUMBER)).subquery("n")
    n = numbered.c
    columns = [n[ROW_NUMBER], sa.literal(1).label(BATCH_NUMBER)]  # one batch: the rules run over the whole table
    columns += [sa.cast(n[c], sa.String).label(c) for c in suite.columns]
    if suite.person_key:
        key = [n._fold, *(n[c] for c in suite.person_key[1:])]
        earlier = func.row_number().over(partition_by=key, order_by=n[ROW_NUMBER]) > 1
        first = func.first_value(n.personal_id).over(partition_by=key, order_by=n[ROW_NUMBER])
        known = sa.and_(n.full_name.isnot(None), n.date_of_birth.isnot(None), earlier)
        columns.append(sa.case((known, first)).label(DUPLICATE_OF))
    if suite.repeat_key:
        value = n[suite.repeat_key]
        earlier = func.row_number().over(partition_by=value, order_by=n[ROW_NUMBER]) > 1
        first = func.min(n[ROW_NUMBER]).over(partition_by=value)
        columns.append(sa.case((sa.and_(value.isnot(None), earlier), first)).label(REPEAT_OF_ROW))
    return select(*columns)


def _values(records: pd.DataFrame, columns: tuple[str, ...], rows: list[int]) -> list:
    """The failing values of some rows, as Great Expectations lists them: the value, or a dict for a pair."""
    if not rows:
        return []
    chosen = records.loc[rows, list(columns)]
    chosen = chosen.astype(object).where(chosen.notna(), None)
    if len(columns) == 1:
        return chosen[columns[0]].tolist()
    return chosen.to_dict("records")


class DatabaseValidation(BatchedRun):
    """One validation of the population extract inside the database; a context manager."""

    def __init__(
        self,
        engine: Engine,
        suite: DatasetSuite,
        sinks: Sequence[FindingSink] = (),
        waivers: Waivers | None = None,
        data_docs_dir: Path | None = None,
        scratch_dir: Path | None = None,
    ):
        if suite.spec.name != "citizen-extract":
            raise ValueError("only the population extract lives in the database; validate partner files as streams")
        super().__init__(suite, sinks, waivers, "database", data_docs_dir, scratch_dir)
        self.engine = engine
        token = uuid4().hex[:10]
        self.snapshot = f"validation_snapshot_{token}"
        self.held = f"validation_held_{token}"

    def __enter__(self) -> DatabaseValidation:
        unlogged = "" if is_sqlite(self.engine) else "UNLOGGED "
        query = _snapshot_query(self.suite)
        compiled = query.compile(self.engine, compile_kwargs={"literal_binds": True})
        with self.engine.begin() as connection:
            connection.execute(sa.text(f"CREATE {unlogged}TABLE {self.snapshot} AS {compiled}"))
            connection.execute(sa.text(f"CREATE INDEX {self.snapshot}_{ROW_NUMBER} ON {self.snapshot} ({ROW_NUMBER})"))
            connection.execute(sa.text(f"CREATE {unlogged}TABLE {self.held} ({ROW_NUMBER} BIGINT PRIMARY KEY)"))
        return self

    def __exit__(self, *exc) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {self.held}"))
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {self.snapshot}"))

    def _records(self, rows: list[int]) -> pd.DataFrame:
        """The snapshot's rows with these row numbers, indexed by row number."""
        frames = []
        with self.engine.connect() as connection:
            for start in range(0, len(rows), FETCH_ROWS):
                chosen = rows[start : start + FETCH_ROWS]
                frames.append(
                    pd.read_sql_query(
                        sa.text(f"SELECT * FROM {self.snapshot} WHERE {ROW_NUMBER} IN :rows").bindparams(
                            sa.bindparam("rows", expanding=True)
                        ),
                        connection,
                        params={"rows": chosen},
                        dtype=str,
                    )
                )
        records = pd.concat(frames) if frames else pd.DataFrame(columns=[ROW_NUMBER, *self.suite.columns])
        records.index = records[ROW_NUMBER].astype(int)
        return records

    def _hold(self, rows: list) -> None:
        """Remember the held rows in the database, for ``passing``."""
        if rows:
            with self.engine.begin() as connection:
                connection.execute(
                    sa.text(f"INSERT INTO {self.held} ({ROW_NUMBER}) VALUES (:row)"), [{"row": int(r)} for r in rows]
                )

    def validate(self) -> ValidationOutcome:
        """Run the suite in the database; record findings; raise ``DatasetBlocked`` if the dataset must stop
        (after the sinks have everything). The table-level expectations run in Great Expectations; the row rules,
        compiled from Great Expectations' own SQL conditions, in one counting scan and one scan for the failing
        rows (``validation.compiled``)."""
        context = new_context(self.data_docs_dir)
        url = self.engine.url.render_as_string(hide_password=False)
        name = unique_name("population")
        source = (context.data_sources.add_sqlite if is_sqlite(self.engine) else context.data_sources.add_postgres)(
            name, connection_string=url
        )
        asset = source.add_table_asset(self.suite.spec.name, table_name=self.snapshot)
        rules = compile_rules(self.engine, self.suite, self.snapshot)
        self.tallies.register(e.configuration for e in self.suite.suite.expectations)
        with CrossRowIndex(directory=self.scratch_dir) as index:
            try:
                self._table_rules(source, asset, context, index)
                with self.engine.connect() as connection:
                    total, judged = judged_counts(connection, rules, self.snapshot)
                    failing = failing_rows(connection, rules, self.snapshot, ROW_NUMBER)
                records = self._records(sorted({row for _, found in failing for row in found}))
                for (rule, found), evaluated in zip(failing, judged, strict=True):
                    samples = _values(records, rule.columns, found[:SAMPLE_VALUES])
                    self.tallies.count(rule.config, evaluated, len(found), samples)
                found = [(r.config, rows) for r, rows in failing if rows]
                self._hold(self._record(index, findings_of(found, records), records, total))
                self._households(source, index)
                self._finish(index, context, self.tallies.share_blocks())
            finally:
                source.get_engine().dispose()
        return self.outcome

    def _table_rules(self, source, asset, context, index: CrossRowIndex) -> None:
        """The table-level expectations, by Great Expectations on the whole table (a block stops here); with
        Data Docs, also the whole suite on no rows, for the shape of the report."""
        if self.data_docs_dir is not None:
            nothing = source.add_query_asset("shape", query=f"SELECT * FROM {self.snapshot} WHERE 1 = 0")
            self.tallies.template(
                nothing.add_batch_definition_whole_table("none").get_batch().validate(self.suite.suite)
            )
        table_rules = table_expectations(self.suite)
        if table_rules:
            suite = gx.ExpectationSuite(name=self.suite.suite.name, expectations=[e.copy() for e in table_rules])
            result = asset.add_batch_definition_whole_table("table").get_batch().validate(suite)
            self.tallies.read(result, list)
            if blocks := self.tallies.table_blocks():
                self._finish(index, context, blocks)

    def _households(self, source, index: CrossRowIndex) -> None:
        if self.suite.households is None:
            return
        rollup = source.add_query_asset(
            "households",
            query=f"SELECT household_code, SUM(CASE WHEN relation_to_head = 'head' THEN 1 ELSE 0 END) AS {HEADS}, "
            f"COUNT(*) AS {MEMBERS} FROM {self.snapshot} WHERE household_code IS NOT NULL GROUP BY household_code",
        )
        result = (
            rollup.add_batch_definition_whole_table("all")
            .get_batch()
            .validate(
                self.suite.households,
                result_format={**RESULT_FORMAT, "unexpected_index_column_names": ["household_code"]},
            )
        )
        for config, households in self.tallies.read(result, lambda found: [row["household_code"] for row in found]):
            with self.engine.connect() as connection:
                members = pd.read_sql_query(
                    sa.text(
                        f"SELECT {ROW_NUMBER}, personal_id, household_code, SUM(CASE WHEN relation_to_head = 'head' "
                        f"THEN 1 ELSE 0 END) OVER (PARTITION BY household_code) AS {HEADS} FROM {self.snapshot} "
                        "WHERE household_code IN :codes ORDER BY row_number"
                    ).bindparams(sa.bindparam("codes", expanding=True)),
                    connection,
                    params={"codes": households},
                )
            findings = household_findings(config, members)
            index.tally(findings, 0)
            for sink in self.sinks:
                sink.add(findings, pd.DataFrame())

    def passing(self, batch_rows: int = 100_000) -> Iterator[pd.DataFrame]:
        """The rows that were not held back, in order, as DataFrames of text indexed by row number."""
        columns = ", ".join(f"s.{c}" for c in (ROW_NUMBER, *self.suite.columns))
        query = (
            f"SELECT {columns} FROM {self.snapshot} s LEFT JOIN {self.held} h ON h.{ROW_NUMBER} = s.{ROW_NUMBER} "
            f"WHERE h.{ROW_NUMBER} IS NULL ORDER BY s.{ROW_NUMBER}"
        )
        with self.engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=batch_rows).execute(sa.text(query))
            for rows in result.partitions(batch_rows):
                frame = pd.DataFrame(rows, columns=[ROW_NUMBER, *self.suite.columns])
                yield frame.set_index(ROW_NUMBER).astype("str")
