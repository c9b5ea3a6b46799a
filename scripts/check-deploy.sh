#!/usr/bin/env bash
# Checks deploy/: the Kubernetes manifests (schemas of Kubernetes 1.30, strict; the Prometheus
# Operator resources structurally; references to the Secrets, ConfigMaps, ports and health routes),
# the alerts (promtool check and unit tests), the metric names the alerts and the Grafana
# dashboard use (against docs/metrics.md), the k6 script's syntax, and live: the built binary in
# embedded mode under a little traffic, scraped by a real Prometheus that evaluates every alert and
# every dashboard query. Tools come from Debian (prometheus, nodejs, curl) and PyPI
# (kubernetes-validate, PyYAML, in ~/.cache/video-ranking-service/venv). Without CI=true a missing
# tool or binary skips its checks with a notice; with CI=true it is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
source scripts/lib/services.sh

venv="$HOME/.cache/video-ranking-service/venv"
py="$venv/bin/python"
bin="$CARGO_TARGET_DIR/debug/video-ranking-service"
k8s_version=1.30.0
passed=0
failed=0
skipped=0

work=$(mktemp -d /tmp/vrs-deploy.XXXXXX)
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs one check; its output is shown when it fails (on success, only its `note:` lines). Functions run here have `set -e` off
# (they are called in a condition), so they chain their steps with `|| return 1`.
check() {
  local name=$1
  shift
  if "$@" >"$work/check.out" 2>&1; then
    passed=$((passed + 1))
    log "ok: $name"
    grep '^note: ' "$work/check.out" | sed 's/^/    /' >&2 || true
  else
    failed=$((failed + 1))
    log "FAILED: $name"
    sed 's/^/    /' "$work/check.out" >&2
  fi
}

unavailable() { # check name, reason
  if [ "${CI:-}" = "true" ]; then
    failed=$((failed + 1))
    log "FAILED: $1: $2"
  else
    skipped=$((skipped + 1))
    log "notice: skipping $1: $2"
  fi
}

# --- tools --------------------------------------------------------------------------------------
have_python=true
if ! "$py" -c 'import yaml, kubernetes_validate' >/dev/null 2>&1; then
  have_python=false
  # Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
  if { python3 -c 'import ensurepip' >/dev/null 2>&1 || ensure_packages python3-venv; } &&
    { [ -x "$py" ] || python3 -m venv "$venv"; }; then
    log "installing kubernetes-validate and PyYAML into $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate PyYAML && have_python=true
  fi
fi
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || ensure_packages prometheus || true
have_prometheus=false
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 && have_prometheus=true
command -v node >/dev/null 2>&1 || ensure_packages nodejs || true
command -v curl >/dev/null 2>&1 || ensure_packages curl || true

checks() { "$py" -B scripts/deploy/checks.py "$@"; }

# --- manifests ----------------------------------------------------------------------------------
if $have_python; then
  mapfile -t builtin < <(checks builtin-files)
  check "kubernetes-validate --strict (Kubernetes $k8s_version): ${#builtin[@]} files" \
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "${builtin[@]}"
  check "every manifest is listed by a kustomization" checks kustomization
  check "ServiceMonitor and PrometheusRule structure" checks crds
  check "Secrets, ConfigMaps, ports, probes, security and the image agree" checks refs
else
  unavailable "manifest checks" "kubernetes-validate and PyYAML could not be installed into $venv"
fi

# The rendered whole, with the dashboard ConfigMap kustomize generates.
render_and_validate() {
  kubectl kustomize deploy/kubernetes >"$work/rendered.yaml" || return 1
  grep -q 'grafana_dashboard: "1"' "$work/rendered.yaml" || { echo "no dashboard ConfigMap rendered"; return 1; }
  "$venv/bin/kubernetes-validate" --strict --quiet --no-warn -k "$k8s_version" "$work/rendered.yaml" || return 1
  kubectl kustomize deploy/kubernetes/migrate >"$work/migrate.yaml"
  kubectl kustomize deploy/kubernetes/drain-spool >"$work/drain-spool.yaml"
}
# kubectl is not in Debian's current packages; the checks above already cover what kustomize
# lists, so without it (also under CI) this rendering is skipped with a notice.
if ! command -v kubectl >/dev/null 2>&1; then
  skipped=$((skipped + 1))
  log "notice: skipping kubectl kustomize: kubectl is not installed"
elif $have_python; then
  check "kubectl kustomize renders deploy/kubernetes (validated, strict)" render_and_validate
fi

