#!/usr/bin/env bash
# Builds the "zscores" operator: plugins/go-zscores/build.sh OUT_WASM
# Needs the `go` shim on PATH (plugin-sdk/go/install.sh puts it in target/toolchains/bin). Go modules
# cannot import outside their root, so the module (go.mod, *.go) and the SDK
# (../../plugin-sdk/go/sdk, as package zscores/sdk) are copied into a temporary build directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_WASM}
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here"/go.mod "$here"/*.go "$tmp/"
mkdir "$tmp/sdk"
cp "$here"/../../plugin-sdk/go/sdk/*.go "$tmp/sdk/"
(cd "$tmp" && GOOS=wasip1 GOARCH=wasm go build -trimpath -ldflags="-s -w" -o "$out.tmp" .)
mv "$out.tmp" "$out"
