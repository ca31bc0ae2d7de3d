#!/usr/bin/env bash
# Builds {{name}}.wasm (a WASI preview1 command) with clang and wasi-libc: Debian's packages
# clang lld wasi-libc libclang-rt-dev-wasm32 (plugin-sdk/c/install.sh in Sandflow installs them).
set -euo pipefail
cd "$(dirname "$0")"
clang --target=wasm32-wasi -Os -s -Isdk -o {{name}}.wasm *.c sdk/*.c -lm
