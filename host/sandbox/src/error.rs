//! The sandbox's errors: a plugin refused (callers show the reason to whoever added it) and a
//! sandbox that could not start.

use std::path::PathBuf;

use crate::PluginId;

/// Why a plugin was refused or could not be found. Each message says which rule it broke.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// WebAssembly, but truncated or invalid.
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// Valid WebAssembly of a kind the host does not run.
    #[error("unsupported plugin kind: {0}")]
    UnsupportedKind(String),
    /// It imports something the host does not provide.
    #[error("imports what the host does not provide: {0}")]
    UnknownImport(String),
    /// Not a `sha256:` id.
    #[error("`{0}` is not a plugin id: expected sha256: and 64 lowercase hex digits")]
    BadId(String),
    /// No plugin with that id on this machine.
    #[error("no plugin {0} in the plugin store")]
    NotFound(PluginId),
    /// The stored bytes do not hash to their id (disk corruption or tampering).
    #[error("plugin bytes stored as {expected} hash to {actual}: refusing to run them")]
    HashMismatch {
        /// The id the bytes were stored under.
        expected: PluginId,
        /// What they hash to now.
        actual: PluginId,
    },
    /// Reading or writing the plugin store failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// wasmtime refused the configuration (for instance, the pooling allocator could not reserve memory).
    #[error("could not configure the wasm engine: {0}")]
    Engine(String),
    /// The cache directory could not be created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}
