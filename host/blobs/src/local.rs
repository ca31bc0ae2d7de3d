//! The local store: `<root>/sha256/<hex>` files, 0444, written through `<root>/tmp/`.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{blob_of, is_hex_name, Blob, BlobError, BlobMeta, Blobs, Hashing, HASH_PREFIX};

/// Bytes read at a time when hashing or copying files.
const CHUNK: usize = 256 * 1024;

pub(crate) struct Local {
    root: PathBuf,
}

impl Local {
    /// The store rooted at `root` (absolute), creating `root/sha256` and `root/tmp`.
    pub(crate) fn open(location: &str, root: &Path) -> Result<Local, BlobError> {
        if !root.is_absolute() {
            return Err(BlobError::BadLocation {
                location: location.to_owned(),
                reason: "a local blob store's path must be absolute".into(),
            });
        }
        for dir in ["sha256", "tmp"] {
            let dir = root.join(dir);
            std::fs::create_dir_all(&dir).map_err(|e| BlobError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(Local { root: root.to_owned() })
    }

    pub(crate) fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("sha256").join(hex)
    }

    /// A new temporary file in `<root>/tmp`, on the same file system as the blobs (so the final
    /// rename is atomic); removed when dropped unless persisted.
    fn temp(&self) -> Result<(tokio::fs::File, tempfile::TempPath), BlobError> {
        let dir = self.root.join("tmp");
        let temp = tempfile::Builder::new()
            .prefix(".put-")
            .tempfile_in(&dir)
            .map_err(|e| BlobError::io(format!("creating a temporary file in {}", dir.display()), e))?;
        let (file, path) = temp.into_parts();
        Ok((tokio::fs::File::from_std(file), path))
    }

    /// Makes the written temporary file durable and read-only, then renames it to the blob's name.
    /// Replacing an existing blob of the same hash is harmless (the same bytes; readers and links
    /// keep the inode they have).
    async fn commit(&self, mut file: tokio::fs::File, temp: tempfile::TempPath, blob: &Blob) -> Result<(), BlobError> {
        let context = || format!("writing {}", temp.display());
        file.flush().await.map_err(|e| BlobError::io(context(), e))?;
        file.sync_all().await.map_err(|e| BlobError::io(context(), e))?;
        drop(file);
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o444))
            .map_err(|e| BlobError::io(format!("making {} read-only", temp.display()), e))?;
        let dest = self.blob_path(&blob.hash[HASH_PREFIX.len()..]);
        temp.persist(&dest)
            .map_err(|e| BlobError::io(format!("renaming a new blob to {}", dest.display()), e.error))?;
        Ok(())
    }

    pub(crate) async fn put_bytes(&self, bytes: Bytes) -> Result<Blob, BlobError> {
        let blob = blob_of(&bytes);
        if self.has(&blob).await {
            return Ok(blob);
        }
        let (mut file, temp) = self.temp()?;
        file.write_all(&bytes).await.map_err(|e| BlobError::io(format!("writing {}", temp.display()), e))?;
        self.commit(file, temp, &blob).await?;
        Ok(blob)
    }

    /// Copies the file into a temporary file while hashing it (one read), then keeps the copy
    /// unless a blob of that hash is already there.
    pub(crate) async fn put_file(&self, path: &Path) -> Result<Blob, BlobError> {
        let reading = |e| BlobError::io(format!("reading {}", path.display()), e);
        let mut src = tokio::fs::File::open(path).await.map_err(reading)?;
        let (mut file, temp) = self.temp()?;
        let mut hashing = Hashing::default();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = src.read(&mut buf).await.map_err(reading)?;
            if n == 0 {
                break;
            }
            hashing.update(&buf[..n]);
            file.write_all(&buf[..n]).await.map_err(|e| BlobError::io(format!("writing {}", temp.display()), e))?;
        }
        let blob = hashing.finish();
        if self.has(&blob).await {
            // `temp` is removed when dropped.
            return Ok(blob);
        }
        self.commit(file, temp, &blob).await?;
        Ok(blob)
    }

    /// Whether a file of the blob's name and size is there (its bytes are checked on read).
    async fn has(&self, blob: &Blob) -> bool {
        tokio::fs::symlink_metadata(self.blob_path(&blob.hash[HASH_PREFIX.len()..]))
            .await
            .is_ok_and(|m| m.is_file() && m.len() == blob.size)
    }

    pub(crate) async fn get_stream(
        &self,
        hash: &str,
        hex: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, BlobError>>), BlobError> {
        let path = self.blob_path(hex);
        let file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(BlobError::NotFound { hash: hash.to_owned() }),
            Err(e) => return Err(BlobError::io(format!("opening {}", path.display()), e)),
        };
        let size = file.metadata().await.map_err(|e| BlobError::io(format!("reading {}", path.display()), e))?.len();
        let context = format!("reading {}", path.display());
        let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
            .map_err(move |e| BlobError::io(context.clone(), e))
            .boxed();
        Ok((size, stream))
    }

    /// Verifies the blob, then hard-links it to `dest`; copies (verified) when linking fails for
    /// a reason other than `dest` existing or its directory missing.
    pub(crate) async fn fetch_to(&self, blobs: &Blobs, hash: &str, hex: &str, dest: &Path) -> Result<(), BlobError> {
        let (_, mut stream) = blobs.get_stream(hash).await?;
        while stream.try_next().await?.is_some() {}
        let blob = self.blob_path(hex);
        match tokio::fs::hard_link(&blob, dest).await {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => {
                Err(BlobError::io(format!("linking {} to {}", blob.display(), dest.display()), e))
            }
            // Another file system (EXDEV), a file system without hard links, too many links: copy.
            Err(_) => crate::copy_verified(blobs, hash, dest).await,
        }
    }

    pub(crate) async fn delete(&self, hex: &str) -> Result<(), BlobError> {
        let path = self.blob_path(hex);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BlobError::io(format!("removing {}", path.display()), e)),
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let dir = self.root.join("sha256");
        let context = || format!("listing {}", dir.display());
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(|e| BlobError::io(context(), e))?;
        let mut out = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(|e| BlobError::io(context(), e))? {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if !is_hex_name(&name) {
                continue;
            }
            let meta = match entry.metadata().await {
                Ok(meta) => meta,
                // Deleted since the listing read its name.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(BlobError::io(format!("reading {}", entry.path().display()), e)),
            };
            if !meta.is_file() {
                continue;
            }
            let modified =
                meta.modified().map_err(|e| BlobError::io(format!("reading {}", entry.path().display()), e))?;
            out.push(BlobMeta {
                hash: format!("{HASH_PREFIX}{name}"),
                size: meta.len(),
                last_modified: DateTime::<Utc>::from(modified),
            });
        }
        Ok(out)
    }
}
