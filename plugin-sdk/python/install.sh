#!/usr/bin/env bash
# Installs componentize-py (PyPI, pinned) into the venv $ROOT/target/toolchains/py-venv and the shim
# $ROOT/target/toolchains/bin/componentize-py. Idempotent: when the pinned version is already there it
# only rewrites the shim (a second run takes well under a second).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
tc=$root/target/toolchains
venv=$tc/py-venv
bin=$tc/bin
version=0.25.1

installed() {
  [ -x "$venv/bin/componentize-py" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("componentize-py"))' 2>/dev/null)" = "$version" ]
}

if ! installed; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "componentize-py==$version"
fi

mkdir -p "$bin"
cat > "$bin/componentize-py.tmp" <<SHIM
#!/bin/sh
# Sandflow shim: componentize-py $version from the venv made by plugin-sdk/python/install.sh.
exec "$venv/bin/componentize-py" "\$@"
SHIM
chmod +x "$bin/componentize-py.tmp"
mv "$bin/componentize-py.tmp" "$bin/componentize-py"
"$bin/componentize-py" --version >&2
