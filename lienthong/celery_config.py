"""Celery's configuration for the exchange's workers (``AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS`` in
docker-compose.yml): Airflow's own, plus the modules the exchange's tasks import, imported once by each worker as
it starts. A worker forks a process per task; imported before the fork, Great Expectations, pandas, SQLAlchemy,
boto3, the transports and the feeds' steps cost a task nothing, where a fresh import costs each task seconds (35
provinces in a snapshot pay it 35 times)."""

from __future__ import annotations

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

TASK_MODULES = [
    "feeds.tasks",
    "feeds.artifacts",
    "feeds.outbound",
    "feeds.snapshot",
    "feeds.inbound",
    "feeds.audit",
    "connectors.rest",
    "connectors.soap",
    "connectors.sftp",
    "connectors.sensors",
    "validation.suites",
    "great_expectations",
    "pandas",
    "boto3",
]

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": [*DEFAULT_CELERY_CONFIG.get("imports", ()), *TASK_MODULES]}
