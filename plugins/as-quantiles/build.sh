#!/usr/bin/env bash
# Builds the "quantiles" operator: plugins/as-quantiles/build.sh OUT_WASM
# Needs the `asc` shim on PATH (plugin-sdk/assemblyscript/install.sh puts it in target/toolchains/bin).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_WASM}
mkdir -p "$(dirname "$out")"
asc "$here/quantiles.ts" -O3 --noAssert -o "$out.tmp"
mv "$out.tmp" "$out"
