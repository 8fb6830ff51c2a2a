#!/usr/bin/env bash
# Test toolchains from Debian, installed when missing: wabt (wat2wasm), clang + lld + wasi-libc +
# libclang-rt-dev-wasm32 (C test programs for wasm32-wasi), python3 (WASI conformance runner), mosquitto clients,
# chromium (the dashboard's browser tests, driven by Playwright).
set -euo pipefail
need=()
command -v wat2wasm >/dev/null || need+=(wabt)
command -v clang >/dev/null || need+=(clang)
command -v wasm-ld >/dev/null || need+=(lld)
[ -d /usr/include/wasm32-wasi ] || [ -d /usr/share/wasi-sysroot ] || need+=(wasi-libc)
compgen -G "/usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a" >/dev/null || need+=(libclang-rt-dev-wasm32)
command -v python3 >/dev/null || need+=(python3)
command -v mosquitto_pub >/dev/null || need+=(mosquitto-clients)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then echo "tools: all present"; exit 0; fi
die() { printf 'tools: error: %s\n' "$*" >&2; exit 1; }
command -v apt-get >/dev/null || die "apt-get not found: install the packages for ${need[*]} yourself"
sudo_() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root (or sudo) to install ${need[*]}"; fi
}
echo "tools: apt-get install ${need[*]}"
# Bounded, and waiting at most 2 min for a dpkg lock another apt-get holds, instead of hanging CI (scripts/test.sh).
sudo_ timeout --kill-after=30s 10m apt-get -o DPkg::Lock::Timeout=120 update -qq >/dev/null
sudo_ env DEBIAN_FRONTEND=noninteractive timeout --kill-after=30s 30m \
  apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
