#!/usr/bin/env bash
# Cache warm-up benchmark on real stores: starts PostgreSQL, Redis and ClickHouse on free loopback
# ports (as scripts/test.sh does; TEST_*_URL variables already set are used instead), seeds the
# default demo (10,000 videos, 2,000 users, a month of engagement), then times, with the release
# build, the `warmup` command and `POST /api/v1/admin/cache-warmup`, both for USERS users,
# BATCH_SIZE at a time. Stops what it started.
#
#   scripts/bench-warmup.sh                  # 1000 users, 10 at a time
#   USERS=2000 BATCH_SIZE=20 scripts/bench-warmup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh
ensure_build_tools
ensure_packages curl

USERS=${USERS:-1000}
BATCH_SIZE=${BATCH_SIZE:-10}

cargo build --release --locked -p video-ranking-service
bin="$CARGO_TARGET_DIR/release/video-ranking-service"
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; stop_services; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

start_postgres
start_redis
start_clickhouse
database="vrs_bench_$$"
psql "$TEST_DATABASE_URL" -qc "CREATE DATABASE $database"
export DATABASE_URL="${TEST_DATABASE_URL%/*}/$database" REDIS_URL="$TEST_REDIS_URL"
export CLICKHOUSE_URL="$TEST_CLICKHOUSE_URL" CLICKHOUSE_DATABASE="$database"
export DATA_DIR="$work" RUST_LOG=warn RATE_LIMIT_PER_SECOND=0

"$bin" migrate >/dev/null
"$bin" clickhouse-init >/dev/null
log "seeding the demo"
"$bin" seed-demo

log "warmup command: $USERS users, $BATCH_SIZE at a time"
"$bin" warmup --users "$USERS" --batch-size "$BATCH_SIZE"

port=$(free_port)
APP_HOST=127.0.0.1 APP_PORT=$port "$bin" serve >"$work/service.log" 2>&1 &
pid=$!
wait_for "the service" 600 curl -fs "http://127.0.0.1:$port/api/v1/health/ready" ||
  { cat "$work/service.log"; exit 1; }
token=$("$bin" dev-token --demo-user 1 --admin)
log "POST /api/v1/admin/cache-warmup: $USERS users, $BATCH_SIZE at a time"
curl -fsS -H "Authorization: Bearer $token" -H 'content-type: application/json' \
  -d "{\"user_count\": $USERS, \"batch_size\": $BATCH_SIZE}" \
  "http://127.0.0.1:$port/api/v1/admin/cache-warmup"
echo
