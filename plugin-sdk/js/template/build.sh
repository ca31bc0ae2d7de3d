#!/usr/bin/env bash
# Builds {{name}}.wasm, an ABI v2 component (world sandflow:operator/operator), from app.js and sdk/.
# Needs componentize-qjs on PATH (plugin-sdk/js/install.sh puts a shim in target/toolchains/bin).
set -euo pipefail
cd "$(dirname "$0")"
# app.js imports ./sdk/sandflow.js: componentize-qjs resolves ES module imports under the current
# directory (its default --module-root) while it snapshots the initialised QuickJS heap. --sync: the
# host runs components without the component-model async ABI.
componentize-qjs --wit sdk/wit -n operator --js app.js --sync -o {{name}}.wasm.tmp >/dev/null
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c < {{name}}.wasm) bytes)"
