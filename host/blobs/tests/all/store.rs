//! `Blobs` on both stores: put/get, idempotence, corruption, missing blobs, list, delete,
//! fetch_to, get_stream; and opening locations.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use sandflow_blobs::{Blob, BlobError, Blobs, MULTIPART_THRESHOLD};

use crate::common::{sha256, Kind, Store};
use crate::on_both_stores;

on_both_stores!(
    put_and_get_round_trip,
    a_second_put_of_the_same_bytes_writes_nothing,
    corrupt_blobs_are_detected_by_every_read,
    a_missing_blob_is_not_found,
    list_shows_blobs_only,
    delete_removes_and_can_repeat,
    fetch_to_puts_a_verified_read_only_file,
    get_stream_streams_a_large_file_verified,
    describe_and_debug_show_no_credentials,
);

/// SHA-256 of "hello", from `printf hello | sha256sum`.
const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

async fn put_and_get_round_trip(store: Store) {
    let blob = store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(blob, Blob { hash: HELLO.into(), size: 5 });
    assert_eq!(store.blobs.get_bytes(HELLO).await.unwrap(), Bytes::from_static(b"hello"));

    // A file: the same bytes are the same blob; other bytes another.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &content).unwrap();
    let from_file = store.blobs.put_file(&path).await.unwrap();
    assert_eq!(from_file, Blob { hash: sha256(&content), size: content.len() as u64 });
    assert_eq!(store.blobs.get_bytes(&from_file.hash).await.unwrap(), content);

    // The empty blob is a blob.
    let empty = store.blobs.put_bytes(Bytes::new()).await.unwrap();
    assert_eq!(empty, Blob { hash: sha256(b""), size: 0 });
    assert!(store.blobs.get_bytes(&empty.hash).await.unwrap().is_empty());

    if store.kind == Kind::Local {
        let meta = std::fs::metadata(store.blob_file(HELLO)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o444, "blobs are read-only");
        // Nothing left in the temporary directory.
        let tmp = std::path::Path::new(&store.location).join("tmp");
        assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
    }
}

async fn a_second_put_of_the_same_bytes_writes_nothing(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"hello").unwrap();
    let first = store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    let before = store.blobs.list().await.unwrap();
    let inode = (store.kind == Kind::Local).then(|| std::fs::metadata(store.blob_file(HELLO)).unwrap().ino());
    // S3's Last-Modified has a resolution of a second: wait past it, so a second upload would show.
    if store.kind == Kind::S3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert_eq!(store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap(), first);
    assert_eq!(store.blobs.put_file(&path).await.unwrap(), first);
    let after = store.blobs.list().await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after, before, "a second put rewrote the blob");
    if let Some(inode) = inode {
        assert_eq!(std::fs::metadata(store.blob_file(HELLO)).unwrap().ino(), inode, "a second put replaced the file");
    }
}

async fn corrupt_blobs_are_detected_by_every_read(store: Store) {
    let blob = store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    let dest_dir = store.scratch();
    // Same size, other bytes; then other size.
    for garbage in [&b"jello"[..], &b"hello, world"[..]] {
        store.overwrite(&blob.hash, garbage).await;
        let err = store.blobs.get_bytes(&blob.hash).await.unwrap_err();
        assert!(matches!(&err, BlobError::Corrupt { hash, .. } if *hash == blob.hash), "{err}");
        assert!(err.to_string().contains(&blob.hash), "{err}");

        let (_, mut stream) = store.blobs.get_stream(&blob.hash).await.unwrap();
        let mut last = None;
        while let Some(item) = stream.next().await {
            last = Some(item);
        }
        assert!(matches!(last, Some(Err(BlobError::Corrupt { .. }))), "the stream did not end in Corrupt: {last:?}");

        let dest = dest_dir.path().join("x");
        let err = store.blobs.fetch_to(&blob.hash, &dest).await.unwrap_err();
        assert!(matches!(err, BlobError::Corrupt { .. }), "{err}");
        assert!(!dest.exists(), "fetch_to left a corrupt file");
        assert_eq!(std::fs::read_dir(dest_dir.path()).unwrap().count(), 0, "fetch_to left a temporary file");
    }
    // A put of the right bytes repairs a wrong-sized object (the store sees a different size).
    store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(store.blobs.get_bytes(&blob.hash).await.unwrap(), Bytes::from_static(b"hello"));
}

