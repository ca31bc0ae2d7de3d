//! One fresh store per test, local or S3, and what tests need to reach behind it.

use std::path::{Path, PathBuf};

use sandflow_blobs::Blobs;

/// Which backend a [`Store`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Local,
    S3,
}

/// A fresh, empty store and what is needed to reach its objects directly.
pub struct Store {
    pub blobs: Blobs,
    pub kind: Kind,
    pub location: String,
    /// The local store's root (kept alive for the test).
    root: Option<tempfile::TempDir>,
}

impl Store {
    pub fn new(kind: Kind) -> Store {
        match kind {
            Kind::Local => Store::local_in(&std::env::temp_dir()),
            Kind::S3 => {
                let location = sandflow_test_s3::fresh_bucket();
                let blobs = Blobs::open(&location).unwrap_or_else(|e| panic!("opening {location}: {e}"));
                Store { blobs, kind, location, root: None }
            }
        }
    }

    /// A local store in a new directory under `parent` (which picks its file system).
    pub fn local_in(parent: &Path) -> Store {
        let root = tempfile::Builder::new().prefix("sandflow-blobs-").tempdir_in(parent).unwrap();
        let location = root.path().join("store").display().to_string();
        let blobs = Blobs::open(&location).unwrap_or_else(|e| panic!("opening {location}: {e}"));
        Store { blobs, kind: Kind::Local, location, root: Some(root) }
    }

    /// The local file of blob `hash` (local stores only).
    pub fn blob_file(&self, hash: &str) -> PathBuf {
        assert_eq!(self.kind, Kind::Local);
        PathBuf::from(&self.location).join("sha256").join(hash.strip_prefix("sha256:").unwrap())
    }

    /// Replaces the stored bytes of blob `hash` behind the store's back.
    pub async fn overwrite(&self, hash: &str, bytes: &[u8]) {
        let hex = hash.strip_prefix("sha256:").unwrap();
        match self.kind {
            Kind::Local => {
                use std::os::unix::fs::PermissionsExt;
                let path = self.blob_file(hash);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
                std::fs::write(&path, bytes).unwrap();
            }
            Kind::S3 => sandflow_test_s3::put_object(&self.location, &format!("sha256/{hex}"), bytes),
        }
    }

    /// A file that is not a blob, where the store keeps blobs (a name that is not a hash).
    pub async fn put_stray(&self, name: &str) {
        match self.kind {
            Kind::Local => std::fs::write(PathBuf::from(&self.location).join("sha256").join(name), b"stray").unwrap(),
            Kind::S3 => sandflow_test_s3::put_object(&self.location, &format!("sha256/{name}"), b"stray"),
        }
    }

    /// A temporary directory for destinations, on the same file system as a local store.
    pub fn scratch(&self) -> tempfile::TempDir {
        match &self.root {
            Some(root) => tempfile::Builder::new().prefix("scratch-").tempdir_in(root.path()).unwrap(),
            None => tempfile::tempdir().unwrap(),
        }
    }
}

/// The bucket and endpoint of an `s3://BUCKET?endpoint=URL&...` location.
pub fn s3_parts(location: &str) -> (String, String) {
    let url = url::Url::parse(location).unwrap();
    let endpoint = url.query_pairs().find(|(k, _)| k == "endpoint").map(|(_, v)| v.into_owned()).unwrap();
    (url.host_str().unwrap().to_owned(), endpoint)
}

/// The `sha256:` hash of `bytes`, computed here independently of the crate.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs the async test body `$name(Store)` as two tests, `$name::local` and `$name::s3`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn local() {
                    super::$name($crate::common::Store::new($crate::common::Kind::Local)).await
                }
                #[tokio::test]
                async fn s3() {
                    super::$name($crate::common::Store::new($crate::common::Kind::S3)).await
                }
            }
        )*
    };
}
