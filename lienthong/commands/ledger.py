"""``lienthong ledger``: verify, show and audit the tamper-evident exchange ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lienthong.commands.common import (
    DbOption,
    PkiOption,
    existing,
    fail,
    pki_directory,
    population_engine,
    require_schema,
    run_checks,
    say,
)
from lienthong.settings import Workspace
from population.db import session_factory

ledger_app = typer.Typer(help="The tamper-evident ledger of packages and receipts.", no_args_is_help=True)


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None) -> None:
    """Walk the hash chain; name the first edited, deleted, inserted or reordered entry."""
    from exchange import ledger

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        state = run_checks(ledger.verify, session)
    say(f"ledger intact: {state.entries:,} entries, head {state.head_hash}")


@ledger_app.command("show")
def ledger_show(
    after: Annotated[int, typer.Option(help="Show entries after this position.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 20,
    db: DbOption = None,
) -> None:
    """List ledger entries in order, one line each."""
    from itertools import islice

    from exchange import ledger

    engine = population_engine(db)
    require_schema(engine)
    with session_factory(engine)() as session:
        for e in islice(ledger.entries(session, after), limit):
            status = f" {e.status}" if e.status else ""
            say(
                f"{e.position:>8} {e.recorded_at:%Y-%m-%d %H:%M:%S} {e.kind:<16} {e.agreement} #{e.sequence} "
                f"{e.sender}→{e.recipient} {e.record_count:,} records{status} manifest {e.manifest_sha256[:16]}"
            )


@ledger_app.command("audit")
def ledger_audit(
    sample: Annotated[int, typer.Option(min=0, help="How many entries to re-verify from their files.")] = 20,
    packages: Annotated[
        list[Path] | None,
        typer.Option(
            "--packages",
            callback=existing("directory"),
            help="A folder of packages and their receipts (repeatable). Default: var/packages and var/inbound.",
        ),
    ] = None,
    pki: PkiOption = None,
    within_days: Annotated[int, typer.Option(min=0, help="Warn of certificates expiring within this many days.")] = 30,
    anchors: Annotated[
        Path | None,
        typer.Option(
            help="The folder of signed ledger anchors to check the chain against. Default: var/ledger-anchors."
        ),
    ] = None,
    receipts: Annotated[
        list[Path] | None,
        typer.Option(
            "--receipts",
            callback=existing("directory"),
            help="A folder of signed receipts a partner handed over from its own copies (repeatable): the ledger "
            "heads they witness are checked as those of the receipts kept under --packages.",
        ),
    ] = None,
    seed: Annotated[
        str | None, typer.Option(help="Seed of the sample: the same seed, the same entries. Default: today (UTC).")
    ] = None,
    db: DbOption = None,
) -> None:
    """The daily audit: the hash chain and its signed anchors, the ledger heads partners signed in their receipts,
    a sample of entries re-verified from the signed files kept, and the certificates about to expire. One line
    each; exit 1 when the chain is broken, an anchor or a partner's receipt contradicts it or a sampled entry
    fails; expiring certificates are warnings. (The audit DAG also anchors the head it verified.)"""
    from exchange.anchor import check_anchors
    from exchange.errors import LedgerBroken
    from feeds.audit import audit_chain, audit_signatures, audit_witnesses, expiring_certificates

    directory, workspace = pki_directory(pki), Workspace.from_environment()
    if not directory.root_ca.is_file() or not directory.crl.is_file():
        fail(f"no root-ca.pem and crl.pem in {directory.path} (--pki)")
    anchors = anchors or workspace.ledger_anchors
    engine = population_engine(db)
    require_schema(engine)
    failed = []

    try:
        chain = audit_chain(engine)
        say(f"chain: intact, {chain.entries:,} entries, head {chain.head_hash}")
    except LedgerBroken as error:
        failed.append("the chain is broken")
        say(f"chain: BROKEN: {error}", fg="red", bold=True)

    anchored = check_anchors(engine, anchors, directory)
    say(f"anchors: {anchored.checked - len(anchored.problems):,} of {anchored.checked:,} in {anchors} hold")
    for problem in anchored.problems:
        say(f"  FAILED {problem}", fg="red")
    if anchored.problems:
        failed.append(f"{len(anchored.problems):,} of {anchored.checked:,} anchors contradict the ledger")

    folders = packages or [workspace.packages, workspace.inbound]
    witnessed = audit_witnesses(engine, [*folders, *(receipts or [])], directory)
    by = f" (by {', '.join(witnessed.partners)}, up to entry {witnessed.newest:,})" if witnessed.witnesses else ""
    say(f"witnesses: {witnessed.witnesses:,} of {witnessed.receipts:,} receipts found carry a ledger head a partner "
        f"signed{by}")  # fmt: skip
    for problem in witnessed.problems:
        say(f"  FAILED {problem}", fg="red")
    if witnessed.problems:
        failed.append(f"{len(witnessed.problems):,} receipts contradict the ledger or cannot be checked")

    signatures = audit_signatures(engine, folders, directory, sample=sample, seed=seed)
    verified = f"{signatures.verified:,} of {signatures.checked:,} sampled entries verified"
    say(f"signatures: {verified} (seed {signatures.seed})")
    for problem in signatures.problems:
        say(f"  FAILED {problem}", fg="red")
    if signatures.problems:
        failed.append(f"{signatures.checked - signatures.verified:,} of {signatures.checked:,} sampled entries failed")

    expiring = expiring_certificates(directory, within_days=within_days)
    if not expiring:
        say(f"certificates: none expires within {within_days} days")
    for certificate in expiring:
        say(f"warning: {certificate}", fg="yellow")

    if failed:
        say(f"audit failed: {'; '.join(failed)}", fg="red", bold=True)
        raise typer.Exit(code=1)
    say("audit passed" + (f" with {len(expiring)} warning(s)" if expiring else ""))
