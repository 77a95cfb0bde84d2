"""The documentation's shell blocks, tested: each one either runs here as written or carries
``<!-- not-runnable: reason -->``, and the commands of every block, run or not, are checked against the code (each
``lienthong`` command and option, ``make`` target, file named, connection JSON).

The runnable blocks of a document run in order, as one bash script (``set -euo pipefail``), in a temporary folder
laid out as a checkout's (``.venv`` beside it) with the sandbox's partners running, as after ``lienthong partners
serve``: ``var/partners/connections.env`` and the keys' password in ``LIENTHONG_KEY_PASSWORD``. The blocks of
``OWNED_ELSEWHERE`` documents are run by the test named there.

Why not a plugin: pytest-codeblocks runs ```sh, ```bash and ```zsh blocks (not ```console or ```shell) in pytest's
own folder, marked with its own comments (``<!--pytest.mark.skip-->``); Sybil would need a parser and an evaluator
of our own for shell blocks all the same. Neither checks the commands of a block it does not run against the code,
which is most of this file, and neither lays out a temporary checkout beside a running sandbox."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from connectors import get_provider_info
from lienthong.cli import app
from tests.docs.shell_blocks import (
    OWNED_ELSEWHERE,
    ROOT,
    Command,
    ShellBlock,
    all_blocks,
    commands,
    documents,
    shell_blocks,
)
from tests.partners.fixtures import *  # noqa: F403 - the sandbox and its PKI
from tests.partners.fixtures import PASSWORD

CHECKED = [block for block in all_blocks() if block.doc not in OWNED_ELSEWHERE]
RUN = sorted({block.doc for block in CHECKED if block.not_runnable is None})
FORMS = {c["connection-type"]: set(c["conn-fields"]) for c in get_provider_info()["connection-types"]}
CONNECTION = re.compile(r"AIRFLOW_CONN_[A-Z0-9_]+=(?P<json>.*)", re.DOTALL)


def test_every_document_is_tested_here_or_by_the_test_that_owns_it():
    assert {"README.md", "dags/README.md", "docs/connectors.md"} <= set(documents())
    for doc, owner in OWNED_ELSEWHERE.items():
        assert doc in documents() and (ROOT / owner).is_file(), f"{doc} is said to be tested by {owner}"


@pytest.mark.parametrize("block", CHECKED, ids=lambda block: block.where)
def test_a_block_that_does_not_run_here_says_why(block: ShellBlock):
    if block.not_runnable is not None:
        assert len(block.not_runnable) >= 20, f"{block.where}: not-runnable needs a reason"
    else:
        assert block.doc in RUN


# -- the commands of every block against the code ----------------------------------------------------------------


def is_group(command) -> bool:
    return hasattr(command, "list_commands")  # Typer's group (its own click inside)


def lienthong_command(words: list[str], where: str) -> None:
    """``lienthong GROUP COMMAND --option …``: the command exists, and so does each option it is given."""
    command = typer.main.get_command(app)
    path, rest = ["lienthong"], words[1:]
    while is_group(command) and rest and not rest[0].startswith("-"):
        found = command.get_command(None, rest[0])
        assert found is not None, f"{where}: no command '{' '.join([*path, rest[0]])}'"
        path.append(rest.pop(0))
        command = found
    assert not is_group(command), f"{where}: '{' '.join(path)}' needs a command"
    options = {opt for param in command.params for opt in [*param.opts, *param.secondary_opts]}
    for word in rest:
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            assert option in options, f"{where}: '{' '.join(path)}' has no option {option}"


def make_target(words: list[str], where: str) -> None:
    for target in [word for word in words[1:] if not word.startswith("-") and "=" not in word]:
        done = subprocess.run(["make", "-n", "-C", str(ROOT), target], capture_output=True, text=True)
        assert done.returncode == 0, f"{where}: make {target}: {done.stderr.strip()}"


def files_named(words: list[str], where: str) -> None:
    for word in words:
        path = word.split("::", 1)[0]
        if re.fullmatch(r"(tests|bench|dags|schemas)/[\w/.-]+\.\w+", path):
            assert (ROOT / path).exists(), f"{where}: {path} does not exist"


def connection_json(word: str, where: str) -> None:
    """``AIRFLOW_CONN_…='{…}'``: JSON, one of our connection types, and only extras its form declares."""
    document = json.loads(CONNECTION.fullmatch(word)["json"])
    declared = FORMS.get(document.get("conn_type"))
    assert declared is not None, f"{where}: conn_type {document.get('conn_type')!r} is not one of {sorted(FORMS)}"
    unknown = set(document.get("extra", {})) - declared
    assert not unknown, f"{where}: extras {sorted(unknown)} are not fields of {document['conn_type']}"


def check(command: Command) -> None:
    words = [word for word in command.words if not re.fullmatch(r"[A-Z_]+=.*", word, re.DOTALL)]  # VAR=… prefix
    if command.words and command.words[0] == "export":
        words = []
        for word in command.words[1:]:
            if CONNECTION.fullmatch(word):
                connection_json(word, command.where)
    if not words:
        return
    if words[0] == "lienthong":
        lienthong_command(words, command.where)
    elif words[0] == "make":
        make_target(words, command.where)
    elif words[0].endswith("python") and words[1:3] == ["-m", "lienthong.airflow_runner"]:
        assert (ROOT / "lienthong" / "airflow_runner.py").is_file()
    files_named(words, command.where)


@pytest.mark.parametrize("block", CHECKED, ids=lambda block: block.where)
def test_the_commands_of_a_block_are_those_of_the_code(block: ShellBlock):
    for command in commands(block):
        check(command)


def test_the_checks_catch_a_command_an_option_a_target_and_an_extra_that_do_not_exist():
    """A guard on the guard: each check refuses what the code does not have."""
    drifted = ShellBlock("drifted.md", 1, "", None)
    for code, message in [
        ("lienthong partners ping health", "no command 'lienthong partners ping'"),
        ("lienthong package verify P --trust T --keys K", "has no option --keys"),
        ("make demonstration", "make demonstration"),
        ("python -m pytest tests/feeds/test_nothing.py", "does not exist"),
        ("""export AIRFLOW_CONN_X='{"conn_type": "lienthong_soap", "extra": {"signing": "x"}}'""", "['signing']"),
    ]:
        [command] = commands(ShellBlock(drifted.doc, 1, code + "\n", None))
        with pytest.raises(AssertionError, match=re.escape(message)):
            check(command)


# -- the runnable blocks, run ----------------------------------------------------------------------------------------


def script(doc: str) -> str:
    """The document's runnable blocks, in order, each announced on standard error (a failure names its block)."""
    parts = ["set -euo pipefail"]
    for block in shell_blocks(doc):
        if block.not_runnable is None:
            code = block.code
            if block.doc.endswith(".md") and block.code.lstrip().startswith("$ "):  # ```console: the commands only
                code = "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ "))
            parts += [f"echo '>>> {block.where}' >&2", code]
    return "\n".join(parts) + "\n"


