"""Validating a dataset in batches with Great Expectations: findings per row, quarantine, block, scores.

A dataset streams through as pandas DataFrames of text (``read_csv_batches``, ``read_jsonl_batches``,
``extract_batches``), each indexed by row number; ``StreamValidation.passing`` validates each batch with the
dataset's suite and yields the rows that may go out. The same bookkeeping serves the SQL push-down path
(``validation.pushdown``), where Great Expectations runs the suite as SQL inside the database.

For each batch:
1. cross-row columns are added (``validation.crossrow``): an earlier record of the same person, an earlier row
   with the same key;
2. Great Expectations validates the suite with result format COMPLETE, which lists the index of every failing
   row (indexes are row numbers, so nothing else is needed to find the row);
3. every failing (row, rule) becomes a finding: row number, personal ID, rule, column, value, dimension,
   severity, reason; released findings (a steward said so) become warnings;
4. rows with a quarantine-severity finding are held back and handed to the sinks; the others are yielded.
At the end, households are rolled up and validated, the run's tallies give the four dimension scores, and a
block-severity failure raises ``DatasetBlocked``: a table-level one as soon as it is seen, a share-of-rows one
over the whole dataset.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Protocol, TextIO

import pandas as pd
from great_expectations.core import ExpectationSuiteValidationResult

from exchange.payload import MAX_RECORD_CHARS, csv_rows, json_lines
from exchange.safe_xml import InvalidDocument
from lienthong_verify.schemas import date_time_text
from population.identity import mask_personal_id
from validation.context import new_context, unique_name
from validation.crossrow import CrossRowIndex
from validation.outcome import DatasetBlocked, RuleTally, ValidationFailed, ValidationOutcome
from validation.suites import BATCH_NUMBER, BOOKKEEPING, HEADS, ROW_NUMBER, DatasetSuite, columns_of

BATCH_ROWS = 100_000
SAMPLE_VALUES = 20  # masked examples of failing values shown in Data Docs, per rule
FINDING_COLUMNS = ("row_number", "personal_id", "rule", "expectation", "column", "value", "dimension", "severity",
                   "reason")  # fmt: skip
RESULT_FORMAT = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": SAMPLE_VALUES,
    "return_unexpected_index_query": False,
}


class FindingSink(Protocol):
    """Where findings go: the quarantine table, a CSV for stewards."""

    def add(self, findings: pd.DataFrame, held: pd.DataFrame) -> None:
        """``findings`` of one batch (FINDING_COLUMNS); ``held``: the records held back, by row number."""

    def finish(self, outcome: ValidationOutcome) -> None: ...


Waivers = Callable[[pd.DataFrame], pd.DataFrame]  # findings in, the same with released ones downgraded out


# -- sources: batches of text indexed by row number -------------------------------------------------------------


def read_csv_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """A UTF-8 CSV with a header, in batches; empty cells are missing, every other value stays text. Checked as it is
    read by the payload's bounded reader (``_CheckedText``): a header of other than field names, a row of another
    width, a field or a record over its limit, text that is not UTF-8: an ``InvalidDocument`` naming the file, the
    line and the rule, before the record is whole in memory."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        source = _CheckedText(path.name, handle)
        if not source.header:
            raise InvalidDocument(f"{path.name}: empty, no header")
        reader = pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], chunksize=batch_rows)
        with reader:
            for batch in reader:
                batch.index = batch.index + 1
                yield batch


class _CheckedText:
    """A CSV file's text for pandas' parser, handed over a record at a time once ``exchange.payload.csv_rows`` (the
    payload's bounded, strict reader, which both sides use) has read it. pandas still builds the frames: it lays
    each column's values out together, and a check of 100,000 citizens took 3.7 s over its frames against 6.6 s
    over frames made of the csv module's rows (reading itself: 0.9 s here, 0.45 s by pandas alone)."""

    def __init__(self, name: str, handle: TextIO) -> None:
        self._read: list[str] = []  # the lines csv_rows has read and pandas has not
        self._done = False
        self.header, self._rows = csv_rows(name, self._lines(handle))

    def _lines(self, handle: TextIO) -> Iterator[str]:
        while line := handle.readline(MAX_RECORD_CHARS + 1):  # csv_rows refuses one longer than its limit
            self._read.append(line)
            yield line

    def read(self, size: int = -1) -> str:
        lines: list[str] = []
        length = 0
        while not self._done and (size < 0 or length < size):
            self._done = next(self._rows, None) is None  # the row read, its lines (and blank ones before) are checked
            length += sum(map(len, self._read))
            lines += self._read
            self._read.clear()
        return "".join(lines)


