#!/usr/bin/env bash
# HTTP load harness for the feed path: starts the release binary in embedded mode on a loopback
# port, mints tokens for USERS demo users, drives GET /api/v1/reels with wrk (closed loop) and
# prints latency percentiles and the feed-cache hit ratio. Bounded in time; stops what it started.
#
#   scripts/loadtest.sh                      # 500 users, 10 connections, 20 s
#   USERS=2000 CONNECTIONS=50 DURATION=30s scripts/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
ensure_build_tools
ensure_packages wrk curl

USERS=${USERS:-500}
CONNECTIONS=${CONNECTIONS:-10}
DURATION=${DURATION:-20s}
PORT=${PORT:-18080}

cargo build --release --locked -p video-ranking-service
bin="$CARGO_TARGET_DIR/release/video-ranking-service"
work=$(mktemp -d)
APP_HOST=127.0.0.1 APP_PORT=$PORT DATA_DIR="$work" RATE_LIMIT_PER_SECOND=0 RUST_LOG=warn \
  "$bin" serve >"$work/service.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$PORT/api/v1/health/ready" >/dev/null && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/api/v1/health/ready" >/dev/null || { cat "$work/service.log"; exit 1; }

log "minting $USERS tokens"
for n in $(seq 1 "$USERS"); do
  DATA_DIR="$work" "$bin" dev-token --demo-user "$n" --ttl 1h
done >"$work/tokens"

log "wrk: $CONNECTIONS connections, $DURATION"
TOKENS_FILE="$work/tokens" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency \
  -s scripts/loadtest/reels.lua "http://127.0.0.1:$PORT"

metrics=$(curl -fs "http://127.0.0.1:$PORT/metrics")
hits=$(awk '/^feed_cache_hits_total/ {print $2}' <<<"$metrics")
misses=$(awk '/^feed_cache_misses_total/ {print $2}' <<<"$metrics")
log "feed cache: ${hits:-0} hits, ${misses:-0} misses"
grep -E '^http_requests_total\{method="GET",route="/api/v1/reels"' <<<"$metrics" >&2
