#!/usr/bin/env bash
# airflow-init (docker-compose.yml; the image has this file as /opt/lienthong/airflow-init.sh): what must be in
# place before the Airflow components start. Each step can run again, and does at each `docker-compose up`.
# The partners' pools are not made here: the plugin makes them as the scheduler, DAG processor and triggerer start.
set -euo pipefail

# A value still holding a placeholder of .env.example is refused before anything uses it (never printed).
for name in AIRFLOW__DATABASE__SQL_ALCHEMY_CONN LIENTHONG_DB_URL AIRFLOW__CORE__FERNET_KEY \
    AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__API__SECRET_KEY AIRFLOW_ADMIN_PASSWORD AWS_SECRET_ACCESS_KEY \
    LIENTHONG_KEY_PASSWORD LIENTHONG_DISCLOSURE_KEY; do
    case "${!name:-}" in
        "" | *change-me*)
            echo "airflow-init: $name is empty or still the placeholder of .env.example: set it in .env" >&2
            exit 1
            ;;
    esac
done

echo "airflow-init: Airflow's metadata database (airflow db migrate)"
airflow db migrate

echo "airflow-init: the population database (lienthong db upgrade)"
lienthong db upgrade

echo "airflow-init: the admin's password for the simple auth manager"
python - <<'PY'
import json
import os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
text = path.read_text(encoding="utf-8").strip() if path.exists() else ""
passwords = json.loads(text) if text else {}  # the other users' passwords, made by the API server, are kept
passwords["admin"] = os.environ["AIRFLOW_ADMIN_PASSWORD"]
path.touch(mode=0o600)
path.chmod(0o600)
path.write_text(json.dumps(passwords) + "\n", encoding="utf-8")
PY

connections=/opt/airflow/connections.json
if [[ -s "$connections" ]]; then
    echo "airflow-init: importing the connections of LIENTHONG_CONNECTIONS_FILE"
    airflow connections import --overwrite "$connections"
else
    echo "airflow-init: no connections file; the connections come from the secrets backend, the UI or the CLI"
fi
