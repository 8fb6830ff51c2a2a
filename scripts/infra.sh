#!/usr/bin/env bash
# Local infrastructure for a bare Debian machine: PostgreSQL 15 and mosquitto on loopback,
# on non-default ports, with their data under the git-ignored .infra/ folder.
#
#   scripts/infra.sh up       install (apt-get) when missing, start, wait until both accept connections; idempotent
#   scripts/infra.sh down [postgres|mosquitto|registry]...
#                             stop all (or the named services) that this checkout started, waiting until each has ended
#                             (data is kept; `rm -rf .infra` resets it, and the /var/tmp cluster below if used)
#   scripts/infra.sh status   print what runs where; exit 1 when something is down
#   scripts/infra.sh env      print `export` lines for hosts and tests (eval "$(scripts/infra.sh env)")
#
# Also three OCI registries (Debian docker-registry, the CNCF distribution 2.8) for the proxy's tests: anonymous,
# basic auth (htpasswd; user propeller, password propeller), and bearer tokens from a token service the tests run
# themselves on the port after it (the registry trusts .infra/registry/token.crt; the tests sign with token.key).
#
# Settings (environment): PROPELLER_PG_PORT (55432), PROPELLER_MQTT_PORT (51883), PROPELLER_REGISTRY_PORT (55000;
# the basic-auth registry listens on the next port, the token one on the port after, its token service one above),
# PROPELLER_INFRA_DIR (.infra).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
infra="${PROPELLER_INFRA_DIR:-$root/.infra}"
pg_port="${PROPELLER_PG_PORT:-55432}"
mqtt_port="${PROPELLER_MQTT_PORT:-51883}"
pg_user=propeller
pg_pass=propeller
pg_db=propeller
pg_test_db=propeller_test
# PostgreSQL runs as its own user when this script runs as root, and that user must reach its data directory: a
# checkout under a private directory (`mktemp -d` makes it 0700) is out of its reach, so the cluster then lives under
# /var/tmp, named after this infra directory (decided from the directories' modes alone, so up, down and env agree).
others_can_enter() {
  local d="$1"
  while [ "$d" != / ]; do
    if [ -e "$d" ]; then
      case "$(stat -c %A "$d")" in ?????????[xt]) ;; *) return 1 ;; esac
    fi
    d="$(dirname "$d")"
  done
}
pg_dir="$infra/postgres"
if [ "$(id -u)" = 0 ] && ! others_can_enter "$(dirname "$infra")"; then
  pg_dir="/var/tmp/propeller-postgres-$(printf '%s' "$infra" | md5sum | cut -c1-12)"
