#!/usr/bin/env bash
# The main job (README's first command): the end-to-end demo on one machine.
# Infrastructure up (PostgreSQL + mosquitto on loopback), manager and one proplet built and started, the addition task
# created and started (inline wasm, function main, inputs 10 and 32), `result: 42` printed with the task's history,
# and everything this script started stopped again.
#
# `scripts/demo.sh --image` also runs the addition module as an image task: pushed to the local OCI registry
# (scripts/infra.sh), fetched by a propeller-proxy and streamed to the proplet in MQTT chunks (docs/proxy.md).
#
# Settings (environment): DEMO_HTTP_PORT (first port tried for the manager, default 7070), DEMO_SCHEMA (event store
# schema, default demo), DEMO_KEEP_LOGS=1 (keep the log folder), DEMO_KEEP_INFRA=1 (leave PostgreSQL, mosquitto and
# the registries running when this script started them; it stops those it started otherwise, and only those),
# DEMO_HTTP=tcp (never use curl). Needs the .NET SDK; scripts/infra.sh installs what else it needs (PostgreSQL,
# mosquitto, docker-registry, curl, openssl) with apt-get; jq is used when present.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

image=0
case "${1:-}" in
  "") ;;
  --image) image=1 ;;
  *) echo "usage: $0 [--image]" >&2; exit 2 ;;
