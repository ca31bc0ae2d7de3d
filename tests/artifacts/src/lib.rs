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
