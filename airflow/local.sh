#!/usr/bin/env bash
# Local Airflow for mlrecipes, on 127.0.0.1 only, with a small parallelism.
#
#   airflow/local.sh start                  # metadata DB, pools, api-server + scheduler + dag-processor
#   airflow/local.sh status
#   airflow/local.sh trigger <dag_id> ['{"limit": 1000}']   # unpause + trigger with params (JSON conf)
#   airflow/local.sh test <dag_id> ['{"limit": 1000}']      # one run in the foreground, no scheduler needed
#   airflow/local.sh stop                   # every process it started, children included
#   airflow/local.sh airflow <args...>      # any airflow CLI command against this instance
#
# Environment: AIRFLOW_PORT (8080), AIRFLOW_PARALLELISM (2), MLRECIPES_PROFILE, MLFLOW_TRACKING_URI,
# MLRECIPES_DATA_DIR (read by the tasks, so set them before `start`).
#
# Separate components rather than `airflow standalone`: standalone starts 32 workers by default,
# its log servers listen on every interface, and SIGTERM to it leaves the children running.
# Here each component runs in its own session (setsid) and `stop` signals the whole group.
# With LocalExecutor on one machine the task logs are local files: no log server is started.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_BIN="$REPO/.venv/bin"
PORT="${AIRFLOW_PORT:-8080}"
RUN_DIR="$REPO/airflow/home/run"
LOG_DIR="$REPO/airflow/home/logs"
COMPONENTS=(api-server scheduler dag-processor)
EMPTY_CONF="{}"

export AIRFLOW_HOME="$REPO/airflow/home"              # git-ignored
export AIRFLOW__CORE__DAGS_FOLDER="$REPO/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__EXECUTOR=LocalExecutor
export AIRFLOW__CORE__PARALLELISM="${AIRFLOW_PARALLELISM:-2}"   # LocalExecutor worker processes
export AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG=1
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$PORT/execution/"  # moves with the port
export AIRFLOW__API__BASE_URL="http://127.0.0.1:$PORT"
export AIRFLOW__API__WORKERS=1
export AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=1
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True  # no login page: it listens on 127.0.0.1 only
export PATH="$VENV_BIN:$PATH"                          # the tasks run `mlrecipes` from here

airflow_cli() { "$VENV_BIN/airflow" "$@"; }

alive() {  # alive <pid>: the process (right after launch, before its setsid) or its group lives
  kill -0 "$1" 2>/dev/null || kill -0 -- "-$1" 2>/dev/null
}

running() {  # running <component>
  [[ -f "$RUN_DIR/$1.pid" ]] && alive "$(cat "$RUN_DIR/$1.pid")"
}

healthy() {
  "$VENV_BIN/python" - "$PORT" <<'EOF'
import json, sys, urllib.request
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/api/v2/monitor/health", timeout=3) as r:
        health = json.load(r)
except Exception:
    sys.exit(1)
sys.exit(0 if health.get("metadatabase", {}).get("status") == "healthy" else 1)
EOF
}

start() {
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "already running ($c); 'airflow/local.sh stop' first" >&2; exit 1; fi
  done
  if healthy; then echo "an Airflow already answers on port $PORT; set AIRFLOW_PORT" >&2; exit 1; fi
  echo "metadata DB: $AIRFLOW_HOME/airflow.db"
  airflow_cli db migrate >"$LOG_DIR/db-migrate.out" 2>&1 || { tail -20 "$LOG_DIR/db-migrate.out" >&2; exit 1; }
  # Pools from conf/schedule.yaml (mlrecipes_dl: deep-learning jobs one at a time).
  PYTHONPATH="$REPO/src" "$VENV_BIN/python" -m mlrecipes pools |
    while IFS=$'\t' read -r name slots description; do
      airflow_cli pools set "$name" "$slots" "$description" >/dev/null
      echo "pool $name: $slots slot(s)"
    done
  local -A args=(
    [api-server]="api-server --host 127.0.0.1 --port $PORT --workers 1"
    [scheduler]="scheduler --skip-serve-logs"
    [dag-processor]="dag-processor"
  )
  # API server first: the scheduler's tasks report to it from their first second.
  launch api-server "${args[api-server]}"
  wait_healthy api-server
  launch scheduler "${args[scheduler]}"
  launch dag-processor "${args[dag-processor]}"
  wait_healthy scheduler dag-processor
  echo "Airflow: http://127.0.0.1:$PORT  (logs: $LOG_DIR; stop: airflow/local.sh stop)"
}