async fn a_missing_blob_is_not_found(store: Store) {
    let missing = sha256(b"never stored");
    let err = store.blobs.get_bytes(&missing).await.unwrap_err();
    assert!(matches!(&err, BlobError::NotFound { hash } if *hash == missing), "{err}");
    assert_eq!(err.to_string(), format!("blob {missing} not found"));
    assert!(matches!(store.blobs.get_stream(&missing).await, Err(BlobError::NotFound { .. })));
    let dir = store.scratch();
    let err = store.blobs.fetch_to(&missing, &dir.path().join("x")).await.unwrap_err();
    assert!(matches!(err, BlobError::NotFound { .. }), "{err}");
    for bad in ["", "hello", "sha256:", "sha256:ABCDEF", &missing.to_uppercase(), &format!("sha1:{}", &missing[7..])] {
        let err = store.blobs.get_bytes(bad).await.unwrap_err();
        assert!(matches!(&err, BlobError::BadHash { hash } if hash == bad), "{bad}: {err}");
    }
}

async fn list_shows_blobs_only(store: Store) {
    assert!(store.blobs.list().await.unwrap().is_empty());
    let started = chrono::Utc::now() - chrono::Duration::seconds(5);
    let mut expected = Vec::new();
    for content in [&b"one"[..], b"two two", b"three three three"] {
        let blob = store.blobs.put_bytes(Bytes::copy_from_slice(content)).await.unwrap();
        expected.push((blob.hash, content.len() as u64));
    }
    store.put_stray("not-a-hash").await;
    expected.sort();
    let listed = store.blobs.list().await.unwrap();
    let got: Vec<_> = listed.iter().map(|m| (m.hash.clone(), m.size)).collect();
    assert_eq!(got, expected);
    for meta in &listed {
        assert!(meta.last_modified >= started, "{meta:?} older than the test");
        assert!(meta.last_modified <= chrono::Utc::now() + chrono::Duration::seconds(5), "{meta:?}");
    }
}

async fn delete_removes_and_can_repeat(store: Store) {
    let keep = store.blobs.put_bytes(Bytes::from_static(b"keep")).await.unwrap();
    let gone = store.blobs.put_bytes(Bytes::from_static(b"gone")).await.unwrap();
    store.blobs.delete(&gone.hash).await.unwrap();
    assert!(matches!(store.blobs.get_bytes(&gone.hash).await, Err(BlobError::NotFound { .. })));
    let listed: Vec<_> = store.blobs.list().await.unwrap().into_iter().map(|m| m.hash).collect();
    assert_eq!(listed, vec![keep.hash.clone()]);
    store.blobs.delete(&gone.hash).await.unwrap();
    assert_eq!(store.blobs.get_bytes(&keep.hash).await.unwrap(), Bytes::from_static(b"keep"));
    assert!(matches!(store.blobs.delete("sha256:nope").await, Err(BlobError::BadHash { .. })));
}

async fn fetch_to_puts_a_verified_read_only_file(store: Store) {
    let blob = store.blobs.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    let dir = store.scratch();
    let dest = dir.path().join("input.txt");
    store.blobs.fetch_to(&blob.hash, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
    let meta = std::fs::symlink_metadata(&dest).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    if store.kind == Kind::Local {
        let stored = std::fs::metadata(store.blob_file(&blob.hash)).unwrap();
        assert_eq!((meta.dev(), meta.ino()), (stored.dev(), stored.ino()), "not a hard link to the blob");
    }
    // An existing destination is not replaced.
    let other = dir.path().join("other.txt");
    std::fs::write(&other, b"mine").unwrap();
    let err = store.blobs.fetch_to(&blob.hash, &other).await.unwrap_err();
    assert!(matches!(err, BlobError::Io { .. }), "{err}");
    assert!(err.to_string().contains("other.txt"), "{err}");
    assert_eq!(std::fs::read(&other).unwrap(), b"mine");
    // Only the two files: no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

async fn get_stream_streams_a_large_file_verified(store: Store) {
    // Over the multipart threshold, and not a multiple of it or of any chunk size.
    let len = MULTIPART_THRESHOLD + MULTIPART_THRESHOLD / 2 + 12_345;
    let content: Vec<u8> = (0..len as u64).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    std::fs::write(&path, &content).unwrap();
    let blob = store.blobs.put_file(&path).await.unwrap();
    assert_eq!(blob, Blob { hash: sha256(&content), size: len as u64 });

    let (size, mut stream) = store.blobs.get_stream(&blob.hash).await.unwrap();
    assert_eq!(size, len as u64);
    let mut got = Vec::with_capacity(len);
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.unwrap());
        chunks += 1;
    }
    assert!(chunks > 1, "one chunk of {len} bytes: not streamed");
    assert!(got == content, "streamed bytes differ");
    let scratch = store.scratch();
    let dest = scratch.path().join("big");
    store.blobs.fetch_to(&blob.hash, &dest).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == content);
}

