"""``lienthong agreements check``: the loader's own check, one ``file:line: rule`` line per bad file, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lienthong.cli import app
from lienthong.settings import schema_file

runner = CliRunner()
DEATHS = schema_file("agreements/health-deaths.yaml").read_text(encoding="utf-8")


def check(*files: Path):
    return runner.invoke(app, ["agreements", "check", *map(str, files)], env={"COLUMNS": "200"})


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_every_installed_agreement_checks():
    result = check()
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("5 agreement file(s) checked, no error: business-people, health-deaths")


def test_a_new_good_file_checks_beside_the_installed_ones(tmp_path):
    path = tmp_path / "health-moves.yaml"
    moves = "events: [permanent_residence_change, current_residence_change]"
    text = DEATHS.replace("agreement: health-deaths", "agreement: health-moves").replace("events: [death]", moves)
    path.write_text(text, encoding="utf-8")
    result = check(path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 agreement file(s) checked, no error: health-moves\n"


EVENTS = "      events: [death]"


def where(test: str) -> tuple[str, str]:
    """The change that adds a field test to the deaths agreement's selection."""
    return EVENTS, f"{EVENTS}\n      where:\n        {test}"


BAD = [
    pytest.param(
        ("    start: beginning\n", "    start: beginning\n    filter: deaths\n"),
        "filter: deaths",
        "unknown key 'filter' at directions.outbound",
        id="unknown-key",
    ),
    pytest.param(
        ("      date_of_birth: ", "      date_of_burial: "),
        "date_of_burial",
        "directions.outbound.fields: 'date_of_burial' is not a field of dataset citizen-extract version 1",
        id="unknown-field",
    ),
    pytest.param(
        where("province: {in: ['01']}"),
        "province:",
        "directions.outbound.select.where.province: 'province' is not a field of dataset citizen-extract version 1",
        id="unknown-field-in-a-row-test",
    ),
    pytest.param(
        where("sex: {in: [M, X]}"),
        "sex:",
        "directions.outbound.select.where.sex.in: value 2 does not fit the field's schema (enum)",
        id="a-value-the-field-does-not-take",
    ),
    pytest.param(
        where("date_of_death: {in: ['2026']}"),
        "date_of_death: {",
        "only text fields can be tested (this one is date)",
        id="a-date-field",
    ),
    pytest.param(
        ("      events: [death]", "      events:\n        - death\n        - funeral"),
        "- funeral",
        "directions.outbound.select.events: 'funeral' is not an event of the change log",
        id="unknown-event",
    ),
    pytest.param(
        ("partner: health", "partner: population"),
        "partner: population",
        "partner 'population' is not a partner agency",
        id="partner-not-an-agency",
    ),
    pytest.param(
        ("agreement: health-deaths", "agreement: health-deaths-copy"),
        "agreement: health-deaths-copy",
        "",
        id="duplicate",
    ),  # rewritten below: a second file under the name of the first
    pytest.param(("format: jsonl", "format: jsonl: csv"), "format: jsonl: csv", "not valid YAML", id="bad-yaml"),
]


@pytest.mark.parametrize(("change", "needle", "rule"), BAD)
def test_a_bad_file_is_one_line_naming_the_file_line_and_rule(tmp_path, change, needle, rule):
    text = DEATHS.replace(*change)
    assert text != DEATHS
    path = tmp_path / "bad.yaml"
    if not rule:  # a copy of an installed agreement under another file name: the name is taken
        text, needle, rule = DEATHS, "agreement: health-deaths", "agreement 'health-deaths' is also defined in"
    path.write_text(text, encoding="utf-8")
    result = check(path)
    assert result.exit_code == 1 and result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:{line_of(text, needle)}: ") and rule in line, line


def test_every_bad_file_is_reported_and_the_good_ones_are_not(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(DEATHS.replace("agreement: health-deaths", "agreement: health-good"), encoding="utf-8")
    bad_text = DEATHS.replace("agreement: health-deaths", "agreement: health-bad")
    bad.write_text(
        bad_text.replace("dataset: citizen-extract", "dataset: citizen-extract\n    filter: x"), encoding="utf-8"
    )
    twin = tmp_path / "twin.yaml"
    twin.write_text(DEATHS.replace("agreement: health-deaths", "agreement: health-good"), encoding="utf-8")
    result = check(good, bad, twin)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(bad), str(twin)]
    assert "agreement 'health-good' is also defined in good.yaml" in lines[1]
