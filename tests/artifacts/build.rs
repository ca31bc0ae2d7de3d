//! Runs `plugins/build.sh` into OUT_DIR, so that a fresh clone's `cargo test` builds its own guest
//! programs (as wasmtime's test-programs do) instead of relying on committed binaries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..").canonicalize().expect("workspace root");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("plugins");
    for watched in ["plugins", "plugin-sdk/src", "plugin-sdk/Cargo.toml", "tests/plugins", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let status =
        Command::new("bash").arg(root.join("plugins/build.sh")).arg(&out).status().expect("running plugins/build.sh");
    assert!(status.success(), "plugins/build.sh failed ({status}); see its output above");
    println!("cargo:rustc-env=SANDFLOW_TEST_PLUGINS={}", out.display());
}
