"""What every command group shares: the options, the consoles, the refusal, the database and the key password.

A refusal is one line on standard error, ``error: <what>``, and exit status 1 (``fail``); a failed check of the
package contract names the check (``run_checks``). Settings are read from ``lienthong.settings`` only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lienthong import settings

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar=settings.DB_ENV, help="Database URL (sqlite:///… or postgresql://…). Default: var/lienthong.db"
    ),
]
PkiOption = Annotated[
    Path | None,
    typer.Option(
        "--pki", help="The PKI directory (made by 'lienthong pki init'). Default: $LIENTHONG_PKI_DIR, else var/pki."
    ),
]
TrustOption = Annotated[Path, typer.Option("--trust", help="The trust root certificate (PEM), e.g. root-ca.pem.")]
CrlOption = Annotated[
    list[Path] | None,
    typer.Option("--crl", help="A CRL to check revocation with (repeatable). Default: crl.pem beside --trust."),
]
ReportsOption = Annotated[Path, typer.Option("--out", "-o", help="Directory for the reports.")]
VarOption = Annotated[
    Path | None, typer.Option("--var", help="The demo's folder: population, PKI, partners, Airflow. Default: var.")
]


def fail(message: object) -> NoReturn:
    """One line on standard error, exit status 1."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def run_checks(action: Callable[..., T], *args, **kwargs) -> T:
    """Call a verifying function; a failed check becomes one line naming it and exit status 1."""
    from exchange.errors import VerificationError

    try:
        return action(*args, **kwargs)
    except VerificationError as error:
        fail(error)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on standard error; yields ``advance(n)``."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if total:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def population_engine(db: str | None):
    """The population database's engine for ``--db`` (else the settings')."""
    from population.db import create_population_engine

    return create_population_engine(settings.database_url(db))


def require_schema(engine) -> None:
    from population.migrate import current_revision, head_revision

    current = current_revision(engine)
    if current != head_revision():
        fail(f"the database schema is at {current or 'nothing'}, not {head_revision()}: run 'lienthong db upgrade'")


def parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be a date like 2026-07-01, got {value!r}")


def key_password() -> bytes:
    try:
        return settings.key_password()
    except settings.KeyPasswordMissing as error:
        fail(error)


def optional_key_password() -> bytes | None:
    """A key given on the command line may be unencrypted; the password is used when there is one."""
    try:
        return settings.key_password()
    except settings.KeyPasswordMissing:
        return None


def pki_directory(pki: Path | None):
    """The PKI for ``--pki`` (else the settings')."""
    from exchange.pki import PkiDirectory

    return PkiDirectory(settings.pki_dir(pki))


def trust_anchors(trust: Path, crls: list[Path] | None):
    """The trust root and the CRLs given, else the ``crl.pem`` beside the root when there is one."""
    from exchange.signature import TrustAnchors

    if not crls:
        beside = trust.parent / "crl.pem"
        crls = [beside] if beside.is_file() else []
    try:
        return TrustAnchors.from_files(trust, crls)
    except (OSError, ValueError) as error:
        fail(f"cannot load the trust root or CRL: {error}")
