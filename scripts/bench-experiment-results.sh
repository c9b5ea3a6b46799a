#!/usr/bin/env bash
# Times the query behind an experiment's results (GET /api/v1/admin/experiments/{id}/results)
# on a synthetic experiment: EXPOSURES exposures (default 1,000,000) of 100,000 users in two
# variants, one event per exposure (complete, like or view) a minute after it, and 4x as many
# events of other (user, video) pairs over 20 days. Starts its own ClickHouse (or uses
# CLICKHOUSE_URL), creates a scratch database and drops it after. Prints the query time of three runs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh

exposures=${EXPOSURES:-1000000}
if [ -z "${CLICKHOUSE_URL:-}" ]; then
  start_clickhouse
  CLICKHOUSE_URL=$TEST_CLICKHOUSE_URL
fi
port=${CLICKHOUSE_URL##*:}
db="bench_results_$$"
ch() { clickhouse-client --port "$port" "$@"; }
trap 'ch -q "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT

cargo build --quiet --locked -p video-ranking-service -p vrs-adapter-clickhouse --examples --bins
bin="$CARGO_TARGET_DIR/debug/video-ranking-service"
CLICKHOUSE_URL=$CLICKHOUSE_URL CLICKHOUSE_DATABASE=$db "$bin" clickhouse-init >/dev/null
experiment=00000000-0000-4000-8000-000000000777
query=$(cargo run --quiet --locked -p vrs-adapter-clickhouse --example print-queries -- "$db" |
  python3 -c "
import sys
text = sys.stdin.read()
rest = text[text.index('-- experiment_totals'):].split('\n', 1)[1]
print(rest[:rest.index(';')].replace('00000000-0000-0000-0000-000000000000', '$experiment'))")

id() { echo "toUUID(concat('00000000-0000-4000-$1-', substring(toString(1000000000000 + ($2)), 2, 12)))"; }
user=$(id 8000 'n % 100000')
log "inserting $exposures exposures and $((exposures * 5)) events"
ch -q "INSERT INTO $db.experiment_exposures (exposure_id, experiment_id, variant, user_id, session_id, video_id, position, served_at)
  SELECT $(id b000 n), toUUID('$experiment'), if((n % 100000) % 2 = 0, 'control', 'treatment'), $user,
         $(id a000 'intDiv(n, 20)'), $(id 9000 '(n * 7) % 50000'), toUInt32(n % 20), toDateTime(now() - 86400 + (n % 80000))
  FROM (SELECT number AS n FROM system.numbers LIMIT $exposures)"
ch -q "INSERT INTO $db.engagement_events (event_id, user_id, video_id, creator_id, event_type, watch_ms, completion, occurred_at)
  SELECT $(id c000 n), $user, $(id 9000 '(n * 7) % 50000'), $user,
         if(n % 10 < 3, 'complete', if(n % 10 = 3, 'like', 'view')), toNullable(toUInt64(15000)),
         CAST(NULL AS Nullable(Float64)), toDateTime(now() - 86400 + (n % 80000) + 60)
  FROM (SELECT number AS n FROM system.numbers LIMIT $exposures)"
ch -q "INSERT INTO $db.engagement_events (event_id, user_id, video_id, creator_id, event_type, watch_ms, completion, occurred_at)
  SELECT $(id d000 n), $user, $(id 9000 '(n * 13) % 50000'), $user, 'view', CAST(NULL AS Nullable(UInt64)),
         CAST(NULL AS Nullable(Float64)), toDateTime(now() - 86400 * 20 + (n % 1700000))
  FROM (SELECT number AS n FROM system.numbers LIMIT $((exposures * 4)))"
for run in 1 2 3; do
  seconds=$(ch --time --format Null -q "$query" 2>&1 | tail -1)
  log "results of $exposures exposures: ${seconds} s (run $run)"
done
