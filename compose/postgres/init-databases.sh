#!/usr/bin/env bash
# One database and one owner per service, so Airflow and MLflow cannot touch each other's data.
# The postgres image runs this once, on an empty data directory; the native stack test runs it
# against a throw-away cluster. Passwords come from the environment and reach SQL only as psql
# variables (:'name' quotes them), never spliced into the statement text.
set -euo pipefail

: "${AIRFLOW_DB_PASSWORD:?AIRFLOW_DB_PASSWORD is not set}"
: "${MLFLOW_DB_PASSWORD:?MLFLOW_DB_PASSWORD is not set}"

psql -v ON_ERROR_STOP=1 --no-psqlrc \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" -v mlflow_password="$MLFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
-- MLflow's users and permissions (basic-auth), apart from the runs.
CREATE DATABASE mlflow_auth OWNER mlflow;
-- Only each owner may connect to its database.
REVOKE ALL ON DATABASE airflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow FROM PUBLIC;
REVOKE ALL ON DATABASE mlflow_auth FROM PUBLIC;
SQL