fi
pg_data="$pg_dir/data"
pg_sock="$pg_dir/run"
pg_log="$pg_dir/postgres.log"
mq_dir="$infra/mosquitto"
reg_port="${PROPELLER_REGISTRY_PORT:-55000}"
reg_auth_port=$((reg_port + 1))
reg_token_port=$((reg_port + 2))
reg_realm_port=$((reg_port + 3))
reg_dir="$infra/registry"

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
    as_root timeout --kill-after=30s 10m apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null || die "apt-get update failed or took over 10 min"
    apt_updated=1
  fi
  log "apt-get install $*"
  # Bounded, and waiting at most 2 min for a dpkg lock another apt-get holds, instead of hanging its caller.
  as_root env DEBIAN_FRONTEND=noninteractive timeout --kill-after=30s 30m \
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed or took over 30 min"
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
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  if [ ${#need[@]} -gt 0 ]; then apt_install "${need[@]}"; fi
  # Debian's postinst may start a default cluster on 5432; we leave it alone and use our own.
  pg_bin >/dev/null || die "PostgreSQL binaries not found after install"
}

pg_running() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$pg_port" 2>/dev/null; }

# Over TCP with the password, as the hosts and tests connect: the same for our cluster and for a server of another
# checkout (or a developer's) already answering on this port, whose socket directory is not ours.
pg_psql() { PGPASSWORD="$pg_pass" PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p "$pg_port" -U "$pg_user" -d postgres "$@"; }

# Idempotent, and run whoever's server answers: one answering on the port is used as is, so it must have our databases.
pg_databases() {
  local out db
  out="$(pg_psql -tAc 'select 1' 2>&1)" \
    || die "postgres on 127.0.0.1:$pg_port refused user $pg_user (with the password this script sets): $out (stop that server, or set PROPELLER_PG_PORT)"
  for db in "$pg_db" "$pg_test_db"; do
    if [ "$(pg_psql -tAc "select 1 from pg_database where datname='$db'")" != 1 ]; then
      log "create database $db"
      # Another script may have created it since the check: only its absence afterwards is an error.
      out="$(pg_psql -qc "create database $db" 2>&1)" || [ "$(pg_psql -tAc "select 1 from pg_database where datname='$db'")" = 1 ] \
        || die "could not create database $db on 127.0.0.1:$pg_port: $out"
    fi
  done
}

pg_up() {
  local bin; bin="$(pg_bin)"
  if pg_running; then
    log "postgres already running on 127.0.0.1:$pg_port"
    pg_databases
    return 0
  fi
  mkdir -p "$infra" "$pg_dir" "$pg_sock"
  local owner; owner="$(pg_owner)"
  if [ "$(id -u)" = 0 ]; then chown -R "$owner" "$pg_dir"; chmod 755 "$infra" "$pg_dir"; fi
  if [ ! -s "$pg_data/PG_VERSION" ]; then
    log "initdb $pg_data"
    local pwfile="$pg_dir/.pw"
    printf '%s\n' "$pg_pass" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown "$owner" "$pwfile"
    as_pg "$bin/initdb" -D "$pg_data" -U "$pg_user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 || { cat "$pg_dir/initdb.log" >&2; die "initdb failed"; }
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
  # A postmaster.pid left by a crash or a reboot whose pid now runs another program makes postgres refuse to start.
  drop_stale "$pg_data/postmaster.pid" postgres postgres -D "$pg_data" || true
  log "starting postgres on 127.0.0.1:$pg_port"
  as_pg "$bin/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 start >/dev/null || { tail -20 "$pg_log" >&2; die "postgres failed to start"; }
  wait_for postgres 60 pg_running
  pg_databases
}

# Pid files survive a reboot (.infra is on disk), and the pid in one may since belong to an unrelated process: a pid
# counts only while /proc/PID/cmdline is the command this script started (argv[0] in any directory, then the same
# arguments), so neither `down` nor `up` signals or trusts a stranger.
cmdline_is() { # PID NAME ARGS...
  local pid="$1" name="$2" argv=()
  shift 2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  mapfile -d '' argv 2>/dev/null <"/proc/$pid/cmdline" || return 1
  [ ${#argv[@]} -gt 0 ] && [ "${argv[0]##*/}" = "$name" ] && [ "${argv[*]:1}" = "$*" ]
}

# pid_of FILE NAME ARGS...: prints the pid in FILE when that process runs the command NAME ARGS...
pid_of() {
  local file="$1" pid
  shift
  pid="$(head -1 "$file" 2>/dev/null)" && cmdline_is "$pid" "$@" && echo "$pid"
}

# drop_stale FILE WHAT NAME ARGS...: removes FILE (saying so) when it names no running NAME ARGS...; fails then.
drop_stale() {
  local file="$1" what="$2" pid
  shift 2
  [ -e "$file" ] || return 1
  pid_of "$file" "$@" >/dev/null && return 0
  pid="$(head -1 "$file" 2>/dev/null)" || true
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -d "/proc/$pid" ]; then
    log "$file is stale: pid $pid is now another program ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-80)), not $what; removing the file, not signalling it"
  else
    log "$file is stale: pid ${pid:-?} no longer runs; removing the file"
  fi
  rm -f "$file"
  return 1
}

mq_cmd=(mosquitto -c "$mq_dir/mosquitto.conf" -d)
mq_pid() { pid_of "$mq_dir/mosquitto.pid" "${mq_cmd[@]}"; }
mq_running() { mq_pid >/dev/null && port_open "$mqtt_port"; }

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

# One registry: name (anon|auth), port. Storage under .infra/registry/<name>; the auth one checks an htpasswd file
# (bcrypt of "propeller", made once with Python's crypt: the registry accepts only bcrypt).
reg_pid() { pid_of "$reg_dir/$1.pid" docker-registry serve "$reg_dir/$1.yml"; }
reg_running() { reg_pid "$1" >/dev/null && port_open "$2"; }

reg_start() {
  local name="$1" port="$2"
  if reg_running "$name" "$port"; then log "registry ($name) already running on 127.0.0.1:$port"; return 0; fi
  if port_open "$port"; then
    case "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/")" in
      200 | 401) log "an OCI registry already listens on 127.0.0.1:$port; using it"; return 0 ;;
      *) die "port $port is taken by a process that is not an OCI registry (set PROPELLER_REGISTRY_PORT)" ;;
    esac
  fi
  mkdir -p "$reg_dir/$name"
  local auth=""
  if [ "$name" = token ]; then
    if [ ! -s "$reg_dir/token.crt" ]; then
      openssl req -x509 -newkey rsa:2048 -nodes -keyout "$reg_dir/token.key" -out "$reg_dir/token.crt" -days 3650 \
        -subj /CN=propeller-test-token >/dev/null 2>&1 || die "openssl could not make the token signing key"
    fi
    auth="auth:
  token:
    realm: http://127.0.0.1:$reg_realm_port/token
    service: propeller-test-registry
    issuer: propeller-test-token
    rootcertbundle: $reg_dir/token.crt"
  elif [ "$name" = auth ]; then
    printf '%s\n' 'propeller:$2b$10$ZK93.RGmzfKx.hPtqJBtQef83YEBGc52QQK5X6.4echSbws/vh3kq' >"$reg_dir/htpasswd"
    auth="auth:
  htpasswd:
    realm: propeller
    path: $reg_dir/htpasswd"
  fi
  cat >"$reg_dir/$name.yml" <<EOF
