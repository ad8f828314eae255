#!/usr/bin/env bash
# `make loadtest`: the capacity harness against a Sightline of its own. Starts the release build on
# 127.0.0.1:8090 (its sources play on 127.0.0.1, the one internal address this run allows), ramps
# the streams (STEPS, default 1,2,4,8; HOLD seconds per step, default 60; CLIP news, talk-show,
# talk-show-music, or news-multilingual or talk-show-multilingual, which set speech.languages to
# en, fr, de, es;
# RESOLUTION 360p, 720p or 1080p; PROTOCOL hls or rtmp), runs the bare references (gst-launch-1.0
# decoding; after the ramp, sightline-bench bare: ONNX Runtime at the pools' batch sizes), writes .data/reports/capacity.json and
# capacity.html, and stops Sightline.
set -euo pipefail
source "${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/env"
BIN=${SIGHTLINE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/sightline/target}/release}
GW=127.0.0.1:8090
mkdir -p .data/reports
# Names of its own on the bus and in ClickHouse: `make run`'s streams and data are not touched.
export MALLOC_ARENA_MAX=2 SIGHTLINE_GATEWAY__LISTEN=$GW SIGHTLINE_INGEST__ALLOW_HOSTS='["127.0.0.1"]' \
  SIGHTLINE_NATS__PREFIX=LOADTEST SIGHTLINE_CLICKHOUSE__DATABASE=sightline_loadtest
# The multilingual clips need Whisper: the node identifies each utterance among the four.
if [[ "${CLIP:-news}" == *-multilingual ]] && [ -z "${SIGHTLINE_SPEECH__LANGUAGES:-}" ]; then
  export SIGHTLINE_SPEECH__LANGUAGES='["en","fr","de","es"]'
fi
"$BIN/sightline" run > .data/reports/loadtest-sightline.log 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://$GW/healthz" >/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "sightline exited; see .data/reports/loadtest-sightline.log" >&2; exit 1; }
  sleep 1
done
"$BIN/sightline-loadtest" capacity --gateway "$GW" --pid "$pid" \
  --steps "${STEPS:-1,2,4,8}" --hold "${HOLD:-60}" --warmup "${WARMUP:-20}" --out .data/reports \
  --clip "${CLIP:-news}" --resolution "${RESOLUTION:-720p}" --protocol "${PROTOCOL:-hls}" \
  --bare-ort "$BIN/sightline-bench"
