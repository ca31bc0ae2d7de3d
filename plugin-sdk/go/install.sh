#!/usr/bin/env bash
# Installs Go 1.23 (Debian bookworm-backports' golang-1.23-go, which has GOOS=wasip1) and the shim
# $ROOT/target/toolchains/bin/go that runs it with GOTOOLCHAIN=local. Idempotent: a second run only
# rewrites the shim. Bookworm's own Go is 1.19, which has no wasip1 port.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$root/target/toolchains/bin
pkg=golang-1.23-go
goroot=/usr/lib/go-1.23

if [ ! -x "$goroot/bin/go" ]; then
  # Add bookworm-backports once, on the same mirror as the existing Debian entry.
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The mirror URI of the existing (non-security) Debian entry: deb822 `URIs:` or one-line `deb URI`.
    uri=$( { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
             sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\)[[:space:]]\+bookworm[[:space:]].*/\2/p' \
               /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null; } \
           | tr ' ' '\n' | grep -E '^https?://.*/debian/?$' | head -n1 || true)
    uri=${uri:-http://deb.debian.org/debian}
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<SRC
Types: deb
URIs: ${uri%/}
Suites: bookworm-backports
Components: main
Signed-By: $keyring
SRC
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-backports "$pkg"
fi

mkdir -p "$bin"
cat > "$bin/go.tmp" <<SHIM
#!/bin/sh
# Sandflow shim: Go 1.23 from bookworm-backports, never downloading another toolchain.
GOTOOLCHAIN=local exec $goroot/bin/go "\$@"
SHIM
chmod +x "$bin/go.tmp"
mv "$bin/go.tmp" "$bin/go"
"$bin/go" version >&2
