"""Celery's configuration for the exchange's workers (``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS`` in
docker-compose.yml): Airflow's own, plus the modules the exchange's tasks import, imported once by each worker as
it starts (``lienthong.task_modules``). A worker forks a process per task; imported before the fork, they cost a
task nothing, where a fresh import costs each task seconds (35 provinces in a snapshot paid it 35 times)."""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

from lienthong.task_modules import TASK_MODULES

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), *TASK_MODULES]}
