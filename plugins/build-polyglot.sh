#!/usr/bin/env bash
# Builds the example operators written in languages other than Rust and C, with the toolchains that
# scripts/install-toolchains.sh installs under target/toolchains/ (plugins/build.sh builds the Rust
# and C ones):
#
#   plugins/build-polyglot.sh [OUT_DIR]        (default: target/plugins)
#
# Each example builds with its own build.sh (plugins/<example>/build.sh OUT.wasm), as an author's
# project would; the output is named after the folder, with `_` for `-` (py-parse-csv ->
# py_parse_csv.wasm). A build that fails stops the script.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/plugins}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PATH="$root/target/toolchains/bin:$PATH"
examples=(py-parse-csv js-clean zig-histogram as-quantiles go-zscores)
for example in "${examples[@]}"; do
  name=${example//-/_}
  start=$(date +%s%N)
  "$root/plugins/$example/build.sh" "$out/$name.wasm.tmp"
  mv "$out/$name.wasm.tmp" "$out/$name.wasm"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  printf 'built %-18s %9d bytes in %d ms\n' "$name.wasm" "$(stat -c %s "$out/$name.wasm")" "$ms" >&2
done
