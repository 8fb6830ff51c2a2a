#!/usr/bin/env bash
# The single test entry point (README's second command, called by .ci/run).
# Starts PostgreSQL + mosquitto on loopback (scripts/infra.sh), installs the test toolchains, builds the solution
# in Release, runs every test project under tests/, and ends with one line: `N passed, N failed, N skipped`.
#
#   scripts/test.sh                 everything
#   scripts/test.sh Domain.Tests    only the named test projects (folder names under tests/)
#
# Each step after the toolchains runs in a process group of its own and what it leaves behind is stopped when it ends;
# the whole run has a time budget (PROPELLER_TEST_BUDGET_MINUTES, 80) so the count line comes before CI's 90-minute
# limit (docs/operations.md, "Test runs").
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

step() { printf '\n==> %s\n' "$*"; }

# The whole run has a time budget (CI stops the job at 90 min): every bounded step gets at most what is left of it,
# less a margin for stopping that step and printing the count, so the last line is printed within the budget.
# PROPELLER_TEST_BUDGET_MINUTES (default 80; decimals allowed) changes it. SECONDS counts from the script's start.
budget_seconds="$(awk -v m="${PROPELLER_TEST_BUDGET_MINUTES:-80}" 'BEGIN { if (m ~ /^[0-9]+([.][0-9]+)?$/ && m > 0) printf "%d", m * 60 }')"
[ -n "$budget_seconds" ] || { echo "test.sh: PROPELLER_TEST_BUDGET_MINUTES must be a positive number of minutes" >&2; exit 2; }
budget_label="${PROPELLER_TEST_BUDGET_MINUTES:-80}" budget_margin=60
[ "$budget_seconds" -ge 600 ] || budget_margin=$(( budget_seconds / 10 > 45 ? budget_seconds / 10 : 45 ))

# Runs one step (argv[2:]) in its own session and process group, for at most argv[1] seconds (then SIGTERM to the
# group, SIGKILL 30 s later), as a child subreaper: a process the step leaves behind (a manager, proplet, proxy or
# mosquitto a test started, or a Chromium, which Playwright starts in a session of its own) is re-parented to this
# runner when its parent dies instead of to init. When the step ends, normally or not, whatever is left in its process
# group or below the runner is stopped (SIGTERM, SIGKILL 5 s later), so nothing of a killed or crashed test host keeps
# the cores busy for the next projects or outlives the run. Processes outside the step (the infrastructure, which
# infra.sh started before) are in neither set. Exit: the step's status, 124 when its time ran out, 128+N on signal N.
read -r -d '' step_runner <<'PY' || true
import ctypes, os, signal, subprocess, sys, time

limit, what, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3:]
me = os.getpid()
try:
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
except (OSError, AttributeError):
    pass
child = subprocess.Popen(cmd, start_new_session=True)  # setsid(): its own session and process group (pgid = pid)
group = child.pid
stop_signal = []


def on_signal(number, _frame):
    stop_signal.append(number)


for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(number, on_signal)


def kill_group(number):
    try:
        os.killpg(group, number)
    except OSError:
        pass


def exited():
    # WNOWAIT: the ended child stays a zombie, so its pid (the group's id) cannot be reused until the cleanup is done.
    try:
        return os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def processes():
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            fields = stat[stat.rindex(')') + 2:].split()
            yield int(entry), fields[0], int(fields[1]), int(fields[2]), stat[stat.index('(') + 1:stat.rindex(')')]


def leftovers():
    """Living processes in the step's group or below this runner (but the step's own ended child)."""
    table = list(processes())
    children = {}
    for pid, _, ppid, _, _ in table:
        children.setdefault(ppid, []).append(pid)
    below, stack = set(), [me]
    while stack:
        for pid in children.get(stack.pop(), []):
            if pid not in below:
                below.add(pid)
                stack.append(pid)
    return {pid: name for pid, state, _, pgid, name in table
            if (pgid == group or pid in below) and pid not in (me, child.pid) and state not in 'ZX'}


