#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace
