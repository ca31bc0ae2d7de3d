//! Content-addressed blobs for task artifacts: every blob is named by the SHA-256 of its bytes
//! (`sha256:<64 hex>`), on local disk or in an S3-compatible bucket, behind one type, [`Blobs`].
//!
//! **Why content addressing.** A try's `/out` files become artifacts that later tries read under
//! `/in`. Naming a blob by its hash makes a put idempotent (the same bytes twice are one blob, and
//! a retried upload cannot leave two versions), makes sharing between runs free, and lets every
//! reader check what it got: a blob whose bytes do not hash to its name is [`BlobError::Corrupt`],
//! never silently handed to a task.
//!
//! **Two stores, one behaviour.** [`Blobs::open`] takes a location: a local directory
//! (`/abs/path` or `file:///abs/path`) or `s3://bucket[/prefix][?endpoint=URL&region=R&allow_http=true]`.
//! - Local: `<root>/sha256/<hex>`, each written to `<root>/tmp/` first, fsynced, made read-only
//!   (0444), then renamed into place, so a reader never sees half a blob. [`Blobs::fetch_to`] hard
//!   links the blob into place (no copy, the same inode; a copy when the link fails, e.g. across
//!   file systems), which is why blobs are 0444: a link is the blob, and the sandbox mounts inputs
//!   read-only besides.
//! - S3: objects `[<prefix>/]sha256/<hex>` through `object_store`'s S3 client, with the
//!   workspace's reqwest (rustls, webpki roots) as its transport (`http.rs` says why). Files over
//!   [`MULTIPART_THRESHOLD`] go up in parts. A put first asks whether the object is there (same
//!   name, same size) and uploads nothing when it is.
//!
//! **Verification.** Every read checks the hash: [`Blobs::get_bytes`] and [`Blobs::fetch_to`]
//! return [`BlobError::Corrupt`] instead of the bytes, and [`Blobs::get_stream`] ends with that
//! error after the last chunk (so a streaming reader must treat what it received as void when the
//! stream ends in an error). [`Blobs::fetch_to`] never leaves a partial or unverified file at its
//! destination: downloads go to a temporary file beside it, renamed once verified.
//!
//! **Credentials.** For S3 they come from the usual `AWS_*` environment (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT`, ...), or from the
//! location's `access_key_id` / `secret_access_key` parameters (tests). They never appear in
//! [`Blobs::describe`], `Debug`, `Display` or error messages.
//!
//! [`out`] turns a try's `/out` directory into artifacts and materialises artifacts into an `/in`
//! directory.

#![deny(missing_docs)]

mod http;
mod local;
pub mod out;
mod s3;
mod verify;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Files larger than this go to S3 as a multipart upload (in parts of this size); smaller ones in
/// one request. 8 MiB: above S3's 5 MiB minimum part size, and small enough to hold in memory.
pub const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

/// The prefix of every hash this crate makes and takes.
pub const HASH_PREFIX: &str = "sha256:";

/// A blob that is in the store: its hash and its size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// `sha256:<64 lower-case hex digits>`.
    pub hash: String,
    /// The blob's size in bytes.
    pub size: u64,
}

/// A blob as [`Blobs::list`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// `sha256:<64 lower-case hex digits>`.
    pub hash: String,
    /// The stored object's size in bytes (not verified: listing reads no content).
    pub size: u64,
    /// When the stored object was last written.
    pub last_modified: DateTime<Utc>,
}

/// What went wrong with a blob or the store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob of this hash in the store.
    #[error("blob {hash} not found")]
    NotFound {
        /// The hash asked for.
        hash: String,
    },
    /// The stored bytes do not hash to the blob's name (or the size is off).
    #[error("blob {hash} is corrupt: {detail}")]
    Corrupt {
        /// The hash asked for.
        hash: String,
        /// What was found instead.
        detail: String,
    },
    /// Not a `sha256:<64 lower-case hex>` hash.
    #[error("{hash:?} is not a blob hash (sha256:<64 lower-case hex digits>)")]
    BadHash {
        /// The string given.
        hash: String,
    },
    /// A file changed while it was being stored (its bytes hashed differently on the second read).
    #[error("{path} changed while it was being stored")]
    FileChanged {
        /// The file.
        path: String,
    },
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The object store (S3) failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done, naming the object.
        context: String,
        /// The error.
        #[source]
        source: object_store::Error,
    },
    /// The location given to [`Blobs::open`] is not one this crate can open.
    #[error("blob store location {location}: {reason}")]
    BadLocation {
        /// The location, credentials masked.
        location: String,
        /// Why it cannot be opened.
        reason: String,
    },
    /// A relative path given to [`out::materialize`] is absolute, empty, or leaves its directory.
    #[error("artifact path {path:?}: {reason}")]
    BadPath {
        /// The path given.
        path: String,
        /// Why it is refused.
        reason: String,
    },
}

