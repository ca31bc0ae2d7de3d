#!/usr/bin/env bash
# Installs componentize-qjs (QuickJS → WebAssembly component; npm, the exact versions in
# toolchain/package-lock.json, with its prebuilt native binding from the same registry) into
# $ROOT/target/toolchains/js/, and the shim $ROOT/target/toolchains/bin/componentize-qjs, so that
#   componentize-qjs --wit sdk/wit -n operator --js app.js --sync -o NAME.wasm
# builds an ABI v2 operator (a component of the sandflow:operator world). Needs node >= 18 and npm.
# Idempotent: skips `npm ci` when the installed lock matches (a second run takes well under a second).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=$root/target/toolchains/js
bin=$root/target/toolchains/bin
cli=$dest/node_modules/componentize-qjs/cli.mjs

command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "install.sh: node (>= 18) and npm are required" >&2; exit 1; }

if ! cmp -s "$here/toolchain/package-lock.json" "$dest/package-lock.json" \
   || [ ! -f "$cli" ] \
   || ! ls "$dest"/node_modules/@andreiltd/componentize-qjs-binding-*/*.node >/dev/null 2>&1; then
  mkdir -p "$dest"
  cp "$here/toolchain/package.json" "$here/toolchain/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

mkdir -p "$bin"
cat > "$bin/componentize-qjs.tmp" <<SHIM
#!/bin/sh
# Sandflow shim: componentize-qjs (pinned in plugin-sdk/js/toolchain) from target/toolchains/js.
exec node "$cli" "\$@"
SHIM
chmod +x "$bin/componentize-qjs.tmp"
mv "$bin/componentize-qjs.tmp" "$bin/componentize-qjs"
echo "componentize-qjs $(node -p "require('$dest/node_modules/componentize-qjs/package.json').version")" >&2
