#!/usr/bin/env bash
# The service against its performance floor, side by side in one run on this machine: a bare axum
# route doing only a cached page's unavoidable work (bootstrap/examples/floor.rs: RS256 verify,
# one Redis GET of a 200-item session, a 40-item JSON page), then the service (release build,
# embedded catalog with REDIS_URL, RATE_LIMIT_PER_SECOND=0) on: a cursor page of a cached session,
# first pages of returning users, first pages of new users (a cache miss each), and event batches
# of 100. Closed loop with wrk (1 thread, CONNECTIONS connections, DURATION each). Prints req/s,
# p99, server and Redis CPU per request, and each path's req/s as a ratio to the floor's.
#
#   scripts/bench-floor.sh                         # 10 connections, 15 s per path, 10,000 videos
#   DURATION=30s DEMO_VIDEOS=100000 scripts/bench-floor.sh
#   PROFILE="cursor miss" scripts/bench-floor.sh   # perf profiles of those paths (target/profiles)
#   OPEN_LOOP_RATES="2000 5000 10000"                # open-loop rates (default 2000 5000; none: skip)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh
ensure_build_tools
ensure_packages wrk curl redis-tools
if [ -n "${PROFILE:-}" ]; then ensure_packages linux-perf; fi

CONNECTIONS=${CONNECTIONS:-10}
DURATION=${DURATION:-15s}
USERS=${USERS:-500}
NEW_USERS=${NEW_USERS:-40000}
export DEMO_VIDEOS=${DEMO_VIDEOS:-10000}
export DEMO_USERS=${DEMO_USERS:-2000}

