#!/usr/bin/env bash
# The single test entry point (README's second command, called by .ci/run).
# Starts PostgreSQL + mosquitto on loopback (scripts/infra.sh), installs the test toolchains, builds the solution
# in Release, runs every test project under tests/, and ends with one line: `N passed, N failed, N skipped`.
#
#   scripts/test.sh                 everything
#   scripts/test.sh Domain.Tests    only the named test projects (folder names under tests/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

step() { printf '\n==> %s\n' "$*"; }

# bounded MINUTES WHAT COMMAND...: runs COMMAND for at most MINUTES (SIGTERM, then SIGKILL 30 s later, to its whole
# process group: test hosts and build nodes too), so one hang costs at most that, not the whole CI job. The bounds are
# generous for a slow, shared 2-core machine (the whole run takes ~18 min there; Manager.Tests alone 5-8).
bounded() {
  local minutes="$1" what="$2" rc=0
  shift 2
  timeout --kill-after=30s "${minutes}m" "$@" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then echo "test.sh: $what timed out after ${minutes} min" >&2; fi
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
bounded 40 "the build" dotnet build Propeller.sln -c Release -nologo -clp:ErrorsOnly

results="$root/TestResults"
rm -rf "$results"
mkdir -p "$results"

projects=()
if [ $# -gt 0 ]; then
  for name in "$@"; do projects+=("tests/$name/$name.csproj"); done
else
  for p in tests/*/*.csproj; do projects+=("$p"); done
fi

for proj in "${projects[@]}"; do
  name="$(basename "$proj" .csproj)"
  step "test $name"
  # A test that hangs is stopped after 10 minutes (the run counts it as failed), a project after 30 (no results, so
  # it counts as broken below) instead of holding CI for ever.
  rc=0
  bounded 30 "$name" dotnet test "$proj" -c Release --no-build --nologo --blame-hang-timeout 10m --blame-hang-dump-type none \
    --logger "trx;LogFileName=$name.trx" --results-directory "$results/$name" || rc=$?
  trx="$results/$name/$name.trx"
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
    bounded 30 "suite $(basename "$suite" .sh)" bash "$suite" >"$log" 2>&1 || true
    cat "$log"
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
