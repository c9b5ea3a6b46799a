#!/usr/bin/env bash
# Runs the whole fault-injection harness (tests/faults.rs with FAULTS=full): the built binary
# (`serve` and two `worker` processes) on its own PostgreSQL and Redis, a ClickHouse database behind
# a TCP fault proxy, and librdkafka's mock cluster; prints the table of scenarios. The test command
# (scripts/test.sh) runs the bounded subset.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh
ensure_build_tools
trap 'stop_services' EXIT
trap 'exit 130' INT TERM
start_clickhouse
FAULTS=full cargo test --locked -p video-ranking-service --test faults -- --nocapture
