#!/usr/bin/env bash
# Builds {{name}}.wasm (a WASI preview1 command) with `zig` from PATH (Zig 0.17; Sandflow's
# plugin-sdk/zig/install.sh puts a shim in target/toolchains/bin).
set -euo pipefail
cd "$(dirname "$0")"
# --stack: Zig's default stack is 16 MiB, all of it initial memory counted against the task's limit.
zig build-exe -target wasm32-wasi -O ReleaseSmall -fstrip --stack 1048576 \
  --cache-dir .zig-cache --name {{name_ident}} -femit-bin={{name}}.wasm \
  --dep sandflow -Mroot=main.zig -Msandflow=sdk/sandflow.zig
