"""``lienthong ledger``: verify and show the tamper-evident exchange ledger."""

from __future__ import annotations

from typing import Annotated

import typer

from exchange.cli import DbOption, _engine, _require_schema
from exchange.pki_cli import run_checks
from population.db import session_factory

ledger_app = typer.Typer(help="The tamper-evident ledger of packages and receipts.", no_args_is_help=True)


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None) -> None:
    """Walk the hash chain; name the first edited, deleted, inserted or reordered entry."""
    from exchange import ledger

    engine = _engine(db)
    _require_schema(engine)
    with session_factory(engine)() as session:
        state = run_checks(ledger.verify, session)
    typer.echo(f"ledger intact: {state.entries:,} entries, head {state.head_hash}")


@ledger_app.command("show")
def ledger_show(
    after: Annotated[int, typer.Option(help="Show entries after this position.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
    db: DbOption = None,
) -> None:
    """List ledger entries in order, one line each."""
    from itertools import islice

    from exchange import ledger

    engine = _engine(db)
    _require_schema(engine)
    with session_factory(engine)() as session:
        for e in islice(ledger.entries(session, after), limit):
            status = f" {e.status}" if e.status else ""
            typer.echo(
                f"{e.position:>8} {e.recorded_at:%Y-%m-%d %H:%M:%S} {e.kind:<16} {e.agreement} #{e.sequence} "
                f"{e.sender}→{e.recipient} {e.record_count:,} records{status} manifest {e.manifest_sha256[:16]}"
            )
