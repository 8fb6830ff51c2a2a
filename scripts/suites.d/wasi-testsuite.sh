#!/usr/bin/env bash
# WASI preview1 conformance (issues 5 and 12): runs ../shared/testdata/wasi-testsuite/run.py against
# `propeller-proplet run` (Wasmtime's WASI as our proplet wires it: args, env, preopens, exit codes, stdout).
# Tests listed in scripts/suites.d/wasi-known-failing.txt (one `dir/name.wasm` per line, `#` comments) still run,
# but a failure there counts as skipped; any other failure counts as failed.
# The last line is `wasi-testsuite: N passed, N failed, N skipped` (parsed by scripts/test.sh).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
suite="${PROPELLER_WASI_TESTSUITE_DIR:-$root/../shared/testdata/wasi-testsuite}"
cli="$root/src/Edge/bin/Release/net10.0/propeller-proplet.dll"
known="$root/scripts/suites.d/wasi-known-failing.txt"
if [ ! -f "$suite/run.py" ]; then
  echo "wasi-testsuite: run.py not found under $suite (set PROPELLER_WASI_TESTSUITE_DIR)"
  echo "wasi-testsuite: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
if [ ! -f "$cli" ]; then
  dotnet build "$root/src/Edge/Propeller.Edge.csproj" -c Release -nologo -clp:ErrorsOnly >&2 || {
    echo "wasi-testsuite: 0 passed, 1 failed, 0 skipped"
    exit 1
  }
fi
out="$(python3 "$suite/run.py" dotnet "$cli" run 2>&1)"
echo "$out" | grep '^FAIL ' >&2
RUN_PY_OUTPUT="$out" python3 - "$known" <<'PY'
import os, re, sys
known = set()
try:
    for line in open(sys.argv[1]):
        line = line.split('#', 1)[0].strip()
        if line:
            known.add(line)
except FileNotFoundError:
    pass
out = os.environ["RUN_PY_OUTPUT"]
m = re.search(r'(\d+) passed, (\d+) failed', out)
if not m:
    print('wasi-testsuite: run.py printed no count line')
    print('wasi-testsuite: 0 passed, 1 failed, 0 skipped')
    sys.exit(1)
passed = int(m.group(1))
fails = re.findall(r'^FAIL (\S+?):', out, re.M)
skipped = sum(1 for f in fails if f in known)
failed = len(fails) - skipped
print(f'wasi-testsuite: {passed} passed, {failed} failed, {skipped} skipped')
sys.exit(1 if failed else 0)
PY