def reap():
    """Reaps the ended orphans re-parented to this runner (not the step's own child: that one last)."""
    for pid, state, ppid, _, _ in list(processes()):
        if ppid == me and pid != child.pid and state == 'Z':
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


deadline, term_at, timed_out, last_reap = time.monotonic() + limit, None, False, time.monotonic()
while not exited():
    now = time.monotonic()
    if term_at is None and (now >= deadline or stop_signal):
        timed_out = not stop_signal
        term_at = now
        kill_group(signal.SIGTERM)
    elif term_at is not None and now - term_at >= 30:
        kill_group(signal.SIGKILL)
    if now - last_reap >= 5:
        reap()
        last_reap = now
    time.sleep(0.2)

left = leftovers()
if left:
    names = ', '.join(sorted({f'{name}' for name in left.values()}))
    print(f'test.sh: {what} left {len(left)} process(es) behind ({names}); stopping them', file=sys.stderr, flush=True)
    for number, grace in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        for attempt in range(int(grace / 0.2)):
            left = leftovers()
            if not left:
                break
            if attempt == 0 or number == signal.SIGKILL:
                kill_group(number)
                for pid in left:
                    try:
                        os.kill(pid, number)
                    except OSError:
                        pass
            reap()
            time.sleep(0.2)
    reap()
    left = leftovers()
    if left:
        print(f'test.sh: {what}: {len(left)} process(es) survived SIGKILL: {sorted(left)}', file=sys.stderr, flush=True)
rc = child.wait()
if stop_signal:
    sys.exit(128 + stop_signal[0])
if timed_out:
    sys.exit(124)
sys.exit(rc if rc >= 0 else 128 - rc)
PY

# bounded MINUTES WHAT COMMAND...: runs COMMAND through the step runner above for at most MINUTES, or what is left of
# the budget when that is less (a step with under a minute left does not start: it counts as failed), so one hang costs
# at most that, not the whole CI job. The bounds are generous for a slow, shared 2-core machine (the whole run takes
# ~20 min there; Manager.Tests alone 5-8).
bounded() {
  local minutes="$1" what="$2" rc=0 left limit note=""
  shift 2
  left=$((budget_seconds - budget_margin - SECONDS))
  if [ "$left" -lt 60 ]; then
    echo "test.sh: $what not run: the run's time budget ($budget_label min, PROPELLER_TEST_BUDGET_MINUTES) is spent; counted as failed" >&2
    return 125
  fi
  limit=$((minutes * 60))
  if [ "$left" -lt "$limit" ]; then limit="$left" note=" (what was left of the run's $budget_label-minute time budget)"; fi
  # In the background and waited for, so that a TERM or INT to this script reaches the trap (below) at once.
  python3 -c "$step_runner" "$limit" "$what" "$@" &
  step_pid=$!
  wait "$step_pid" || rc=$?
  step_pid=""
  if [ "$rc" = 124 ]; then echo "test.sh: $what timed out after $((limit / 60)) min $((limit % 60)) s$note; counted as failed" >&2; fi
  return "$rc"
}

# The last line is always the count, also when a step before the tests fails (set -e): that step is one failure.
total_passed=0 total_failed=0 total_skipped=0 broken=0 summarised=0
summary() {
  local rc=$?
  if [ "$summarised" = 0 ]; then
    echo "test.sh: stopped early (exit $rc)" >&2
    echo
    echo "$total_passed passed, $((total_failed + broken + 1)) failed, $total_skipped skipped"
    [ "$rc" != 0 ] || exit 1
  fi
}
trap summary EXIT
# Cancelled (CI stops the job, Ctrl-C): the running step is stopped by its runner first, then the count is printed.
step_pid=""
cancelled() {
  if [ -n "$step_pid" ]; then kill -TERM "$step_pid" 2>/dev/null || true; wait "$step_pid" 2>/dev/null || true; fi
  exit "$1"
}
trap 'cancelled 143' TERM
trap 'cancelled 130' INT

