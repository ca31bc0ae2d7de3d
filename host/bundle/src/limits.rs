//! How much of a bundle is read before it is refused.
//!
//! Each limit bounds something an upload costs the server: the archive's bytes bound the request
//! body (the API should refuse a larger body with 413 before reading it, using the same figure);
//! the unpacked bytes bound memory, since a bundle is checked whole before anything is stored;
//! entries and paths bound the work per byte, which a tiny archive of many tiny entries would
//! otherwise make unbounded.

use serde::{Deserialize, Serialize};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The limits of one bundle. `Default` gives the figures below; a server may lower or raise them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Bytes of the archive as uploaded. Default 64 MiB: the example DAGs with all their plugins
    /// (ten Rust plugins under 2 MB each) compress to a few MB, and a Python component (about 40 MB,
    /// the largest common kind) to about a third of that.
    pub max_archive_bytes: u64,
    /// Bytes the archive unpacks to. For a `.tar.gz`, every byte the gzip stream inflates to,
    /// headers and ignored files included (a stream must be read through); for a `.zip`, the files
    /// kept (the only ones inflated). This bounds the memory a check holds. Default 256 MiB: four
    /// of the largest plugins the sandbox accepts, far above a real DAG folder.
    pub max_unpacked_bytes: u64,
    /// Bytes of one file. Default 64 MiB, the sandbox's largest plugin (`MAX_PLUGIN_BYTES`), so a
    /// plugin it would refuse is refused here before being inflated.
    pub max_file_bytes: u64,
    /// Entries in the archive, folders included. Default 10,000: a DAG folder holds tens of files; a
    /// generated one a few thousand. 100,000 one-byte entries cost more in headers than in data.
    pub max_entries: u64,
    /// Bytes of one path after normalisation. Default 1,024: deep enough for any folder layout, and
    /// each name in a path is held to 255 bytes as well, the common file-system limit, so a bundle
    /// can be unpacked anywhere.
    pub max_path_bytes: usize,
    /// Names (folders and file) in one path. Default 32.
    pub max_path_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 64 * MIB,
            max_unpacked_bytes: 256 * MIB,
            max_file_bytes: 64 * MIB,
            max_entries: 10_000,
            max_path_bytes: 1024,
            max_path_depth: 32,
        }
    }
}

/// The longest name (one path component) accepted, in bytes: `NAME_MAX` on Linux, macOS and most
/// file systems.
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Bytes a tar entry's headers may take beyond its 512-byte header block: PAX records and GNU long
/// names. The `tar` crate reads these whole into memory before it yields the entry, so they are
/// bounded here, not by the entry's declared size. 64 KiB holds a path of any accepted length many
/// times over, and the extended attributes that macOS's tar adds.
pub(crate) const MAX_HEADER_BYTES: u64 = 64 * KIB;

/// Bytes read after a tar's end-of-archive block, in which the gzip stream must end. Tar pads its
/// output to whole records (10 KiB by default; 64 KiB at `-b 128`); these bytes must be zeros.
pub(crate) const MAX_TRAILING_BYTES: u64 = 1024 * KIB;
