//! A try's `/out` directory to artifacts ([`scan`], [`collect`]), and artifacts to an `/in`
//! directory ([`materialize`]).
//!
//! **Only regular files are artifacts.** `/out` is written by a plugin, so nothing in it is
//! trusted: [`scan`] never follows a symbolic link (a link to `/etc/passwd` must not upload the
//! host's file), and skips links, FIFOs (reading one could block forever), sockets and devices,
//! saying why for each. Directories are walked; names are the paths relative to the directory,
//! `/`-separated. The scan runs after the try has ended, when nothing writes to the directory any
//! more: a file swapped for a link between the check and the read is not a case it defends
//! against (the writer is gone).

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{BlobError, Blobs};

/// A regular file found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutFile {
    /// The path relative to the scanned directory, `/`-separated.
    pub name: String,
    /// The file on the host.
    pub path: PathBuf,
    /// Its size in bytes when scanned.
    pub size: u64,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The regular files, sorted by name.
    pub files: Vec<OutFile>,
    /// What was not taken, sorted by name: (name, why).
    pub skipped: Vec<(String, String)>,
    /// The sum of the files' sizes.
    pub total_bytes: u64,
}

/// One `/out` file stored as a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// The path relative to `/out`, `/`-separated.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its blob's hash, `sha256:<hex>`.
    pub hash: String,
}

/// The regular files under `dir`, recursively, never following symbolic links (see the module's
/// documentation); what is skipped and why. Names that are not UTF-8 are skipped too.
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut scan = Scan::default();
    walk(dir, "", &mut scan)?;
    scan.files.sort_by(|a, b| a.name.cmp(&b.name));
    scan.skipped.sort();
    scan.total_bytes = scan.files.iter().map(|f| f.size).sum();
    Ok(scan)
}

fn walk(dir: &Path, prefix: &str, scan: &mut Scan) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            let lossy = format!("{prefix}{}", file_name.to_string_lossy());
            scan.skipped.push((lossy, "name is not UTF-8".into()));
            continue;
        };
        let name = format!("{prefix}{file_name}");
        // DirEntry::metadata does not follow symbolic links (lstat).
        let meta = entry.metadata()?;
        let kind = meta.file_type();
        if kind.is_file() {
            scan.files.push(OutFile { name, path: entry.path(), size: meta.len() });
        } else if kind.is_dir() {
            walk(&entry.path(), &format!("{name}/"), scan)?;
        } else {
            scan.skipped.push((name, why_skipped(kind).into()));
        }
    }
    Ok(())
}

fn why_skipped(kind: FileType) -> &'static str {
    if kind.is_symlink() {
        "symbolic link (never followed)"
    } else if kind.is_fifo() {
        "FIFO (named pipe)"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "device"
    } else {
        "not a regular file"
    }
}

/// Stores every regular file under `dir` ([`scan`]) in `blobs`: the artifacts, sorted by name,
/// and what was skipped and why.
pub async fn collect(blobs: &Blobs, dir: &Path) -> Result<(Vec<Artifact>, Vec<(String, String)>), BlobError> {
    let scan = scan(dir).map_err(|e| BlobError::io(format!("scanning {}", dir.display()), e))?;
    let mut artifacts = Vec::with_capacity(scan.files.len());
    for file in scan.files {
        let blob = blobs.put_file(&file.path).await?;
        artifacts.push(Artifact { name: file.name, size: blob.size, hash: blob.hash });
    }
    Ok((artifacts, scan.skipped))
}

/// Puts each (relative path, hash) under `dir` (creating subdirectories) with
/// [`Blobs::fetch_to`]: read-only, verified. Refuses a path that is absolute, has `..`, `.` or
/// empty components, or is empty, naming it; every path is checked before anything is fetched.
/// A path that already exists under `dir` is an error.
pub async fn materialize(blobs: &Blobs, files: &[(String, String)], dir: &Path) -> Result<(), BlobError> {
    let mut checked = Vec::with_capacity(files.len());
    for (name, hash) in files {
        checked.push((relative(name)?, hash));
    }
    for (relative, hash) in checked {
        let dest = dir.join(&relative);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| BlobError::io(format!("creating {}", parent.display()), e))?;
        }
        blobs.fetch_to(hash, &dest).await?;
    }
    Ok(())
}

/// `name` as a relative path that stays inside the directory it is joined to.
fn relative(name: &str) -> Result<PathBuf, BlobError> {
    let bad = |reason: &str| BlobError::BadPath { path: name.to_owned(), reason: reason.into() };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.starts_with('/') {
        return Err(bad("absolute"));
    }
    if name.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut out = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" => return Err(bad("has an empty component")),
            "." => return Err(bad("has a `.` component")),
            ".." => return Err(bad("has a `..` component")),
            part => out.push(part),
        }
    }
    // Belt and braces: what was built is only normal components.
    if !out.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad("is not a plain relative path"));
    }
    Ok(out)
}