# --- alerts and dashboard ------------------------------------------------------------------------
if $have_python; then
  checks extract-rules "$work/alerts.rules.yaml"
  cp deploy/prometheus/alerts.test.yaml "$work/alerts.test.yaml"
  check "runbook_url of every alert names a section of docs/operations.md" checks runbooks
  check "every metric of the alerts and the dashboard is in docs/metrics.md" checks metric-names
  check "Grafana dashboard structure" checks dashboard
fi
if $have_prometheus && $have_python; then
  check "promtool check rules" promtool check rules "$work/alerts.rules.yaml"
  check "promtool test rules deploy/prometheus/alerts.test.yaml" promtool test rules "$work/alerts.test.yaml"
else
  unavailable "promtool checks" "promtool (Debian package prometheus) or PyYAML is missing"
fi

# --- k6 script: k6 is not packaged; node checks the syntax of the ES module -----------------------
if command -v node >/dev/null 2>&1; then
  cp deploy/loadtest/feed_load_test.js "$work/feed_load_test.mjs"
  check "k6 script syntax (node --check)" node --check "$work/feed_load_test.mjs"
else
  unavailable "k6 script syntax" "node is not installed"
fi

# --- live ---------------------------------------------------------------------------------------
# A clean environment: no store URL, so the binary runs on its embedded adapters. An array, not a
# function, so that a background start's $! is the service itself (env execs it).
clean_env=(env -i PATH="$PATH" HOME="$HOME" APP_ENV=development RUST_LOG=warn DATA_DIR="$work/data")

traffic() { # app port; prints nothing, fails on any unexpected status
  local port=$1 n token status cursor page
  local base="http://127.0.0.1:$port/api/v1"
  for n in $(seq 1 20); do
    token=$("${clean_env[@]}" "$bin" dev-token --demo-user "$n") || return 1
    for _ in 1 2; do # the second first page is served from the cached session
      status=$(curl -s -o "$work/page.json" -w '%{http_code}' -H "Authorization: Bearer $token" \
        "$base/reels?limit=10")
      [ "$status" = 200 ] || { echo "GET /reels: $status"; return 1; }
    done
    cursor=$(sed -n 's/.*"next_cursor":"\([^"]*\)".*/\1/p' "$work/page.json")
    [ -n "$cursor" ] || { echo "no next_cursor in $(head -c 200 "$work/page.json")"; return 1; }
    page=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
      "$base/reels?limit=10&cursor=$cursor")
    [ "$page" = 200 ] || { echo "GET /reels with a cursor: $page"; return 1; }
    status=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" \
      -H 'content-type: application/json' "$base/events" \
      -d "{\"events\":[{\"event_id\":\"$(cat /proc/sys/kernel/random/uuid)\",\"video_id\":\"00000002-0000-4000-8000-000000000001\",\"type\":\"impression\"}]}")
    [ "$status" = 202 ] || { echo "POST /events: $status"; return 1; }
  done
}

live() {
  local app_port prom_port
  app_port=$(free_port) && prom_port=$(free_port) || return 1
  mkdir -p "$work/data" "$work/tsdb"
  "${clean_env[@]}" APP_HOST=127.0.0.1 APP_PORT="$app_port" DEMO_VIDEOS=2000 DEMO_USERS=200 \
    DEMO_CREATORS=200 RATE_LIMIT_PER_SECOND=0 "$bin" serve >"$work/service.log" 2>&1 &
  pids+=($!)
  wait_for "the service" 600 curl -fs "http://127.0.0.1:$app_port/api/v1/health/ready" ||
    { tail -n 20 "$work/service.log"; return 1; }
  cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $work/alerts.rules.yaml
scrape_configs:
  - job_name: video-ranking-service
    static_configs:
      - targets: ["127.0.0.1:$app_port"]
        labels:
          namespace: nova
          pod: video-ranking-service-local
YAML
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
  pids+=($!)
  wait_for "Prometheus" 300 curl -fs "http://127.0.0.1:$prom_port/-/ready" ||
    { tail -n 20 "$work/prometheus.log"; return 1; }
  traffic "$app_port" || { tail -n 20 "$work/service.log"; return 1; }
  checks live "http://127.0.0.1:$prom_port" "$(checks rule-count)"
}

if [ ! -x "$bin" ]; then
  unavailable "live check" "no built binary at $bin (cargo build)"
elif ! $have_prometheus || ! $have_python || ! command -v curl >/dev/null 2>&1; then
  unavailable "live check" "prometheus, PyYAML or curl is missing"
else
  check "live: Prometheus scrapes the service, evaluates every alert and dashboard query" live
fi

summary="deploy checks: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary+=", $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
