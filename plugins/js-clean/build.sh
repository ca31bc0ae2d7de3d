#!/usr/bin/env bash
# Builds the js-clean operator (ABI v2 component) to OUT_WASM (default: target/plugins/js-clean.wasm).
# Needs componentize-qjs on PATH (plugin-sdk/js/install.sh puts a shim in target/toolchains/bin).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m "${1:-$root/target/plugins/js-clean.wasm}")
mkdir -p "$(dirname "$out")"
# clean.js imports ../../plugin-sdk/js/sdk/sandflow.js: --module-root must hold both files, since
# componentize-qjs resolves imports only under it (read while it snapshots the QuickJS heap).
componentize-qjs --wit "$root/plugin-sdk/js/sdk/wit" -n operator --js "$here/clean.js" \
  --module-root "$root" --sync -o "$out.tmp" >/dev/null
mv "$out.tmp" "$out"
echo "built $out ($(wc -c < "$out") bytes)" >&2
