#!/usr/bin/env bash
# Runs the fault-injection harness with minute-long outages (tests/faults.rs with FAULTS=full): the
# built binary (`serve` and two `worker` processes) on its own PostgreSQL and Redis, ClickHouse and
# Redis behind TCP fault proxies, and librdkafka's mock cluster; prints the table of scenarios. The
# test command (scripts/test.sh) runs every scenario with short faults.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh
ensure_build_tools
# The harness starts its own PostgreSQL, Redis and ClickHouse servers from these packages.
command -v clickhouse-server >/dev/null 2>&1 || ensure_packages clickhouse-server clickhouse-client
command -v redis-server >/dev/null 2>&1 || ensure_packages redis-server
[ -n "$(pg_bin_dir)" ] || ensure_packages postgresql
export TEST_PG_BIN_DIR="${TEST_PG_BIN_DIR:-$(pg_bin_dir)}"
FAULTS=full cargo test --locked -p video-ranking-service --test faults -- --nocapture
