"""The ``lienthong`` command line (typer + rich)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from population.db import ENV_VAR, create_population_engine, database_url, session_factory

app = typer.Typer(
    help="Liên thông: keeps the National Population Database in sync with partner registries.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Create and upgrade the population database schema (Alembic).", no_args_is_help=True)
population_app = typer.Typer(
    help="The population database: synthetic population, life events, extract, statistics.",
    no_args_is_help=True,
)
changes_app = typer.Typer(help="Read the ordered change log that feeds consume.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(population_app, name="population")
app.add_typer(changes_app, name="changes")

console = Console()
errors = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar=ENV_VAR, help="Database URL (sqlite:///… or postgresql://…). Default: var/lienthong.db"
    ),
]


def _fail(message: str) -> None:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code=1)


@contextmanager
def _progress(description: str, total: int | None):
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if total:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def _engine(db: str | None):
    return create_population_engine(database_url(db))


def _require_schema(engine) -> None:
    from population.migrate import current_revision, head_revision

    current = current_revision(engine)
    if current != head_revision():
        _fail(f"the database schema is at {current or 'nothing'}, not {head_revision()}: run 'lienthong db upgrade'")


# -- db ----------------------------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, revision: str = typer.Option("head", help="Target Alembic revision.")) -> None:
    """Create or upgrade the schema to the latest revision (the only way the schema changes)."""
    from population.migrate import current_revision, upgrade

    engine = _engine(db)
    upgrade(engine, revision)
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} is at revision {current_revision(engine)}"
    )


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Show the schema revision the database is at."""
    from population.migrate import current_revision, head_revision

    engine = _engine(db)
    console.print(f"current: {current_revision(engine) or 'none'}; latest: {head_revision()}")


# -- population --------------------------------------------------------------------------------------------


@population_app.command("generate")
def population_generate(
    citizens: Annotated[int, typer.Option("--citizens", "-n", min=1, help="How many citizens to generate.")] = 10_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same population.")] = 1,
    defect_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of records carrying one injected defect (ground truth kept)."),
    ] = 0.0,
    as_of: Annotated[str, typer.Option(help="Date the population is drawn as of (YYYY-MM-DD).")] = "2026-07-01",
    db: DbOption = None,
) -> None:
    """Generate a synthetic population that looks like Viet Nam's into an empty, upgraded database."""
    from population.generator import generate

    engine = _engine(db)
    _require_schema(engine)
    try:
        with _progress("generating citizens", citizens) as advance:
            result = generate(engine, citizens, seed, defect_rate, _parse_date(as_of, "--as-of"), advance)
    except ValueError as error:
        _fail(str(error))
    console.print(
        f"generated {result.citizens:,} citizens in {result.households:,} households, {result.cards:,} chip cards, "
        f"{sum(result.defects.values()):,} injected defects, in {result.seconds:.1f} s"
    )


@population_app.command("events")
def population_events(
    count: Annotated[int, typer.Option("--count", "-n", min=1, help="How many life events to attempt.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed for choosing events and citizens.")] = 1,
    day: Annotated[str | None, typer.Option("--date", help="Date of the events (YYYY-MM-DD); default today.")] = None,
    db: DbOption = None,
) -> None:
    """Apply a day of life events: births, deaths, moves, renamings, cards, marriages and divorces."""
    from population.simulation import DaySimulation

    engine = _engine(db)
    _require_schema(engine)
    event_day = _parse_date(day, "--date") if day else datetime.now(UTC).date()
    try:
        simulation = DaySimulation(session_factory(engine), seed, event_day)
        with _progress(f"life events of {event_day}", count) as advance:
            report = simulation.run(count, advance)
    except ValueError as error:
        _fail(str(error))
    table = Table(title=f"Life events of {event_day}")
    table.add_column("event")
    table.add_column("applied", justify="right")
    for name, n in sorted(report.applied.items()):
        table.add_row(name, f"{n:,}")
    console.print(table)
    if report.rejected:
        rejected = Table(title="Rejected by the rules (nothing written)")
        rejected.add_column("event")
        rejected.add_column("rule")
        rejected.add_column("count", justify="right")
        for (event, rule), n in sorted(report.rejected.items()):
            rejected.add_row(event, rule, f"{n:,}")
        console.print(rejected)
    console.print(f"applied {report.total_applied:,} of {count:,} events; rejected {sum(report.rejected.values()):,}")


@population_app.command("export")
def population_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="CSV file to write.")],
    limit: Annotated[int | None, typer.Option(min=1, help="Export at most this many citizens.")] = None,
    db: DbOption = None,
) -> None:
    """Export the canonical citizen extract (schemas/datasets/citizen-extract.v1.json) as CSV, streamed."""
    from sqlalchemy import func, select

    from population.extract import export_csv
    from population.models import Citizen

    engine = _engine(db)
    _require_schema(engine)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(Citizen)).scalar_one()
    total = min(total, limit) if limit else total
    with _progress(f"exporting to {out}", total) as advance:
        rows = export_csv(engine, out, limit, advance)
    console.print(f"wrote {rows:,} citizens to {out}")


