#!/usr/bin/env bash
# Installs Zig from PyPI (the `ziglang` wheel, which ships the whole compiler and its std sources) into
# the venv $ROOT/target/toolchains/zig-venv, and the shim $ROOT/target/toolchains/bin/zig that runs it.
# Idempotent: when the pinned version is already there it only rewrites the shim.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
version=0.17.1
venv=$root/target/toolchains/zig-venv
bin=$root/target/toolchains/bin

if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('ziglang') != '$version')" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "ziglang==$version"
fi

mkdir -p "$bin"
cat > "$bin/zig.tmp" <<SHIM
#!/bin/sh
# Sandflow shim: Zig $version from PyPI's ziglang wheel, in $venv.
exec "$venv/bin/python" -m ziglang "\$@"
SHIM
chmod +x "$bin/zig.tmp"
mv "$bin/zig.tmp" "$bin/zig"
"$bin/zig" version >&2
