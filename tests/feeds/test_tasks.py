"""The steps behind the DAGs' tasks (``feeds.tasks``): what a task's process has to import before it runs."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_steps_that_do_not_validate_start_without_great_expectations_or_pandas():
    """Under a scheduler every task is a process of its own, and importing Great Expectations and pandas takes it
    seconds. The DAG file, and the modules behind the tasks that extract, package, deliver, verify, acknowledge,
    advance or audit, import neither; the steps that validate and reconcile import them when they run."""
    modules = ["feeds.tasks", "feeds.outbound", "feeds.inbound", "feeds.audit", "connectors.sensors"]
    code = (f"import sys; sys.path.insert(0, 'dags'); import exchange_dags, {', '.join(modules)}; "
            "print(' '.join(m for m in ('great_expectations', 'pandas') if m in sys.modules))")  # fmt: skip
    imported = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == ""
