//! `out::scan` (never follows links, skips special files), `out::collect` and `out::materialize`.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use sandflow_blobs::out::{self, Artifact};
use sandflow_blobs::BlobError;

use crate::common::{sha256, Store};
use crate::on_both_stores;

on_both_stores!(
    collect_stores_regular_files_only,
    materialize_puts_nested_read_only_files,
    materialize_refuses_paths_that_leave_the_directory
);

/// A `/out` as a hostile plugin could leave it: nested files, links in every direction, a FIFO, a
/// socket. Returns the directory that holds the files outside `/out` the links point at.
fn hostile_out(dir: &Path) -> tempfile::TempDir {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"host secret").unwrap();
    std::fs::create_dir(outside.path().join("secrets")).unwrap();
    std::fs::write(outside.path().join("secrets/key"), b"host key").unwrap();

    std::fs::write(dir.join("b.txt"), b"bee").unwrap();
    std::fs::write(dir.join("a.txt"), b"a").unwrap();
    std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
    std::fs::write(dir.join("sub/deeper/z.bin"), [0u8, 1, 2, 3]).unwrap();
    std::fs::write(dir.join("sub/m.txt"), b"").unwrap();
    symlink("a.txt", dir.join("link-to-file-inside")).unwrap();
    symlink("sub", dir.join("link-to-dir-inside")).unwrap();
    symlink(outside.path().join("secret"), dir.join("link-to-file-outside")).unwrap();
    symlink(outside.path().join("secrets"), dir.join("sub/link-to-dir-outside")).unwrap();
    symlink("/etc", dir.join("etc")).unwrap();
    symlink("nowhere", dir.join("dangling")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("sub/socket")).unwrap();
    outside
}

fn expected_skipped() -> Vec<(String, String)> {
    let link = "symbolic link (never followed)".to_owned();
    vec![
        ("dangling".into(), link.clone()),
        ("etc".into(), link.clone()),
        ("fifo".into(), "FIFO (named pipe)".into()),
        ("link-to-dir-inside".into(), link.clone()),
        ("link-to-file-inside".into(), link.clone()),
        ("link-to-file-outside".into(), link.clone()),
        ("sub/link-to-dir-outside".into(), link),
        ("sub/socket".into(), "socket".into()),
    ]
}

#[test]
fn scan_takes_regular_files_and_skips_links_and_special_files() {
    let dir = tempfile::tempdir().unwrap();
    let _outside = hostile_out(dir.path());
    let scan = out::scan(dir.path()).unwrap();
    let names: Vec<_> = scan.files.iter().map(|f| (f.name.as_str(), f.size)).collect();
    assert_eq!(names, [("a.txt", 1), ("b.txt", 3), ("sub/deeper/z.bin", 4), ("sub/m.txt", 0)]);
    for file in &scan.files {
        assert_eq!(file.path, dir.path().join(&file.name));
    }
    assert_eq!(scan.total_bytes, 8);
    assert_eq!(scan.skipped, expected_skipped());
}

#[test]
fn scan_of_an_empty_directory_is_empty_and_of_a_missing_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let scan = out::scan(dir.path()).unwrap();
    assert!(scan.files.is_empty() && scan.skipped.is_empty() && scan.total_bytes == 0);
    assert!(out::scan(&dir.path().join("missing")).is_err());
}

async fn collect_stores_regular_files_only(store: Store) {
    let dir = tempfile::tempdir().unwrap();
    let _outside = hostile_out(dir.path());
    let (artifacts, skipped) = out::collect(&store.blobs, dir.path()).await.unwrap();
    let art = |name: &str, bytes: &[u8]| Artifact { name: name.into(), size: bytes.len() as u64, hash: sha256(bytes) };
    assert_eq!(
        artifacts,
        [art("a.txt", b"a"), art("b.txt", b"bee"), art("sub/deeper/z.bin", &[0, 1, 2, 3]), art("sub/m.txt", b"")]
    );
    assert_eq!(skipped, expected_skipped());
    let mut stored: Vec<_> = store.blobs.list().await.unwrap().into_iter().map(|m| m.hash).collect();
    let mut expected: Vec<_> = artifacts.iter().map(|a| a.hash.clone()).collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "the host files behind the links were stored");
    for a in &artifacts {
        assert_eq!(store.blobs.get_bytes(&a.hash).await.unwrap(), std::fs::read(dir.path().join(&a.name)).unwrap());
    }
}

async fn materialize_puts_nested_read_only_files(store: Store) {
    let one = store.blobs.put_bytes("one".into()).await.unwrap();
    let two = store.blobs.put_bytes("two".into()).await.unwrap();
    let scratch = store.scratch();
    let dir = scratch.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    let files = vec![
        ("prepare/0/data.csv".to_owned(), one.hash.clone()),
        ("prepare/1/data.csv".to_owned(), two.hash.clone()),
        ("top.txt".to_owned(), one.hash.clone()),
    ];
    out::materialize(&store.blobs, &files, &dir).await.unwrap();
    for (name, content) in [("prepare/0/data.csv", "one"), ("prepare/1/data.csv", "two"), ("top.txt", "one")] {
        let path = dir.join(name);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), content, "{name}");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444, "{name}");
    }
    // A blob that is not there names it, and nothing past it is fetched.
    let missing = sha256(b"missing");
    let err = out::materialize(&store.blobs, &[("again/x".into(), missing.clone())], &dir).await.unwrap_err();
    assert!(matches!(&err, BlobError::NotFound { hash } if *hash == missing), "{err}");
}

async fn materialize_refuses_paths_that_leave_the_directory(store: Store) {
    let blob = store.blobs.put_bytes("x".into()).await.unwrap();
    let scratch = store.scratch();
    let dir = scratch.path().join("in");
    std::fs::create_dir(&dir).unwrap();
    for (bad, reason) in [
        ("../x", "`..`"),
        ("a/../../x", "`..`"),
        ("/etc/x", "absolute"),
        ("", "empty"),
        ("a//b", "empty component"),
        ("./a", "`.`"),
        ("a/", "empty component"),
    ] {
        // A good path first: nothing is fetched when any path is bad.
        let files = vec![("fine.txt".to_owned(), blob.hash.clone()), (bad.to_owned(), blob.hash.clone())];
        let err = out::materialize(&store.blobs, &files, &dir).await.unwrap_err();
        match &err {
            BlobError::BadPath { path, reason: why } => {
                assert_eq!(path, bad);
                assert!(why.contains(reason), "{bad:?}: {why}");
            }
            other => panic!("{bad:?}: {other}"),
        }
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{bad:?}: something was fetched");
        assert_eq!(std::fs::read_dir(scratch.path()).unwrap().count(), 1, "{bad:?}: something was written outside");
    }
}
