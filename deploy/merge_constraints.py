"""The constraints the image is installed with (Dockerfile): Airflow's published constraints file for the pinned
Airflow and Python, less every package that requirements.txt pins. requirements.txt is the lock the tests ran
against, so where both pin a package its pin is the one installed; Airflow's constraints hold the rest (what the
base image carries beyond the lock) where Airflow's release put it.

    python deploy/merge_constraints.py constraints.txt requirements.txt > merged-constraints.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?")


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(text: str) -> set[str]:
    return {canonical(match["name"]) for line in text.splitlines() if (match := PIN.match(line))}


def merged(constraints: str, requirements: str) -> str:
    """The lines of ``constraints`` that pin nothing ``requirements`` pins (comments kept)."""
    if not pinned(constraints):
        raise ValueError("no name==version line: this is not a constraints file")
    ours = pinned(requirements)
    kept = [line for line in constraints.splitlines() if not ((m := PIN.match(line)) and canonical(m["name"]) in ours)]
    return "\n".join(kept) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: merge_constraints.py CONSTRAINTS REQUIREMENTS", file=sys.stderr)
        return 2
    constraints, requirements = (Path(arg).read_text(encoding="utf-8") for arg in argv)
    try:
        sys.stdout.write(merged(constraints, requirements))
    except ValueError as error:
        print(f"{argv[0]}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
