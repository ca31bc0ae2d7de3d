#!/usr/bin/env bash
# Builds the py-parse-csv operator (an ABI v2 component) to OUT_WASM (default: ./py-parse-csv.wasm).
# Needs componentize-py on PATH: plugin-sdk/python/install.sh puts a shim in target/toolchains/bin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk=$here/../../plugin-sdk/python/sdk
out=${1:-$here/py-parse-csv.wasm}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
cd "$here"
componentize-py -q -d "$sdk/wit" -w operator componentize parse_csv -p "$here" -p "$sdk" -o "$out.tmp"
mv "$out.tmp" "$out"
