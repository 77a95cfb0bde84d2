"""The quality, quarantine and reconcile commands, as a steward would use them."""

import json

import pytest
from typer.testing import CliRunner

from lienthong.cli import app
from population.db import create_population_engine
from population.migrate import upgrade
from tests.validation.test_runner import _citizen, _write_csv

runner = CliRunner()
COMMANDS = [["quality"], ["quality", "check"], ["quality", "database"], ["quality", "report"], ["quality", "rules"],
            ["quarantine"], ["quarantine", "list"], ["quarantine", "release"], ["quarantine", "reject"],
            ["reconcile"], ["reconcile", "run"], ["reconcile", "sample"]]  # fmt: skip


def invoke(*args: str, db: str):
    return runner.invoke(app, list(args), env={"LIENTHONG_DB_URL": db, "COLUMNS": "200", "USER": "lan"})


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output


def test_check_list_release_reject_report(tmp_path, monkeypatch):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    upgrade(create_population_engine(db))
    rows = [_citizen("001090000001"), _citizen("001090000002", full_name="Lê Văn Ðức"),
            _citizen("001090000003", full_name="Trần Bình", permanent_ward_code="99999")]  # fmt: skip
    path = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out"
    checked = invoke("quality", "check", "citizen-extract", "--input", str(path), "--out", str(out),
                     "--as-of", "2026-07-01", db=db)  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert "sạch" in checked.output and json.loads((out / "summary.json").read_text())["quarantined"] == 2
    listed = invoke("quarantine", "list", db=db)
    assert listed.exit_code == 0 and "001******002" in listed.output and "001090000002" not in listed.output
    assert "2 record(s)" in listed.output
    no_reason = invoke("quarantine", "release", "1", db=db)
    assert no_reason.exit_code != 0
    released = invoke("quarantine", "release", "1", "--reason", "spelled so in the register", db=db)
    assert released.exit_code == 0 and "release recorded as" in released.output
    assert "record 1: released" in released.output
    monkeypatch.setenv("LIENTHONG_STEWARD", "minh")  # decisions go under the configured identity
    rejected = invoke("quarantine", "reject", "2", "--reason", "fix at source", db=db)
    assert rejected.exit_code == 0 and "as minh" in rejected.output
    again = invoke("quarantine", "release", "2", "--reason", "oops", db=db)
    assert again.exit_code == 1 and "quarantined record 2 is already rejected by minh" in again.output
    decided = invoke("quarantine", "list", "--status", "all", "--unmasked", db=db)
    assert "001090000002" in decided.output and "released" in decided.output and "minh" in decided.output
    report = invoke("quality", "report", "citizen-extract", "--out", str(tmp_path / "trend.html"), db=db)
    assert report.exit_code == 0 and "1 run(s)" in report.output


def test_relative_paths_as_a_new_user_types_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_csv(tmp_path / "in.csv", [_citizen("001090000001")])
    checked = invoke("quality", "check", "citizen-extract", "--input", "in.csv", "--out", "reports/run",
                     "--as-of", "2026-07-01", "--no-record", db="sqlite:///unused.db")  # fmt: skip
    assert checked.exit_code == 0, checked.output
    assert (tmp_path / "reports" / "run" / "summary.json").exists()
    assert list((tmp_path / "reports" / "run").rglob("index.html")), "the Data Docs site is written"


def test_a_blocked_dataset_exits_with_2_and_says_why(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("personal_id,name\n001090000001,An\n", encoding="utf-8")
    result = invoke("quality", "check", "citizen-extract", "--input", str(path), "--out", str(tmp_path / "o"),
                    "--no-record", db="sqlite:///unused.db")  # fmt: skip
    assert result.exit_code == 2
    assert "expect_table_columns_to_match_set" in result.output


def test_database_check_and_reconcile(population, tmp_path):
    db = population.url.render_as_string(hide_password=False)
    checked = invoke("quality", "database", "--out", str(tmp_path / "db"), "--as-of", "2026-07-01", db=db)
    assert checked.exit_code == 0, checked.output
    assert json.loads((tmp_path / "db" / "summary.json").read_text())["rows"] == 3_000
    sample = tmp_path / "health.csv"
    assert invoke("reconcile", "sample", "health", "--out", str(sample), "--rows", "200", db=db).exit_code == 0
    reconciled = invoke("reconcile", "run", "health", "--input", str(sample), "--out", str(tmp_path / "r"), db=db)
    assert reconciled.exit_code == 0, reconciled.output
    assert "duplicate_link" in reconciled.output and (tmp_path / "r" / "mismatches.csv").exists()
