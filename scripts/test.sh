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
cargo test --locked --workspace --all-features
