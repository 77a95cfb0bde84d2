"""The population commands of ``lienthong`` as a new user would try them."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lienthong.cli import app
from population.migrate import head_revision

runner = CliRunner()
COMMANDS = [
    [],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["population"],
    ["population", "generate"],
    ["population", "events"],
    ["population", "export"],
    ["population", "stats"],
    ["changes"],
    ["changes", "list"],
]


def invoke(*args: str, db: str):
    result = runner.invoke(app, list(args), env={"LIENTHONG_DB_URL": db, "COLUMNS": "200"})
    return result


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "lienthong")
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_the_population_workflow(tmp_path):
    db = f"sqlite:///{tmp_path / 'population.db'}"
    upgraded = invoke("db", "upgrade", db=db)
    assert upgraded.exit_code == 0 and f"revision {head_revision()}" in upgraded.output
    generated = invoke("population", "generate", "--citizens", "1500", "--seed", "3", "--defect-rate", "0.04", db=db)
    assert generated.exit_code == 0, generated.output
    assert "generated 1,500 citizens" in generated.output
    events = invoke("population", "events", "--count", "40", "--seed", "3", "--date", "2026-09-01", db=db)
    assert events.exit_code == 0, events.output
    assert "Life events of 2026-09-01" in events.output
    out = tmp_path / "extract.csv"
    exported = invoke("population", "export", "--out", str(out), db=db)
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as handle:
        assert sum(1 for _ in csv.reader(handle)) > 1_500
    stats = invoke("population", "stats", "--json", db=db)
    assert stats.exit_code == 0, stats.output
    figures = json.loads(stats.output)
    assert figures["citizens"] >= 1_500 and figures["change_log"]["last_sequence"] > 0
    assert sum(figures["injected_defects"].values()) > 0
    table = invoke("population", "stats", db=db)
    assert "Age structure" in table.output and "Nguyễn" in table.output
    changes = invoke("changes", "list", "--after", "0", "--limit", "5", db=db)
    assert changes.exit_code == 0 and "Changes after 0" in changes.output


def test_clear_errors_for_a_new_user(tmp_path):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    missing_schema = invoke("population", "stats", db=db)
    assert missing_schema.exit_code == 1
    assert "lienthong db upgrade" in missing_schema.output
    invoke("db", "upgrade", db=db)
    empty = invoke("population", "events", "--count", "3", db=db)
    assert empty.exit_code == 1 and "generate one first" in empty.output
    bad_date = invoke("population", "events", "--date", "tomorrow", db=db)
    assert bad_date.exit_code == 1 and "--date must be a date" in bad_date.output
    invoke("population", "generate", "-n", "20", db=db)
    again = invoke("population", "generate", "-n", "20", db=db)
    assert again.exit_code == 1 and "already holds 20 citizens" in again.output


def test_the_installed_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("lienthong")
    executable = str(script) if script.exists() else shutil.which("lienthong")
    assert executable, "the lienthong console script is installed with the project"
    done = subprocess.run(
        [executable, "db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert f"revision {head_revision()}" in done.stdout


def test_a_command_on_a_missing_database_says_so_and_makes_none(tmp_path, monkeypatch):
    """Only ``db upgrade`` makes a database: any other command on a SQLite file that is not there is refused in
    one line, and leaves no empty database behind (a partner who ran ``package verify`` found one)."""
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nowhere.db"
    for command in (["db", "current"], ["quarantine", "list"], ["disclosures", "001200012345"], ["ledger", "verify"]):
        refused = CliRunner().invoke(app, [*command, "--db", f"sqlite:///{missing}"])
        assert refused.exit_code == 1, (command, refused.output)
        assert refused.output.strip() == (f"error: --db: there is no population database at sqlite:///{missing}: "
                                          "make it with 'lienthong db upgrade', or give --db")  # fmt: skip
        assert not missing.exists()
    made = CliRunner().invoke(app, ["db", "upgrade", "--db", f"sqlite:///{missing}"])
    assert made.exit_code == 0 and missing.exists()
