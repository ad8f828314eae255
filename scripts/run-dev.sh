#!/usr/bin/env bash
# `make run`: the whole system on loopback with the demo stream and a generated admin API key
# (kept in .data/dev-api-key, printed at start). The demo source plays on 127.0.0.1:8089, the one
# internal address this run allows (ingest.allow_hosts); every other one stays refused.
set -euo pipefail
source "${SIGHTLINE_CACHE:-$HOME/.cache/sightline}/env"
mkdir -p .data
[ -s .data/dev-api-key ] || (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > .data/dev-api-key)
chmod 600 .data/dev-api-key  # readable by its owner only, also when an older run made it
KEY=$(cat .data/dev-api-key)
HASH=$(printf %s "$KEY" | sha256sum | cut -c1-64)
export SIGHTLINE_GATEWAY__API_KEYS="[{ name = \"dev\", sha256 = \"$HASH\", scope = \"admin\" }]"
echo "dev API key (admin): $KEY"
echo "dashboard: http://127.0.0.1:8080/?key=$KEY    API: curl -H 'Authorization: Bearer $KEY' http://127.0.0.1:8080/v1/streams"
export MALLOC_ARENA_MAX=2 SIGHTLINE_INGEST__ALLOW_HOSTS='["127.0.0.1:8089"]'
# A fixed node id: after a crash, the next run takes its stream leases back at once instead of
# waiting for them to lapse (cluster.lease_ttl_ms).
export SIGHTLINE_CLUSTER__NODE_ID=${SIGHTLINE_CLUSTER__NODE_ID:-local}
# The Makefile says which build to run (the release one unless PROFILE=dev).
exec "${SIGHTLINE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/sightline/target}/release}/sightline" run --demo "$@"