@pytest.mark.slow
@pytest.mark.parametrize("doc", RUN)
def test_the_runnable_blocks_of_a_document_run_as_written(doc: str, tmp_path: Path, sandbox):
    work = tmp_path / "checkout"
    (work / "var" / "partners").mkdir(parents=True)
    (work / ".venv").symlink_to(Path(sys.prefix))
    shutil.copy(sandbox.state_dir / "connections.env", work / "var" / "partners" / "connections.env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LIENTHONG_"))}
    env |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "COLUMNS": "200",
        "LIENTHONG_KEY_PASSWORD": PASSWORD.decode(),
    }
    done = subprocess.run(["bash", "-c", script(doc)], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    announced = re.findall(r"^>>> (\S+)$", done.stderr, re.MULTILINE)
    assert done.returncode == 0, (
        f"{announced[-1] if announced else doc} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    )
    assert announced == [block.where for block in shell_blocks(doc) if block.not_runnable is None]


# -- commands given inline (`…`), as docs/BENCHMARKS.md gives each benchmark's: too long to run, checked to exist --

INLINE_BENCH = re.compile(r"`(?:\.venv/bin/python )?(bench/\w+\.py)((?: --[\w-]+(?: [^\s`-][^\s`]*)?)*)`")


def inline_bench_commands() -> list[tuple[str, str, list[str]]]:
    found = []
    for doc in documents():
        text = re.sub(r"\s+", " ", (ROOT / doc).read_text(encoding="utf-8"))
        for match in INLINE_BENCH.finditer(text):
            found.append((doc, match[1], re.findall(r"--[\w-]+", match[2])))
    return found


@pytest.mark.slow
def test_the_benchmark_commands_the_docs_give_exist_with_their_options():
    found = inline_bench_commands()
    assert {script for doc, script, _ in found if doc == "docs/BENCHMARKS.md"} >= {"bench/bench_snapshot.py"}
    helps: dict[str, str] = {}
    for doc, script, options in found:
        assert (ROOT / script).is_file(), f"{doc}: {script} does not exist"
        if script not in helps:
            done = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True)
            assert done.returncode == 0, f"{doc}: {script} --help: {done.stderr[-500:]}"
            helps[script] = done.stdout
        for option in options:
            assert re.search(rf"{option}\b", helps[script]), f"{doc}: {script} has no option {option}"


def test_every_make_target_the_docs_name_exists():
    targets = set()
    for doc in documents():
        targets |= set(re.findall(r"`make ([a-z][\w-]*)`", (ROOT / doc).read_text(encoding="utf-8")))
    assert {"demo", "test", "airflow", "bench"} <= targets
    make_target(["make", *sorted(targets)], "the docs")
