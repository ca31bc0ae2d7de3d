#!/usr/bin/env bash
# Installs the pinned AssemblyScript compiler and @assemblyscript/wasi-shim from npm (the exact versions
# in toolchain/package-lock.json) into $ROOT/target/toolchains/assemblyscript/, and the shim
# $ROOT/target/toolchains/bin/asc, which runs that asc with the wasi-shim config, so that
#   asc file.ts -O3 --noAssert -o out.wasm
# builds a WASI preview1 command. Idempotent: skips `npm ci` when the installed lock matches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dest=$root/target/toolchains/assemblyscript
bin=$root/target/toolchains/bin

command -v node >/dev/null || { echo "install.sh: node (>= 20) and npm are required" >&2; exit 1; }

if ! cmp -s "$here/toolchain/package-lock.json" "$dest/package-lock.json" \
   || [ ! -f "$dest/node_modules/assemblyscript/bin/asc.js" ] \
   || [ ! -f "$dest/node_modules/@assemblyscript/wasi-shim/asconfig.json" ]; then
  mkdir -p "$dest"
  cp "$here/toolchain/package.json" "$here/toolchain/package-lock.json" "$dest/"
  (cd "$dest" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi

mkdir -p "$bin"
cat > "$bin/asc.tmp" <<SHIM
#!/bin/sh
# Sandflow shim: AssemblyScript's asc (pinned in plugin-sdk/assemblyscript/toolchain) targeting WASI
# preview1 through @assemblyscript/wasi-shim. The config is passed relative to the working directory:
# asc 0.28 joins its baseDir (".") with the config's "lib" path, which breaks an absolute config path.
cfg=\$(realpath --relative-to=. "$dest/node_modules/@assemblyscript/wasi-shim/asconfig.json")
exec node "$dest/node_modules/assemblyscript/bin/asc.js" --config "\$cfg" "\$@"
SHIM
chmod +x "$bin/asc.tmp"
mv "$bin/asc.tmp" "$bin/asc"
echo "asc $(node "$dest/node_modules/assemblyscript/bin/asc.js" --version 2>&1 | head -n1)" >&2