impl BlobError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BlobError::Io { context: context.into(), source }
    }
}

/// A blob store, local or S3 (see the crate's documentation). Cheap to clone: clones share the
/// store's client. `Debug` and `Display` show [`Blobs::describe`], never credentials.
#[derive(Clone)]
pub struct Blobs {
    backend: Arc<Backend>,
}

enum Backend {
    Local(local::Local),
    S3(s3::S3),
}

impl fmt::Debug for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Blobs").field("location", &self.describe()).finish()
    }
}

impl fmt::Display for Blobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Blobs {
    /// Opens the store at `location`:
    /// - `/abs/path` or `file:///abs/path`: local files (the directory is created if missing);
    /// - `s3://bucket[/prefix][?endpoint=URL&region=R&allow_http=true]`: S3-compatible storage;
    ///   credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and the usual `AWS_*`
    ///   environment), or the parameters `access_key_id` / `secret_access_key` (and
    ///   `session_token`). Any other parameter is refused, naming it.
    ///
    /// Opening S3 makes no request: a wrong endpoint or key shows on the first operation.
    pub fn open(location: &str) -> Result<Blobs, BlobError> {
        let backend = if location.starts_with("s3://") {
            Backend::S3(s3::S3::open(location)?)
        } else if let Some(path) = location.strip_prefix("file://") {
            Backend::Local(local::Local::open(location, Path::new(path))?)
        } else if location.starts_with('/') {
            Backend::Local(local::Local::open(location, Path::new(location))?)
        } else {
            return Err(BlobError::BadLocation {
                location: s3::redact(location),
                reason: "expected an absolute path, file:///abs/path or s3://bucket[/prefix]".into(),
            });
        };
        Ok(Blobs { backend: Arc::new(backend) })
    }

    /// The location, without credentials: the local root, or `s3://bucket[/prefix]` with the
    /// endpoint and region when they were given.
    pub fn describe(&self) -> String {
        match &*self.backend {
            Backend::Local(l) => l.describe(),
            Backend::S3(s) => s.describe(),
        }
    }

    /// Stores the regular file at `path`, reading it as a stream while hashing it (never whole in
    /// memory, except S3 files under [`MULTIPART_THRESHOLD`]). Idempotent: a blob of the same
    /// hash already in the store is not written again (on S3, not uploaded again). On S3 the file
    /// is read twice (the object's name is its hash, needed before the upload); if its bytes differ
    /// the second time, the upload is abandoned with [`BlobError::FileChanged`].
    pub async fn put_file(&self, path: &Path) -> Result<Blob, BlobError> {
        match &*self.backend {
            Backend::Local(l) => l.put_file(path).await,
            Backend::S3(s) => s.put_file(path).await,
        }
    }

    /// Stores `bytes`. Idempotent, as [`Blobs::put_file`].
    pub async fn put_bytes(&self, bytes: Bytes) -> Result<Blob, BlobError> {
        match &*self.backend {
            Backend::Local(l) => l.put_bytes(bytes).await,
            Backend::S3(s) => s.put_bytes(bytes).await,
        }
    }

    /// The bytes of blob `hash`, verified: [`BlobError::Corrupt`] when they do not hash to `hash`.
    pub async fn get_bytes(&self, hash: &str) -> Result<Bytes, BlobError> {
        let (size, stream) = self.get_stream(hash).await?;
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(64 << 20));
        let mut stream = stream;
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    /// The size of blob `hash` (as stored) and its bytes as a stream. The stream is verified as it
    /// goes: after the last chunk it yields [`BlobError::Corrupt`] if the bytes did not hash to
    /// `hash` or their count was not the size, so a reader must discard what it received when the
    /// stream ends in an error.
    pub async fn get_stream(
        &self,
        hash: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, BlobError>>), BlobError> {
        let hex = hex_of(hash)?;
        let (size, stream) = match &*self.backend {
            Backend::Local(l) => l.get_stream(hash, hex).await?,
            Backend::S3(s) => s.get_stream(hash, hex).await?,
        };
        Ok((size, Box::pin(verify::Verified::new(stream, hash, size))))
    }

