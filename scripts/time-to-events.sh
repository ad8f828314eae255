#!/usr/bin/env bash
# Measures how long `make run` takes from a cold start to "events flowing": the demo stream's
# first event readable from ClickHouse through the API. Stops Sightline afterwards.
# Usage: scripts/time-to-events.sh [gateway address, default 127.0.0.1:8080]
set -uo pipefail
GW=${1:-127.0.0.1:8080}
LOG=${LOG:-/tmp/sightline-run.log}
start=$(date +%s.%N)
start_ms=$(date +%s%3N)
setsid make run >"$LOG" 2>&1 < /dev/null &
pid=$!
trap 'kill -INT -- -$pid 2>/dev/null; sleep 3; kill -- -$pid 2>/dev/null' EXIT
for _ in $(seq 1 3600); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "make run exited; see $LOG" >&2
    exit 1
  fi
  # `make run` protects the API with a key it generates on its first run.
  AUTH=()
  [ -s .data/dev-api-key ] && AUTH=(-H "Authorization: Bearer $(cat .data/dev-api-key)")
  # Only the demo stream this run registered counts.
  id=$(curl -sf "${AUTH[@]}" "http://$GW/v1/streams" 2>/dev/null | python3 -c 'import json,sys; s=[x for x in json.load(sys.stdin)["streams"] if x["name"]=="demo" and x["created_ms"] >= '"$start_ms"']; print(s[-1]["id"] if s else "")' 2>/dev/null)
  if [ -n "$id" ]; then
    n=$(curl -sf "${AUTH[@]}" "http://$GW/v1/streams/$id/events" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["events"]))' 2>/dev/null)
    if [ "${n:-0}" -gt 0 ]; then
      printf 'events flowing after %.1f s (stream %s, %s events in ClickHouse)\n' "$(echo "$(date +%s.%N) - $start" | bc)" "$id" "$n"
      exit 0
    fi
  fi
  sleep 0.5
done
echo "no events after 30 minutes; see $LOG" >&2
exit 1
