//! Bundles: an uploaded archive of DAG files and plugins, read safely, or refused with every
//! reason at once.
//!
//! A bundle is how an engineer ships a DAG folder to a server (`POST /api/v1/bundles`,
//! `sandflow bundle push`): a `.tar.gz` or a `.zip` of `*.toml` DAG files and `*.wasm` plugins. The
//! bytes come from outside, so this crate is written for hostile input first. Its shape follows
//! from that:
//!
//! - **Pure over bytes.** [`Bundle::read`] takes the archive's bytes and returns the files in
//!   memory. Nothing is unpacked onto a disk, so there is no path to escape from, no link to
//!   follow, no half-written folder to clean up after a refusal, and the server's disk is never
//!   touched (issue 9's "without touching the server's disk"). It also makes every case testable
//!   with archives built in the test. The crate knows nothing of DAG specs, the sandbox or the
//!   store: the service layer checks what it returns (each DAG against core's validation, each
//!   plugin against the sandbox's checks) and stores all or nothing. That keeps this crate light
//!   enough to run before anything heavy, and keeps the heavy dependencies in their own crates.
//! - **Every byte is paid for before it is inflated.** [`Limits`] bound the archive, what it
//!   unpacks to, each file, the number of entries and each path. A zip declares its entries and
//!   sizes up front and is checked from its central directory before anything is inflated; a
//!   `.tar.gz` is a stream that declares nothing trustworthy, so its inflated bytes go through a
//!   meter whose allowance grows one checked entry at a time (see `targz.rs`). A gzip bomb is
//!   refused at the header that declares too much, after a few kilobytes of work; one spread over
//!   many entries each under the limits costs at most the unpacked limit. Memory stays bounded by
//!   the files kept.
//! - **Refused whole, with every reason.** A problem with one entry (a link, a bad path, a
//!   duplicate) is recorded and reading goes on, so the answer lists everything to fix; a problem
//!   after which reading on is unsafe or pointless (a limit on the whole archive, a broken stream)
//!   stops the walk, and is the last diagnostic. Each [`Diagnostic`] has a stable [`code`]
//!   (`symlink`, `parent_component`, ...) and serialises to JSON, for the API to return as it is
//!   and the CLI to print.
//! - **Only files and folders.** Symbolic and hard links are refused rather than resolved: inside a
//!   bundle they could only alias another entry (two names, one content, and which one is checked?)
//!   or point at the server's own files. Devices, FIFOs, sparse files and other kinds have no
//!   meaning as content. Paths are relative, without `..`, with `/` only, so they are safe as keys
//!   and if ever unpacked elsewhere; two spellings of one path (`a/./b`, `a/b`) are one file, and a
//!   second entry with it is a duplicate, since tools disagree on which of the two wins.
//!
//! **What is kept.** DAG files are the `*.toml` files at the bundle's top level, as in a DAG
//! folder, where the scheduler reads only the folder's own `*.toml` files; plugins are the `*.wasm`
//! files anywhere (a DAG names them by a path relative to itself: see [`Bundle::plugin`]). Every
//! other file is **ignored, and listed** in [`Bundle::ignored`] with the reason: a real DAG folder
//! holds a `README.md`, a `.gitignore`, plugin sources, and refusing those would make a plain
//! `tar -czf` of it fail, while keeping them would store bytes that nothing reads. Hidden files
//! (a name starting with `.`, and macOS's `__MACOSX/`) are ignored even when named `*.toml` or
//! `*.wasm`: they are editor leftovers and resource forks (`._train.wasm` is not wasm). Ignored
//! files still count towards the limits. A bundle with no DAG file is refused (`no_dags`), with a
//! hint when the DAG files sit one folder down (`tar -czf b.tar.gz dags/`, a common slip).
//!
//! [`build`] makes the archive the other way, from a DAG folder, deterministically: the same
//! folder gives the same bytes, whatever its files' times and owners.

#![deny(missing_docs)]

#[doc(hidden)]
pub mod bomb;
mod build;
mod collect;
mod diagnostic;
mod limits;
mod path;
mod targz;
mod ziparchive;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

pub use build::{build, BuildError};
pub use diagnostic::{code, Diagnostic, Diagnostics};
pub use limits::Limits;

use collect::Collector;

/// An archive's format, told by its first bytes (its magic number), never by a file name or a
/// content type, which a client may get wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A tar archive compressed with gzip: starts with `1f 8b`.
    TarGz,
    /// A zip archive: starts with `PK\x03\x04` (or `PK\x05\x06` when empty).
    Zip,
}

impl Format {
    /// The format of an archive, or `None` when its bytes are neither.
    pub fn detect(bytes: &[u8]) -> Option<Format> {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Some(Format::TarGz)
        } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
            Some(Format::Zip)
        } else {
            None
        }
    }
}

