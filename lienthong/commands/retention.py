"""``lienthong retention``: delete the payloads and staging files whose agreement's ``retention_days`` are over, and
the legal holds that stop it (``feeds.retention``; the daily ``lienthong.retention`` DAG runs ``apply`` too).

Personal IDs given to ``hold`` and ``release`` are never printed whole: a hold is shown with the ID masked."""

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
    require_schema,
    say,
    workspace,
)

retention_app = typer.Typer(help="Retention of packages' payloads and staging files, and legal holds.",
                            no_args_is_help=True)  # fmt: skip

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--var", help="The workspace (packages, staging, inbound). Default: $LIENTHONG_VAR_DIR, else var."),
]
AgreementOption = Annotated[str | None, typer.Option("--agreement", help="A hold on this agreement.")]
CitizenOption = Annotated[str | None, typer.Option("--citizen", help="A hold on this citizen (12-digit personal ID).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (a case number, a court order).")]


def _engine(db: str | None):
    engine = population_engine(db)
    require_schema(engine)
    return engine


def _one_target(agreement: str | None, citizen: str | None) -> None:
    if (agreement is None) == (citizen is None):
        fail("give one of --agreement or --citizen")


@retention_app.command("apply")
def apply(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be deleted.")] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Judge retention as on this date (default: now).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The run as JSON.")] = False,
    var: WorkspaceOption = None,
    db: DbOption = None,
) -> None:
    """Delete the expired payloads (the manifests, signatures, receipts and the ledger stay) and staging files."""
    from feeds.retention import RetentionError, apply_retention

    at = None
    if as_of is not None:
        day = parse_date(as_of, "--as-of")
        at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    engine = _engine(db)
    try:
        run = apply_retention(engine, workspace(var), dry_run=dry_run, at=at)
    except RetentionError as error:
        fail(error)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(run.as_dict(), indent=2))
        return
    verb = "would delete" if dry_run else "deleted"
    table = Table(title=f"Retention as of {run.at} ({'dry run' if dry_run else 'applied'})")
    for column in ("agreement", "what", "receipt", "bytes"):
        table.add_column(column, no_wrap=True)
    for package in run.packages:
        table.add_row(package.agreement, f"{package.name} ({package.direction})", package.receipt_recorded_at[:19],
                      f"{package.bytes:,}")  # fmt: skip
    for staged in run.staging:
        table.add_row(staged.agreement, f"staging {Path(staged.path).name}", "", f"{staged.bytes:,}")
    console.print(table)
    for kept in run.held:
        say(f"kept by the hold on {kept.hold}: {kept.what}")
    say(f"{verb}: the payloads of {len(run.packages)} package(s), {len(run.staging)} staging folder(s), "
        f"{run.freed_bytes:,} bytes; {len(run.held)} kept by a hold")  # fmt: skip


@retention_app.command("hold")
def hold(
    agreement: AgreementOption = None, citizen: CitizenOption = None, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Place a legal hold: nothing of the agreement, or nothing holding the citizen's record, is deleted."""
    from feeds.retention import RetentionError, place_hold

    _one_target(agreement, citizen)
    engine = _engine(db)
    try:
        placed, new = place_hold(engine, agreement=agreement, personal_id=citizen, reason=reason)
    except RetentionError as error:
        fail(error)
    finally:
        engine.dispose()
    say(f"hold #{placed.id} on {placed.target} {'placed' if new else 'in force already'}")


@retention_app.command("release")
def release(
    agreement: AgreementOption = None, citizen: CitizenOption = None, reason: ReasonOption = "", db: DbOption = None
) -> None:
    """Release the legal hold on the agreement or the citizen."""
    from feeds.retention import RetentionError, release_hold
    from population.identity import mask_personal_id

    _one_target(agreement, citizen)
    engine = _engine(db)
    try:
        released = release_hold(engine, agreement=agreement, personal_id=citizen, reason=reason)
    except RetentionError as error:
        fail(error)
    finally:
        engine.dispose()
    target = f"agreement {agreement}" if agreement is not None else f"citizen {mask_personal_id(citizen)}"
    if not released:
        fail(f"no hold in force on {target}")
    say(f"hold on {target} released")


@retention_app.command("holds")
def holds(db: DbOption = None) -> None:
    """The legal holds in force (citizens' IDs masked)."""
    from feeds.retention import active_holds

    engine = _engine(db)
    try:
        found = active_holds(engine)
    finally:
        engine.dispose()
    table = Table(title="Legal holds in force")
    for column in ("#", "on", "placed", "reason"):
        table.add_column(column)
    for each in found:
        table.add_row(str(each.id), each.target, f"{each.placed_at:%Y-%m-%d %H:%M}", each.reason)
    console.print(table)
    say(f"{len(found)} hold(s)")