# generated by scripts/infra.sh
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $reg_dir/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: propeller-test-registry
$auth
EOF
  log "starting registry ($name) on 127.0.0.1:$port"
  nohup docker-registry serve "$reg_dir/$name.yml" >"$reg_dir/$name.log" 2>&1 </dev/null &
  echo $! >"$reg_dir/$name.pid"
  wait_for "registry ($name)" 20 port_open "$port"
}

reg_up() {
  reg_start anon "$reg_port"
  reg_start auth "$reg_auth_port"
  reg_start token "$reg_token_port"
}

port_closed() { ! port_open "$1"; }

# stop_pid NAME PID PORT: SIGTERM, SIGKILL after 10 s, and returns once PID has ended and PORT is closed (an `up` right
# after must not find the port still open, take it for another checkout's service and use one about to vanish).
stop_pid() {
  local name="$1" pid="$2" port="$3" i
  log "stopping $name"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) still runs 10 s after SIGTERM; SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "error: $name (pid $pid) survived SIGKILL"; return 1; fi
  fi
  for ((i = 0; i < 50; i++)); do port_closed "$port" && return 0; sleep 0.1; done
  log "error: 127.0.0.1:$port still accepts connections after $name (pid $pid) ended"
  return 1
}

reg_down() {
  local name p port rc=0
  for name in anon auth token; do
    case "$name" in anon) port="$reg_port" ;; auth) port="$reg_auth_port" ;; token) port="$reg_token_port" ;; esac
    if drop_stale "$reg_dir/$name.pid" "registry ($name)" docker-registry serve "$reg_dir/$name.yml"; then
      stop_pid "registry ($name)" "$(reg_pid "$name")" "$port" || rc=1
      rm -f "$reg_dir/$name.pid"
    fi
  done
  return $rc
}

cmd_up() {
  ensure_packages
  pg_up
  mq_up
  reg_up
  log "up: postgres 127.0.0.1:$pg_port, mosquitto 127.0.0.1:$mqtt_port, registries 127.0.0.1:$reg_port (anonymous), :$reg_auth_port (basic auth), :$reg_token_port (bearer tokens)"
}

