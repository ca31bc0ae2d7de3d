#!/usr/bin/env bash
# Builds {{name}}.wasm in this directory. Needs the `go` shim on PATH
# (plugin-sdk/go/install.sh puts it in target/toolchains/bin).
set -euo pipefail
cd "$(dirname "$0")"
GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o {{name}}.wasm .
