# Shared by the scripts: toolchain checks and the build cache location.
# shellcheck shell=bash

# Build output lives outside the clone, so fresh clones (CI) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/video-ranking-service/target}"

log() { printf '==> %s\n' "$*" >&2; }

# Installs Debian packages that are missing, when running as root; otherwise says what to install.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "missing packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})"
    return 1
  fi
}

# The C toolchain that crypto and compression crates build with, and a Rust toolchain.
ensure_build_tools() {
  if command -v dpkg-query >/dev/null 2>&1; then
    # zlib1g-dev: rdkafka builds librdkafka from source (./configure + make) against zlib.
    ensure_packages build-essential pkg-config zlib1g-dev
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: install a Rust toolchain (1.89 or newer), e.g. with rustup"
    return 1
  fi
}