step "infrastructure"
scripts/infra.sh up
# Through a variable: set -e does not see a failing command substitution inside eval's argument.
env_lines="$(scripts/infra.sh env)"
eval "$env_lines"

step "test toolchains"
scripts/tools.sh

step "format check"
bounded 20 "the format check" dotnet format whitespace Propeller.sln --verify-no-changes

step "build (Release)"
# The compiler server and MSBuild's worker nodes outlive a build; stopped here (dotnet build-server shutdown) rather
# than found left behind by the step runner, which reported them on every run. --disable-build-servers would leave
# none, but compiles each of the solution's projects in a fresh compiler process (slower).
bounded 40 "the build" bash -c 'dotnet build Propeller.sln -c Release -nologo -clp:ErrorsOnly; rc=$?; dotnet build-server shutdown >/dev/null 2>&1; exit $rc'

results="$root/TestResults"
rm -rf "$results"
mkdir -p "$results"

projects=()
if [ $# -gt 0 ]; then
  for name in "$@"; do projects+=("tests/$name/$name.csproj"); done
else
  for p in tests/*/*.csproj; do projects+=("$p"); done
fi

# Leftover schemas of earlier runs: an end-to-end cluster (tests/EndToEnd.Tests/Cluster.cs; the dashboard's and the
# CLI's tests use it too) works in a schema `<prefix>_<8 hex digits>` that only its DisposeAsync drops, so a killed or
# crashed test host leaves it in the test database for good (the other suites reuse fixed schema names, dropped before
# use). The prefixes are read from the tests' Cluster.StartAsync calls. Only in the test database (PROPELLER_TEST_DB,
# never MANAGER_POSTGRES_DB), and only while no other client is connected to it: another checkout's run may be using
# its schemas (the server may be shared). Best effort: a failure here is reported and the run goes on.
drop_leftover_schemas() {
  local prefixes db="" host="" port="" user="" pass="" kv key out
  prefixes="$(grep -rhoE --include='*.cs' '\bCluster\.StartAsync\("[a-z0-9_]+"' tests 2>/dev/null | sed -E 's/.*\("([a-z0-9_]+)"/\1/' | sort -u | paste -sd '|' -)" || true
  [ -n "$prefixes" ] || return 0
  command -v psql >/dev/null || { echo "test.sh: psql not found; leftover test schemas not dropped" >&2; return 0; }
  IFS=';' read -r -a kv <<<"${PROPELLER_TEST_DB:-}"
  for key in "${kv[@]}"; do
    case "${key%%=*}" in
      [Hh]ost) host="${key#*=}" ;; [Pp]ort) port="${key#*=}" ;; [Uu]sername | [Uu]ser\ [Ii][Dd]) user="${key#*=}" ;;
      [Pp]assword) pass="${key#*=}" ;; [Dd]atabase) db="${key#*=}" ;;
    esac
  done
  if [ -z "$db" ] || [ "$db" = "${MANAGER_POSTGRES_DB:-propeller}" ]; then
    echo "test.sh: PROPELLER_TEST_DB names no separate test database ('$db'); leftover test schemas not dropped" >&2
    return 0
  fi
  out="$(PGPASSWORD="$pass" PGCONNECT_TIMEOUT=10 timeout 120 psql -X -q -v ON_ERROR_STOP=1 -h "$host" -p "$port" -U "$user" -d "$db" -tA \
    -v pattern="^($prefixes)_[0-9a-f]{8}\$" 2>&1 <<'SQL'
select set_config('propeller.pattern', :'pattern', false);
do $$
declare
  s text;
  n int := 0;
begin
  if exists (select 1 from pg_stat_activity
             where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend') then
    raise notice 'other clients are connected to %: leftover test schemas not dropped', current_database();
    return;
  end if;
  for s in select nspname from pg_namespace where nspname ~ current_setting('propeller.pattern') order by 1 loop
    execute format('drop schema %I cascade', s);
    n := n + 1;
  end loop;
  raise notice 'dropped % leftover test schema(s)', n;
end
$$;
SQL
)" || { echo "test.sh: could not drop leftover test schemas in $db: $out" >&2; return 0; }
  echo "test.sh: $db: $(printf '%s\n' "$out" | sed -n 's/^NOTICE: *//p' | tail -1)"
}
drop_leftover_schemas

