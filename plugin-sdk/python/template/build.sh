#!/usr/bin/env bash
# Builds {{name}}.wasm, an ABI v2 component (world `operator` of sandflow:operator@2.0.0), from app.py
# and sdk/sandflow.py. Needs componentize-py on PATH (Sandflow's plugin-sdk/python/install.sh puts a
# shim in target/toolchains/bin). Takes about a minute; the result is about 19 MB.
set -euo pipefail
cd "$(dirname "$0")"
# -p: where the app's modules are; componentize-py bundles what app.py imports (and the stdlib).
componentize-py -q -d sdk/wit -w operator componentize app -p . -p sdk -o {{name}}.wasm.tmp
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c < {{name}}.wasm) bytes)"
