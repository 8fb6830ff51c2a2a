#!/usr/bin/env bash
# Local infrastructure for a bare Debian machine: PostgreSQL 15 and mosquitto on loopback,
# on non-default ports, with their data under the git-ignored .infra/ folder.
#
#   scripts/infra.sh up       install (apt-get) when missing, start, wait until both accept connections; idempotent
#   scripts/infra.sh down     stop both (data is kept; `rm -rf .infra` resets it)
#   scripts/infra.sh status   print what runs where; exit 1 when something is down
#   scripts/infra.sh env      print `export` lines for hosts and tests (eval "$(scripts/infra.sh env)")
#
# Settings (environment): PROPELLER_PG_PORT (55432), PROPELLER_MQTT_PORT (51883), PROPELLER_INFRA_DIR (.infra).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra="${PROPELLER_INFRA_DIR:-$root/.infra}"
pg_port="${PROPELLER_PG_PORT:-55432}"
mqtt_port="${PROPELLER_MQTT_PORT:-51883}"
pg_user=propeller
pg_pass=propeller
pg_db=propeller
pg_test_db=propeller_test
pg_data="$infra/postgres/data"
pg_sock="$infra/postgres/run"
pg_log="$infra/postgres/postgres.log"
mq_dir="$infra/mosquitto"

