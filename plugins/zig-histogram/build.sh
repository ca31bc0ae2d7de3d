#!/usr/bin/env bash
# Builds the zig-histogram plugin to OUT_WASM (default: ./zig-histogram.wasm) with `zig` from PATH
# (plugin-sdk/zig/install.sh puts a shim in target/toolchains/bin), against plugin-sdk/zig/sdk.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk=$here/../../plugin-sdk/zig/sdk
out=$(realpath -m "${1:-$here/zig-histogram.wasm}")
cache=${ZIG_LOCAL_CACHE_DIR:-$here/../../target/zig-cache}
# --stack: Zig's default stack is 16 MiB of initial memory; 1 MiB is plenty here.
zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip --stack 1048576 \
  --cache-dir "$cache" --name zig-histogram -femit-bin="$out" \
  --dep sandflow -Mroot="$here/histogram.zig" -Msandflow="$sdk/sandflow.zig"
