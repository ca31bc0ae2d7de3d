//! The S3 store: objects `[<prefix>/]sha256/<hex>` through object_store's S3 client.

use std::path::Path as FsPath;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::{blob_of, is_hex_name, Blob, BlobError, BlobMeta, Hashing, HASH_PREFIX, MULTIPART_THRESHOLD};

/// Parts uploaded at the same time in a multipart upload (each [`MULTIPART_THRESHOLD`] bytes in
/// memory at most).
const UPLOAD_CONCURRENCY: usize = 4;

/// Bytes read at a time when hashing a file.
const CHUNK: usize = 256 * 1024;

/// The location parameters that hold credentials: masked in every message.
const SECRET_PARAMS: [&str; 3] = ["access_key_id", "secret_access_key", "session_token"];

pub(crate) struct S3 {
    store: AmazonS3,
    /// `[<prefix>/]sha256`: where the blobs are.
    dir: Path,
    describe: String,
}

impl S3 {
    pub(crate) fn open(location: &str) -> Result<S3, BlobError> {
        let bad = |reason: String| BlobError::BadLocation { location: redact(location), reason };
        let url = url::Url::parse(location).map_err(|e| bad(e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                bad("credentials go in access_key_id / secret_access_key parameters or AWS_* variables".into()),
            );
        }
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| bad("no bucket".into()))?.to_owned();
        let prefix = url.path().trim_matches('/').to_owned();
        let mut builder =
            AmazonS3Builder::from_env().with_bucket_name(&bucket).with_http_connector(crate::http::Connector);
        let mut shown = Vec::new();
        for (key, value) in url.query_pairs() {
            match &*key {
                "endpoint" => builder = builder.with_endpoint(value.trim_end_matches('/')),
                "region" => builder = builder.with_region(&*value),
                "allow_http" => match &*value {
                    "true" => builder = builder.with_allow_http(true),
                    "false" => builder = builder.with_allow_http(false),
                    other => return Err(bad(format!("allow_http={other}: expected true or false"))),
                },
                "access_key_id" => builder = builder.with_access_key_id(&*value),
                "secret_access_key" => builder = builder.with_secret_access_key(&*value),
                "session_token" => builder = builder.with_token(&*value),
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (known: endpoint, region, allow_http, access_key_id, \
                         secret_access_key, session_token)"
                    )))
                }
            }
            if !SECRET_PARAMS.contains(&&*key) {
                shown.push(format!("{key}={value}"));
            }
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        let mut describe = format!("s3://{bucket}");
        if !prefix.is_empty() {
            describe.push('/');
            describe.push_str(&prefix);
        }
        if !shown.is_empty() {
            describe.push('?');
            describe.push_str(&shown.join("&"));
        }
        let dir = if prefix.is_empty() { Path::from("sha256") } else { Path::from(prefix.as_str()).join("sha256") };
        Ok(S3 { store, dir, describe })
    }

    pub(crate) fn describe(&self) -> String {
        self.describe.clone()
    }

    fn key(&self, hex: &str) -> Path {
        self.dir.clone().join(hex)
    }

    fn store_error(&self, context: String, source: object_store::Error) -> BlobError {
        BlobError::Store { context: format!("{context} in {}", self.describe), source }
    }

    /// Whether an object of the blob's name and size is there.
    async fn has(&self, blob: &Blob) -> Result<bool, BlobError> {
        let key = self.key(&blob.hash[HASH_PREFIX.len()..]);
        match self.store.head(&key).await {
            Ok(meta) => Ok(meta.size == blob.size),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.store_error(format!("looking up {key}"), e)),
        }
    }

    pub(crate) async fn put_bytes(&self, bytes: Bytes) -> Result<Blob, BlobError> {
        let blob = blob_of(&bytes);
        if !self.has(&blob).await? {
            let key = self.key(&blob.hash[HASH_PREFIX.len()..]);
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.store_error(format!("uploading {key}"), e))?;
        }
        Ok(blob)
    }

    /// Hashes the file (first read), then, unless the object is there, uploads it (second read),
    /// hashing again: bytes that differ abandon the upload.
    pub(crate) async fn put_file(&self, path: &FsPath) -> Result<Blob, BlobError> {
        let reading = |e| BlobError::io(format!("reading {}", path.display()), e);
        let mut hashing = Hashing::default();
        {
            let mut file = tokio::fs::File::open(path).await.map_err(reading)?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buf).await.map_err(reading)?;
                if n == 0 {
                    break;
                }
                hashing.update(&buf[..n]);
            }
        }
        let blob = hashing.finish();
        if self.has(&blob).await? {
            return Ok(blob);
        }
        let key = self.key(&blob.hash[HASH_PREFIX.len()..]);
        let changed = || BlobError::FileChanged { path: path.display().to_string() };
        if blob.size <= MULTIPART_THRESHOLD as u64 {
            let bytes = tokio::fs::read(path).await.map_err(reading)?;
            if blob_of(&bytes) != blob {
                return Err(changed());
            }
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(|e| self.store_error(format!("uploading {key}"), e))?;
            return Ok(blob);
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| self.store_error(format!("starting the upload of {key}"), e))?;
        let mut upload = WriteMultipart::new_with_chunk_size(upload, MULTIPART_THRESHOLD);
        let mut again = Hashing::default();
        let result: Result<(), BlobError> = async {
            let mut file = tokio::fs::File::open(path).await.map_err(reading)?;
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buf).await.map_err(reading)?;
                if n == 0 {
                    break;
                }
                again.update(&buf[..n]);
                upload
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(|e| self.store_error(format!("uploading {key}"), e))?;
                upload.write(&buf[..n]);
            }
            Ok(())
        }
        .await;
        let same = result.is_ok() && again.finish() == blob;
        match result {
            Ok(()) if same => {
                upload.finish().await.map_err(|e| self.store_error(format!("finishing the upload of {key}"), e))?;
                Ok(blob)
            }
            outcome => {
                // Best effort: S3 drops unfinished uploads by lifecycle rules too.
                let _ = upload.abort().await;
                Err(outcome.err().unwrap_or_else(changed))
            }
        }
    }

    pub(crate) async fn get_stream(
        &self,
        hash: &str,
        hex: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, BlobError>>), BlobError> {
        let key = self.key(hex);
        let result = match self.store.get(&key).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(BlobError::NotFound { hash: hash.to_owned() }),
            Err(e) => return Err(self.store_error(format!("downloading {key}"), e)),
        };
        let size = result.meta.size;
        let context = format!("downloading {key} in {}", self.describe);
        let stream =
            result.into_stream().map_err(move |source| BlobError::Store { context: context.clone(), source }).boxed();
        Ok((size, stream))
    }

    pub(crate) async fn delete(&self, hex: &str) -> Result<(), BlobError> {
        let key = self.key(hex);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.store_error(format!("deleting {key}"), e)),
        }
    }

    pub(crate) async fn list(&self) -> Result<Vec<BlobMeta>, BlobError> {
        let metas: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| self.store_error(format!("listing {}", self.dir), e))?;
        Ok(metas
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?;
                let direct = meta.location.prefix_match(&self.dir)?.count() == 1;
                (direct && is_hex_name(name)).then(|| BlobMeta {
                    hash: format!("{HASH_PREFIX}{name}"),
                    size: meta.size,
                    last_modified: meta.last_modified,
                })
            })
            .collect())
    }
}

/// `location` with the values of credential parameters replaced by `***`, for messages.
pub(crate) fn redact(location: &str) -> String {
    let Some((base, query)) = location.split_once('?') else { return location.to_owned() };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.contains(&key) => format!("{key}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}