async fn describe_and_debug_show_no_credentials(store: Store) {
    let described = store.blobs.describe();
    let debug = format!("{:?}", store.blobs);
    let display = store.blobs.to_string();
    match store.kind {
        Kind::Local => assert_eq!(described, store.location),
        Kind::S3 => {
            let (bucket, endpoint) = crate::common::s3_parts(&store.location);
            assert!(described.starts_with(&format!("s3://{bucket}?")), "{described}");
            assert!(described.contains(&endpoint), "{described}");
            for text in [&described, &debug, &display] {
                assert!(!text.contains(sandflow_test_s3::SECRET_ACCESS_KEY), "{text}");
                assert!(!text.contains(sandflow_test_s3::ACCESS_KEY_ID), "{text}");
            }
        }
    }
    assert!(debug.contains(&described), "{debug}");
    assert_eq!(display, described);
}

#[tokio::test]
async fn a_prefix_keeps_stores_in_one_bucket_apart() {
    let location = sandflow_test_s3::fresh_bucket();
    let (base, query) = location.split_once('?').unwrap();
    let a = Blobs::open(&format!("{base}/team-a/blobs?{query}")).unwrap();
    let b = Blobs::open(&format!("{base}/team-b?{query}")).unwrap();
    let root = Blobs::open(&location).unwrap();
    let blob = a.put_bytes(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(a.list().await.unwrap().len(), 1);
    assert!(b.list().await.unwrap().is_empty());
    assert!(root.list().await.unwrap().is_empty(), "the root lists a prefixed store's blob");
    assert!(matches!(b.get_bytes(&blob.hash).await, Err(BlobError::NotFound { .. })));
    assert!(a.describe().starts_with(&format!("{base}/team-a/blobs?")), "{}", a.describe());
}

#[test]
fn bad_locations_are_refused_naming_them_without_secrets() {
    let cases = [
        ("relative/path", "absolute path"),
        ("file://relative", "absolute"),
        ("gs://bucket", "expected an absolute path"),
        ("s3://bucket?colour=blue", "unknown parameter \"colour\""),
        ("s3://bucket?allow_http=yes", "allow_http=yes"),
        ("s3://?region=x", "no bucket"),
    ];
    for (location, reason) in cases {
        let err = Blobs::open(location).unwrap_err();
        assert!(matches!(err, BlobError::BadLocation { .. }), "{location}: {err}");
        let message = err.to_string();
        assert!(message.contains(reason), "{location}: {message}");
    }
    let err = Blobs::open("s3://bucket?secret_access_key=hunter2&colour=blue").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("colour") && message.contains("secret_access_key=***"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn a_local_location_is_created_and_a_file_url_is_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    let blobs = Blobs::open(&format!("file://{}", root.display())).unwrap();
    assert!(root.join("sha256").is_dir());
    assert_eq!(blobs.describe(), root.display().to_string());
}

#[tokio::test]
async fn fetch_to_copies_across_file_systems() {
    // /dev/shm is a tmpfs, the temporary directory is not: a hard link between them fails (EXDEV).
    let shm = std::path::Path::new("/dev/shm");
    let store = Store::local_in(shm);
    let dir = tempfile::tempdir().unwrap();
    assert_ne!(
        std::fs::metadata(shm).unwrap().dev(),
        std::fs::metadata(dir.path()).unwrap().dev(),
        "the test needs {} and {} on different file systems",
        shm.display(),
        dir.path().display()
    );
    let blob = store.blobs.put_bytes(Bytes::from_static(b"across")).await.unwrap();
    let dest = dir.path().join("x");
    store.blobs.fetch_to(&blob.hash, &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"across");
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
    assert_ne!(meta.ino(), std::fs::metadata(store.blob_file(&blob.hash)).unwrap().ino());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a temporary file was left");
}
