"""``lienthong quality``: validate datasets along đúng, đủ, sạch, sống, for stewards.

Great Expectations takes seconds to import, so every command imports the validation machinery when it runs,
never when ``lienthong`` starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from lienthong.commands.common import (
    DbOption,
    ReportsOption,
    console,
    errors,
    existing,
    fail,
    parse_date,
    population_engine,
    require_schema,
    writable,
)
from population.db import session_factory

quality_app = typer.Typer(help="Validate datasets along đúng, đủ, sạch, sống (Great Expectations).",
                          no_args_is_help=True)  # fmt: skip
AsOfOption = Annotated[str | None, typer.Option(help="Date the freshness window ends (YYYY-MM-DD); default today.")]
FreshnessOption = Annotated[int | None, typer.Option(min=0, help="Freshness window in days (the agreement's).")]
BLOCKED_EXIT = 2


def _scores_table(outcome) -> Table:
    table = Table(title=f"{outcome.dataset}: {outcome.rows:,} rows, {outcome.quarantined:,} held back, "
                        f"{outcome.flagged:,} flagged")  # fmt: skip
    for column in ("đúng", "đủ", "sạch", "sống"):
        table.add_column(column, justify="right")
    table.add_row(*(f"{score:.2%}" for score in outcome.scores.values()))
    return table


def _report(outcome, out: Path, blocked) -> None:
    console.print(_scores_table(outcome))
    console.print(f"reports in {out}: summary.json, quarantine.csv, summary.html, data-docs/index.html")
    if blocked is not None:
        errors.print(Text("blocked:", style="bold red"), str(blocked), highlight=False, soft_wrap=True)
        raise typer.Exit(code=BLOCKED_EXIT)


@quality_app.command("check")
def quality_check(
    dataset: Annotated[
        str, typer.Argument(help="citizen-extract, health-insured, tax-registrants, land-owners, business-roles")
    ],  # fmt: skip
    input_file: Annotated[Path, typer.Option("--input", "-i", callback=existing("file"), help="A .csv or .jsonl")],
    out: ReportsOption,
    as_of: AsOfOption = None,
    freshness_days: FreshnessOption = None,
    record: Annotated[bool, typer.Option(help="Record the run and held records in the database.")] = True,
    db: DbOption = None,
) -> None:
    """Validate a file of a dataset; write summary.json, quarantine.csv, summary.html and the Data Docs."""
    from validation.runner import DatasetBlocked, ValidationFailed, check_file

    engine = None
    if record:
        engine = population_engine(db)
        require_schema(engine)
    blocked = None
    try:
        outcome = check_file(dataset, input_file, out, engine, parse_date(as_of, "--as-of") if as_of else None,
                             freshness_days)  # fmt: skip
    except DatasetBlocked as error:
        outcome, blocked = error.outcome, error
    except (ValueError, ValidationFailed) as error:  # a file its reader refuses names the line and the rule
        fail(error)
    except OSError as error:  # the input vanished, or the reports cannot be written
        fail(f"{error.filename or out}: {error.strerror or type(error).__name__}")
    _report(outcome, out, blocked)


@quality_app.command("database")
def quality_database(
    out: ReportsOption,
    as_of: AsOfOption = None,
    freshness_days: FreshnessOption = None,
    db: DbOption = None,
) -> None:
    """Validate the population extract where it sits: the suite runs as SQL in the database."""
    from validation.outcome import DatasetBlocked
    from validation.pushdown import DatabaseValidation
    from validation.quarantine import QuarantineStore
    from validation.reports import FindingsCsv, runs_of, write_summary, write_summary_page
    from validation.suites import build_suite

    engine = population_engine(db)
    require_schema(engine)
    suite = build_suite("citizen-extract", parse_date(as_of, "--as-of") if as_of else None, freshness_days)
    store = QuarantineStore(engine, suite.spec.name, suite.suite.name, "database")
    blocked = None
    with DatabaseValidation(engine, suite, [FindingsCsv(out / "quarantine.csv"), store], store.waivers,
                            out / "data-docs") as run:  # fmt: skip
        try:
            run.validate()
        except DatasetBlocked as error:
            blocked = error
    outcome = run.outcome
    write_summary(outcome, out / "summary.json")
    with session_factory(engine)() as session:
        write_summary_page(out / "summary.html", suite.spec.name, runs_of(session, suite.spec.name),
                           [r.as_dict() for r in outcome.rules])  # fmt: skip
    _report(outcome, out, blocked)


@quality_app.command("report")
def quality_report(
    dataset: Annotated[str, typer.Argument(help="The dataset whose runs to show.")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=writable("file"), help="HTML file to write.")],
    db: DbOption = None,
) -> None:
    """Write the summary page of a dataset: the four scores of its latest run and their trend across runs."""
    from validation.models import ValidationRun
    from validation.reports import runs_of, write_summary_page

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        runs = runs_of(session, dataset)
        latest = session.get(ValidationRun, runs[-1]["id"]) if runs else None
        write_summary_page(out, dataset, runs, latest.expectations if latest else None)
    console.print(f"wrote {out} ({len(runs)} run(s) of {dataset})")


@quality_app.command("rules")
def quality_rules(dataset: Annotated[str, typer.Argument(help="The dataset.")]) -> None:
    """List a dataset's expectations: dimension, severity and the rule in words."""
    from validation.suites import build_suite

    try:
        suite = build_suite(dataset)
    except ValueError as error:
        fail(error)
    table = Table(title=f"{dataset}: {len(suite.rules())} expectations")
    for column in ("dimension", "severity", "expectation", "rule"):
        table.add_column(column)
    for rule in suite.rules():
        table.add_row(rule["dimension"], rule["severity"], rule["rule"], rule["description"])
    console.print(table)
