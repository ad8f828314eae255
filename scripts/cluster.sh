#!/usr/bin/env bash
# `make cluster`: Sightline scaled out on loopback. A three-server NATS JetStream cluster (routes
# between them; streams and buckets with three replicas) and four Sightline nodes against it:
# two ingest nodes, one inference node, one gateway + sink node (the dashboard and API on
# 127.0.0.1:8090), with the demo stream registered. Redis and ClickHouse are the ones `make
# services` runs (their own clustering is in the README's production notes).
# Everything lives under .data/cluster/ (data folders, logs, pids). `make cluster-stop` ends it.
#   scripts/cluster.sh start | stop | status
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGHTLINE_CACHE:-$HOME/.cache/sightline}
DIR=${SIGHTLINE_CLUSTER_DIR:-$ROOT/.data/cluster}
BIN=${SIGHTLINE_BIN:-${CARGO_TARGET_DIR:-$CACHE/target}/release}/sightline
GATEWAY=${CLUSTER_GATEWAY:-127.0.0.1:8090}
# Client, route and monitoring ports of the three NATS servers.
NATS_PORTS=(4231 4232 4233)
ROUTE_PORTS=(6231 6232 6233)
MONITOR_PORTS=(8231 8232 8233)
# shellcheck disable=SC1091
source "$CACHE/env"
mkdir -p "$DIR/logs" "$DIR/run"

running() { [ -f "$DIR/run/$1.pid" ] && kill -0 "$(cat "$DIR/run/$1.pid")" 2>/dev/null; }

launch() { # name, command…
  local name=$1; shift
  if running "$name"; then echo "cluster: $name already running"; return 0; fi
  setsid nohup "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$DIR/run/$name.pid"
}

nats_url() {
  local urls=() p
  for p in "${NATS_PORTS[@]}"; do urls+=("nats://127.0.0.1:$p"); done
  (IFS=,; echo "${urls[*]}")
}

start() {
  [ -x "$BIN" ] || { echo "cluster: $BIN is missing (make build)" >&2; exit 1; }
  local routes=() i
  for p in "${ROUTE_PORTS[@]}"; do routes+=("nats://127.0.0.1:$p"); done
  for i in 0 1 2; do
    launch "nats-$((i + 1))" nats-server -js -a 127.0.0.1 -p "${NATS_PORTS[$i]}" -m "${MONITOR_PORTS[$i]}" \
      --server_name "n$((i + 1))" --cluster_name sightline --cluster "nats://127.0.0.1:${ROUTE_PORTS[$i]}" \
      --routes "$(IFS=,; echo "${routes[*]}")" -sd "$DIR/nats-$((i + 1))"
  done
  for i in 0 1 2; do
    for _ in $(seq 1 150); do
      curl -sf "http://127.0.0.1:${MONITOR_PORTS[$i]}/healthz" >/dev/null 2>&1 && break
      sleep 0.2
    done
    curl -sf "http://127.0.0.1:${MONITOR_PORTS[$i]}/healthz" >/dev/null 2>&1 \
      || { echo "cluster: nats-$((i + 1)) has no JetStream after 30 s; see $DIR/logs/nats-$((i + 1)).log" >&2; exit 1; }
  done
  echo "cluster: NATS JetStream cluster of 3 up: $(nats_url)"
  export SIGHTLINE_NATS__URL; SIGHTLINE_NATS__URL=$(nats_url)
  export SIGHTLINE_NATS__REPLICAS=3 SIGHTLINE_NATS__PREFIX=SLC SIGHTLINE_CLICKHOUSE__DATABASE=sightline_cluster
  export SIGHTLINE_GATEWAY__LISTEN=$GATEWAY MALLOC_ARENA_MAX=2 SIGHTLINE_INGEST__ALLOW_HOSTS='["127.0.0.1:8189"]'
  # The gateway + sink node first: it migrates ClickHouse and plays the demo stream.
  SIGHTLINE_CLUSTER__NODE_ID=edge launch edge "$BIN" run --roles gateway,sink --demo \
    --demo-dir "$DIR/demo" --demo-port 8189
  SIGHTLINE_CLUSTER__NODE_ID=inference launch inference "$BIN" run --roles inference
  SIGHTLINE_CLUSTER__NODE_ID=ingest-1 launch ingest-1 "$BIN" run --roles ingest
  SIGHTLINE_CLUSTER__NODE_ID=ingest-2 launch ingest-2 "$BIN" run --roles ingest
  for _ in $(seq 1 300); do
    curl -sf "http://$GATEWAY/healthz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -sf "http://$GATEWAY/healthz" >/dev/null 2>&1 \
    || { echo "cluster: the gateway did not come up; see $DIR/logs/edge.log" >&2; tail -5 "$DIR/logs/edge.log" >&2; exit 1; }
  echo "cluster: nodes edge (gateway,sink), inference, ingest-1, ingest-2; logs in $DIR/logs"
  echo "cluster: dashboard http://$GATEWAY/   nodes: curl http://$GATEWAY/v1/nodes"
}

stop() {
  local name
  # Nodes first (SIGTERM: ingest nodes hand their streams over and exit), then NATS.
  for name in ingest-2 ingest-1 inference edge nats-3 nats-2 nats-1; do
    if running "$name"; then
      kill -TERM "$(cat "$DIR/run/$name.pid")" 2>/dev/null || true
      for _ in $(seq 1 150); do running "$name" || break; sleep 0.2; done
      running "$name" && kill -KILL "$(cat "$DIR/run/$name.pid")" 2>/dev/null || true
      echo "cluster: stopped $name"
    fi
    rm -f "$DIR/run/$name.pid"
  done
}

status() {
  local name
  for name in nats-1 nats-2 nats-3 edge inference ingest-1 ingest-2; do
    if running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
  done
  curl -sf "http://$GATEWAY/v1/nodes" 2>/dev/null || true
  echo
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
