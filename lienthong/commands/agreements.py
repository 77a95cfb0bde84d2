"""``lienthong agreements``: check data-sharing agreement files as the loader and the DAG file read them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lienthong.commands.common import say

agreements_app = typer.Typer(help="Check data-sharing agreements (schemas/agreements).", no_args_is_help=True)


@agreements_app.command("check")
def agreements_check(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Agreement files (default: every file of the agreements folders).", show_default=False),
    ] = None,
) -> None:
    """Check agreement files with the loader's own check: one 'file:line: rule' line per file that does not load
    (a name another agreement has is one), exit status 1 then; else a summary line. Files given are checked beside
    the installed agreements, so that a name already in use is caught before the file is added."""
    from exchange.agreements import agreement_files, check_agreement_files

    given = [Path(file) for file in files or []]
    installed = agreement_files()
    if given:
        chosen = {file.resolve() for file in given}
        paths = [*(path for path in installed if path.resolve() not in chosen), *given]
    else:
        paths = installed
    agreements, problems = check_agreement_files(paths)
    checked = {path.resolve() for path in given or installed}
    reported = [problem for problem in problems if Path(problem.source).resolve() in checked]
    for problem in reported:
        say(problem, err=True)
    if reported:
        raise typer.Exit(code=1)
    names = sorted(a.name for a in agreements.values() if a.source.resolve() in checked)
    say(f"{len(names)} agreement file(s) checked, no error: {', '.join(names)}")
