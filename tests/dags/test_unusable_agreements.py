"""A bad agreement file loses only its own DAGs: Airflow's DagBag over the real DAG folder, with an operator's
agreements folder (``LIENTHONG_SCHEMAS_PATH``) holding one good and one bad file."""

from __future__ import annotations

from exchange.agreements import load_agreements
from lienthong.settings import SCHEMAS_ENV, schema_file

HEALTH = schema_file("agreements/health.yaml").read_text(encoding="utf-8")


def test_a_bad_agreement_file_loses_only_its_own_dags_and_shows_as_an_import_error(tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from lienthong.airflow_runner import PROJECT_ROOT

    shipped = load_agreements()
    folder = tmp_path / "agreements"
    folder.mkdir()
    good = HEALTH.replace("agreement: health-identity", "agreement: health-extra")
    (folder / "health-extra.yaml").write_text(good, encoding="utf-8")
    bad = HEALTH.replace("agreement: health-identity", "agreement: health-filtered").replace(
        "    mode: incremental\n", "    mode: incremental\n    filter: deaths\n"
    )
    (folder / "health-filtered.yaml").write_text(bad, encoding="utf-8")
    monkeypatch.setenv(SCHEMAS_ENV, str(tmp_path))

    bag = DagBag(str(PROJECT_ROOT / "dags"))

    expected = {f"{name}.{kind}" for name in [*shipped, "health-extra"] for kind in ("outbound", "snapshot")}
    assert expected <= set(bag.dag_ids)
    assert not any("health-filtered" in dag_id for dag_id in bag.dag_ids)
    assert "lienthong.unusable-agreements" not in bag.dag_ids
    ((where, error),) = bag.import_errors.items()
    line = next(n for n, text in enumerate(bad.splitlines(), 1) if "filter:" in text)
    assert where.endswith("exchange_dags.py")
    assert f"{folder / 'health-filtered.yaml'}:{line}: unknown key 'filter' at directions.outbound" in error


def test_without_a_bad_file_there_is_no_import_error():
    from airflow.dag_processing.dagbag import DagBag

    from lienthong.airflow_runner import PROJECT_ROOT

    bag = DagBag(str(PROJECT_ROOT / "dags"))
    assert not bag.import_errors and "lienthong.unusable-agreements" not in bag.dag_ids
