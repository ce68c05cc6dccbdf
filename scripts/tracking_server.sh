#!/usr/bin/env bash
# An MLflow tracking server on PostgreSQL, with an artifact proxy, on this machine's loopback address.
#
#   scripts/tracking_server.sh start DIR [MLFLOW_PORT] [POSTGRES_PORT]   # prints the MLFLOW_TRACKING_URI to export
#   scripts/tracking_server.sh stop DIR
#
# DIR keeps the artifacts (DIR/artifacts, what --artifacts-destination serves), the logs and the process ids; the
# database cluster lives in DIR/postgres (initialised on the first start, reused after). PostgreSQL runs as the
# calling user, or as the `postgres` user when called as root (initdb refuses root). Connections are trusted on
# 127.0.0.1 only: for a server other machines reach, use a password (initdb --auth=scram-sha-256) and TLS.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV_BIN="$PWD/.venv/bin"  # the set-up's virtualenv, else whichever mlflow is on PATH
[ -x "$VENV_BIN/mlflow" ] || VENV_BIN=$(dirname "$(command -v mlflow)")

usage() { echo "usage: $0 start DIR [MLFLOW_PORT] [POSTGRES_PORT] | stop DIR" >&2; exit 2; }
[ $# -ge 2 ] || usage
action=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)
mlflow_port=${3:-5001}
pg_port=${4:-5433}

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
[ -n "$pg_bin" ] || { echo "PostgreSQL not found (Debian: apt-get install postgresql; scripts/setup.sh does)" >&2; exit 1; }

# As root the cluster must belong to `postgres`, in a folder that user can reach: a private one under /tmp.
as_db_user() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_data_dir() {
  if [ "$(id -u)" -eq 0 ]; then
    [ -f "$dir/postgres.path" ] || mktemp -d /tmp/cmbml-postgres.XXXXXX > "$dir/postgres.path"
    cat "$dir/postgres.path"
  else
    echo "$dir/postgres"
  fi
}

start() {
  local data
  data=$(pg_data_dir)
  mkdir -p "$data" "$dir/artifacts"
  [ "$(id -u)" -ne 0 ] || chown postgres "$data"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_db_user "$pg_bin/initdb" -D "$data" -U postgres --auth=trust > "$dir/initdb.log"
  fi
  if ! as_db_user "$pg_bin/pg_ctl" -D "$data" status > /dev/null 2>&1; then
    as_db_user "$pg_bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $data" start > /dev/null
  fi
  "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'mlflow'" \
    | grep -q 1 || "$pg_bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres mlflow

  local uri="http://127.0.0.1:$mlflow_port"
  if ! "$VENV_BIN/python" -c "import urllib.request; urllib.request.urlopen('$uri/health', timeout=2)" 2>/dev/null; then
    # Its own session, so that stop ends the server and its web workers together.
    MLFLOW_DISABLE_TELEMETRY=true setsid "$VENV_BIN/mlflow" server \
      --backend-store-uri "postgresql+psycopg2://postgres@127.0.0.1:$pg_port/mlflow" \
      --artifacts-destination "$dir/artifacts" --host 127.0.0.1 --port "$mlflow_port" --workers 2 \
      > "$dir/mlflow.log" 2>&1 < /dev/null &
    echo $! > "$dir/mlflow.pid"
    for _ in $(seq 1 120); do
      "$VENV_BIN/python" -c "import urllib.request; urllib.request.urlopen('$uri/health', timeout=2)" 2>/dev/null \
        && break
      kill -0 "$(cat "$dir/mlflow.pid")" 2>/dev/null || { cat "$dir/mlflow.log" >&2; exit 1; }
      sleep 1
    done
  fi
  echo "export MLFLOW_TRACKING_URI=$uri"
}

stop() {
  local data pid
  if [ -f "$dir/mlflow.pid" ]; then
    pid=$(cat "$dir/mlflow.pid")
    kill -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$dir/mlflow.pid"
  fi
  data=$(pg_data_dir)
  if [ -f "$data/PG_VERSION" ]; then
    as_db_user "$pg_bin/pg_ctl" -D "$data" -m fast stop > /dev/null 2>&1 || true
  fi
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
