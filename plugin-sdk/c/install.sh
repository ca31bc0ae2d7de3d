#!/usr/bin/env bash
# Installs the C toolchain for Sandflow plugins: Debian bookworm's clang 14, lld, wasi-libc and the
# wasm32 compiler-rt builtins (the versions apt pins for the release; bookworm: 1:14.0-55.7~deb12u1 and
# wasi-libc 0.0~git20220510.9886d3d-2). Idempotent: nothing is installed when all are there. Adds the
# shim $ROOT/target/toolchains/bin/wasi-cc (`clang --target=wasm32-wasi`), for those who want one name.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/toolchains/bin
packages=(clang lld wasi-libc libclang-rt-dev-wasm32)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

mkdir -p "$bin"
cat > "$bin/wasi-cc.tmp" <<'SHIM'
#!/bin/sh
# Sandflow shim: Debian's clang for WASI preview1 commands (wasi-libc).
exec clang --target=wasm32-wasi "$@"
SHIM
chmod +x "$bin/wasi-cc.tmp"
mv "$bin/wasi-cc.tmp" "$bin/wasi-cc"
clang --version | head -n1 >&2