def read_jsonl_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """JSON Lines, one object per line, in batches; values become text (JSON null and missing keys: missing; a blank
    line: a record with every field missing). Bounded as ``_json_records`` says."""
    records: list[dict] = []
    start = 1
    for record in _json_records(path):
        records.append({k: v if v is None or isinstance(v, str) else json.dumps(v) for k, v in record.items()})
        if len(records) == batch_rows:
            yield _text_frame(records, start)
            start += len(records)
            records = []
    if records:
        yield _text_frame(records, start)


def _json_records(path: Path) -> Iterator[dict]:
    """The objects of a JSON Lines file as it is read, by the payload's reader with its limits
    (``exchange.payload.json_lines``); a blank line is a record with every field missing, so that row numbers are
    line numbers."""
    with path.open("rb") as handle:
        yield from json_lines(path.name, handle, empty_records=True)


def _text_frame(records: list[dict], start: int) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records).astype(object)
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame.where(frame.notna(), None).astype("str")


def read_batches(path: Path, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """CSV or JSON Lines, by the file's suffix."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return read_jsonl_batches(path, batch_rows)
    if path.suffix.lower() == ".csv":
        return read_csv_batches(path, batch_rows)
    raise ValueError(f"{path}: expected a .csv or .jsonl file")


def _iso(value: date | datetime) -> str:
    return date_time_text(value) if isinstance(value, datetime) else value.isoformat()


def extract_batches(engine, limit: int | None = None, batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """The population extract streamed from the database, as the CSV export would write it (ISO dates)."""
    from population.extract import iter_extract

    return extract_frames(iter_extract(engine, limit), batch_rows)


def extract_frames(rows: Iterable[Sequence], batch_rows: int = BATCH_ROWS) -> Iterator[pd.DataFrame]:
    """Rows in the extract's column order, as batches of text indexed by row number from 1."""
    from population.extract import extract_columns

    columns = extract_columns()
    batch: list[tuple] = []
    start = 1
    for row in rows:
        batch.append(tuple(row))
        if len(batch) == batch_rows:
            yield _extract_frame(batch, columns, start)
            start += len(batch)
            batch = []
    if batch:
        yield _extract_frame(batch, columns, start)


def _extract_frame(rows: list[tuple], columns: list[str], start: int) -> pd.DataFrame:
    from population.extract import extract_schema

    frame = pd.DataFrame.from_records(rows, columns=columns, index=pd.RangeIndex(start, start + len(rows)))
    for column, prop in extract_schema()["properties"].items():
        if prop.get("format") in ("date", "date-time"):
            frame[column] = frame[column].map(_iso, na_action="ignore")
    return frame.astype("str")


# -- Great Expectations results → findings and tallies -------------------------------------------------------------


def _mask(value):
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return None if value is None or value is pd.NA else mask_personal_id(str(value))


class RunTallies:
    """What a run has counted: per rule and per dimension, and a merged validation result for Data Docs."""

    def __init__(self, suite: DatasetSuite, source: str):
        self.suite = suite
        self.outcome = ValidationOutcome(suite.spec.name, suite.suite.name, source, datetime.now(UTC))
        self._tally: dict[str, RuleTally] = {}
        self._samples: dict[str, list] = {}
        self._template: dict[str, ExpectationSuiteValidationResult] = {}
        self.batches = 0

    def read(self, result: ExpectationSuiteValidationResult, rows_of: Callable[[object], list]) -> list[tuple]:
        """Count one batch's result; return the failing (rule result, row keys) of the row-level rules.
        ``rows_of`` turns a result's unexpected_index_list into row keys."""
        self.template(result)
        failing = []
        for item in result.results:
            config = item.expectation_config
            meta = config.meta
            exception = item.exception_info or {}
            if exception.get("raised_exception"):
                if "table" not in config.type and self._table_failed():
                    continue  # a missing column: the table rule already says so
                raise ValidationFailed(f"{meta['rule']} could not be evaluated: {exception.get('exception_message')}")
            stats = item.result or {}
            if not columns_of(config.kwargs):
                tally = self._tally_of(config)
                tally.evaluated += 1
                if not item.success:
                    tally.table_failure = json.dumps(stats.get("observed_value"), ensure_ascii=False, default=str)
                continue
            evaluated = stats.get("element_count", 0) - stats.get("missing_count", 0)
            unexpected = stats.get("unexpected_count", 0)
            self.count(config, evaluated, unexpected, stats.get("partial_unexpected_list", []))
            if unexpected:  # a block rule's failing rows too: their findings are kept on the rows held anyway
                failing.append((config, rows_of(stats.get("unexpected_index_list") or [])))
        return failing

    def register(self, configs: Iterable) -> None:
        """Tallies for these rules, in this order, before anything is counted: a run that stops at a table-level
        block still reports every rule."""
        for config in configs:
            self._tally_of(config)

    def count(self, config, evaluated: int, unexpected: int, samples: list) -> None:
        """Count one row-level rule over some rows: how many it judged, how many failed it, examples of the
        failing values (masked here)."""
        tally = self._tally_of(config)
        tally.evaluated += evaluated
        tally.unexpected += unexpected
        kept = self._samples.setdefault(tally.rule, [])
        kept += _mask(samples[: SAMPLE_VALUES - len(kept)])

    def template(self, result: ExpectationSuiteValidationResult) -> None:
        """The result whose shape Data Docs show (counts are replaced by the run's)."""
        self._template.setdefault(result.suite_name, result)

    def _tally_of(self, config) -> RuleTally:
        meta = config.meta
        tally = self._tally.get(meta["rule"])
        if tally is None:
            columns = list(columns_of(config.kwargs))
            tally = self._tally[meta["rule"]] = RuleTally(
                rule=meta["rule"],
                expectation=config.type,
                columns=columns,
                dimension=meta["dimension"],
                severity=meta["severity"],
                description=config.description or "",
                mostly=config.kwargs.get("mostly", 1.0) or 1.0,
                row_level=bool(columns),
            )
            self.outcome.rules.append(tally)
        return tally

    def _table_failed(self) -> bool:
        return any(t.table_failure for t in self._tally.values())

    def table_blocks(self) -> list[str]:
        return [
            f"{t.rule} failed ({t.description}); observed {t.table_failure}"
            for t in self._tally.values()
            if t.severity == "block" and not t.row_level and t.table_failure
        ]

    def share_blocks(self) -> list[str]:
        return [
            f"{t.rule} failed on {t.unexpected:,} of {t.evaluated:,} rows ({t.share:.2%}), more than the "
            f"{1 - t.mostly:.0%} allowed ({t.description})"
            for t in self._tally.values()
            if t.severity == "block" and t.row_level and not t.success
        ]

    def merged_results(self) -> list[ExpectationSuiteValidationResult]:
        """One validation result per suite over the whole run (counts summed, samples masked), for Data Docs."""
        merged = []
        for template in self._template.values():
            result = copy.deepcopy(template)
            for item in result.results:
                tally = self._tally[item.expectation_config.meta["rule"]]
                item.success = tally.success
                item.exception_info = {"raised_exception": False, "exception_message": None,
                                       "exception_traceback": None}  # fmt: skip
                if tally.row_level:
                    item.result = {
                        "element_count": tally.evaluated,
                        "missing_count": 0,
                        "missing_percent": 0.0,
                        "unexpected_count": tally.unexpected,
                        "unexpected_percent": 100 * tally.share,
                        "unexpected_percent_nonmissing": 100 * tally.share,
                        "partial_unexpected_list": self._samples.get(tally.rule, []),
                    }
            evaluated = len(result.results)
            successful = sum(1 for item in result.results if item.success)
            result.success = successful == evaluated
            result.statistics = {
                "evaluated_expectations": evaluated,
                "successful_expectations": successful,
                "unsuccessful_expectations": evaluated - successful,
                "success_percent": 100 * successful / evaluated if evaluated else None,
            }
            merged.append(result)
        return merged


def findings_of(failing: list[tuple], records: pd.DataFrame) -> pd.DataFrame:
    """Findings from failing rules: ``records`` holds the failing rows by row number (the rules' columns, and
    the personal ID where the dataset has one)."""
    parts = []
    for config, rows in failing:
        meta = config.meta
        columns = list(columns_of(config.kwargs))
        values = records.loc[rows, columns].astype(object).where(records.loc[rows, columns].notna(), "")
        if len(columns) == 1:
            value = values[columns[0]].astype(str)
        else:
            value = pd.Series([""] * len(rows), index=values.index, dtype=object)
            for i, column in enumerate(columns):
                value = value + ("; " if i else "") + column + "=" + values[column].astype(str)
        parts.append(
            pd.DataFrame(
                {
                    "row_number": rows,
                    "rule": meta["rule"],
                    "expectation": config.type,
                    "column": ", ".join(columns),
                    "value": value.to_numpy(),
                    "dimension": meta["dimension"],
                    "severity": meta["severity"],
                    "reason": config.description,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=FINDING_COLUMNS)
    findings = pd.concat(parts, ignore_index=True)
    ids = records["personal_id"] if "personal_id" in records else pd.Series(pd.NA, index=records.index)
    findings.insert(1, "personal_id", ids.loc[findings["row_number"]].to_numpy())
    return findings.sort_values(["row_number", "rule"], kind="stable").reset_index(drop=True)


def household_findings(config, members: pd.DataFrame) -> pd.DataFrame:
    """Findings of a failing household rule, one per member (row_number, personal_id, household_code, heads)."""
    meta = config.meta
    return pd.DataFrame({
        "row_number": members[ROW_NUMBER].astype(int),
        "personal_id": members["personal_id"],
        "rule": meta["rule"],
        "expectation": config.type,
        "column": "household_code, relation_to_head",
        "value": "household_code=" + members["household_code"].astype(str) + f"; {HEADS}="
        + members[HEADS].astype(int).astype(str),
        "dimension": meta["dimension"],
        "severity": meta["severity"],
        "reason": config.description,
    })  # fmt: skip


class BatchedRun:
    """What a run in batches does whatever runs the expectations: findings to sinks, tallies, the end."""

    def __init__(self, suite: DatasetSuite, sinks, waivers, source: str, data_docs_dir, scratch_dir):
        self.suite = suite
        self.sinks = list(sinks)
        self.waivers = waivers
        self.data_docs_dir = data_docs_dir
        self.scratch_dir = scratch_dir
        self.tallies = RunTallies(suite, source)

    @property
    def outcome(self) -> ValidationOutcome:
        return self.tallies.outcome

    def _record(self, index: CrossRowIndex, findings: pd.DataFrame, records: pd.DataFrame, rows: int) -> list:
        """Apply releases, count, hand the findings and the held records to the sinks; return the held rows."""
        if self.waivers is not None and len(findings):
            findings = self.waivers(findings)
        held_rows = findings.loc[findings["severity"] == "quarantine", "row_number"].unique().tolist()
        # a block rule judges the share of failing rows, not a row: its findings go with the rows held for
        # another reason (their release then takes two stewards), and on the others say nothing
        findings = findings[(findings["severity"] != "block") | findings["row_number"].isin(held_rows)]
        index.tally(findings, rows)
        held = records.loc[held_rows, self.suite.columns] if held_rows else pd.DataFrame()
        for sink in self.sinks:
            sink.add(findings, held)
        return held_rows

    def _finish(self, index: CrossRowIndex, context, blocks: list[str]) -> None:
        outcome = self.outcome
        outcome.rows, outcome.quarantined, outcome.flagged, outcome.flagged_by_dimension = index.counts()
        outcome.passed = outcome.rows - outcome.quarantined
        outcome.blocked = blocks
        outcome.finished_at = datetime.now(UTC)
        if self.data_docs_dir is not None:
            outcome.data_docs = build_data_docs(context, self.tallies, self.data_docs_dir)
        for sink in self.sinks:
            sink.finish(outcome)
        if blocks:
            raise DatasetBlocked(blocks, outcome)


class StreamValidation(BatchedRun):
    """Validates a stream of batches; ``passing`` yields what may go out, sinks receive the rest.

    >>> run = StreamValidation(build_suite("citizen-extract"), sinks=[store], waivers=store.waivers)
    >>> for batch in run.passing(read_csv_batches(path)):
    ...     package.write(batch)           # the rows that passed, in input order
    >>> run.outcome.scores                 # after the stream is exhausted

    Consume the whole stream before signing a package: a share-of-rows block is only known at the end, and is
    raised (``DatasetBlocked``) from the last ``next``.
    """

    def __init__(
        self,
        suite: DatasetSuite,
        sinks: Sequence[FindingSink] = (),
        waivers: Waivers | None = None,
        source: str = "stream",
        data_docs_dir: Path | None = None,
        scratch_dir: Path | None = None,
    ):
        super().__init__(suite, sinks, waivers, source, data_docs_dir, scratch_dir)

    def passing(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        suite = self.suite
        context = new_context(self.data_docs_dir)
        asset = context.data_sources.add_pandas(unique_name("stream")).add_dataframe_asset(suite.spec.name)
        batch_definition = asset.add_batch_definition_whole_dataframe("batch")
        with CrossRowIndex(suite.person_key, suite.repeat_key, suite.households is not None, self.scratch_dir) as index:
            for number, batch in enumerate(batches, start=1):
                index.annotate(batch)
                batch[ROW_NUMBER] = batch.index
                batch[BATCH_NUMBER] = number
                result = batch_definition.get_batch(batch_parameters={"dataframe": batch}).validate(
                    suite.suite, result_format=RESULT_FORMAT
                )
                failing = self.tallies.read(result, list)
                if blocks := self.tallies.table_blocks():
                    self._finish(index, context, blocks)
                held_rows = self._record(index, findings_of(failing, batch), batch, len(batch))
                yield batch.drop(index=held_rows, columns=[*suite.derived_columns, *BOOKKEEPING])
            self._households(index, context)
            self._finish(index, context, self.tallies.share_blocks())

    def _households(self, index: CrossRowIndex, context) -> None:
        """Validate the household roll-up; its failures are warnings on each member's row."""
        if self.suite.households is None:
            return
        asset = context.data_sources.add_pandas(unique_name("households")).add_dataframe_asset("households")
        definition = asset.add_batch_definition_whole_dataframe("households")
        for rollup in index.household_rollup():
            rollup.index = rollup["household_code"]
            result = definition.get_batch(batch_parameters={"dataframe": rollup}).validate(
                self.suite.households, result_format=RESULT_FORMAT
            )
            for config, households in self.tallies.read(result, _household_codes):
                members = index.household_members(households)
                members[HEADS] = members["household_code"].map(rollup[HEADS])
                findings = household_findings(config, members)
                index.tally(findings, 0)
                for sink in self.sinks:
                    sink.add(findings, pd.DataFrame())


def build_data_docs(context, tallies: RunTallies, directory: Path) -> str:
    """Write the run's Data Docs site (Great Expectations' own builder) into ``directory``; return its index."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    outcome = tallies.outcome
    run_id = RunIdentifier(run_name=f"{outcome.dataset} {outcome.started_at:%Y-%m-%d %H:%M:%S}Z",
                           run_time=outcome.started_at)  # fmt: skip
    for suite in (tallies.suite.suite, tallies.suite.households):
        if suite is not None:
            context.suites.add(copy.deepcopy(suite))
    for result in tallies.merged_results():
        result.meta["run_id"] = run_id
        key = ValidationResultIdentifier(
            expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
            run_id=run_id,
            batch_identifier=outcome.source.replace("/", "_")[-80:] or outcome.dataset,
        )
        context.validation_results_store.set(key, result)
    context.build_data_docs(site_names=["run"])
    return str(directory / "index.html")


def _household_codes(keys: list) -> list[str]:
    """The failing households of a roll-up result: GE reports a named index as {index name: value, ...}."""
    return [key["household_code"] if isinstance(key, dict) else key for key in keys]


def check_file(
    dataset: str,
    path: Path,
    out_dir: Path,
    engine=None,
    as_of: date | None = None,
    freshness_days: int | None = None,
    batch_rows: int = BATCH_ROWS,
) -> ValidationOutcome:
    """``lienthong quality check``: validate a CSV or JSONL file of a dataset and write, under ``out_dir``,
    summary.json, quarantine.csv, summary.html and the Data Docs site (data-docs/index.html). With an engine,
    the run, its held records and their findings are recorded in the database (and earlier releases apply).
    Raises ``DatasetBlocked`` after writing everything when a block-severity expectation fails."""
    from validation.quarantine import QuarantineStore
    from validation.reports import FindingsCsv, outcome_as_run, runs_of, write_summary, write_summary_page
    from validation.suites import build_suite

    suite = build_suite(dataset, as_of=as_of, freshness_days=freshness_days)
    sinks: list[FindingSink] = [FindingsCsv(out_dir / "quarantine.csv")]
    store = None
    if engine is not None:
        store = QuarantineStore(engine, dataset, suite.suite.name, str(path))
        sinks.append(store)
    run = StreamValidation(suite, sinks, store.waivers if store else None, source=str(path),
                           data_docs_dir=out_dir / "data-docs")  # fmt: skip
    try:
        for _ in run.passing(read_batches(path, batch_rows)):
            pass
    finally:
        outcome = run.outcome
        if outcome.finished_at is not None:
            write_summary(outcome, out_dir / "summary.json")
            if engine is not None:
                from population.db import session_factory

                with session_factory(engine)() as session:
                    runs = runs_of(session, dataset)
            else:
                runs = [outcome_as_run(outcome)]
            write_summary_page(out_dir / "summary.html", dataset, runs, [r.as_dict() for r in outcome.rules])
    return outcome
