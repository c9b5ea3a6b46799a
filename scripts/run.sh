#!/usr/bin/env bash
# Runs the service. With no DATABASE_URL/REDIS_URL/CLICKHOUSE_URL/KAFKA_BROKERS set it runs on the
# in-memory adapters with a generated demo catalog on http://localhost:${APP_PORT:-8000}.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
ensure_build_tools
exec cargo run --release --locked -p video-ranking-service -- "${@:-serve}"