esac

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\ndemo: error: %s\n' "$*" >&2
  for f in "$logs"/*.log; do
    [ -f "$f" ] && { printf -- '--- last lines of %s\n' "$f" >&2; tail -n 25 "$f" >&2; }
  done
  exit 1
}

logs="$(mktemp -d "${TMPDIR:-/tmp}/propeller-demo.XXXXXX")"
pids=()
infra_started=() # the services of scripts/infra.sh that were down before this run's `up`
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  # A process that has not ended 10 s after SIGTERM is killed.
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  # The services this script started too (DEMO_KEEP_INFRA=1 leaves them running); those that ran before stay.
  if [ ${#infra_started[@]} -gt 0 ] && [ "${DEMO_KEEP_INFRA:-0}" != 1 ]; then
    scripts/infra.sh down "${infra_started[@]}" >/dev/null 2>&1 \
      || echo "demo: stopping the infrastructure failed (scripts/infra.sh down ${infra_started[*]})" >&2
  fi
  if [ "${DEMO_KEEP_LOGS:-0}" = 1 ] || [ "$rc" != 0 ]; then echo "demo: logs kept in $logs" >&2; else rm -rf "$logs"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# http_on PORT METHOD PATH [JSON]: prints the response body of 127.0.0.1:PORT; fails on a non-2xx status, and after
# 10 s (a server that accepts and never answers must not stall the waits below for ever). Uses curl when present, else
# bash's /dev/tcp with HTTP/1.0 (no chunked encoding; DEMO_HTTP=tcp forces it), where curl is missing.
http_on() {
  local to="$1" method="$2" path="$3" body="${4:-}"
  if [ "${DEMO_HTTP:-}" != tcp ] && command -v curl >/dev/null; then
    if [ -n "$body" ]; then
      curl -fsS --connect-timeout 3 --max-time 10 -X "$method" "http://127.0.0.1:$to$path" -H 'content-type: application/json' -d "$body"
    else
      curl -fsS --connect-timeout 3 --max-time 10 -X "$method" "http://127.0.0.1:$to$path"
    fi
    return
  fi
  local response status
  exec 3<>"/dev/tcp/127.0.0.1/$to" || return 1
  printf '%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    "$method" "$path" "${#body}" "$body" >&3
  # The server closes the connection after an HTTP/1.0 response; timeout bounds the read when it never does.
  response="$(timeout 10 cat <&3)" || { exec 3<&-; return 1; }
  exec 3<&-
  status="$(printf '%s' "$response" | head -1 | cut -d' ' -f2)"
  printf '%s' "$response" | sed '1,/^\r\{0,1\}$/d'
  [[ "$status" == 2* ]]
}
# http METHOD PATH [JSON]: http_on the manager.
http() { http_on "$port" "$@"; }

step "[1/6] infrastructure (PostgreSQL + mosquitto on loopback)"
# What is down now is what this run starts (and stops again at the end); what runs already (ours from an earlier run,
# or another checkout's) is left running. A partly running service (`registry: partly up`) counts as running.
before="$(scripts/infra.sh status 2>/dev/null || true)"
for service in postgres mosquitto registry; do
  if grep -qx "$service: down" <<<"$before"; then infra_started+=("$service"); fi
done
scripts/infra.sh up
# Through a variable: set -e does not see a failing command substitution inside eval's argument.
env_lines="$(scripts/infra.sh env)" || fail "scripts/infra.sh env failed"
eval "$env_lines"

step "[2/6] building the manager and the proplet (Release)"
# --disable-build-servers: no MSBuild nodes, compiler server (VBCSCompiler) or Razor server left running after the
# build, since the demo stops everything it started.
for project in src/Manager/Propeller.Manager.csproj src/Edge/Propeller.Edge.csproj; do
  echo "building $project"
  dotnet build "$project" -c Release --disable-build-servers -nologo -v minimal -clp:NoSummary | sed 's/^/  /'
done
manager_dll=src/Manager/bin/Release/net10.0/propeller-manager.dll
proplet_dll=src/Edge/bin/Release/net10.0/propeller-proplet.dll

# A free port, and names of our own: other managers and proplets may share this broker and database.
port="${DEMO_HTTP_PORT:-7070}"
while (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; do port=$((port + 1)); done
run="demo-$$-$RANDOM"
proplet_id="$(cat /proc/sys/kernel/random/uuid 2>/dev/null || echo "proplet-$run")"
api="http://127.0.0.1:$port"

step "[3/6] starting the manager on $api and proplet $proplet_id"
MANAGER_HTTP_HOST=127.0.0.1 MANAGER_HTTP_PORT="$port" MANAGER_TENANT_ID="$run" MANAGER_CHANNEL_ID=demo \
  MANAGER_ENTITY_ID="manager-$run" EventStore__Schema="${DEMO_SCHEMA:-demo}" \
  dotnet "$manager_dll" >"$logs/manager.log" 2>&1 &
pids+=($!)

# wait_for DESCRIPTION SECONDS COMMAND...: retries COMMAND every half second, printing a dot per second.
wait_for() {
  local what="$1" seconds="$2"
  shift 2
  printf 'waiting for %s ' "$what"
  for ((i = 0; i < seconds * 2; i++)); do
    if "$@" >/dev/null 2>&1; then printf ' ok\n'; return 0; fi
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || { printf '\n'; fail "a process exited early"; }; done
    if ((i % 2 == 0)); then printf '.'; fi
    sleep 0.5
  done
  printf '\n'
  fail "timed out waiting for $what"
}
proplet_listed() { http GET /proplets | grep -q "\"id\":\"$proplet_id\""; }
wait_for "the manager (/health/ready)" 120 http GET /health/ready
echo "dashboard: $api/ui/ (live while the demo runs; docs/dashboard.md)"
# The proplet starts once the manager listens, so the manager receives its discovery (sent on every connect).
PROPLET_TENANT_ID="$run" PROPLET_CHANNEL_ID=demo PROPLET_ENTITY_ID="$proplet_id" PROPLET_API_KEY=demo \
  PROPLET_LIVELINESS_INTERVAL=2 PROPLET_METRICS_INTERVAL=0 \
  dotnet "$proplet_dll" >"$logs/proplet.log" 2>&1 &
pids+=($!)
wait_for "the proplet to register (GET /proplets)" 60 proplet_listed

step "[4/6] creating the addition task (main(10, 32))"
created="$(http POST /tasks '{"name":"main","file":"AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL","inputs":[10,32]}')" \
  || fail "POST /tasks failed"
task_id="$(printf '%s' "$created" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)"
[ -n "$task_id" ] || fail "no task id in: $created"
echo "task $task_id"

step "[5/6] starting it and waiting for the result"
http POST "/tasks/$task_id/start" >/dev/null || fail "POST /tasks/$task_id/start failed"
state=""
printf 'waiting for the task '
for ((i = 0; i < 120; i++)); do
  task="$(http GET "/tasks/$task_id")" || fail "GET /tasks/$task_id failed"
  state="$(printf '%s' "$task" | grep -o '"state":[0-9]*' | head -1 | cut -d: -f2)"
  [ "$state" = 3 ] || [ "$state" = 4 ] && break
  printf '.'
  sleep 0.5
done
printf '\n'
[ "$state" = 3 ] || fail "task ended in state ${state:-unknown}: $task"
# The proplet sends results as a JSON string, like the original ("results":"42").
result="$(printf '%s' "$task" | grep -o '"results":"[^"]*"' | head -1 | cut -d'"' -f4)"
echo "result: $result"
[ "$result" = 42 ] || fail "expected 42"

step "[6/6] the task's history (GET /tasks/$task_id/history)"
history="$(http GET "/tasks/$task_id/history")" || fail "GET /tasks/$task_id/history failed"
if command -v jq >/dev/null; then
  printf '%s' "$history" | jq -r '.[] | "v\(.version)  \(.timestamp)  \(.type)  \(.data | del(.task_id, .spec) | tostring)"'
else
  printf '%s\n' "$history" | sed 's/},{"version"/}\n{"version"/g'
fi

if [ "$image" = 1 ]; then
  step "[+] the same module as an image task: registry -> propeller-proxy -> MQTT chunks -> proplet"
  dotnet build src/Proxy/Propeller.Proxy.csproj -c Release --disable-build-servers -nologo -v minimal -clp:NoSummary | sed 's/^/  /'
  proxy_dll=src/Proxy/bin/Release/net10.0/propeller-proxy.dll
  printf '%s' 'AGFzbQEAAAABBwFgAn9/AX8DAgEABwgBBG1haW4AAAoJAQcAIAAgAWoL' | base64 -d >"$logs/add.wasm"
  image_ref="$PROPELLER_TEST_REGISTRY/demo/add:$run"
  dotnet "$proxy_dll" push "$logs/add.wasm" "$image_ref" || fail "push to $image_ref failed"
  proxy_port=$((port + 1))
  while (: </dev/tcp/127.0.0.1/"$proxy_port") 2>/dev/null; do proxy_port=$((proxy_port + 1)); done
  PROXY_TENANT_ID="$run" PROXY_CHANNEL_ID=demo PROXY_ENTITY_ID="proxy-$run" PROXY_API_KEY=demo \
    PROXY_HTTP_HOST=127.0.0.1 PROXY_HTTP_PORT="$proxy_port" dotnet "$proxy_dll" >"$logs/proxy.log" 2>&1 &
  pids+=($!)
  proxy_up() { http_on "$proxy_port" GET /health | grep -q '"mqtt_connected":true'; }
  wait_for "the proxy (GET /health on :$proxy_port)" 60 proxy_up
  created="$(http POST /tasks "{\"name\":\"main\",\"image_url\":\"$image_ref\",\"inputs\":[10,32]}")" || fail "POST /tasks failed"
  image_task="$(printf '%s' "$created" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)"
  [ -n "$image_task" ] || fail "no task id in: $created"
  http POST "/tasks/$image_task/start" >/dev/null || fail "POST /tasks/$image_task/start failed"
  state=""
  printf 'waiting for the image task '
  for ((i = 0; i < 120; i++)); do
    task="$(http GET "/tasks/$image_task")" || fail "GET /tasks/$image_task failed"
    state="$(printf '%s' "$task" | grep -o '"state":[0-9]*' | head -1 | cut -d: -f2)"
    [ "$state" = 3 ] || [ "$state" = 4 ] && break
    printf '.'
    sleep 0.5
  done
  printf '\n'
  [ "$state" = 3 ] || fail "image task ended in state ${state:-unknown}: $task"
  result="$(printf '%s' "$task" | grep -o '"results":"[^"]*"' | head -1 | cut -d'"' -f4)"
  echo "image task $image_task ($image_ref): result $result"
  [ "$result" = 42 ] || fail "expected 42 from the image task"
  # The proxy's counters: this run's proxy, started above, must have pulled the module from the registry.
  metrics="$(http_on "$proxy_port" GET /metrics)" || fail "GET /metrics on the proxy (:$proxy_port) failed"
  printf '%s\n' "$metrics" | grep -E '^proxy_(fetches|fetch_bytes|chunks_published)_total' | sed 's/^/  /' || true
  fetches="$(printf '%s\n' "$metrics" | sed -n 's/^proxy_fetches_total \([0-9][0-9]*\).*/\1/p' | head -1)"
  [ "${fetches:-0}" -gt 0 ] || fail "the proxy reports no fetch (proxy_fetches_total ${fetches:-missing})"
fi

echo
echo "demo: done; stopping the manager and the proplet"
