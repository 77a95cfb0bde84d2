"""``lienthong changes``: the ordered change log, as the feeds read it."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lienthong.commands.common import DbOption, console, population_engine, require_schema
from population.db import session_factory

changes_app = typer.Typer(help="Read the ordered change log that feeds consume.", no_args_is_help=True)


@changes_app.command("list")
def changes_list(
    after: Annotated[int, typer.Option(help="Show changes numbered after this one.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
    db: DbOption = None,
) -> None:
    """Show the change log after a sequence number, as feeds read it (personal IDs masked)."""
    from population.changelog import changes_after
    from population.identity import mask_personal_id

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        entries = changes_after(session, after, limit)
    table = Table(title=f"Changes after {after}")
    for column in ("sequence", "citizen", "event", "date", "fields"):
        table.add_column(column)
    for entry in entries:
        table.add_row(str(entry.sequence), mask_personal_id(entry.personal_id), entry.event_type,
                      entry.event_date.isoformat(), ", ".join(sorted(entry.changes)))  # fmt: skip
    console.print(table)
