#!/usr/bin/env bash
# WebAssembly core spec suite (issue 4): runs every wast2json file under ../shared/testdata/wasm-spec/json through
# `propeller-wasm spectest`. Files listed in tests/Wasm.Tests/spec-known-failing.txt still run but count as skipped;
# SIMD files (simd_*) are skipped. Any failure in any other file makes the last line report failures.
# The last line is `wasm-spec: N passed, N failed, N skipped` (parsed by scripts/test.sh).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
spec="${PROPELLER_WASM_SPEC_DIR:-$root/../shared/testdata/wasm-spec/json}"
cli="$root/src/Wasm.Cli/bin/Release/net10.0/propeller-wasm.dll"
if [ ! -d "$spec" ]; then
  echo "wasm-spec: spec tests not found at $spec (set PROPELLER_WASM_SPEC_DIR)"
  echo "wasm-spec: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
if [ ! -f "$cli" ]; then
  dotnet build "$root/src/Wasm.Cli/Propeller.Wasm.Cli.csproj" -c Release -nologo -clp:ErrorsOnly >&2 || {
    echo "wasm-spec: 0 passed, 1 failed, 0 skipped"
    exit 1
  }
fi
# Failure details go to stderr; keep them ahead of the final count line.
dotnet "$cli" spectest "$spec" --known-failing "$root/tests/Wasm.Tests/spec-known-failing.txt" 2>&1
