"""The modules both executors import before they fork a task's process (``lienthong.task_modules``)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

from lienthong.airflow_runner import airflow_environment
from lienthong.celery_config import CELERY_CONFIG
from lienthong.task_modules import TASK_MODULES


def test_every_task_module_imports():
    # a forkserver skips a module it cannot import without a word, and Celery fails its worker: each is checked here
    for name in TASK_MODULES:
        importlib.import_module(name)


def test_celery_workers_import_them_as_they_start():
    assert set(TASK_MODULES) <= set(CELERY_CONFIG["imports"])


def test_make_airflows_scheduler_forks_its_workers_from_a_process_that_imports_them(tmp_path):
    # Airflow's own reading of the settings, in a process of its own (Airflow reads its configuration on import)
    probe = (
        "import json, multiprocessing, multiprocessing.forkserver as f\n"
        "from airflow.utils.process_utils import set_component_mp_start_method\n"
        "set_component_mp_start_method('scheduler')\n"
        "print(json.dumps([multiprocessing.get_start_method(), f._forkserver._preload_modules]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | airflow_environment(tmp_path)
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    method, preloaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert method == "forkserver" and preloaded == TASK_MODULES
