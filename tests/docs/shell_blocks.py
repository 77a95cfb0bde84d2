"""The shell blocks of the documentation (```bash, ```sh, ```console, ```shell in README.md, docs/*.md and
dags/README.md), found with markdown-it-py (the CommonMark parser Rich already brings), and what each is: run by
``test_shell_blocks.py``, marked ``<!-- not-runnable: reason -->`` on the line right above it, or in a document that
another test owns (``OWNED_ELSEWHERE``).

The commands of every block, run or not, are parsed into ``Command`` lines (``commands``), so that a
``lienthong`` command, an option, a ``make`` target or a file a block names can be checked against the code."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
SHELLS = {"bash", "sh", "console", "shell"}
NOT_RUNNABLE = re.compile(r"<!--\s*not-runnable:\s*(?P<reason>.*?)\s*-->")
OWNED_ELSEWHERE = {"docs/partners.md": "tests/verify/test_partners_doc.py"}
"""Documents whose blocks another test runs: listed here, never silently left out."""


def documents() -> list[str]:
    """Every document whose shell blocks are tested, relative to the project's root."""
    found = ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md"))), "dags/README.md"]
    return [doc for doc in found if (ROOT / doc).is_file()]


@dataclass(frozen=True)
class ShellBlock:
    doc: str
    line: int  # of the opening fence, counted from 1
    code: str
    not_runnable: str | None  # the reason given in the marker above it

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks(doc: str) -> list[ShellBlock]:
    text = (ROOT / doc).read_text(encoding="utf-8")
    lines = text.splitlines()
    blocks = []
    for token in MarkdownIt("commonmark").parse(text):
        if token.type != "fence" or token.info.strip().split(" ")[0] not in SHELLS or token.map is None:
            continue
        start = token.map[0]
        above = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUNNABLE.fullmatch(above.strip())
        blocks.append(ShellBlock(doc, start + 1, token.content, marker["reason"] if marker else None))
    return blocks


def all_blocks() -> Iterator[ShellBlock]:
    for doc in documents():
        yield from shell_blocks(doc)


@dataclass(frozen=True)
class Command:
    """One command of a block: its words as the shell splits them, comments dropped; a placeholder's brackets
    (``[--only health,tax]``) taken off."""

    block: ShellBlock
    words: list[str]

    @property
    def where(self) -> str:
        return self.block.where


def commands(block: ShellBlock) -> Iterator[Command]:
    """Each command of the block: continued lines and quotes spanning lines joined, split at ``|``, ``&&``, ``;``."""
    pending = ""
    for line in block.code.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # a quote still open: the command goes on
            continue
        pending = ""
        command: list[str] = []
        for word in [*words, ";"]:
            if word in {"|", "||", "&&", ";", "&"}:
                if command:
                    yield Command(block, command)
                command = []
            elif word.strip("[]"):
                command.append(word.strip("[]"))
    assert not pending, f"{block.where}: a quote or a continued line is never closed"
