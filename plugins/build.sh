#!/usr/bin/env bash
# Builds every example and test plugin to wasm: the one command for plugin authors and for the tests.
#
#   plugins/build.sh [OUT_DIR]        (default: target/plugins)
#
# Rust plugins are built for wasm32-wasip1 (core module, NAME.wasm) and wasm32-wasip2 (component,
# NAME-p2.wasm) with the `wasm` profile, Rust ABI v2 operators for wasm32-wasip2 only; C plugins with Debian's clang and wasi-libc (NAME.wasm).
# The host's test crate runs this from its build script, so `cargo test` needs no step before it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/target/plugins}
mkdir -p "$out"

# Called from a build script, cargo's own variables would leak into this nested build.
unset CARGO_ENCODED_RUSTFLAGS RUSTFLAGS CARGO_BUILD_RUSTFLAGS RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_TARGET_DIR

# rust-toolchain.toml names the wasm targets, but rustup adds them only when it installs the toolchain.
if command -v rustup >/dev/null; then
  installed=$(rustup target list --installed)
  for target in wasm32-wasip1 wasm32-wasip2; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target" >&2
  done
fi

rust_plugins=(noop echo logreg hostile grants ml-generate ml-features ml-evaluate ml-publish ml-gate sensors)
packages=()
for p in "${rust_plugins[@]}"; do packages+=(-p "sandflow-plugin-$p"); done

# wasm SIMD (simd128) lets the compiler vectorise loops, as it does natively; wasmtime runs it.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128"
export CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS="-C target-feature=+simd128"
for target in wasm32-wasip1 wasm32-wasip2; do
  cargo build --quiet --manifest-path "$root/Cargo.toml" --profile wasm --target "$target" \
    --target-dir "$root/target/wasm" "${packages[@]}"
  for p in "${rust_plugins[@]}"; do
    suffix=$([ "$target" = wasm32-wasip1 ] && echo "" || echo "-p2")
    name=${p//-/_}  # the bin's name: crate dir ml-generate builds ml_generate.wasm
    cp "$root/target/wasm/$target/wasm/$name.wasm" "$out/$name$suffix.wasm.tmp"
    mv "$out/$name$suffix.wasm.tmp" "$out/$name$suffix.wasm"
  done
done

# ABI v2 operators in Rust: cdylibs for wasm32-wasip2, which rustc links into components of the
# sandflow:operator world (NAME.wasm).
rust_operators=(report operator fetch)
cargo build --quiet --manifest-path "$root/Cargo.toml" --profile wasm --target wasm32-wasip2 \
  --target-dir "$root/target/wasm" -p sandflow-plugin-report -p sandflow-plugin-operator -p sandflow-plugin-fetch
for p in "${rust_operators[@]}"; do
  cp "$root/target/wasm/wasm32-wasip2/wasm/sandflow_plugin_$p.wasm" "$out/$p.wasm.tmp"
  mv "$out/$p.wasm.tmp" "$out/$p.wasm"
done

# C: needs clang, lld, wasi-libc and libclang-rt-dev-wasm32 (scripts/install-deps.sh installs them).
if ! command -v clang >/dev/null || [ ! -d /usr/include/wasm32-wasi ]; then
  echo "plugins/build.sh: clang with wasi-libc is missing: run scripts/install-deps.sh" >&2
  exit 1
fi
for dir in "$root"/plugins/c-*/; do
  name=$(basename "$dir")
  clang --target=wasm32-wasi -Os -s -I"$root/plugin-sdk/c/sdk" -o "$out/$name.wasm.tmp" "$dir"/*.c \
    "$root"/plugin-sdk/c/sdk/*.c -lm
  mv "$out/$name.wasm.tmp" "$out/$name.wasm"
done
