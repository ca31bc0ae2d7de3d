//! The sandbox's errors: a plugin refused (callers show the reason to whoever added it) and a
//! sandbox that could not start.

use std::path::PathBuf;

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
    /// Larger than [`crate::MAX_PLUGIN_BYTES`].
    #[error("{} of wasm, over the {} limit for a plugin", crate::human_bytes(*size), crate::human_bytes(*limit))]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a `sha256:` id.
    #[error("`{0}` is not a plugin id: expected sha256: and 64 lowercase hex digits")]
    BadId(String),
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
