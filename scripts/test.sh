#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of the workspace — unit, contract
# (against real PostgreSQL, Redis and ClickHouse started here on free loopback ports), and black-box
# tests of the built binary; plus a check of the ClickHouse schema and queries on a modern engine
# (chdb), and the deployment files (scripts/check-deploy.sh). URLs already set (TEST_DATABASE_URL,
# TEST_REDIS_URL, TEST_CLICKHOUSE_URL) are used instead of starting a server. Everything started is stopped on exit, failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh
ensure_build_tools

results=$(mktemp)
trap 'stop_services; rm -f "$results"' EXIT
trap 'exit 130' INT TERM

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings

start_postgres
start_redis
start_clickhouse

# The schema and the ClickHouse adapter's queries on a modern engine; the tests below use 18.16.
scripts/check-clickhouse-ddl.sh

log "cargo test"
cargo test --locked --workspace --all-features 2>&1 | tee "$results"

# deploy/: manifests, alerts, dashboard, and a real Prometheus scraping the binary just built.
log "deploy checks"
scripts/check-deploy.sh

# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