pg_down() {
  local bin
  # pg_ctl stop signals the pid in postmaster.pid without checking what runs under it.
  if bin="$(pg_bin)" && drop_stale "$pg_data/postmaster.pid" postgres postgres -D "$pg_data"; then
    log "stopping postgres"
    # pg_ctl -w waits until the server has ended (60 s at most); immediate mode when the fast shutdown did not finish.
    as_pg "$bin/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null \
      || as_pg "$bin/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null \
      || { log "error: postgres ($pg_data) did not stop"; return 1; }
  fi
}

mq_down() {
  local p rc=0
  if drop_stale "$mq_dir/mosquitto.pid" mosquitto "${mq_cmd[@]}"; then
    stop_pid mosquitto "$(mq_pid)" "$mqtt_port" || rc=1
    rm -f "$mq_dir/mosquitto.pid"
  fi
  return $rc
}

# Only what this checkout started (its pid files and data directory); a service of another checkout found on the
# ports is left alone. Every named service is tried; the exit status is 1 when one of them did not stop.
cmd_down() {
  local service rc=0
  [ $# -gt 0 ] || set -- postgres mosquitto registry
  for service in "$@"; do
    case "$service" in
      postgres | mosquitto | registry) ;;
      *) echo "usage: $0 down [postgres|mosquitto|registry]..." >&2; exit 2 ;;
    esac
  done
  for service in "$@"; do
    case "$service" in
      postgres) pg_down || rc=1 ;;
      mosquitto) mq_down || rc=1 ;;
      registry) reg_down || rc=1 ;;
    esac
  done
  return $rc
}

cmd_status() {
  local rc=0
  if pg_bin >/dev/null && pg_running; then echo "postgres: up 127.0.0.1:$pg_port (data $pg_data)"; else echo "postgres: down"; rc=1; fi
  if mq_running; then echo "mosquitto: up 127.0.0.1:$mqtt_port (pid $(mq_pid))";
  elif port_open "$mqtt_port"; then echo "mosquitto: a broker of another checkout answers on 127.0.0.1:$mqtt_port";
  else echo "mosquitto: down"; rc=1; fi
  local running=() stopped=()
  if reg_running anon "$reg_port"; then running+=(anon); else stopped+=(anon); fi
  if reg_running auth "$reg_auth_port"; then running+=(auth); else stopped+=(auth); fi
  if reg_running token "$reg_token_port"; then running+=(token); else stopped+=(token); fi
  if [ ${#stopped[@]} = 0 ]; then
    echo "registry: up 127.0.0.1:$reg_port, 127.0.0.1:$reg_auth_port (basic auth), 127.0.0.1:$reg_token_port (tokens from :$reg_realm_port)";
  elif [ ${#running[@]} = 0 ]; then echo "registry: down"; rc=1;
  else echo "registry: partly up (${running[*]} up; ${stopped[*]} down)"; rc=1; fi
  return $rc
}

# The registry folder of the registries answering on these ports: ours, or that of the checkout whose registries they
# are (reg_start uses those as they are; their data and the token key the tests sign with live in that folder).
reg_dir_in_use() {
  if reg_running anon "$reg_port" || ! port_open "$reg_port"; then echo "$reg_dir"; return; fi
  local f yml
  for f in /proc/[0-9]*/cmdline; do
    yml="$(tr '\0' ' ' <"$f" 2>/dev/null | sed -n 's|.*docker-registry serve \(/[^ ]*/anon\.yml\).*|\1|p')" || true
    if [ -n "$yml" ] && grep -qx "  addr: 127.0.0.1:$reg_port" "$yml" 2>/dev/null; then dirname "$yml"; return; fi
  done
  echo "$reg_dir"
}

cmd_env() {
  local registries; registries="$(reg_dir_in_use)"
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
export PROPELLER_TEST_REGISTRY=127.0.0.1:$reg_port
export PROPELLER_TEST_REGISTRY_AUTH=127.0.0.1:$reg_auth_port
export PROPELLER_TEST_REGISTRY_DIR=$registries/anon
export PROPELLER_TEST_REGISTRY_TOKEN=127.0.0.1:$reg_token_port
export PROPELLER_TEST_REGISTRY_TOKEN_REALM_PORT=$reg_realm_port
export PROPELLER_TEST_REGISTRY_TOKEN_KEY=$registries/token.key
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down [postgres|mosquitto|registry]...|status|env" >&2; exit 2 ;;
esac
