"""The command line given hostile input: files and options an attacker, or a slip of the hand, could give it.

Each is refused on one line, ``error: …``, with exit status 1 (a usage box with status 2 would read as a blocked
dataset to ``quality check``'s callers), naming the option, or the file, line and rule: no traceback, nothing the
file holds echoed (the personal IDs in it least of all), no Rich markup or control character acted on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lienthong.cli import app
from lienthong.settings import DB_ENV, PASSWORD_ENV

runner = CliRunner()
PERSONAL_ID = "001090000001"
RECORD = f"{PERSONAL_ID},Nguyễn Văn An"
HEADER = "personal_id,full_name"
SECRET = "hostile key password"
MB = 1024 * 1024


def invoke(*args: object, db: str = "sqlite:///unused.db"):
    return runner.invoke(app, [str(a) for a in args], env={DB_ENV: db, PASSWORD_ENV: SECRET, "COLUMNS": "200"})


def assert_refused(result, *expected: str) -> str:
    """Exit status 1, one line on standard error and nothing else, no personal data; returns the line."""
    assert isinstance(result.exception, SystemExit), result.exception  # not an exception escaping the command
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not re.search(r"\d{12}", result.output), "no personal ID is echoed"
    for fragment in expected:
        assert fragment in lines[0]
    return lines[0]


def check(tmp_path: Path, name: str, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    out = tmp_path / "reports"
    return invoke("quality", "check", "citizen-extract", "--input", path, "--out", out, "--no-record"), out


def deeply_nested(levels: int) -> str:
    return json.dumps({"personal_id": PERSONAL_ID, "full_name": "["}).replace('"["', "[" * levels + "]" * levels)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        pytest.param("in.csv", f"personal_id,[bold]x[/]\n{RECORD}\n", ["in.csv line 1", "field 2"], id="rich-markup"),
        pytest.param(
            "in.csv", f"personal_id,[link=https://example.org]n[/link]\n{RECORD}\n", ["field 2"], id="rich-link"
        ),
        pytest.param("in.csv", f"personal_id,\x1b[2Jfull_name\n{RECORD}\n", ["field 2"], id="escape-in-a-name"),
        pytest.param("in.csv", f"{RECORD}\n{RECORD}\n", ["line 1", "field 1", "not a name"], id="no-header"),
        pytest.param(
            "in.csv", f"{HEADER}\n{PERSONAL_ID},{'x' * 10 * MB}\n", ["in.csv line 2", "a record over"], id="10-mb-field"
        ),
        pytest.param(
            "in.csv",
            f'{HEADER}\n{PERSONAL_ID},"' + ("x" * 1000 + "\n") * 10_000 + '"\n',
            ["in.csv line", "field"],
            id="10-mb-field-over-many-lines",
        ),
        pytest.param("in.csv", f"{HEADER}\n{PERSONAL_ID},{'x' * 5000}\n", ["line 2", "over 4,096"], id="long-field"),
        pytest.param("in.csv", f"{HEADER}\n{RECORD}\n{PERSONAL_ID}\n", ["line 3", "1 fields"], id="short-row"),
        pytest.param("in.csv", f"{HEADER},personal_id\n{RECORD},x\n", ["repeats personal_id"], id="a-name-twice"),
        pytest.param("in.csv", ",".join(f"c{i}" for i in range(70)) + "\n", ["70 fields"], id="70-columns"),
        pytest.param("in.csv", b"", ["empty"], id="empty"),
        pytest.param("in.csv", f"{HEADER}\n{RECORD}\n".encode("utf-16"), ["not UTF-8"], id="utf-16-csv"),
        pytest.param("in.csv", f"{HEADER}\n{PERSONAL_ID},Nguy\xe1n\n".encode("latin-1"), ["not UTF-8"], id="latin-1"),
        pytest.param("in.jsonl", deeply_nested(100_000) + "\n", ["in.jsonl line 1", "nested deeper"], id="nested"),
        pytest.param("in.jsonl", deeply_nested(50) + "\n", ["line 1", "nested deeper than 16"], id="nested-50"),
        pytest.param(
            "in.jsonl",
            json.dumps({"personal_id": PERSONAL_ID, "note": "x" * 10 * MB}) + "\n",
            ["a line over"],
            id="10-mb-line",
        ),
        pytest.param(
            "in.jsonl",
            json.dumps({"personal_id": PERSONAL_ID, "full_name": "x" * 5000}) + "\n",
            ["field full_name over 4,096"],
            id="long-value",
        ),
        pytest.param(
            "in.jsonl",
            f'{{"personal_id": "{PERSONAL_ID}", "[bold]x[/]": 1}}\n',
            ["field 2 of a record is not a name"],
            id="markup-key",
        ),
        pytest.param(
            "in.jsonl", f'{{"personal_id": "{PERSONAL_ID}", "personal_id": "x"}}\n', ["key twice"], id="key-twice"
        ),
        pytest.param("in.jsonl", f'{{"personal_id": "{PERSONAL_ID}", "n": NaN}}\n', ["NaN is not JSON"], id="nan"),
        pytest.param("in.jsonl", f'{{"n": 1{PERSONAL_ID * 400}}}\n', ["line 1", "limit"], id="5000-digit-number"),
        pytest.param("in.jsonl", f'["{PERSONAL_ID}"]\n', ["a JSON object per line"], id="not-an-object"),
        pytest.param("in.jsonl", f'{{"personal_id": {PERSONAL_ID}\n', ["not JSON"], id="not-json"),
        pytest.param(
            "in.jsonl",
            f'{{"personal_id": "{PERSONAL_ID}", "full_name": "Nguy\xe1n"}}\n'.encode("latin-1"),
            ["not UTF-8"],
            id="latin-1-jsonl",
        ),
    ],
)
def test_a_file_quality_check_cannot_read_is_refused_by_file_line_and_rule(tmp_path, name, content, expected):
    result, out = check(tmp_path, name, content)
    line = assert_refused(result, *expected)
    assert "\x1b" not in result.output and not (out / "summary.json").exists()
    assert line.startswith(f"error: {name}")


def test_a_fifo_given_as_input_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)  # opening it would wait for a writer forever
    result = invoke("quality", "check", "citizen-extract", "--input", fifo, "--out", tmp_path / "o", "--no-record")
    assert_refused(result, "--input", "is not a regular file")


@pytest.mark.parametrize(
    ("option", "given", "expected"),
    [
        pytest.param("--input", "{tmp}", ["--input", "is a directory, not a file"], id="directory-as-input"),
        pytest.param("--input", "{tmp}/missing.csv", ["--input", "missing.csv does not exist"], id="missing-input"),
        pytest.param(
            "--input", "{tmp}/in.csv/x.csv", ["--input", "cannot be read (Not a directory)"], id="under-a-file"
        ),
        pytest.param("--out", "{tmp}/in.csv/reports", ["--out", "in.csv is not a directory"], id="out-under-a-file"),
        pytest.param("--out", "{tmp}/in.csv", ["--out", "in.csv is not a directory"], id="out-is-a-file"),
    ],
)
def test_a_path_that_cannot_be_used_is_refused_naming_its_option(tmp_path, option, given, expected):
    (tmp_path / "in.csv").write_text(f"{HEADER}\n{RECORD}\n", encoding="utf-8")
    paths = {"--input": tmp_path / "in.csv", "--out": tmp_path / "reports"} | {option: given.format(tmp=tmp_path)}
    options = [part for pair in paths.items() for part in pair]
    result = invoke("quality", "check", "citizen-extract", "--no-record", *options)
    assert_refused(result, *expected)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        pytest.param("sqlite:///{tmp}/notes.txt/population.db", ["--db", "no population database"], id="under-a-file"),
        pytest.param("sqlite:///{tmp}/notes.txt", ["--db", "cannot open", "not a database"], id="a-text-file"),
        pytest.param("population.db", ["--db: not a database URL"], id="not-a-url"),
        pytest.param("postgresql://lan:hunter2@127.0.0.1:1/population", ["--db", "cannot open", "***"], id="down"),
    ],
)
def test_a_database_that_cannot_be_opened_is_refused_naming_the_option(tmp_path, db, expected):
    (tmp_path / "notes.txt").write_text(f"{RECORD}\n", encoding="utf-8")
    for command in (["db", "current"], ["ledger", "verify"], ["quarantine", "list"]):
        line = assert_refused(invoke(*command, "--db", db.format(tmp=tmp_path)), *expected)
        assert "hunter2" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"], "nothing is created"


@pytest.fixture
def population_db(tmp_path, sqlite_template) -> str:
    shutil.copy(sqlite_template, tmp_path / "population.db")
    return f"sqlite:///{tmp_path / 'population.db'}"


@pytest.mark.parametrize("dataset", ["[/]", "[bold red]x", "[link=https://example.org]x[/link]", ":warning:"])
def test_rich_markup_given_on_the_command_line_is_printed_as_text(tmp_path, population_db, dataset):
    out = tmp_path / "[bold]trend[/].html"
    result = invoke("quality", "report", dataset, "--out", out, db=population_db)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out} (0 run(s) of {dataset})\n" and out.exists()


def test_control_characters_given_on_the_command_line_are_shown_escaped_on_one_line(tmp_path, population_db):
    dataset = "x\nerror: forged\x1b[2J\u202e"
    result = invoke("quality", "report", dataset, "--out", tmp_path / "trend.html", db=population_db)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("(0 run(s) of x\\x0aerror: forged\\x1b[2J\\u202e)\n")
    assert len(result.stdout.splitlines()) == 1 and "\x1b" not in result.stdout
    refused = assert_refused(invoke("quality", "rules", dataset))
    assert "\x1b" not in refused and "\u202e" not in refused


def test_a_blocked_dataset_prints_its_reports_folder_as_it_is_and_exits_2(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(f"{HEADER}\n{RECORD}\n", encoding="utf-8")
    out = tmp_path / "[red]reports[/]"
    result = invoke("quality", "check", "citizen-extract", "--input", path, "--out", out, "--no-record")
    assert result.exit_code == 2, result.output  # the documented status of a blocked dataset
    assert f"reports in {out}:" in result.stdout and result.stderr.startswith("blocked: ")
    assert "Traceback" not in result.output and not re.search(r"\d{12}", result.output)


@pytest.fixture
def operator(tmp_path, sqlite_template, monkeypatch):
    """A working directory with an upgraded database and a PKI, as an operator has before building a package."""
    shutil.copy(sqlite_template, tmp_path / "population.db")
    monkeypatch.chdir(tmp_path)
    db = f"sqlite:///{tmp_path / 'population.db'}"
    assert invoke("pki", "init", "--out", "pki", "--rsa-bits", "2048", db=db).exit_code == 0
    return db


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        pytest.param("in.csv", f"{HEADER}\n{PERSONAL_ID},{'x' * 10 * MB}\n", ["in.csv line 2"], id="10-mb-field"),
        pytest.param("in.csv", f"{HEADER}\n{PERSONAL_ID},Nguy\xe1n\n".encode("latin-1"), ["not UTF-8"], id="latin-1"),
        pytest.param("in.jsonl", deeply_nested(100_000) + "\n", ["in.jsonl line 1", "nested"], id="nested"),
        pytest.param("in.jsonl", f'{{"n": 1{PERSONAL_ID * 400}}}\n', ["in.jsonl line 1", "limit"], id="long-number"),
        pytest.param("in.jsonl", "{" * 20 + "\n", ["in.jsonl line 1", "not JSON"], id="not-json"),
    ],
)
def test_package_build_refuses_an_input_it_cannot_read_and_builds_nothing(operator, tmp_path, name, content, expected):
    (tmp_path / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    agreement = ["--agreement", "health-identity", "--recipient", "health", "--pki", "pki"]
    result = invoke("package", "build", *agreement, "--input", name, "--out", "out", db=operator)
    assert_refused(result, *expected)
    assert list((tmp_path / "out").glob("**/*")) == [], "no package, no partial file"


def test_reconcile_refuses_a_partner_file_it_cannot_read(operator, tmp_path):
    (tmp_path / "health.jsonl").write_text(deeply_nested(100_000) + "\n", encoding="utf-8")
    result = invoke("reconcile", "run", "health", "--input", "health.jsonl", "--out", "reports", db=operator)
    assert_refused(result, "health.jsonl line 1", "nested deeper than 16")
    assert not (tmp_path / "reports").exists()
