#!/usr/bin/env bash
# Starts or stops Sightline's services on loopback, with data under .data/:
#   NATS JetStream, Redis 8 (vector sets), and the ClickHouse engine over the HTTP interface.
# `start` is idempotent: a healthy service already running is kept. A port held by something
# else, or a service that does not become healthy, fails with the reason and its last log lines.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGHTLINE_CACHE:-$HOME/.cache/sightline}
DATA=${SIGHTLINE_DATA:-$ROOT/.data}
NATS_PORT=${NATS_PORT:-4222}
NATS_MONITOR_PORT=${NATS_MONITOR_PORT:-8222}
REDIS_PORT=${REDIS_PORT:-6379}
CLICKHOUSE_PORT=${CLICKHOUSE_PORT:-8123}

[ -f "$CACHE/env" ] || { echo "services: run 'make setup' first ($CACHE/env missing)" >&2; exit 1; }
# shellcheck disable=SC1091
source "$CACHE/env"
mkdir -p "$DATA/logs" "$DATA/run"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

healthy() {
  case $1 in
    nats) curl -sf "http://127.0.0.1:$NATS_MONITOR_PORT/healthz?js-enabled-only=true" >/dev/null 2>&1 ;;
    redis) [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] ;;
    clickhouse) [ "$(curl -sf "http://127.0.0.1:$CLICKHOUSE_PORT/ping" 2>/dev/null)" = "Ok." ] ;;
  esac
}

port_of() {
  case $1 in nats) echo "$NATS_PORT" ;; redis) echo "$REDIS_PORT" ;; clickhouse) echo "$CLICKHOUSE_PORT" ;; esac
}

running() {
  local pidfile="$DATA/run/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start_one() {
  local name=$1; shift
  local port; port=$(port_of "$name")
  if running "$name" && healthy "$name"; then
    echo "services: $name already running on 127.0.0.1:$port"
    return 0
  fi
  if port_open "$port"; then
    if healthy "$name"; then
      echo "services: $name answering on 127.0.0.1:$port (started elsewhere); using it"
      return 0
    fi
    echo "services: port $port is taken by another program; cannot start $name (set ${name^^}_PORT)" >&2
    exit 1
  fi
  mkdir -p "$DATA/$name"
  setsid nohup "$@" >"$DATA/logs/$name.log" 2>&1 < /dev/null &
  echo $! >"$DATA/run/$name.pid"
  for _ in $(seq 1 100); do
    if healthy "$name"; then
      echo "services: $name up on 127.0.0.1:$port"
      return 0
    fi
    if ! running "$name"; then break; fi
    sleep 0.2
  done
  echo "services: $name did not become healthy; last lines of $DATA/logs/$name.log:" >&2
  tail -n 20 "$DATA/logs/$name.log" >&2 || true
  exit 1
}

stop_one() {
  local pidfile="$DATA/run/$1.pid"
  if running "$1"; then
    local pid; pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    echo "services: $1 stopped"
  fi
  rm -f "$pidfile"
}

case ${1:-start} in
  start)
    start_one nats nats-server -js -sd "$DATA/nats" -a 127.0.0.1 -p "$NATS_PORT" -m "$NATS_MONITOR_PORT"
    start_one redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" \
      --save "" --appendonly yes --protected-mode yes
    # The users and the read-only user's limits, as config/sightline.toml (or the environment) says.
    mapfile -t CH < <("$SIGHTLINE_PYTHON" - "$ROOT/config/sightline.toml" <<'PY'
import os, sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
ch, g = c.get("clickhouse", {}), c.get("gateway", {})
env = lambda k, d: os.environ.get("SIGHTLINE_" + k, d)
print(env("CLICKHOUSE__USER", ch.get("user", "default")) + ":" + env("CLICKHOUSE__PASSWORD", ch.get("password", "")))
print(env("CLICKHOUSE__READER_USER", ch.get("reader_user", "sightline_reader")) + ":"
      + env("CLICKHOUSE__READER_PASSWORD", ch.get("reader_password", "")))
print(env("GATEWAY__SQL_MAX_ROWS", g.get("sql_max_rows", 10000)))
print(env("GATEWAY__SQL_MAX_SECONDS", g.get("sql_max_seconds", 10)))
PY
)
    start_one clickhouse "$SIGHTLINE_PYTHON" "$ROOT/scripts/clickhouse-http.py" \
      --data "$DATA/clickhouse" --port "$CLICKHOUSE_PORT" --writer "${CH[0]}" --reader "${CH[1]}" \
      --max-result-rows "${CH[2]}" --max-execution-time "${CH[3]}"
    ;;
  stop)
    for s in clickhouse redis nats; do stop_one "$s"; done
    ;;
  status)
    for s in nats redis clickhouse; do
      if healthy "$s"; then echo "$s: up"; else echo "$s: down"; fi
    done
    ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
