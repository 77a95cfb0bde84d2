"""``lienthong db``: create and upgrade the population database's schema (Alembic, the only way it changes)."""

from __future__ import annotations

import typer

from lienthong.commands.common import DbOption, console, population_engine

db_app = typer.Typer(help="Create and upgrade the population database schema (Alembic).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None, revision: str = typer.Option("head", help="Target Alembic revision.")) -> None:
    """Create or upgrade the schema to the latest revision (the only way the schema changes)."""
    from population.migrate import current_revision, upgrade

    engine = population_engine(db, create=True)
    upgrade(engine, revision)
    console.print(
        f"database {engine.url.render_as_string(hide_password=True)} is at revision {current_revision(engine)}"
    )


@db_app.command("current")
def db_current(db: DbOption = None) -> None:
    """Show the schema revision the database is at."""
    from population.migrate import current_revision, head_revision

    engine = population_engine(db)
    console.print(f"current: {current_revision(engine) or 'none'}; latest: {head_revision()}")
