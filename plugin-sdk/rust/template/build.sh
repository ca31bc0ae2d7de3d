#!/usr/bin/env bash
# Builds {{name}}.wasm (a WASI preview1 command, plugin ABI v1) in this folder.
set -euo pipefail
cd "$(dirname "$0")"
if command -v rustup > /dev/null && ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi
cargo build --quiet --release --target wasm32-wasip1
cp target/wasm32-wasip1/release/{{name}}.wasm {{name}}.wasm
echo "built {{name}}.wasm"
