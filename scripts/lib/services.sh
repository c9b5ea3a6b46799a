# Ephemeral servers for the test suite: each on a free loopback port, in a temporary directory,
# from Debian's packages (installed when missing and running as root), stopped on exit.
# A URL already set in the environment (TEST_DATABASE_URL, TEST_REDIS_URL, TEST_CLICKHOUSE_URL) is
# used instead.
# shellcheck shell=bash

SERVICES_DIR=""
SERVICE_PIDS=()
SERVICE_STOPS=()

# Sets SERVICES_DIR in the calling shell (never call it in a $(...) subshell).
init_services_dir() {
  if [ -z "$SERVICES_DIR" ]; then
    SERVICES_DIR=$(mktemp -d /tmp/vrs-services.XXXXXX)
    chmod 755 "$SERVICES_DIR"
  fi
}

stop_services() {
  local stop
  for stop in "${SERVICE_STOPS[@]}"; do
    eval "$stop" >/dev/null 2>&1 || true
  done
  SERVICE_STOPS=()
  [ -n "$SERVICES_DIR" ] && rm -rf "$SERVICES_DIR"
  SERVICES_DIR=""
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # description, attempts (0.1 s each), command...
  local what=$1 tries=$2
  shift 2
  for _ in $(seq 1 "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  log "$what did not come up"
  return 1
}

# The directory of PostgreSQL's server binaries (the newest installed major version).
pg_bin_dir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && printf '%s' "$dir"
}

start_postgres() {
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    log "PostgreSQL: using TEST_DATABASE_URL"
    return 0
  fi
  [ -n "$(pg_bin_dir)" ] || ensure_packages postgresql
  local bin dir port as=()
  bin=$(pg_bin_dir) || { log "PostgreSQL server binaries not found"; return 1; }
  init_services_dir
  dir="$SERVICES_DIR/postgres"
  port=$(free_port)
  mkdir -p "$dir"
  # initdb and postgres refuse to run as root.
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$dir"
    as=(runuser -u postgres --)
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  SERVICE_STOPS+=("${as[*]} $bin/pg_ctl -D $dir/data -m immediate stop")
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export TEST_PG_BIN_DIR="$bin"
  log "PostgreSQL on 127.0.0.1:$port"
}

start_redis() {
  if [ -n "${TEST_REDIS_URL:-}" ]; then
    log "Redis: using TEST_REDIS_URL"
    return 0
  fi
  command -v redis-server >/dev/null 2>&1 || ensure_packages redis-server
  local dir port
  init_services_dir
  dir="$SERVICES_DIR/redis"
  port=$(free_port)
  mkdir -p "$dir"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" >/dev/null
  wait_for "Redis" 50 redis-cli -p "$port" ping || return 1
  SERVICE_STOPS+=("kill \$(cat $dir/redis.pid)")
  export TEST_REDIS_URL="redis://127.0.0.1:$port"
  export TEST_REDIS_SERVER_BIN
  TEST_REDIS_SERVER_BIN=$(command -v redis-server)
  log "Redis on 127.0.0.1:$port"
}

# Sends SIGTERM to a server started here and waits (up to 10 s) for it to exit, so that its directory
# can be removed afterwards; ClickHouse 18.16 needs ~1.6 s to stop.
stop_pid() {
  local pid=$1
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

# ClickHouse from Debian's package (18.16 on Debian 12; a newer `clickhouse-server` on the PATH works
# too). There is no systemd: the server runs as a background job with a config of its own under the
# services directory. Exports TEST_CLICKHOUSE_URL=tcp://127.0.0.1:PORT (the native-protocol port;
# user `default`, empty password), the form the ClickHouse adapter takes.
start_clickhouse() {
  if [ -n "${TEST_CLICKHOUSE_URL:-}" ]; then
    log "ClickHouse: using TEST_CLICKHOUSE_URL"
    return 0
  fi
  command -v clickhouse-server >/dev/null 2>&1 || ensure_packages clickhouse-server clickhouse-client
  local dir tcp_port http_port pid
  init_services_dir
  dir="$SERVICES_DIR/clickhouse"
  tcp_port=$(free_port)
  http_port=$(free_port)
  mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas"
  cat >"$dir/users.xml" <<XML
<yandex>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
</yandex>
XML
  cat >"$dir/config.xml" <<XML
<yandex>
  <logger>
    <level>warning</level>
    <log>$dir/server.log</log>
    <errorlog>$dir/error.log</errorlog>
    <size>10M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$http_port</http_port>
  <tcp_port>$tcp_port</tcp_port>
  <path>$dir/data/</path>
  <tmp_path>$dir/tmp/</tmp_path>
  <user_files_path>$dir/user_files/</user_files_path>
  <format_schema_path>$dir/format_schemas/</format_schema_path>
  <users_config>$dir/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
</yandex>
XML
  clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 &
  pid=$!
  SERVICE_STOPS+=("stop_pid $pid")
  # HTTP /ping answers "Ok." once the server accepts queries (~0.2 s for 18.16); the native port
  # opens at the same time.
  wait_for "ClickHouse" 300 python3 -c "import sys, urllib.request as r
sys.exit(r.urlopen('http://127.0.0.1:$http_port/ping', timeout=1).read().strip() != b'Ok.')" ||
    { tail -n 20 "$dir/error.log" "$dir/stdout.log" >&2 2>/dev/null; return 1; }
  export TEST_CLICKHOUSE_URL="tcp://127.0.0.1:$tcp_port"
  log "ClickHouse on 127.0.0.1:$tcp_port (native), $http_port (HTTP)"
}