for proj in "${projects[@]}"; do
  name="$(basename "$proj" .csproj)"
  step "test $name"
  # A test that hangs is stopped after 8 minutes (the run counts it as failed), a project after 30 or at the end of
  # the time budget (no results, so it counts as broken below) instead of holding CI for ever.
  rc=0
  bounded 30 "$name" dotnet test "$proj" -c Release --no-build --nologo --blame-hang-timeout 8m --blame-hang-dump-type none \
    --logger "trx;LogFileName=$name.trx" --results-directory "$results/$name" || rc=$?
  trx="$results/$name/$name.trx"
  if [ "$rc" = 125 ]; then broken=$((broken + 1)); continue; fi # not run: the time budget is spent (said above)
  if [ ! -f "$trx" ]; then
    echo "test.sh: $name produced no results (exit $rc)" >&2
    broken=$((broken + 1))
    continue
  fi
  p="" f="" s=""
  read -r p f s < <(python3 - "$trx" <<'PY'
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
c = ET.parse(sys.argv[1]).getroot().find("t:ResultSummary/t:Counters", ns)
a = lambda k: int(c.get(k, "0"))
print(a("passed"), a("failed") + a("error") + a("timeout") + a("aborted"), a("notExecuted"))
PY
) || true
  if ! [[ "$p $f $s" =~ ^[0-9]+\ [0-9]+\ [0-9]+$ ]]; then
    echo "test.sh: $name's results could not be read ($trx; exit $rc)" >&2
    broken=$((broken + 1))
    continue
  fi
  echo "$name: $p passed, $f failed, $s skipped"
  # A project that ran no test at all (discovery failed, a lost [Fact]) is broken, not a clean pass: every project
  # under tests/ has tests, and test.sh runs each in full (no filter).
  if [ $((p + f + s)) = 0 ]; then
    echo "test.sh: $name ran no tests (exit $rc); counted as failed" >&2
    broken=$((broken + 1))
    continue
  fi
  total_passed=$((total_passed + p)); total_failed=$((total_failed + f)); total_skipped=$((total_skipped + s))
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then broken=$((broken + 1)); fi
done

# Non-xunit suites (WASI conformance) append their own counts through scripts/suites.d/*.sh:
# each prints one `N passed, N failed, N skipped` line as its last line.
if [ $# -eq 0 ] && compgen -G "scripts/suites.d/*.sh" >/dev/null; then
  for suite in scripts/suites.d/*.sh; do
    step "suite $(basename "$suite" .sh)"
    # Through a file: `tee /dev/stderr` would reopen (and clobber) a log file that stdout and stderr share.
    log="$results/suite-$(basename "$suite" .sh).log"
    # Bounded like the test projects (the suite runs every WASI test program through propeller-proplet run); a timed-out
    # suite prints no count line, so it counts as broken below.
    rc=0
    bounded 30 "suite $(basename "$suite" .sh)" bash "$suite" >"$log" 2>&1 || rc=$?
    cat "$log"
    if [ "$rc" = 125 ]; then broken=$((broken + 1)); continue; fi # not run: the time budget is spent (said above)
    out="$(tail -1 "$log")"
    if [[ "$out" =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]]; then
      total_passed=$((total_passed + BASH_REMATCH[1])); total_failed=$((total_failed + BASH_REMATCH[2]))
      total_skipped=$((total_skipped + ${BASH_REMATCH[4]:-0}))
    else
      echo "test.sh: suite $suite printed no count line" >&2
      broken=$((broken + 1))
    fi
  done
fi

total_failed=$((total_failed + broken))
summarised=1
echo
echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
[ "$total_failed" = 0 ]
