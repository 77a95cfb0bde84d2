"""``lienthong quality``, ``lienthong quarantine`` and ``lienthong reconcile``: data quality for stewards.

Great Expectations takes seconds to import, so every command imports the validation machinery when it runs,
never when ``lienthong`` starts.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from exchange.cli import DbOption, _engine, _fail, _parse_date, _require_schema, console, errors
from population.db import session_factory
from population.identity import mask_personal_id

quality_app = typer.Typer(help="Validate datasets along đúng, đủ, sạch, sống (Great Expectations).",
                          no_args_is_help=True)  # fmt: skip
quarantine_app = typer.Typer(help="Records held back by validation: list them, release or reject them.",
                             no_args_is_help=True)  # fmt: skip
reconcile_app = typer.Typer(help="Reconcile a partner's dataset with the population database.", no_args_is_help=True)

OutOption = Annotated[Path, typer.Option("--out", "-o", help="Directory for the reports.")]
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
        errors.print(f"[bold red]blocked:[/] {blocked}", highlight=False)
        raise typer.Exit(code=BLOCKED_EXIT)


@quality_app.command("check")
def quality_check(
    dataset: Annotated[
        str, typer.Argument(help="citizen-extract, health-insured, tax-registrants, land-owners, business-roles")
    ],  # fmt: skip
    input_file: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="A .csv or .jsonl")],
    out: OutOption,
    as_of: AsOfOption = None,
    freshness_days: FreshnessOption = None,
    record: Annotated[bool, typer.Option(help="Record the run and held records in the database.")] = True,
    db: DbOption = None,
) -> None:
    """Validate a file of a dataset; write summary.json, quarantine.csv, summary.html and the Data Docs."""
    from validation.runner import DatasetBlocked, ValidationFailed, check_file

    engine = None
    if record:
        engine = _engine(db)
        _require_schema(engine)
    blocked = None
    try:
        outcome = check_file(dataset, input_file, out, engine, _parse_date(as_of, "--as-of") if as_of else None,
                             freshness_days)  # fmt: skip
    except DatasetBlocked as error:
        outcome, blocked = error.outcome, error
    except (ValueError, ValidationFailed) as error:
        _fail(str(error))
    _report(outcome, out, blocked)


@quality_app.command("database")
def quality_database(
    out: OutOption,
    as_of: AsOfOption = None,
    freshness_days: FreshnessOption = None,
    db: DbOption = None,
) -> None:
    """Validate the population extract where it sits: the suite runs as SQL in the database."""
    from validation.pushdown import DatabaseValidation
    from validation.quarantine import QuarantineStore
    from validation.reports import FindingsCsv, runs_of, write_summary, write_summary_page
    from validation.runner import DatasetBlocked
    from validation.suites import build_suite

    engine = _engine(db)
    _require_schema(engine)
    suite = build_suite("citizen-extract", _parse_date(as_of, "--as-of") if as_of else None, freshness_days)
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
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write.")],
    db: DbOption = None,
) -> None:
    """Write the summary page of a dataset: the four scores of its latest run and their trend across runs."""
    from validation.models import ValidationRun
    from validation.reports import runs_of, write_summary_page

    engine = _engine(db)
    _require_schema(engine)
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
        _fail(str(error))
    table = Table(title=f"{dataset}: {len(suite.rules())} expectations")
    for column in ("dimension", "severity", "expectation", "rule"):
        table.add_column(column)
    for rule in suite.rules():
        table.add_row(rule["dimension"], rule["severity"], rule["rule"], rule["description"])
    console.print(table)


# -- quarantine -------------------------------------------------------------------------------------------------


@quarantine_app.command("list")
def quarantine_list(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[str, typer.Option(help="held, released, rejected or all.")] = "held",
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    after: Annotated[int, typer.Option(min=0, help="Records with an id after this one.")] = 0,
    unmasked: Annotated[bool, typer.Option(help="Show whole personal IDs (stewards only).")] = False,
    db: DbOption = None,
) -> None:
    """List quarantined records with why they are held and what was decided."""
    from validation.quarantine import list_records

    if status not in ("held", "released", "rejected", "all"):
        _fail("--status is one of held, released, rejected, all")
    engine = _engine(db)
    _require_schema(engine)
    table = Table(title=f"Quarantined records ({status})")
    for column in ("id", "dataset", "run", "row", "personal ID", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("findings")
    table.add_column("decisions")
    with session_factory(engine)() as session:
        records = list_records(session, dataset, None if status == "all" else status, limit, after)
        for r in records:
            findings = "\n".join(f"{f.dimension} · {f.reason}" for f in r.findings)
            decisions = "\n".join(f"{d.decision} by {d.steward} {d.decided_at:%Y-%m-%d %H:%M}: {d.reason}"
                                  for d in r.decisions)  # fmt: skip
            pid = r.personal_id if unmasked else mask_personal_id(r.personal_id)
            table.add_row(str(r.id), r.dataset, str(r.run_id), str(r.row_number), pid, r.status, findings, decisions)
    console.print(table)
    console.print(f"{len(records)} record(s)")


def _decide(decision: str, ids: list[int], reason: str, steward: str | None, db: str | None) -> None:
    from validation.quarantine import DecisionError, decide

    engine = _engine(db)
    _require_schema(engine)
    with session_factory(engine)() as session:
        try:
            decisions = decide(session, ids, decision, reason, steward)
        except DecisionError as error:
            _fail(str(error))
    done = "released" if decision == "release" else "rejected"
    console.print(f"{done} {len(decisions)} record(s) as {decisions[0].steward}: {', '.join(map(str, sorted(ids)))}")


IdsArgument = Annotated[list[int], typer.Argument(help="Quarantined record ids (see 'quarantine list').")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the audit trail.")]
StewardOption = Annotated[str | None, typer.Option(help="Who decides; default the OS user.")]


@quarantine_app.command("release")
def quarantine_release(ids: IdsArgument, reason: ReasonOption, steward: StewardOption = None, db: DbOption = None):
    """Let records go out as they are; later runs let the same values pass (listed as warnings)."""
    _decide("release", ids, reason, steward, db)


@quarantine_app.command("reject")
def quarantine_reject(ids: IdsArgument, reason: ReasonOption, steward: StewardOption = None, db: DbOption = None):
    """Keep records out: they must be corrected at the source."""
    _decide("reject", ids, reason, steward, db)


# -- reconcile ----------------------------------------------------------------------------------------------------


@reconcile_app.command("run")
def reconcile_run(
    partner: Annotated[str, typer.Argument(help="health, tax, land or business")],
    input_file: Annotated[Path, typer.Option("--input", "-i", exists=True, dir_okay=False, help="A .csv or .jsonl")],
    out: OutOption,
    db: DbOption = None,
) -> None:
    """Match a partner's dataset to the population, write registry links and the mismatch report per class."""
    from validation.reconciliation import reconcile, write_mismatch_csv
    from validation.runner import read_batches

    engine = _engine(db)
    _require_schema(engine)
    try:
        report = reconcile(engine, partner, read_batches(input_file), str(input_file))
    except ValueError as error:
        _fail(str(error))
    out.mkdir(parents=True, exist_ok=True)
    (out / "reconciliation.json").write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    write_mismatch_csv(engine, report.run_id, out / "mismatches.csv")
    table = Table(title=f"{partner}: {report.rows:,} rows, {report.links_written:,} registry links written")
    table.add_column("class")
    table.add_column("rows", justify="right")
    table.add_column("rate", justify="right")
    for name, count in report.counts.items():
        table.add_row(name, f"{count:,}", f"{report.rates[name]:.2%}")
    console.print(table)
    console.print(f"reports in {out}: reconciliation.json, mismatches.csv")


@reconcile_app.command("sample")
def reconcile_sample(
    partner: Annotated[str, typer.Argument(help="health, tax, land or business")],
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")],
    rows: Annotated[int, typer.Option(min=1, help="How many partner rows.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    disagreement_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of rows changed.")] = 0.1,
    db: DbOption = None,
) -> None:
    """Derive a partner dataset from the population, with deliberate disagreements (until partners exist)."""
    from validation.partner_sample import partner_sample

    engine = _engine(db)
    _require_schema(engine)
    try:
        sample = partner_sample(engine, partner, rows, seed, disagreement_rate, date.today())
    except KeyError:
        _fail(f"unknown partner {partner!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    sample.rows.to_csv(out, index=False)
    console.print(f"wrote {len(sample.rows):,} {partner} rows to {out}, {len(sample.truth):,} changed on purpose")
