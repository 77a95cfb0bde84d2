"""``lienthong population``: the synthetic population, a day of life events, the extract, statistics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lienthong.commands.common import (
    DbOption,
    console,
    fail,
    parse_date,
    population_engine,
    progress,
    require_schema,
    writable,
)
from population.db import session_factory

population_app = typer.Typer(
    help="The population database: synthetic population, life events, extract, statistics.",
    no_args_is_help=True,
)


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

    engine = population_engine(db)
    require_schema(engine)
    try:
        with progress("generating citizens", citizens) as advance:
            result = generate(engine, citizens, seed, defect_rate, parse_date(as_of, "--as-of"), advance)
    except ValueError as error:
        fail(str(error))
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

    engine = population_engine(db)
    require_schema(engine)
    event_day = parse_date(day, "--date") if day else datetime.now(UTC).date()
    try:
        simulation = DaySimulation(session_factory(engine), seed, event_day)
        with progress(f"life events of {event_day}", count) as advance:
            report = simulation.run(count, advance)
    except ValueError as error:
        fail(str(error))
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
    out: Annotated[Path, typer.Option("--out", "-o", callback=writable("file"), help="CSV file to write.")],
    limit: Annotated[int | None, typer.Option(min=1, help="Export at most this many citizens.")] = None,
    db: DbOption = None,
) -> None:
    """Export the canonical citizen extract (schemas/datasets/citizen-extract.v1.json) as CSV, streamed."""
    from sqlalchemy import func, select

    from population.extract import export_csv
    from population.models import Citizen

    engine = population_engine(db)
    require_schema(engine)
    with engine.connect() as connection:
        total = connection.execute(select(func.count()).select_from(Citizen)).scalar_one()
    total = min(total, limit) if limit else total
    with progress(f"exporting to {out}", total) as advance:
        rows = export_csv(engine, out, limit, advance)
    console.print(f"wrote {rows:,} citizens to {out}")


@population_app.command("stats")
def population_stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    db: DbOption = None,
) -> None:
    """Summarise the population: counts, age structure against the 2019 census, cards, defects, change log."""
    from population.stats import population_stats as compute

    engine = population_engine(db)
    require_schema(engine)
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
