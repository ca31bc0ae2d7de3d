//! Building a bundle from a DAG folder (`sandflow bundle build DIR -o FILE`).
//!
//! The archive holds exactly what [`Bundle::read`] keeps: the folder's top-level `*.toml` files and
//! its `*.wasm` files at any depth, hidden files left out. So a folder with a README, plugin
//! sources or a `.git` builds a bundle with no ignored entries, and pushing it sends only what the
//! server will store. It is deterministic: entries sorted by path, no folder entries, every time,
//! owner and mode zeroed or fixed, gzip without a name or time; the same folder gives the same
//! bytes on any machine (with this crate's version of the compressor), so a bundle's hash means
//! its contents.
//!
//! Symbolic links in the folder are followed (an author may link `plugins/` to a build output):
//! the archive gets the files they lead to, as regular files. A folder reached twice (a link
//! loop) is read once. The result is read back with [`Bundle::read`] before it is returned, so
//! what `build` makes is what a server with the same limits accepts.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};

use crate::diagnostic::{code, Diagnostic, Diagnostics};
use crate::path::is_hidden;
use crate::{Bundle, Limits};

/// Why a folder could not be made into a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A file or folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A DAG file's or plugin's name is not valid UTF-8, which a bundle requires.
    #[error("{}: the name is not valid UTF-8", path.display())]
    NonUtf8Name {
        /// The file.
        path: PathBuf,
    },
    /// The folder's files break the limits, or make a bundle that would be refused.
    #[error("the bundle would be refused:\n{0}")]
    Refused(Diagnostics),
}

/// Builds a deterministic `.tar.gz` bundle of the DAG folder `dir`.
pub fn build(dir: &Path, limits: &Limits) -> Result<Vec<u8>, BuildError> {
    let mut files = Vec::new();
    let mut visited = BTreeSet::new();
    walk(dir, "", limits, &mut visited, &mut files)?;
    files.sort();
    check_sizes(&files, limits)?;

    let gz = GzBuilder::new().mtime(0).write(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (relative, full, _) in &files {
        let bytes = read_file(full, limits.max_file_bytes)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        tar.append_data(&mut header, relative, bytes.as_slice()).map_err(|source| io_error(full, source))?;
    }
    let out = finish(tar).map_err(|source| io_error(dir, source))?;
    Bundle::read(&out, limits).map_err(BuildError::Refused)?;
    Ok(out)
}

fn finish(tar: tar::Builder<GzEncoder<Vec<u8>>>) -> io::Result<Vec<u8>> {
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

/// Lists the files to archive under `dir` (whose path in the bundle is `prefix`): relative path,
/// full path, size.
fn walk(
    dir: &Path,
    prefix: &str,
    limits: &Limits,
    visited: &mut BTreeSet<PathBuf>,
    files: &mut Vec<(String, PathBuf, u64)>,
) -> Result<(), BuildError> {
    let canonical = dir.canonicalize().map_err(|source| io_error(dir, source))?;
    if !visited.insert(canonical) {
        return Ok(());
    }
    let depth = if prefix.is_empty() { 0 } else { prefix.split('/').count() };
    let entries = fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io_error(dir, source))?;
        let full = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            let raw = name.as_encoded_bytes();
            if raw.ends_with(b".toml") || raw.ends_with(b".wasm") {
                return Err(BuildError::NonUtf8Name { path: full });
            }
            continue;
        };
        let relative = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        if is_hidden(&relative) {
            continue;
        }
        // Follows symlinks; a dangling one is an error, as the file it names is missing.
        let meta = fs::metadata(&full).map_err(|source| io_error(&full, source))?;
        if meta.is_dir() {
            // Deeper than a bundle may be: no file there could be kept.
            if depth + 1 < limits.max_path_depth {
                walk(&full, &relative, limits, visited, files)?;
            }
        } else if meta.is_file() && wanted(&relative) {
            files.push((relative, full, meta.len()));
        }
    }
    Ok(())
}

/// The files [`Bundle::read`] keeps: top-level `*.toml`, and `*.wasm` anywhere.
fn wanted(relative: &str) -> bool {
    relative.ends_with(".wasm") || (relative.ends_with(".toml") && !relative.contains('/'))
}

/// Refuses, before reading any file, a folder whose files are over the limits.
fn check_sizes(files: &[(String, PathBuf, u64)], limits: &Limits) -> Result<(), BuildError> {
    let mut diagnostics = Vec::new();
    if files.len() as u64 > limits.max_entries {
        diagnostics.push(Diagnostic::new(
            code::TOO_MANY_ENTRIES,
            format!("{} files: the limit is {}", files.len(), limits.max_entries),
        ));
    }
    let mut total: u64 = 0;
    for (relative, _, size) in files {
        total = total.saturating_add(*size);
        if *size > limits.max_file_bytes {
            diagnostics.push(
                Diagnostic::new(
                    code::FILE_TOO_LARGE,
                    format!("{size} bytes: the limit for one file is {} bytes", limits.max_file_bytes),
                )
                .in_file(relative.clone()),
            );
        }
    }
    if total > limits.max_unpacked_bytes {
        diagnostics.push(Diagnostic::new(
            code::UNPACKED_TOO_LARGE,
            format!("the files come to {total} bytes: the limit is {} bytes", limits.max_unpacked_bytes),
        ));
    }
    match Diagnostics::from_vec(diagnostics) {
        Some(diagnostics) => Err(BuildError::Refused(diagnostics)),
        None => Ok(()),
    }
}

/// A file's bytes, at most `cap` of them: one that grew past the limit since it was listed is
/// refused rather than read on.
fn read_file(path: &Path, cap: u64) -> Result<Vec<u8>, BuildError> {
    let file = fs::File::open(path).map_err(|source| io_error(path, source))?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|source| io_error(path, source))?;
    if bytes.len() as u64 > cap {
        let diagnostic =
            Diagnostic::new(code::FILE_TOO_LARGE, format!("more than {cap} bytes: the limit for one file"))
                .in_file(path.display().to_string());
        return Err(BuildError::Refused(diagnostic.into()));
    }
    Ok(bytes)
}

fn io_error(path: &Path, source: io::Error) -> BuildError {
    BuildError::Io { path: path.to_path_buf(), source }
}
