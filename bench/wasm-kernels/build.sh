#!/usr/bin/env bash
# Builds the benchmark kernels (no libc, no imports; each exports `run`). The .wasm files are checked in so the benchmark
# runs without clang; rebuild with: bench/wasm-kernels/build.sh   (Debian clang 14 + lld; binaryen absent, so no wasm-opt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
for k in fib sieve matmul sha256; do
  clang --target=wasm32 -nostdlib -O2 -fno-builtin -Wl,--no-entry -Wl,--export=run -o "$k.wasm" "$k.c"
done
ls -l ./*.wasm