launch() {  # launch <component> <airflow args>: in its own session, so stop can signal its group
  # shellcheck disable=SC2086  # the fixed argument strings of start() are meant to split
  setsid "$VENV_BIN/airflow" $2 >"$LOG_DIR/$1.out" 2>&1 < /dev/null &
  echo $! >"$RUN_DIR/$1.pid"
}

wait_healthy() {  # wait_healthy <component>...: API healthy and the components still alive
  local c
  for _ in $(seq 1 120); do
    for c in "$@"; do
      running "$c" || { echo "$c exited; see $LOG_DIR/$c.out" >&2; tail -20 "$LOG_DIR/$c.out" >&2; stop; exit 1; }
    done
    if healthy; then sleep 2; return 0; fi
    sleep 1
  done
  echo "Airflow did not become healthy in 120 s; see $LOG_DIR" >&2
  stop
  exit 1
}

stop_one() {  # stop_one <component> <seconds>: SIGTERM its whole process group, SIGKILL if it lingers
  local c="$1" wait_s="$2" pgid
  [[ -f "$RUN_DIR/$c.pid" ]] || return 0
  pgid="$(cat "$RUN_DIR/$c.pid")"
  kill -TERM -- "-$pgid" 2>/dev/null || kill -TERM "$pgid" 2>/dev/null || true
  for _ in $(seq 1 $((wait_s * 2))); do
    alive "$pgid" || break
    sleep 0.5
  done
  if alive "$pgid"; then
    echo "$c still running after $wait_s s: SIGKILL" >&2
    kill -KILL -- "-$pgid" 2>/dev/null || kill -KILL "$pgid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/$c.pid"
  echo "stopped $c"
}

stop() {
  # Scheduler first, while the API server still answers: its executor's supervisors pass the
  # SIGTERM to running tasks, whose on_kill ends their MLflow runs KILLED and who then report
  # their state through the API server. Then the DAG processor, then the API server.
  stop_one scheduler 120
  stop_one dag-processor 30
  stop_one api-server 30
}

status() {
  for c in "${COMPONENTS[@]}"; do
    if running "$c"; then echo "$c: running (pgid $(cat "$RUN_DIR/$c.pid"))"; else echo "$c: stopped"; fi
  done
  if healthy; then echo "api: http://127.0.0.1:$PORT healthy"; else echo "api: not answering on $PORT"; fi
}

check_conf() {  # the conf must be a JSON object; Airflow validates it against the DAG's Params
  "$VENV_BIN/python" -c 'import json, sys; c = json.loads(sys.argv[1]); assert isinstance(c, dict)' "$1" \
    2>/dev/null || { echo "conf must be a JSON object, e.g. '{\"limit\": 1000}'" >&2; exit 2; }
}

cmd="${1:-}"
shift || true
case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  trigger)
    [[ -n "${1:-}" ]] || { echo "usage: airflow/local.sh trigger <dag_id> ['<json conf>']" >&2; exit 2; }
    conf="${2:-$EMPTY_CONF}"
    check_conf "$conf"
    airflow_cli dags unpause "$1" >/dev/null   # a paused DAG's runs wait; unpausing also enables its schedule
    airflow_cli dags trigger "$1" --conf "$conf"
    ;;
  test)
    [[ -n "${1:-}" ]] || { echo "usage: airflow/local.sh test <dag_id> ['<json conf>']" >&2; exit 2; }
    conf="${2:-$EMPTY_CONF}"
    check_conf "$conf"
    airflow_cli dags test "$1" --conf "$conf"
    ;;
  airflow) airflow_cli "$@" ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    [[ -z "$cmd" ]] || exit 2
    ;;
esac
