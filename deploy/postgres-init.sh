#!/usr/bin/env bash
# PostgreSQL's first start (docker-compose.yml mounts this file into /docker-entrypoint-initdb.d/): one server, two
# databases, each owned by a role of its own: `airflow`, Airflow's metadata database (and Celery's result backend),
# and `lienthong`, the population database (LIENTHONG_DB_URL). The passwords come from the environment (.env); psql
# quotes them as literals. Runs only while the data volume is empty: to change a password later, ALTER ROLE.
set -euo pipefail

for name in POSTGRES_PASSWORD AIRFLOW_DB_PASSWORD LIENTHONG_DB_PASSWORD; do  # placeholders of .env.example refused
    case "${!name:-}" in
        "" | *change-me*) echo "postgres-init: $name is empty or still the placeholder of .env.example" >&2; exit 1 ;;
    esac
done

psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    --set=airflow_password="${AIRFLOW_DB_PASSWORD:?}" --set=lienthong_password="${LIENTHONG_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
REVOKE ALL ON DATABASE airflow FROM PUBLIC;

CREATE ROLE lienthong LOGIN PASSWORD :'lienthong_password';
CREATE DATABASE lienthong OWNER lienthong;
REVOKE ALL ON DATABASE lienthong FROM PUBLIC;
SQL
