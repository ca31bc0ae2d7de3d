#!/usr/bin/env bash
# Builds the c-stats plugin to OUT_WASM (default: ./c-stats.wasm) with Debian's clang and wasi-libc,
# against the C SDK in plugin-sdk/c/sdk.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk=$here/../../plugin-sdk/c/sdk
out=${1:-$here/c-stats.wasm}
clang --target=wasm32-wasi -Os -s -I"$sdk" -o "$out" "$here"/*.c "$sdk"/*.c -lm
