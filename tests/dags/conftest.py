"""A world for the exchange DAGs (``tests.partners.fixtures.exchange_world``), module-scoped: the DAGs use the
real agreement names, so each test module gets partners and a population of its own."""

from __future__ import annotations

import uuid

import pytest

from lienthong.airflow_runner import read_results, run_dags
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import ExchangeWorld, exchange_world


class DagWorld(ExchangeWorld):
    def run(self, *dag_ids: str, conf: dict | None = None) -> dict[str, dict]:
        """Run the DAGs through Airflow (``dag.test()``, in a process of their own); their results by DAG id."""
        runs = {line["dag_id"]: line for line in self.run_in_turn(*dag_ids, conf=conf)}
        missing = set(dag_ids) - set(runs)
        assert not missing, f"no result for {missing}:\n{self.log_tail()}"
        return runs

    def run_in_turn(self, *dag_ids: str, conf: dict | None = None) -> list[dict]:
        """Run the DAGs one after another (a DAG named twice runs twice); their results in that order."""
        results = self.var / f"results-{uuid.uuid4().hex[:8]}.jsonl"
        process = run_dags(list(dag_ids), self.var, log=self.var / "airflow" / "runs.log", results=results,
                           env=self.env, conf=conf)  # fmt: skip
        process.wait(timeout=900)
        return read_results(results)

    def log_tail(self, lines: int = 80) -> str:
        text = (self.var / "airflow" / "runs.log").read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def dag_world(tmp_path_factory, sandbox_pki) -> DagWorld:
    world = exchange_world(tmp_path_factory.mktemp("dag-world") / "var", sandbox_pki, 31, kind=DagWorld)
    yield world
    world.sandbox.stop()
    world.engine.dispose()