    /// Puts blob `hash` at `dest` (a path that must not exist; its directory must), read-only
    /// (0444), verified. Local: the blob is verified, then hard-linked to `dest` (the same inode),
    /// or copied (to a temporary file beside `dest`, verified, renamed) when the link fails, e.g.
    /// across file systems. S3: downloaded to a temporary file beside `dest`, verified, renamed.
    pub async fn fetch_to(&self, hash: &str, dest: &Path) -> Result<(), BlobError> {
        let hex = hex_of(hash)?;
        match &*self.backend {
            Backend::Local(l) => l.fetch_to(self, hash, hex, dest).await,
            Backend::S3(_) => copy_verified(self, hash, dest).await,
        }
    }

    /// Removes blob `hash`. Removing a blob that is not there succeeds (as S3's delete does), so a
    /// clean-up can be repeated.
    pub async fn delete(&self, hash: &str) -> Result<(), BlobError> {
        let hex = hex_of(hash)?;
        match &*self.backend {
            Backend::Local(l) => l.delete(hex).await,
            Backend::S3(s) => s.delete(hex).await,
        }
    }

    /// Every blob in the store, sorted by hash. Objects or files whose names are not blob names
    /// (e.g. temporary files) are left out.
    pub async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let mut blobs = match &*self.backend {
            Backend::Local(l) => l.list().await?,
            Backend::S3(s) => s.list().await?,
        };
        blobs.sort_by(|a, b| a.hash.cmp(&b.hash));
        Ok(blobs)
    }
}

/// Streams blob `hash` into a temporary file beside `dest`, then (verified: the stream's last item
/// says) makes it 0444 and renames it to `dest`, refusing to replace an existing file. A failure
/// leaves nothing behind (the temporary file is removed when dropped).
async fn copy_verified(blobs: &Blobs, hash: &str, dest: &Path) -> Result<(), BlobError> {
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::AsyncWriteExt;

    let parent = parent_of(dest);
    let (_, mut stream) = blobs.get_stream(hash).await?;
    let temp = tempfile::Builder::new()
        .prefix(".sandflow-fetch-")
        .tempfile_in(parent)
        .map_err(|e| BlobError::io(format!("creating a temporary file in {}", parent.display()), e))?;
    let (file, temp_path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let writing = |e| BlobError::io(format!("writing {}", temp_path.display()), e);
    while let Some(chunk) = stream.try_next().await? {
        file.write_all(&chunk).await.map_err(writing)?;
    }
    file.flush().await.map_err(writing)?;
    drop(file);
    std::fs::set_permissions(&temp_path, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| BlobError::io(format!("making {} read-only", temp_path.display()), e))?;
    temp_path
        .persist_noclobber(dest)
        .map_err(|e| BlobError::io(format!("renaming the download of {hash} to {}", dest.display()), e.error))?;
    Ok(())
}

/// The directory `path` is in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// The 64 hex digits of a `sha256:<hex>` hash, or [`BlobError::BadHash`].
fn hex_of(hash: &str) -> Result<&str, BlobError> {
    hash.strip_prefix(HASH_PREFIX)
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .ok_or_else(|| BlobError::BadHash { hash: hash.to_owned() })
}

/// Whether `name` is 64 lower-case hex digits (a blob's file or object name).
fn is_hex_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// SHA-256 and byte count of what went through it.
#[derive(Default)]
struct Hashing {
    sha: Sha256,
    size: u64,
}

impl Hashing {
    fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn finish(self) -> Blob {
        Blob { hash: format!("{HASH_PREFIX}{}", hex::encode(self.sha.finalize())), size: self.size }
    }
}

/// The blob `bytes` would be.
fn blob_of(bytes: &[u8]) -> Blob {
    let mut h = Hashing::default();
    h.update(bytes);
    h.finish()
}
