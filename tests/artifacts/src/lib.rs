//! Paths of the example and test plugins, built by this crate's build script.
//!
//! `NAME.wasm` is the preview1 core module (or the C plugin), `NAME-p2.wasm` the preview2 component.

use std::path::PathBuf;

/// The directory holding every built plugin.
pub const DIR: &str = env!("SANDFLOW_TEST_PLUGINS");

/// The path of a built plugin, by file stem (`noop`, `noop-p2`, `c-stats`...). Panics, naming the
/// directory, when no such plugin was built: a test that names a missing fixture is a broken test.
pub fn path(stem: &str) -> PathBuf {
    let path = PathBuf::from(DIR).join(format!("{stem}.wasm"));
    assert!(path.exists(), "no plugin {stem}.wasm in {DIR}: add it to plugins/build.sh");
    path
}

/// The bytes of a built plugin.
pub fn bytes(stem: &str) -> Vec<u8> {
    std::fs::read(path(stem)).expect("reading a built plugin")
}

/// Where `plugins/build-polyglot.sh` put the examples in other languages (Python, JavaScript, Zig,
/// AssemblyScript, Go): `$SANDFLOW_POLYGLOT_PLUGINS`, else `target/polyglot` in the repository.
/// scripts/test.sh builds them there before the tests; their toolchains are not cargo's to build.
pub fn polyglot_dir() -> PathBuf {
    match std::env::var_os("SANDFLOW_POLYGLOT_PLUGINS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/polyglot"),
    }
}

/// The path of a polyglot example (`py_parse_csv`, `js_clean`, `zig_histogram`, `as_quantiles`,
/// `go_zscores`). Panics, saying how to build them, when they were not built.
pub fn polyglot_path(stem: &str) -> PathBuf {
    let path = polyglot_dir().join(format!("{stem}.wasm"));
    assert!(
        path.exists(),
        "no plugin {stem}.wasm in {}: build them with scripts/install-toolchains.sh && plugins/build-polyglot.sh {} \
         (scripts/test.sh does)",
        polyglot_dir().display(),
        polyglot_dir().display()
    );
    path
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}
