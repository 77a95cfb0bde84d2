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


STATUS_CHOICES = ("held", "awaiting", "released", "rejected", "all")
STEWARD_NOTE = "The steward is the configured identity: LIENTHONG_STEWARD, else the OS user."


@quarantine_app.command("list")
def quarantine_list(
    agreement: Annotated[str | None, typer.Option(help="Only records held from this feed (its agreement).")] = None,
    run: Annotated[int | None, typer.Option(help="Only records held by this validation run.")] = None,
    package: Annotated[
        str | None, typer.Option(help="Only records held by the run whose rows went out in this package (its id).")
    ] = None,  # fmt: skip
    dimension: Annotated[
        str | None, typer.Option(help="Only records with a finding of this dimension (đúng, đủ, sạch, sống).")
    ] = None,  # fmt: skip
    severity: Annotated[
        str | None, typer.Option(help="Only records with a finding of this severity (quarantine, block).")
    ] = None,  # fmt: skip
    rule: Annotated[str | None, typer.Option(help="Only records failing this expectation (as listed).")] = None,
    province: Annotated[str | None, typer.Option(help="Only records of this province (2-digit code).")] = None,
    dataset: Annotated[str | None, typer.Option(help="Only this dataset.")] = None,
    status: Annotated[str, typer.Option(help="held, awaiting (a second steward), released, rejected or all.")] = "held",
    limit: Annotated[int, typer.Option(min=1, help="At most this many records.")] = 50,
    after: Annotated[int, typer.Option(min=0, help="Records with an id after this one.")] = 0,
    unmasked: Annotated[bool, typer.Option(help=UNMASKED_HELP)] = False,
    db: DbOption = None,
) -> None:
    """List quarantined records with why they are held (each failing value and rule) and what was decided, and
    the counts per facet under the same filter."""
    from validation.quarantine import QueueFilter, facet_counts, list_records

    if status not in STATUS_CHOICES:
        fail(f"--status is one of {', '.join(STATUS_CHOICES)}")
    where = QueueFilter(None if status == "all" else status, agreement, dataset, run, package, dimension, severity,
                        rule, province)  # fmt: skip
    engine = population_engine(db)
    require_schema(engine)
    table = Table(title=f"Quarantined records ({status})")
    for column in ("id", "feed", "run", "row", "personal ID", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("findings (field = value: rule)")
    table.add_column("decisions")
    with session_factory(engine)() as session:
        records = list_records(session, where, limit, after)
        if unmasked:
            _log_full_views(session, records)
        for r in records:
            findings = lines(f"{f.severity} {f.dimension} · {f.column_name} = {_shown(f.value, unmasked)}: {f.rule}"
                             for f in r.findings)  # fmt: skip
            pid = r.personal_id if unmasked else mask_personal_id(r.personal_id)
            table.add_row(str(r.id), r.agreement or r.dataset, str(r.run_id), str(r.row_number), pid, r.status,
                          findings, lines(map(_decision_line, r.decisions)))  # fmt: skip
        counts = facet_counts(session, where)
    console.print(table)
    console.print(f"{len(records)} record(s)")
    for facet in ("agreement", "dimension", "severity", "province"):
        if counts[facet]:
            console.print(f"by {facet}: " + ", ".join(f"{value} {n:,}" for value, n in counts[facet].items()))


def _shown(value, unmasked: bool) -> str:
    """A value as shown: every personal ID in it masked (a parent's, a duplicate's) unless --unmasked."""
    text = "" if value is None else str(value)
    return text if unmasked else mask_personal_ids(text)


def _decision_line(d) -> str:
    scope = " (all feeds)" if d.scope == "all" else ""
    return f"{d.decision}{scope} by {d.steward} {d.decided_at:%Y-%m-%d %H:%M}: {d.reason}"


UNMASKED_HELP = "Show whole personal IDs (stewards only); each record so shown is logged as a full view."
REVIEW = "quarantine review"


def _log_full_views(session, records) -> None:
    """Each record about to be shown whole is logged first (``feeds.disclosures.record_full_views``): the citizen's
    access report lists it. Nothing is shown when that cannot be done."""
    from feeds.disclosures import record_full_views
    from lienthong.settings import DisclosureKeyMissing
    from validation.quarantine import record_label, steward_identity

    try:
        record_full_views(session, [(r.personal_id, record_label(r)) for r in records], steward_identity(), REVIEW)
        session.commit()
    except DisclosureKeyMissing as error:
        fail(f"whole personal IDs are shown only when the view can be logged: {error}")


@quarantine_app.command("show")
def quarantine_show(
    record_id: Annotated[int, typer.Argument(help="A quarantined record's id (see 'quarantine list').")],
    unmasked: Annotated[bool, typer.Option(help=UNMASKED_HELP)] = False,
    db: DbOption = None,
) -> None:
    """One held record: its values (failing fields marked), each finding with its value, rule and reason, and its
    decisions. Personal IDs are masked unless --unmasked."""
    from validation.quarantine import DecisionError, needs_second_steward, quarantined_record

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        try:
            record = quarantined_record(session, record_id)
        except DecisionError as error:
            fail(error)
        if unmasked:
            _log_full_views(session, [record])
        shown = record.personal_id if unmasked else mask_personal_id(record.personal_id)
        console.print(f"quarantined record {record.id}: {record.agreement or record.dataset} ({record.dataset}), "
                      f"run {record.run_id}, row {record.row_number}, {record.status}, personal ID {shown}"
                      + (f", sent in package {record.sent_in}" if record.sent_in else ""))  # fmt: skip
        if needs_second_steward(record):
            console.print("a block-severity finding: its release takes two stewards")
        failing = {f.column_name for f in record.findings}
        values = Table(title="values (failing fields marked *)")
        for column in ("field", "value"):
            values.add_column(column)
        for field, value in record.record.items():
            values.add_row(f"* {field}" if field in failing else f"  {field}", _shown(value, unmasked))
        console.print(values)
        console.print("findings (field = value: dimension, severity, rule: reason)")
        for f in record.findings:  # a line each, never wrapped: a field, a rule is found whole
            console.print(f"  {f.column_name} = {_shown(f.value, unmasked)}: {f.dimension}, {f.severity}, {f.rule}: "
                          f"{f.reason}", soft_wrap=True, highlight=False, markup=False)  # fmt: skip
        for d in record.decisions:
            console.print(_decision_line(d))


def _decide(decision: str, ids: list[int], reason: str, all_feeds: bool, db: str | None) -> None:
    from validation.quarantine import DecisionError, decide

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        try:
            decisions = decide(session, ids, decision, reason, all_feeds=all_feeds)
        except DecisionError as error:
            fail(error)
        statuses = lines(f"record {d.record_id}: {d.record.status}" for d in decisions)
    console.print(f"{decision} recorded as {decisions[0].steward} on {len(decisions)} record(s)")
    console.print(statuses)


IdsArgument = Annotated[list[int], typer.Argument(help="Quarantined record ids (see 'quarantine list').")]
ReasonOption = Annotated[str, typer.Option("--reason", "-r", help="Why: kept in the audit trail.")]
AllFeedsOption = Annotated[bool, typer.Option("--all-feeds", help="Also for every other feed holding the same person "
                                                                  "for the same findings.")]  # fmt: skip


@quarantine_app.command("release", epilog=STEWARD_NOTE)
def quarantine_release(ids: IdsArgument, reason: ReasonOption, all_feeds: AllFeedsOption = False,
                       db: DbOption = None):  # fmt: skip
    """Let records go out: each goes out once, in its feed's next package (whose manifest names the decision),
    and later runs let the same values pass. A record failing a block-severity rule takes two stewards' releases."""
    _decide("release", ids, reason, all_feeds, db)


@quarantine_app.command("reject", epilog=STEWARD_NOTE)
def quarantine_reject(ids: IdsArgument, reason: ReasonOption, all_feeds: AllFeedsOption = False,
                      db: DbOption = None):  # fmt: skip
    """Keep records out: they must be corrected at the source."""
    _decide("reject", ids, reason, all_feeds, db)
