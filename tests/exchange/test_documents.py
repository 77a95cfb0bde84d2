"""The one loader of agreement and agency files, given files an attacker or a slip of the hand could write: each is
refused by file and line with the rule it breaks, quickly, without a value in the message."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.agencies import AgencyError, load_agency
from exchange.agreements import AgreementError, load_agreement
from exchange.documents import MAX_DOCUMENT_BYTES, MAX_NESTING
from lienthong.settings import schema_file

HEALTH = schema_file("agreements/health.yaml").read_text(encoding="utf-8")
PERSONAL_ID = "001090000001"
# A billion laughs in YAML: nine levels of nine aliases each, 387 million strings once expanded.
LEVELS = "abcdefghi"
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{below}'] * 9)}]\n" for below, name in zip(LEVELS, LEVELS[1:], strict=False)
)


def refused(path: Path) -> AgreementError:
    with pytest.raises(AgreementError) as caught:
        load_agreement(path)
    error = caught.value
    assert str(error).startswith(f"{path}:{error.line}: ") and "\n" not in str(error)
    assert not re.search(r"\d{12}", error.problem), "no value is echoed"
    return error


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "partner.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_an_alias_bomb_is_refused_at_its_first_anchor_before_it_expands(tmp_path):
    path = write(tmp_path, ALIAS_BOMB)
    loader = f"from exchange.agreements import load_agreement\nload_agreement({str(path)!r})"
    # In a process of its own with a timeout: were the bomb to expand, this test fails instead of hanging the suite.
    done = subprocess.run([sys.executable, "-c", loader], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.endswith(f"{path}:1: not valid YAML: anchors and aliases are not allowed")


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        pytest.param("agreement: &name health-identity\n", 1, "anchors and aliases are not allowed", id="anchor"),
        pytest.param("partner: health\nagreement: *name\n", 2, "anchors and aliases are not allowed", id="alias"),
        pytest.param(
            "a: " + "[" * 100_000 + "]" * 100_000 + "\n",
            1,
            f"nested deeper than {MAX_NESTING} levels",
            id="flow-nesting",
        ),
        pytest.param(
            "a:\n" + "".join("  " * depth + "b:\n" for depth in range(1, 40)),
            MAX_NESTING,
            "nested deeper than",
            id="block-nesting",
        ),
        pytest.param("- " * 50 + "x\n", 1, f"nested deeper than {MAX_NESTING} levels", id="sequence-nesting"),
        pytest.param(f"signed_on: 2026-02-30\nnote: {PERSONAL_ID}\n", 1, "not a valid timestamp", id="no-such-date"),
        pytest.param(f"sequence: 1{PERSONAL_ID * 400}\n", 1, "not a valid int", id="huge-integer"),
        pytest.param("partner: health\npurpose: a\x00b\n", 2, "character #x0000 is not allowed", id="nul"),
        pytest.param("partner: health\npurpose: a\x1bb\n", 2, "character #x001b is not allowed", id="escape-sequence"),
        pytest.param("---\na: 1\n---\nb: 2\n", 3, "found another document", id="two-documents"),
        pytest.param("? [a, b]\n: c\n", 1, "found unhashable key", id="sequence-as-key"),
    ],
)
def test_hostile_yaml_is_refused_by_line_and_rule(tmp_path, content, line, problem):
    error = refused(write(tmp_path, content))
    assert problem in error.problem and error.line == line


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        (b"a" * (MAX_DOCUMENT_BYTES + 1), 1, f"larger than {MAX_DOCUMENT_BYTES:,} bytes"),
        (b"partner: health\npurpose: Nguy\xe1n\n", 2, "not UTF-8"),
        (b"", 1, "the file is empty"),
        (b"# only a comment\n", 1, "the file is empty"),
    ],
    ids=["too-large", "not-utf-8", "empty", "only-a-comment"],
)
def test_a_file_that_is_too_large_or_not_text_is_refused_before_it_is_parsed(tmp_path, content, line, problem):
    error = refused(write(tmp_path, content))
    assert problem in error.problem and error.line == line


def test_what_is_not_a_regular_file_is_refused_without_being_opened(tmp_path):
    assert refused(tmp_path / "missing.yaml").problem == "no such file"
    assert refused(tmp_path / "missing.yaml" / "under-a-missing-folder.yaml").problem == "no such file"
    assert refused(tmp_path).problem == "not a regular file"
    fifo = tmp_path / "partner.yaml"
    os.mkfifo(fifo)  # opening it to read would wait for a writer forever
    assert refused(fifo).problem == "not a regular file"


def test_an_agency_file_is_read_by_the_same_bounded_loader(tmp_path):
    path = tmp_path / "agency.yaml"
    path.write_text(ALIAS_BOMB, encoding="utf-8")
    with pytest.raises(AgencyError, match="anchors and aliases are not allowed"):
        load_agency(path)


def test_the_agreements_and_agencies_as_written_still_load(tmp_path):
    agreement = load_agreement(write(tmp_path, HEALTH))
    assert agreement.name == "health-identity" and "personal_id" in agreement.directions["outbound"].fields
    assert load_agency(schema_file("agencies/tax.yaml")).name == "tax"
