#!/usr/bin/env bash
# Create or update the Airflow pools that conf/schedule.yaml names (`mlrecipes pools`
# prints them, one "name<TAB>slots<TAB>description" a line). The compose stack's airflow-init runs
# this after migrating the database; it needs the `airflow` CLI and a configured Airflow database.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# Airflow's own interpreter has what the schedule reader needs (PyYAML).
python=${PYTHON:-$(dirname "$(command -v airflow)")/python}
pools=$(PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" "$python" -m mlrecipes pools)
while IFS=$'\t' read -r name slots description; do
  [[ -n "$name" ]] || continue
  airflow pools set "$name" "$slots" "$description"
done <<<"$pools"