@population_app.command("stats")
def population_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    db: DbOption = None,
) -> None:
    """Summarise the population: counts, age structure against the 2019 census, cards, defects, change log."""
    from population.stats import population_stats as compute

    engine = _engine(db)
    _require_schema(engine)
    with session_factory(engine)() as session:
        stats = compute(session)
    if as_json:
        console.print_json(json.dumps(stats, default=str, ensure_ascii=False))
        return
    summary = Table(title="Population", show_header=False)
    for key in ("citizens", "living", "dead", "households", "mean_household_size", "males_per_100_females",
                "registry_links"):  # fmt: skip
        value = stats[key]
        summary.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    summary.add_row("top surnames", ", ".join(f"{n} {s:.1%}" for n, s in stats["top_surnames"][:5]))
    summary.add_row("ethnic groups", ", ".join(f"{n} {s:.1%}" for n, s in stats["ethnic_groups"][:4]))
    summary.add_row("chip cards", ", ".join(f"{k} {v:,}" for k, v in sorted(stats["id_cards"].items())))
    defects = stats["injected_defects"]
    summary.add_row("injected defects", ", ".join(f"{k} {v:,}" for k, v in sorted(defects.items())) or "none")
    log = stats["change_log"]
    summary.add_row("change log", f"last sequence {log['last_sequence']:,}; "
                    + ", ".join(f"{k} {v:,}" for k, v in sorted(log["by_event"].items())))  # fmt: skip
    console.print(summary)
    ages = Table(title="Age structure (share of citizens; 2019 census)")
    ages.add_column("ages")
    ages.add_column("population", justify="right")
    ages.add_column("census", justify="right")
    for band in stats["age_bands"]:
        ages.add_row(band["band"], f"{band['share']:.1%}", f"{band['census']:.1%}")
    console.print(ages)


# -- changes -----------------------------------------------------------------------------------------------


@changes_app.command("list")
def changes_list(
    after: Annotated[int, typer.Option(help="Show changes numbered after this one.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
    db: DbOption = None,
) -> None:
    """Show the change log after a sequence number, as feeds read it (personal IDs masked)."""
    from population.changelog import changes_after
    from population.identity import mask_personal_id

    engine = _engine(db)
    _require_schema(engine)
    with session_factory(engine)() as session:
        entries = changes_after(session, after, limit)
    table = Table(title=f"Changes after {after}")
    for column in ("sequence", "citizen", "event", "date", "fields"):
        table.add_column(column)
    for entry in entries:
        table.add_row(str(entry.sequence), mask_personal_id(entry.personal_id), entry.event_type,
                      entry.event_date.isoformat(), ", ".join(sorted(entry.changes)))  # fmt: skip
    console.print(table)


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        _fail(f"{option} must be a date like 2026-07-01, got {value!r}")
        raise


# -- the demo ------------------------------------------------------------------------------------------------


@app.command("demo")
def demo(
    var: Annotated[Path, typer.Option(help="The demo's folder: population, PKI, partners, Airflow.")] = Path("var"),
    db: DbOption = None,
) -> None:
    """Start the four partners on loopback and run every exchange DAG through Airflow (make demo sets up the
    population and the PKI first); print what crossed, per partner."""
    from exchange.demo import run_demo

    if not run_demo(var, _demo_setup(var, db)):
        _fail("some DAG runs did not succeed (see above)")


def _demo_setup(var: Path, db: str | None) -> bytes:
    """Check that the population and the PKI are there; the key password."""
    import os

    from exchange.pki import KeyPasswordMissing, PkiDirectory, key_password

    engine = _engine(db)
    _require_schema(engine)
    engine.dispose()
    if db:
        os.environ[ENV_VAR] = db
    if not PkiDirectory(var / "pki").root_ca.exists():
        _fail(f"no PKI in {var / 'pki'}: run 'lienthong pki init' first")
    try:
        return key_password()
    except KeyPasswordMissing as error:
        _fail(str(error))
        raise


@app.command("airflow")
def airflow_serve(
    var: Annotated[Path, typer.Option(help="The demo's folder: population, PKI, partners, Airflow.")] = Path("var"),
    db: DbOption = None,
) -> None:
    """Start the four partners on loopback and Airflow (web UI, scheduler, DAG processor, triggerer; on loopback
    only) with the exchange DAGs, their connections, pools and plugin, for the web UI (after make demo); Ctrl-C
    stops both."""
    from exchange.demo import serve_airflow

    raise typer.Exit(code=serve_airflow(var, _demo_setup(var, db)))


# -- exchange packages, receipts, ledger, PKI (sub-apps import the options above, so they come last) ----------
from exchange.ledger_cli import ledger_app  # noqa: E402
from exchange.package_cli import package_app  # noqa: E402
from exchange.pki_cli import pki_app  # noqa: E402
from exchange.receipt_cli import receipt_app  # noqa: E402
from partners.cli import partners_app  # noqa: E402
from validation.cli import quality_app, quarantine_app, reconcile_app  # noqa: E402

app.add_typer(pki_app, name="pki")
app.add_typer(package_app, name="package")
app.add_typer(receipt_app, name="receipt")
app.add_typer(ledger_app, name="ledger")
app.add_typer(quality_app, name="quality")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(partners_app, name="partners")

if __name__ == "__main__":
    app()
