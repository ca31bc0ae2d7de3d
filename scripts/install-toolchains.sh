#!/usr/bin/env bash
# Installs the plugin toolchains beyond Rust and C, from the package registries, under
# target/toolchains/ (with command shims in target/toolchains/bin/): Zig (PyPI ziglang),
# AssemblyScript (npm), Go (Debian bookworm-backports), componentize-py (PyPI) and
# componentize-qjs (npm). Each language's plugin-sdk/<lang>/install.sh pins its versions and is
# quick when its toolchain is already there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
for lang in zig assemblyscript go python js; do
  "$root/plugin-sdk/$lang/install.sh"
done
