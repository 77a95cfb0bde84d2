"""``lienthong reconcile``: a partner's dataset against the population database: registry links, mismatches."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from lienthong.commands.common import (
    DbOption,
    ReportsOption,
    console,
    existing,
    fail,
    population_engine,
    require_schema,
    writable,
)

reconcile_app = typer.Typer(help="Reconcile a partner's dataset with the population database.", no_args_is_help=True)


@reconcile_app.command("run")
def reconcile_run(
    partner: Annotated[str, typer.Argument(help="The partner agency, e.g. health, tax, land or business.")],
    input_file: Annotated[Path, typer.Option("--input", "-i", callback=existing("file"), help="A .csv or .jsonl")],
    out: ReportsOption,
    db: DbOption = None,
) -> None:
    """Match a partner's dataset to the population, write registry links and the mismatch report per class."""
    from validation.reconciliation import reconcile, write_mismatch_csv
    from validation.runner import read_batches

    engine = population_engine(db)
    require_schema(engine)
    try:
        report = reconcile(engine, partner, read_batches(input_file), str(input_file))
    except ValueError as error:  # a file its reader refuses names the line and the rule
        fail(error)
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
    partner: Annotated[str, typer.Argument(help="The partner agency, e.g. health, tax, land or business.")],
    out: Annotated[Path, typer.Option("--out", "-o", callback=writable("file"), help="CSV file to write.")],
    rows: Annotated[int, typer.Option(min=1, help="How many partner rows.")] = 1_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
    disagreement_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of rows changed.")] = 0.1,
    db: DbOption = None,
) -> None:
    """Derive a partner dataset from the population, with deliberate disagreements (until partners exist)."""
    from validation.partner_sample import partner_sample

    engine = population_engine(db)
    require_schema(engine)
    try:
        sample = partner_sample(engine, partner, rows, seed, disagreement_rate, date.today())
    except KeyError:
        fail(f"unknown partner {partner!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    sample.rows.to_csv(out, index=False)
    console.print(f"wrote {len(sample.rows):,} {partner} rows to {out}, {len(sample.truth):,} changed on purpose")
