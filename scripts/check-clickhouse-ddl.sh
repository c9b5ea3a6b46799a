#!/usr/bin/env bash
# Checks clickhouse/init-db*.sql and the ClickHouse adapter's query texts against a modern engine:
# chdb (PyPI; ClickHouse 26.x in-process) in a virtualenv under ~/.cache/video-ranking-service/venv,
# created on first use and reused after. The first install downloads ~900 MB (chdb with pandas and
# pyarrow; measured 27 s); a reused one costs ~1 s. Without CI=true, a failed install skips the
# check with a notice; with CI=true it is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh

venv="$HOME/.cache/video-ranking-service/venv"
started=$SECONDS

skip_or_fail() {
  if [ "${CI:-}" = "true" ]; then
    log "chdb: $1"
    exit 1
  fi
  log "notice: $1; skipping the ClickHouse DDL check against a modern engine"
  exit 0
}

if ! "$venv/bin/python" -c 'import chdb' >/dev/null 2>&1; then
  # Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
  python3 -c 'import ensurepip' >/dev/null 2>&1 || ensure_packages python3-venv ||
    skip_or_fail "python3-venv is missing"
  log "installing chdb into $venv"
  { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check chdb; } ||
    skip_or_fail "could not install chdb into $venv"
fi

queries=$(mktemp)
trap 'rm -f "$queries"' EXIT
cargo run --quiet --locked -p vrs-adapter-clickhouse --example print-queries -- nova_check >"$queries"
"$venv/bin/python" scripts/check-clickhouse-ddl.py "$queries"
log "ClickHouse DDL check against chdb took $((SECONDS - started)) s"
