#!/bin/bash
# First start of PostgreSQL (an empty data volume) only: one role and one database for the hub's
# ledger, one for Airflow's metadata and Celery results. Passwords come from the environment that
# compose passes (from .env) and reach psql as variables, never as text in this file.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v conveyor_password="$CONVEYOR_DB_PASSWORD" \
  -v airflow_password="$AIRFLOW_DB_PASSWORD" <<'SQL'
CREATE ROLE conveyor LOGIN PASSWORD :'conveyor_password';
CREATE DATABASE conveyor OWNER conveyor;
CREATE ROLE airflow LOGIN PASSWORD :'airflow_password';
CREATE DATABASE airflow OWNER airflow;
SQL
