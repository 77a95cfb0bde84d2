"""``lienthong disclosures``: who received a citizen's data, and the data-subject access report (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from lienthong import settings
from lienthong.commands.common import (
    DbOption,
    PkiOption,
    fail,
    key_password,
    parse_date,
    pki_directory,
    population_engine,
    require_schema,
    say,
    writable,
)


def disclosures(
    personal_id: Annotated[str, typer.Argument(help="The citizen's personal ID (12 digits).")],
    since: Annotated[str | None, typer.Option(help="Only packages made on or after this date (YYYY-MM-DD).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the access report's JSON document.")] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            callback=writable("directory"),
            help="Write the signed access report here: report.json and report.pdf, each with its detached CMS "
            "signature (.p7s), and report.html.",
        ),
    ] = None,
    db: DbOption = None,
    pki: PkiOption = None,
) -> None:
    """Every disclosure of a citizen's data to a partner (partner, agreement, legal basis, purpose, fields, sent and
    acknowledged), every record a partner sent about them, every full view of their record by a steward, and (with
    --report) the signed access report."""
    from feeds.disclosures import InvalidPersonalId, access_report, lookup, summary_line, write_report

    day = parse_date(since, "--since") if since is not None else None
    engine = population_engine(db)
    require_schema(engine)
    try:
        found = lookup(engine, personal_id, day)
    except InvalidPersonalId as error:
        fail(error)
    except settings.DisclosureKeyMissing as error:
        fail(error)
    finally:
        engine.dispose()
    document = access_report(found)
    if report is not None:
        from exchange.pki import POPULATION, load_signer

        try:
            signer = load_signer(pki_directory(pki), POPULATION, key_password())
        except (OSError, ValueError) as error:
            fail(f"cannot load the population agency's signing key: {error}")
        try:
            paths = write_report(document, report, signer)
        except settings.ReportFontMissing as error:
            fail(error)
        for path in paths:
            say(f"wrote {path}", err=True)
    if as_json:
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    line = summary_line(found)
    if line is not None:
        say(line)
        return
    _print(document)


def _receipt(entry: dict) -> str:
    receipt = entry["receipt"]
    if receipt["status"] is None:
        return "no receipt recorded yet"
    return f"{receipt['status']} at {receipt['at']}"


def _print(document: dict) -> None:
    """One block per package, a line per fact (long legal texts stay whole lines, for reading and for grep)."""
    subject = document["subject"]
    note = "" if subject["in_population_database"] else " (not in the population database)"
    say(f"citizen {subject['personal_id']}{note}" + (f", since {document['since']}" if document["since"] else ""))
    for title, key, when in (("disclosed to partners", "disclosures", "sent_at"),
                             ("received from partners", "received_from_partners", "received_at")):  # fmt: skip
        entries = document[key]
        say(f"{title}: {len(entries)} package(s)" if entries else f"{title}: none")
        for entry in entries:
            partner = f"{entry['partner']} ({entry['partner_organisation']})"
            package = f"package #{entry['sequence']} ({entry['mode']}) {entry['package_id']}"
            say(f"- {entry[when]}  {partner}, agreement {entry['agreement']}, {package}")
            say(f"    fields: {', '.join(entry['fields'])}")
            say(f"    records about this citizen: {entry['records']}")
            for number, basis in enumerate(entry["legal_basis"]):
                say(f"    {'legal basis:' if number == 0 else '            '} {basis}")
            say(f"    purpose: {entry['purpose']}")
            say(f"    receipt{' (ours)' if key == 'received_from_partners' else ''}: {_receipt(entry)}")
    views = document["steward_full_views"]
    say(f"full views by stewards: {len(views)}" if views else "full views by stewards: none")
    for view in views:
        say(f"- {view['viewed_at']}  {view['steward']}: {view['record']} ({view['purpose']})")
