"""Settings: one home for the workspace, the database URL, the PKI folder, the schema folders and the key password;
the command line and the tasks read them there and agree."""

import pytest
from typer.testing import CliRunner

from lienthong import settings
from lienthong.cli import app
from lienthong.settings import KEYS_CONNECTION, PASSWORD_ENV, KeyPasswordMissing, key_password


def test_key_password_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(f"AIRFLOW_CONN_{KEYS_CONNECTION.upper()}", raising=False)
    monkeypatch.setenv(PASSWORD_ENV, "from the environment")
    assert key_password() == b"from the environment"
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(KeyPasswordMissing, match=PASSWORD_ENV):
        key_password()


@pytest.mark.slow
def test_key_password_prefers_the_airflow_connection(monkeypatch):
    """Imports Airflow (seconds): the connection comes from AIRFLOW_CONN_LIENTHONG_KEYS here, from the metadata
    database or a secrets backend in a deployment."""
    monkeypatch.setenv(PASSWORD_ENV, "from the environment")
    connection = '{"conn_type": "generic", "password": "from Airflow"}'
    monkeypatch.setenv(f"AIRFLOW_CONN_{KEYS_CONNECTION.upper()}", connection)
    assert key_password() == b"from Airflow"


def test_the_pki_folder_is_the_option_else_the_environment_else_under_var(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.PKI_ENV, raising=False)
    monkeypatch.setenv(settings.VAR_ENV, str(tmp_path / "work"))
    assert settings.pki_dir() == tmp_path / "work" / "pki"
    monkeypatch.setenv(settings.PKI_ENV, str(tmp_path / "elsewhere"))
    assert settings.pki_dir() == tmp_path / "elsewhere"
    assert settings.pki_dir(tmp_path / "given") == tmp_path / "given"
    assert settings.Workspace.from_environment().pki_dir == tmp_path / "elsewhere"


def test_the_database_is_the_option_else_the_environment_else_sqlite_under_var(monkeypatch, tmp_path):
    monkeypatch.delenv(settings.DB_ENV, raising=False)
    monkeypatch.setenv(settings.VAR_ENV, str(tmp_path / "work"))
    assert settings.database_url() == f"sqlite:///{tmp_path / 'work' / 'lienthong.db'}"
    monkeypatch.setenv(settings.DB_ENV, "postgresql://someone@db/population")
    assert settings.database_url() == "postgresql://someone@db/population"
    assert settings.database_url("sqlite:///given.db") == "sqlite:///given.db"


def test_pki_revoke_reads_the_pki_folder_from_the_environment_as_the_tasks_do(monkeypatch, tmp_path):
    """--pki used to ignore LIENTHONG_PKI_DIR, which the tasks honour: both now resolve it in settings."""
    monkeypatch.setenv(PASSWORD_ENV, "a password")
    monkeypatch.setenv(settings.PKI_ENV, str(tmp_path / "pki"))
    monkeypatch.chdir(tmp_path)
    made = CliRunner().invoke(app, ["pki", "init", "--rsa-bits", "2048"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "pki" / "root-ca.pem").is_file() and not (tmp_path / "var").exists()
    revoked = CliRunner().invoke(app, ["pki", "revoke", str(tmp_path / "pki" / "tax" / "signing.pem")])
    assert revoked.exit_code == 0, revoked.output
    assert str(tmp_path / "pki" / "crl.pem") in revoked.output


def test_schema_files_come_from_the_operators_folders_first(monkeypatch, tmp_path):
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "citizen-extract.v1.json").write_text("{}", encoding="utf-8")
    (tmp_path / "agreements").mkdir()
    (tmp_path / "agreements" / "extra.yaml").write_text("name: extra\n", encoding="utf-8")
    monkeypatch.setenv(settings.SCHEMAS_ENV, str(tmp_path))
    assert settings.schema_file("datasets/citizen-extract.v1.json") == tmp_path / "datasets" / "citizen-extract.v1.json"
    assert settings.schema_file("xsd/land-owners.v1.xsd").is_file()  # the packaged one
    names = [path.name for path in settings.schema_files("agreements", "*.yaml")]
    assert names == ["extra.yaml", "business.yaml", "health-deaths.yaml", "health.yaml", "land.yaml", "tax.yaml"]


def test_a_missing_key_password_is_one_line_naming_both_sources(monkeypatch, tmp_path):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.delenv(f"AIRFLOW_CONN_{KEYS_CONNECTION.upper()}", raising=False)
    result = CliRunner().invoke(app, ["pki", "init", "--out", str(tmp_path / "pki")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"error: no key password: set {PASSWORD_ENV} or the password of the Airflow connection {KEYS_CONNECTION!r}"
    ]
    with pytest.raises(KeyPasswordMissing):
        key_password()


def test_pki_init_names_the_file_and_line_of_a_broken_agency_file(monkeypatch, tmp_path):
    (tmp_path / "agencies").mkdir()
    (tmp_path / "agencies" / "broken.yaml").write_text("agency: broken\norganisation: [not, a, name]\n")
    monkeypatch.setenv(settings.SCHEMAS_ENV, str(tmp_path))
    monkeypatch.setenv(PASSWORD_ENV, "a password")
    result = CliRunner().invoke(app, ["pki", "init", "--out", str(tmp_path / "pki"), "--rsa-bits", "2048"])
    assert result.exit_code == 1 and not (tmp_path / "pki").exists()
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'agencies' / 'broken.yaml'}:2: ")


def test_a_count_setting_is_a_whole_number_or_refused_by_name(monkeypatch):
    monkeypatch.delenv(settings.SNAPSHOT_TASKS_ENV, raising=False)
    assert settings.snapshot_tasks() >= 1  # this machine's cores
    monkeypatch.setenv(settings.SNAPSHOT_TASKS_ENV, "6")
    assert settings.snapshot_tasks() == 6
    for wrong in ("0", "-2", "two", "1.5", "²", "٣"):
        monkeypatch.setenv(settings.SNAPSHOT_TASKS_ENV, wrong)
        with pytest.raises(settings.SettingInvalid, match="LIENTHONG_SNAPSHOT_TASKS must be a whole number of 1 or"):
            settings.snapshot_tasks()
    monkeypatch.setenv(settings.FAST_PATH_ENV, "0")
    assert settings.fast_path_citizens() == 0
    monkeypatch.setenv(settings.FAST_PATH_ENV, "many")
    with pytest.raises(settings.SettingInvalid, match="LIENTHONG_FAST_PATH_CITIZENS must be a whole number of 0"):
        settings.fast_path_citizens()
