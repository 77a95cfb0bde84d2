"""The Airflow plugin: steward and operator pages and API."""
