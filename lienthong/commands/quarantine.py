"""``lienthong quarantine``: records held back by validation, for stewards to list, release or reject (audited)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from lienthong.commands.common import DbOption, console, fail, lines, population_engine, require_schema
from population.db import session_factory
from population.identity import mask_personal_id, mask_personal_ids

quarantine_app = typer.Typer(help="Records held back by validation: list them, release or reject them.",
                             no_args_is_help=True)  # fmt: skip


@quarantine_app.command("list")
def quarantine_list(
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[str, typer.Option(help="held, released, rejected or all.")] = "held",
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    after: Annotated[int, typer.Option(min=0, help="Records with an id after this one.")] = 0,
    unmasked: Annotated[bool, typer.Option(help=UNMASKED_HELP)] = False,
    steward: Annotated[str | None, typer.Option(help="Who is viewing (with --unmasked); default the OS user.")] = None,
    db: DbOption = None,
) -> None:
    """List quarantined records with why they are held and what was decided."""
    from validation.quarantine import list_records

    if status not in ("held", "released", "rejected", "all"):
        fail("--status is one of held, released, rejected, all")
    engine = population_engine(db)
    require_schema(engine)
    table = Table(title=f"Quarantined records ({status})")
    for column in ("id", "dataset", "run", "row", "personal ID", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("findings")
    table.add_column("decisions")
    with session_factory(engine)() as session:
        records = list_records(session, dataset, None if status == "all" else status, limit, after)
        if unmasked:
            _log_full_views(session, records, steward)
        for r in records:
            findings = lines(f"{f.dimension} · {f.reason}" for f in r.findings)
            decisions = lines(f"{d.decision} by {d.steward} {d.decided_at:%Y-%m-%d %H:%M}: {d.reason}"
                              for d in r.decisions)  # fmt: skip
            pid = r.personal_id if unmasked else mask_personal_id(r.personal_id)
            table.add_row(str(r.id), r.dataset, str(r.run_id), str(r.row_number), pid, r.status, findings, decisions)
    console.print(table)
    console.print(f"{len(records)} record(s)")


UNMASKED_HELP = "Show whole personal IDs (stewards only); each record so shown is logged as a full view."
REVIEW = "quarantine review"


def _log_full_views(session, records, steward: str | None) -> None:
    """Each record about to be shown whole is logged first (``feeds.disclosures.record_full_views``): the citizen's
    access report lists it. Nothing is shown when that cannot be done."""
    from feeds.disclosures import record_full_views
    from lienthong.settings import DisclosureKeyMissing
    from validation.quarantine import record_label, steward_identity

    try:
        record_full_views(session, [(r.personal_id, record_label(r)) for r in records], steward_identity(steward),
                          REVIEW)  # fmt: skip
        session.commit()
    except DisclosureKeyMissing as error:
        fail(f"whole personal IDs are shown only when the view can be logged: {error}")


@quarantine_app.command("show")
def quarantine_show(
    record_id: Annotated[int, typer.Argument(help="A quarantined record's id (see 'quarantine list').")],
    unmasked: Annotated[bool, typer.Option(help=UNMASKED_HELP)] = False,
    steward: Annotated[str | None, typer.Option(help="Who is viewing (with --unmasked); default the OS user.")] = None,
    db: DbOption = None,
) -> None:
    """One held record: its values (failing fields marked), each finding with its value, rule and reason, and its
    decisions. Personal IDs are masked unless --unmasked."""
    from validation.quarantine import list_records

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        found = list_records(session, None, None, 1, record_id - 1)
        if not found or found[0].id != record_id:
            fail(f"no quarantined record {record_id}")
        record = found[0]
        if unmasked:
            _log_full_views(session, [record], steward)
        shown = record.personal_id if unmasked else mask_personal_id(record.personal_id)

        def value_of(value) -> str:  # masked: every personal ID in it (a parent's, a duplicate's)
            text = "" if value is None else str(value)
            return text if unmasked else mask_personal_ids(text)

        console.print(f"quarantined record {record.id}: {record.dataset}, run {record.run_id}, row "
                      f"{record.row_number}, {record.status}, personal ID {shown}")  # fmt: skip
        failing = {f.column_name for f in record.findings}
        values = Table(title="values (failing fields marked *)")
        for column in ("field", "value"):
            values.add_column(column)
        for field, value in record.record.items():
            values.add_row(f"* {field}" if field in failing else f"  {field}", value_of(value))
        console.print(values)
        findings = Table(title="findings")
        for column in ("field", "value", "dimension", "rule", "reason"):
            findings.add_column(column)
        for f in record.findings:
            findings.add_row(f.column_name, value_of(f.value), f.dimension, f.rule, f.reason)
        console.print(findings)
        for d in record.decisions:
            console.print(f"{d.decision} by {d.steward} {d.decided_at:%Y-%m-%d %H:%M}: {d.reason}")


def _decide(decision: str, ids: list[int], reason: str, steward: str | None, db: str | None) -> None:
    from validation.quarantine import DecisionError, decide

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        try:
            decisions = decide(session, ids, decision, reason, steward)
        except DecisionError as error:
            fail(error)
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
