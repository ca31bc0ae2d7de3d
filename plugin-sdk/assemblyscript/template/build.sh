#!/usr/bin/env bash
# Builds {{name}}.wasm in this directory. Needs the `asc` shim on PATH
# (plugin-sdk/assemblyscript/install.sh puts it in target/toolchains/bin; no npm install here).
set -euo pipefail
cd "$(dirname "$0")"
asc main.ts -O3 --noAssert -o {{name}}.wasm
