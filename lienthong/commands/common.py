"""What every command group shares: the options, the consoles, the refusal, the database and the key password.

A refusal is one line on standard error, ``error: <what>``, and exit status 1 (``fail``); a failed check of the
package contract names the check (``run_checks``). Settings are read from ``lienthong.settings`` only.

Much of what the commands print comes from outside: file and column names, a partner's manifest, the ledger.
Nothing printed is read as Rich markup or emoji codes (``console``, ``errors``), and control characters are shown
escaped (``printable``, ``say``), so a name cannot style the terminal, forge a line or raise a markup error. Paths
the commands read are checked when the options are parsed (``existing``, ``writable``): a refusal, not a usage box
with exit status 2, which ``quality check`` uses for a blocked dataset.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from exchange.errors import printable
from lienthong import settings


def lines(values: Iterable[object]) -> Text:
    """Several values as the lines of one table cell, each ``printable``."""
    return Text("\n".join(printable(value) for value in values))


class PlainConsole(Console):
    """A Rich console that prints every string as it is, on its line: no markup (``[link=…]`` in a column name is
    text), no emoji codes, control characters escaped (``printable``; a cell of several lines is ``lines``), and a
    line is never wrapped at the terminal's width (a long path stays one line)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(markup=False, emoji=False, soft_wrap=True, **options)

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(printable(text), **options)


console = PlainConsole()
errors = PlainConsole(stderr=True)
T = TypeVar("T")


def fail(message: object) -> NoReturn:
    """One line on standard error, exit status 1."""
    say(f"error: {message}", err=True)
    raise typer.Exit(code=1)


def say(message: object, *, err: bool = False, **style: Any) -> None:
    """One line (``printable``) on standard output or error, styled as ``typer.secho`` styles it."""
    typer.secho(printable(message), err=err, **style)


PathKind = Literal["file", "directory", "file or directory"]


def existing(kind: PathKind = "file") -> Callable[[typer.CallbackParam, Any], Any]:
    """A typer callback for a path the command reads: it must exist, be a ``kind`` (a regular file, not a FIFO or a
    device that would block or never end) and be readable, else ``fail`` naming the option."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        for path in value if isinstance(value, list | tuple) else [value]:
            if path is not None:
                _check_existing(_option(param), Path(path), kind)
        return value

    return check


def writable(kind: Literal["file", "directory"]) -> Callable[[typer.CallbackParam, Any], Any]:
    """A typer callback for a path the command writes, checked before anything is done: a directory there, or
    nothing yet under a directory (a file to write: not a directory), else ``fail`` naming the option."""

    def check(param: typer.CallbackParam, value: Path | None) -> Path | None:
        if value is not None:
            _check_writable(_option(param), Path(value), kind)
        return value

    return check


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
TrustOption = Annotated[
    Path,
    typer.Option("--trust", callback=existing("file"), help="The trust root certificate (PEM), e.g. root-ca.pem."),
]
CrlOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--crl",
        callback=existing("file"),
        help="A CRL to check revocation with (repeatable). Default: crl.pem beside --trust.",
    ),
]
ReportsOption = Annotated[
    Path, typer.Option("--out", "-o", callback=writable("directory"), help="Directory for the reports.")
]
VarOption = Annotated[
    Path | None, typer.Option("--var", help="The demo's folder: population, PKI, partners, Airflow. Default: var.")
]


def _option(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.param_type_name == "option" else (param.name or "path").upper()


def _check_existing(option: str, path: Path, kind: PathKind) -> None:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        fail(f"{option}: {path} does not exist")
    except OSError as error:  # a file where a folder is expected on the way, a loop, no permission
        fail(f"{option}: {path} cannot be read ({error.strerror})")
    if stat.S_ISDIR(mode) and kind == "file":
        fail(f"{option}: {path} is a directory, not a file")
    if stat.S_ISREG(mode) and kind == "directory":
        fail(f"{option}: {path} is a file, not a directory")
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        fail(f"{option}: {path} is not a regular {kind}")
    if not os.access(path, os.R_OK | (os.X_OK if stat.S_ISDIR(mode) else 0)):
        fail(f"{option}: {path} cannot be read (permission denied)")


def _check_writable(option: str, path: Path, kind: Literal["file", "directory"]) -> None:
    target = path.absolute()
    if target.is_dir() and kind == "file":
        fail(f"{option}: {path} is a directory, not a file")
    for folder in ([target] if kind == "directory" else []) + list(target.parents):
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                fail(f"{option}: {folder} cannot be written (permission denied)")
            return
        if folder.exists() or folder.is_symlink():
            fail(f"{option}: {folder} is not a directory")


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
    columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    if total:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=False) as bar:
        task = bar.add_task(printable(description), total=total)
        yield lambda n: bar.advance(task, n)


def database_url(db: str | None):
    """The population database's URL for ``--db`` (else the settings'), parsed; one that is not a URL is refused
    without echoing it (it may hold a password)."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(settings.database_url(db))
    except ArgumentError:
        fail("--db: not a database URL (sqlite:///… or postgresql://…)")
    except OSError as error:  # the default's var folder cannot be made
        fail(f"--db: no default database ({error.strerror}: {error.filename})")


def population_engine(db: str | None, *, create: bool = False):
    """The population database's engine for ``--db`` (else the settings'), connected once: a database that cannot
    be opened (a folder on its path that is a file, a server down) is refused naming the option, and so is a SQLite
    file that does not exist, without making it, unless ``create`` (``db upgrade``)."""
    from sqlalchemy.exc import SQLAlchemyError

    from population.db import create_population_engine

    url = database_url(db)
    shown = url.render_as_string(hide_password=True)
    in_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if in_file and not create and not Path(url.database).exists():
        fail(f"--db: there is no population database at {shown}: make it with 'lienthong db upgrade', or give --db")
    try:
        engine = create_population_engine(url.render_as_string(hide_password=False))
    except OSError as error:  # SQLite's folder cannot be made
        fail(f"--db: cannot make the folder of {shown} ({error.strerror}: {error.filename})")
    except (SQLAlchemyError, ValueError, ImportError) as error:  # no such driver, an option it does not take
        fail(f"--db: cannot use {shown} ({type(error).__name__})")
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as error:
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        fail(f"--db: cannot open {shown}: {reason[0] if reason else type(error).__name__}")
    return engine


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


def workspace(var: Path | None = None) -> settings.Workspace:
    """The workspace for ``--var`` (else the settings'): packages, staging, inbound packages, reports; the PKI as
    the settings say."""
    if var is None:
        return settings.Workspace.from_environment()
    return settings.Workspace(Path(var), settings.pki_dir())


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
