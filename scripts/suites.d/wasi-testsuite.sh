#!/usr/bin/env bash
# WASI preview1 conformance (issues 5 and 12): runs ../shared/testdata/wasi-testsuite/run.py against
# `propeller-proplet run` (Wasmtime's WASI as our proplet wires it: args, env, preopens, exit codes, stdout).
# Tests listed in scripts/suites.d/wasi-known-failing.txt (one `dir/name.wasm` per line, `#` comments) still run,
# but a failure there counts as skipped; any other failure counts as failed.
# Known-failing tests that pass (or are no longer in the suite) are named, to be removed from the list. run.py must
# report at least as many tests as the suite folder has .wasm files (and some): fewer, or none, is one more failure.
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
RUN_PY_OUTPUT="$out" python3 - "$known" "$suite" <<'PY'
import glob, os, re, sys
known = set()
try:
    for line in open(sys.argv[1]):
        line = line.split('#', 1)[0].strip()
        if line:
            known.add(line)
except FileNotFoundError:
    pass
# The tests run.py runs (its own glob): a count line covering fewer, or none at all, is not a pass.
expected = len(glob.glob(os.path.join(sys.argv[2], '*', '*.wasm')))
out = os.environ["RUN_PY_OUTPUT"]
# run.py's count line is its last: the last line that is exactly a count (a FAIL line's echoed stderr may hold one).
counts = re.findall(r'^(\d+) passed, (\d+) failed$', out, re.M)
if not counts:
    print('wasi-testsuite: run.py printed no count line')
    print('wasi-testsuite: 0 passed, 1 failed, 0 skipped')
    sys.exit(1)
passed, run_failed = int(counts[-1][0]), int(counts[-1][1])
fails = re.findall(r'^FAIL (\S+?):', out, re.M)
skipped = sum(1 for f in fails if f in known)
failed = len(fails) - skipped
if len(fails) != run_failed:
    print(f'wasi-testsuite: run.py counted {run_failed} failures but printed {len(fails)} FAIL lines; counted as one more failure')
    failed += 1
if expected == 0 or passed + run_failed < expected:
    print(f'wasi-testsuite: run.py ran {passed + run_failed} tests, the suite has {expected} (.wasm files under {sys.argv[2]}); counted as one more failure')
    failed += 1
tests = {os.path.relpath(w, sys.argv[2]) for w in glob.glob(os.path.join(sys.argv[2], '*', '*.wasm'))}
for name in sorted(known - set(fails)):
    why = 'passes now' if name in tests else 'is not in the suite'
    print(f'wasi-testsuite: {name} (wasi-known-failing.txt) {why}: remove it from the list')
print(f'wasi-testsuite: {passed} passed, {failed} failed, {skipped} skipped')
sys.exit(1 if failed else 0)
PY
