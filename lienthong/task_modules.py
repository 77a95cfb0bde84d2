"""The modules the exchange's tasks import, imported once by the process Airflow forks each task's process from.

A task runs in a process of its own. Forked from a process that has imported these already, it finds Great
Expectations, pandas, SQLAlchemy, boto3, the transports and the feeds' steps in place; imported afresh, they cost
each task seconds (Great Expectations alone about 2.5 s on this project's machine), and a life event's way to the
partners runs one task per feed (docs/BENCHMARKS.md, issues 16 and 17). Two executors, one list:

- Celery workers import them as they start (``lienthong.celery_config``);
- ``make airflow``'s LocalExecutor starts its workers from a ``forkserver`` that imports them first
  (``[scheduler] mp_start_method`` and ``mp_forkserver_preload``, in ``lienthong.airflow_runner``).
"""

from __future__ import annotations

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
