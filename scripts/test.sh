#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of the workspace, including the
# black-box tests of the built binary.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/common.sh
ensure_build_tools

log "cargo fmt --check"
cargo fmt --all --check
log "cargo clippy"
cargo clippy --locked --workspace --all-targets --all-features -- -D warnings
log "cargo test"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --locked --workspace --all-features 2>&1 | tee "$results"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