/// A bundle that passed every check of this crate: its DAG files and plugins, by normalised
/// relative path (`plugins/train.wasm`), in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The archive's format.
    pub format: Format,
    /// DAG files (`*.toml` at the top level): path → TOML text (valid UTF-8; not yet parsed).
    pub dags: BTreeMap<String, String>,
    /// Plugins (`*.wasm` anywhere): path → bytes (not yet checked as wasm).
    pub plugins: BTreeMap<String, Vec<u8>>,
    /// Files that are neither, in archive order, with why each was left out.
    pub ignored: Vec<Ignored>,
}

/// A file of the archive that is not part of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ignored {
    /// Its normalised path.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Why it is not a DAG file or a plugin.
    pub reason: IgnoredReason,
}

/// Why a file was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredReason {
    /// A name in its path starts with `.`, or it is under `__MACOSX/`.
    Hidden,
    /// A `*.toml` file in a folder: only those at the top level are DAG files.
    NestedToml,
    /// Neither `*.toml` nor `*.wasm`.
    NotDagOrPlugin,
}

impl fmt::Display for IgnoredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoredReason::Hidden => "a hidden file",
            IgnoredReason::NestedToml => "a .toml file in a folder: only those at the top level are DAG files",
            IgnoredReason::NotDagOrPlugin => "neither a DAG file (.toml) nor a plugin (.wasm)",
        })
    }
}

impl Bundle {
    /// Reads and checks an archive: a `.tar.gz` or a `.zip`, told apart by its first bytes.
    ///
    /// Returns the bundle, or every problem found (see the crate docs for what is refused, and
    /// [`code`] for the codes). Never panics, and never reads or allocates much past `limits`,
    /// whatever the bytes.
    pub fn read(bytes: &[u8], limits: &Limits) -> Result<Bundle, Diagnostics> {
        Self::read_counted(bytes, limits).0
    }

    /// [`Bundle::read`], with what the read cost (for tests that refusals come early).
    pub(crate) fn read_counted(bytes: &[u8], limits: &Limits) -> (Result<Bundle, Diagnostics>, targz::Stats) {
        if bytes.len() as u64 > limits.max_archive_bytes {
            let message =
                format!("the archive is {} bytes: the limit is {} bytes", bytes.len(), limits.max_archive_bytes);
            return (Err(Diagnostic::new(code::ARCHIVE_TOO_LARGE, message).into()), targz::Stats::default());
        }
        let Some(format) = Format::detect(bytes) else {
            return (Err(not_an_archive(bytes).into()), targz::Stats::default());
        };
        let mut collector = Collector::new(limits, format);
        let stats = match format {
            Format::TarGz => targz::read(bytes, &mut collector),
            Format::Zip => {
                let _ = ziparchive::read(bytes, &mut collector);
                targz::Stats::default()
            }
        };
        (collector.finish(), stats)
    }

    /// The plugin a DAG file names by a relative path: resolved from the DAG file's folder (as
    /// the scheduler resolves a DAG folder's plugin paths), `..` allowed while it stays inside the
    /// bundle. Returns the plugin's normalised path and bytes, or `None` when the path leads
    /// outside the bundle or names no plugin in it.
    pub fn plugin(&self, dag_file: &str, reference: &str) -> Option<(&str, &[u8])> {
        let path = path::resolve(dag_file, reference)?;
        self.plugins.get_key_value(&path).map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
    }
}

/// The one diagnostic for bytes that are not an archive, saying what they look like when it can.
fn not_an_archive(bytes: &[u8]) -> Diagnostic {
    let looks_like = if bytes.is_empty() {
        "the upload is empty".to_string()
    } else if bytes.starts_with(b"\0asm") {
        "this is a wasm module, not a bundle: upload it as a plugin, or put it in a bundle".to_string()
    } else if bytes.get(257..262) == Some(b"ustar") {
        "this is an uncompressed tar: compress it with gzip (`tar -czf`)".to_string()
    } else if let Some(name) = other_compression(bytes) {
        format!("this is compressed with {name}: a bundle is a gzip-compressed tar (`tar -czf`) or a zip")
    } else {
        "this is neither a .tar.gz (which starts with the bytes 1f 8b) nor a .zip (which starts with `PK`)".to_string()
    };
    Diagnostic::new(code::NOT_AN_ARCHIVE, looks_like)
}

fn other_compression(bytes: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"BZh", "bzip2"),
        (b"\xfd7zXZ\0", "xz"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"7z\xbc\xaf\x27\x1c", "7-Zip"),
        (b"Rar!", "RAR"),
    ];
    MAGICS.iter().find(|(magic, _)| bytes.starts_with(magic)).map(|(_, name)| *name)
}
