#!/usr/bin/env bash
# Installs the system packages Sandflow's build and tests need, if they are missing (Debian): clang,
# lld and wasi-libc for the C example plugin, PostgreSQL for the tests of the PostgreSQL store (they
# start their own clusters with it: scripts/postgres.sh), python3-venv for the virtualenv of the
# official Airflow client (scripts/airflow-client.sh), Node.js and npm to build the web UI
# (scripts/build-web.sh), Chromium and ChromeDriver for the browser tests (host/api/tests/ui).
# Rust targets come from rust-toolchain.toml on the first cargo call.
set -euo pipefail
packages=(clang lld wasi-libc libclang-rt-dev-wasm32 postgresql python3-venv chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm by command, not by package: a Node.js from elsewhere (NodeSource's nodejs carries
# its own npm, and Debian's npm package would conflict with it) is as good as Debian's.
if ! command -v node > /dev/null || ! command -v npm > /dev/null; then
  missing+=(nodejs npm)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
