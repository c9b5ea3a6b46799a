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
trap 'stop_services' EXIT
trap 'exit 130' INT TERM
start_clickhouse
FAULTS=full cargo test --locked -p video-ranking-service --test faults -- --nocapture
