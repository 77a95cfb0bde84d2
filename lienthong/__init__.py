"""The application shell: the ``lienthong`` command line, the demo, the Airflow runner, and the settings every layer
reads (``lienthong.settings``). Nothing is imported here: any layer may import ``lienthong.settings`` cheaply."""