cargo build --release --locked -p video-ranking-service --bin video-ranking-service --example floor
bin="$CARGO_TARGET_DIR/release/video-ranking-service"
floor="$CARGO_TARGET_DIR/release/examples/floor"
trap stop_services EXIT
unset TEST_REDIS_URL
start_redis
redis_port=${TEST_REDIS_URL##*:}
work=$(mktemp -d)
SERVICE_STOPS+=("rm -rf $work")
port=$(free_port)
floor_port=$(free_port)

APP_HOST=127.0.0.1 APP_PORT=$port DATA_DIR="$work" RATE_LIMIT_PER_SECOND=0 \
  EVENTS_PER_USER_PER_SECOND=0 REDIS_URL="$TEST_REDIS_URL" RUST_LOG=warn \
  "$bin" serve >"$work/service.log" 2>&1 &
service_pid=$!
SERVICE_STOPS+=("stop_pid $service_pid")
wait_for "the service" 600 curl -fs "http://127.0.0.1:$port/api/v1/health/ready" ||
  { cat "$work/service.log"; exit 1; }
"$floor" "$floor_port" "$TEST_REDIS_URL" "$work/dev-jwt-public.pem" >"$work/floor.log" 2>&1 &
floor_pid=$!
SERVICE_STOPS+=("stop_pid $floor_pid")
wait_for "the floor" 100 grep -q listening "$work/floor.log"

start_rss=$(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$service_pid/status")
log "minting $USERS returning and $NEW_USERS new users' tokens"
DATA_DIR="$work" "$bin" dev-token --demo-user 1 --count "$USERS" --ttl 2h >"$work/tokens"
DATA_DIR="$work" "$bin" dev-token --demo-user 1000001 --count "$NEW_USERS" --ttl 2h >"$work/new-tokens"
# One cached session per returning user: its first page, then its cursor.
while read -r token; do
  cursor=$(curl -fs -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/reels?limit=40" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["next_cursor"])')
  printf '%s %s\n' "$token" "$cursor"
done <"$work/tokens" >"$work/cursors"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
redis_cpu() {
  redis-cli -p "$redis_port" INFO cpu | tr -d '\r' |
    awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'
}
redis_pid=$(redis-cli -p "$redis_port" INFO server | tr -d '\r' | awk -F: '/^process_id:/ {print $2}')
# Read syscalls of the Redis server: how many times it received something, i.e. round trips
# (commands that arrive together are read together).
redis_reads() { awk '/^syscr:/ {print $2}' "/proc/$redis_pid/io"; }
tick=$(getconf CLK_TCK)
rows=()
floor_rps=""

# name, mode, base URL, server pid, tokens file
run() {
  local name=$1 mode=$2 base=$3 pid=$4 tokens=$5 out cpu0 cpu1 r0 r1 io0 io1 requests rps p99
  redis-cli -p "$redis_port" CONFIG RESETSTAT >/dev/null
  cpu0=$(cpu_ticks "$pid"); r0=$(redis_cpu); io0=$(redis_reads)
  local perf_pid=""
  if [[ " ${PROFILE:-} " == *" $mode "* ]]; then
    # Samples of the server's own CPU while wrk runs (software clock: works without PMU).
    perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$pid" -o "$work/perf-$mode.data" \
      -- sleep "${DURATION%s}" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  out=$(MODE=$mode TOKENS_FILE=$tokens VIDEOS=$DEMO_VIDEOS \
    wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s scripts/loadtest/bench.lua "$base")
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    mkdir -p "${PROFILE_DIR:-target/profiles}"
    local report
    report() {
      perf report -i "$work/perf-$mode.data" --sort symbol --stdio -g none "$@" 2>/dev/null |
        grep -E '^ +[0-9]' | sed -E 's/ +- +- *$//; s/ +$//' | cut -c1-160 || true
    }
    report --no-children | head -60 >"${PROFILE_DIR:-target/profiles}/$mode-self.txt"
    report --children | head -150 >"${PROFILE_DIR:-target/profiles}/$mode-children.txt"
    log "profile of $mode: ${PROFILE_DIR:-target/profiles}/$mode-{self,children}.txt"
  fi
  cpu1=$(cpu_ticks "$pid"); r1=$(redis_cpu); io1=$(redis_reads)
  local commands
  commands=$(redis-cli -p "$redis_port" INFO stats | tr -d '\r' |
    awk -F: '/^total_commands_processed:/ {print $2}')
  redis-cli -p "$redis_port" INFO commandstats | tr -d '\r' | grep '^cmdstat' |
    sed "s/^/$mode /" >>"$work/commandstats"
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  local non2xx
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$floor_rps" ] && floor_rps=$rps
  local rss
  rss=$(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$pid/status")
  rows+=("$(python3 -c "
requests, ticks, tick, redis = $requests, $cpu1 - $cpu0, $tick, $r1 - $r0
print('| $name | $rps | $p99 | %.0f µs | %.0f µs | %.1f | %.1f | %.2f | $rss |%s' % (
    ticks / tick / requests * 1e6, redis / requests * 1e6, $commands / requests,
    ($io1 - $io0) / requests,
    $rps / $floor_rps,
    ' ${non2xx:+ ($non2xx non-2xx)}'))")")
  log "$name: $rps req/s, p99 $p99"
}

run "floor" floor "http://127.0.0.1:$floor_port" "$floor_pid" "$work/tokens"
run "cursor page (cached session)" cursor "http://127.0.0.1:$port" "$service_pid" "$work/cursors"
run "first page, $USERS returning users" first "http://127.0.0.1:$port" "$service_pid" "$work/tokens"
run "first page, a new user each request ($DEMO_VIDEOS videos)" miss "http://127.0.0.1:$port" "$service_pid" "$work/new-tokens"
run "POST /events, 100 per batch" events "http://127.0.0.1:$port" "$service_pid" "$work/tokens"

# Open loop: requests sent at a fixed rate whatever the answers, latency counted from when each
# was due (oha --latency-correction: no coordinated omission), for the floor and a cursor page.
open_rows=()
if [ "${OPEN_LOOP_RATES:-2000 5000}" != "none" ]; then
  if ! command -v oha >/dev/null; then
    log "installing oha (open-loop load generator) from the crate registry"
    cargo install oha --version 1.16.0 --locked >/dev/null
  fi
  read -r open_token open_cursor <"$work/cursors"
  for rate in ${OPEN_LOOP_RATES:-2000 5000}; do
    for target in floor cursor; do
      if [ "$target" = floor ]; then
        url="http://127.0.0.1:$floor_port/floor"
      else
        url="http://127.0.0.1:$port/api/v1/reels?limit=40&cursor=$open_cursor"
      fi
      oha -z "$DURATION" -q "$rate" --latency-correction -c 64 --no-tui --output-format json \
        -H "Authorization: Bearer $open_token" "$url" >"$work/oha.json"
      open_rows+=("$(python3 - "$work/oha.json" "$target" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
ms = lambda v: "%.2f ms" % (v * 1e3) if v is not None else "-"
codes = r.get("statusCodeDistribution", {})
ok = sum(n for c, n in codes.items() if c.startswith("2"))
total = sum(codes.values()) or 1
print("| %s | %s | %.0f | %s | %s | %s | %s | %.1f %% |" % (
    sys.argv[2], sys.argv[3], s["requestsPerSec"], ms(p.get("p50")), ms(p.get("p99")),
    ms(p.get("p99.9")), ms(s.get("slowest")), 100.0 * ok / total))
PY
)")
      log "open loop $target at $rate req/s: ${open_rows[-1]}"
    done
  done
fi

hits=$(curl -fs "http://127.0.0.1:$port/metrics" | awk '/^feed_cache_(hits|misses)_total/ {printf "%s=%s ", $1, $2}')
echo
echo "wrk -t1 -c$CONNECTIONS -d$DURATION; embedded catalog of $DEMO_VIDEOS videos with Redis; $(nproc) CPUs"
echo "| path | req/s | p99 | server CPU per request | Redis CPU per request | Redis commands per request | Redis reads per request | ratio to floor | RSS after |"
echo "|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
if [ ${#open_rows[@]} -gt 0 ]; then
  echo
  echo "open loop (oha -q RATE --latency-correction -c 64, $DURATION each): one cached session's cursor page"
  echo "| target | rate | achieved req/s | p50 | p99 | p99.9 | slowest | 2xx |"
  echo "|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${open_rows[@]}"
fi
echo "feed cache: $hits"
echo "service RSS at start: $start_rss"
echo
echo "Redis commands by path (calls, µs per call):"
awk '{split($2, f, /[:,=]/); printf "  %-8s %-24s calls=%-9s usec_per_call=%s\n", $1, f[1], f[3], f[7]}' \
  "$work/commandstats"