log() { printf 'infra: %s\n' "$*" >&2; }
die() { printf 'infra: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found: install $* yourself, or use docker/compose.yaml"
  if [ "$apt_updated" = 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

# PostgreSQL refuses to run as root: when we are root, the cluster belongs to the `postgres` user.
pg_owner() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
as_pg() {
  local owner; owner="$(pg_owner)"
  if [ "$owner" = "$(id -un)" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name="$1" secs="$2"; shift 2
  local i
  for ((i = 0; i < secs * 10; i++)); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  die "$name did not accept connections within ${secs}s"
}

ensure_packages() {
  local need=()
  pg_bin >/dev/null || need+=(postgresql)
  command -v psql >/dev/null || need+=(postgresql-client)
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
  # Debian's postinst may start a default cluster on 5432; we leave it alone and use our own.
  pg_bin >/dev/null || die "PostgreSQL binaries not found after install"
}

pg_running() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null; }

pg_up() {
  local bin; bin="$(pg_bin)"
  if pg_running; then log "postgres already running on 127.0.0.1:$pg_port"; return 0; fi
  mkdir -p "$infra/postgres" "$pg_sock"
  local owner; owner="$(pg_owner)"
  if [ "$(id -u)" = 0 ]; then chown -R "$owner" "$infra/postgres"; chmod 755 "$infra" "$infra/postgres"; fi
  if [ ! -s "$pg_data/PG_VERSION" ]; then
    log "initdb $pg_data"
    local pwfile="$infra/postgres/.pw"
    printf '%s\n' "$pg_pass" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown "$owner" "$pwfile"
    as_pg "$bin/initdb" -D "$pg_data" -U "$pg_user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$infra/postgres/initdb.log" 2>&1 || { cat "$infra/postgres/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
    cat >>"$pg_data/postgresql.conf" <<EOF
# --- propeller (scripts/infra.sh) ---
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg_sock'
max_connections = 300
shared_buffers = 512MB
wal_buffers = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
# A development/test instance on loopback: a crash may lose the last few commits, never corrupt data.
synchronous_commit = off
# Backstop against a forgotten open transaction pinning the xid8 cursor of the event store (see docs/architecture.md).
idle_in_transaction_session_timeout = 60s
EOF
  fi
  log "starting postgres on 127.0.0.1:$pg_port"
  as_pg "$bin/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 start >/dev/null || { tail -20 "$pg_log" >&2; die "postgres failed to start"; }
  wait_for postgres 60 pg_running
  local db
  for db in "$pg_db" "$pg_test_db"; do
    if ! as_pg psql -h "$pg_sock" -p "$pg_port" -U "$pg_user" -d postgres -tAc "select 1 from pg_database where datname='$db'" | grep -q 1; then
      as_pg psql -h "$pg_sock" -p "$pg_port" -U "$pg_user" -d postgres -qc "create database $db" >/dev/null
    fi
  done
}

mq_pid() { [ -s "$mq_dir/mosquitto.pid" ] && cat "$mq_dir/mosquitto.pid"; }
mq_running() { local p; p="$(mq_pid)" && kill -0 "$p" 2>/dev/null && port_open "$mqtt_port"; }

mq_up() {
  if mq_running; then log "mosquitto already running on 127.0.0.1:$mqtt_port"; return 0; fi
  if port_open "$mqtt_port"; then
    # Like postgres above: a broker already listening there (another checkout's, or a developer's) is used as is.
    if command -v mosquitto_pub >/dev/null && mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -t propeller/infra/probe -n -q 0 2>/dev/null; then
      log "an MQTT broker already listens on 127.0.0.1:$mqtt_port; using it"
      return 0
    fi
    die "port $mqtt_port is taken by a process that is not an MQTT broker (set PROPELLER_MQTT_PORT)"
  fi
  mkdir -p "$mq_dir/data"
  local bin; bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
  cat >"$mq_dir/mosquitto.conf" <<EOF
# generated by scripts/infra.sh
user $(id -un)
pid_file $mq_dir/mosquitto.pid
persistence true
persistence_location $mq_dir/data/
log_dest file $mq_dir/mosquitto.log
log_type error
log_type warning
log_type notice
listener $mqtt_port 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 100000
# Without it, Nagle on the broker's side and delayed ACKs on the client's put ~40 ms into every request/response hop.
set_tcp_nodelay true
EOF
  log "starting mosquitto on 127.0.0.1:$mqtt_port"
  rm -f "$mq_dir/mosquitto.pid"
  "$bin" -c "$mq_dir/mosquitto.conf" -d
  wait_for mosquitto 20 mq_running
}

cmd_up() {
  ensure_packages
  pg_up
  mq_up
  log "up: postgres 127.0.0.1:$pg_port, mosquitto 127.0.0.1:$mqtt_port"
}

cmd_down() {
  local bin
  if bin="$(pg_bin)" && [ -s "$pg_data/postmaster.pid" ]; then
    log "stopping postgres"
    as_pg "$bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null || true
  fi
  local p
  if p="$(mq_pid)" && kill -0 "$p" 2>/dev/null; then
    log "stopping mosquitto"
    kill "$p" || true
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$mq_dir/mosquitto.pid"
}

cmd_status() {
  local rc=0
  if pg_bin >/dev/null && pg_running; then echo "postgres: up 127.0.0.1:$pg_port (data $pg_data)"; else echo "postgres: down"; rc=1; fi
  if mq_running; then echo "mosquitto: up 127.0.0.1:$mqtt_port (pid $(mq_pid))";
  elif port_open "$mqtt_port"; then echo "mosquitto: a broker of another checkout answers on 127.0.0.1:$mqtt_port";
  else echo "mosquitto: down"; rc=1; fi
  return $rc
}

cmd_env() {
  cat <<EOF
export MANAGER_POSTGRES_HOST=127.0.0.1
export MANAGER_POSTGRES_PORT=$pg_port
export MANAGER_POSTGRES_USER=$pg_user
export MANAGER_POSTGRES_PASS=$pg_pass
export MANAGER_POSTGRES_DB=$pg_db
export MANAGER_POSTGRES_SSL_MODE=disable
export MANAGER_MQTT_ADDRESS=tcp://127.0.0.1:$mqtt_port
export PROPLET_MQTT_ADDRESS=tcp://127.0.0.1:$mqtt_port
export PROXY_MQTT_ADDRESS=tcp://127.0.0.1:$mqtt_port
export PROPELLER_TEST_DB='Host=127.0.0.1;Port=$pg_port;Username=$pg_user;Password=$pg_pass;Database=$pg_test_db'
export PROPELLER_TEST_MQTT=tcp://127.0.0.1:$mqtt_port
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
