//! Building a bundle from a DAG folder: what goes in, determinism, and the round trip.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sandflow_bundle::{build, code, BuildError, Bundle, Limits};

use crate::support::{DAG, WASM};

fn write(root: &Path, relative: &str, bytes: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A DAG folder as authors have them: DAG files, plugins, and things that are neither.
fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "ml.toml", DAG.as_bytes());
    write(root, "wait.toml", b"id = \"wait\"\n");
    write(root, "plugins/t.wasm", WASM);
    write(root, "plugins/sub/u.wasm", b"\0asm\x01\0\0\0u");
    write(root, &format!("plugins/{}/long.wasm", "n".repeat(120)), WASM);
    write(root, "README.md", b"# DAGs");
    write(root, ".ml.toml.swp", b"swap");
    write(root, ".git/objects/x.wasm", WASM);
    write(root, "team/nested.toml", b"id = \"nested\"\n");
    write(root, "plugins/src/main.rs", b"fn main() {}");
    dir
}

#[test]
fn a_built_bundle_reads_back_as_the_folder_dags_and_plugins() {
    let dir = folder();
    let bytes = build(dir.path(), &Limits::default()).unwrap();
    let bundle = Bundle::read(&bytes, &Limits::default()).unwrap();
    assert_eq!(bundle.dags.keys().collect::<Vec<_>>(), ["ml.toml", "wait.toml"]);
    assert_eq!(bundle.dags["ml.toml"], DAG);
    let long = format!("plugins/{}/long.wasm", "n".repeat(120));
    assert_eq!(bundle.plugins.keys().collect::<Vec<_>>(), [long.as_str(), "plugins/sub/u.wasm", "plugins/t.wasm"]);
    assert_eq!(bundle.plugins["plugins/sub/u.wasm"], fs::read(dir.path().join("plugins/sub/u.wasm")).unwrap());
    assert!(bundle.ignored.is_empty(), "only what is kept goes in: {:?}", bundle.ignored);
}

#[test]
fn the_same_folder_builds_the_same_bytes() {
    let dir = folder();
    let first = build(dir.path(), &Limits::default()).unwrap();
    // New times and modes, and the files written again in another order, change nothing.
    let later = SystemTime::now() + Duration::from_secs(86_400);
    for relative in ["ml.toml", "plugins/t.wasm"] {
        let path = dir.path().join(relative);
        let bytes = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, bytes).unwrap();
        fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert_eq!(build(dir.path(), &Limits::default()).unwrap(), first);

    let other = folder();
    assert_eq!(build(other.path(), &Limits::default()).unwrap(), first, "another folder with the same files");
}

#[test]
fn entries_are_sorted_with_zeroed_times_and_owners() {
    let dir = folder();
    let bytes = build(dir.path(), &Limits::default()).unwrap();
    assert_eq!(&bytes[4..8], &[0, 0, 0, 0], "gzip mtime");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!((header.mtime().unwrap(), header.uid().unwrap(), header.gid().unwrap()), (0, 0, 0));
        assert_eq!(header.mode().unwrap(), 0o644);
        assert_eq!(header.entry_type(), tar::EntryType::Regular);
        names.push(String::from_utf8(entry.path_bytes().into_owned()).unwrap());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    assert_eq!(names.len(), 5);
}

#[test]
fn symlinks_in_the_folder_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "t.wasm", WASM);
    write(dir.path(), "a.toml", DAG.as_bytes());
    std::os::unix::fs::symlink(outside.path(), dir.path().join("plugins")).unwrap();
    std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
    let bundle = Bundle::read(&build(dir.path(), &Limits::default()).unwrap(), &Limits::default()).unwrap();
    assert_eq!(bundle.plugins.keys().collect::<Vec<_>>(), ["plugins/t.wasm"]);
}

#[test]
fn a_folder_that_would_be_refused_is_not_built() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plugins/t.wasm", WASM);
    write(dir.path(), "README.md", b"no DAG here");
    match build(dir.path(), &Limits::default()) {
        Err(BuildError::Refused(diagnostics)) => assert_eq!(diagnostics.codes(), [code::NO_DAGS]),
        other => panic!("{other:?}"),
    }

    write(dir.path(), "a.toml", DAG.as_bytes());
    write(dir.path(), "plugins/big.wasm", &[1u8; 2000]);
    let limits = Limits { max_file_bytes: 1000, ..Limits::default() };
    match build(dir.path(), &limits) {
        Err(BuildError::Refused(diagnostics)) => {
            assert_eq!(diagnostics.codes(), [code::FILE_TOO_LARGE]);
            assert_eq!(diagnostics.as_slice()[0].file.as_deref(), Some("plugins/big.wasm"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_missing_folder_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let error = build(&missing, &Limits::default()).unwrap_err();
    assert!(matches!(error, BuildError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("nope"), "{error}");
}

/// Bundles made by the tools authors have: GNU tar, and zip where it is installed.
#[test]
fn bundles_made_by_tar_and_zip_read_as_the_built_one() {
    let dir = folder();
    let built = Bundle::read(&build(dir.path(), &Limits::default()).unwrap(), &Limits::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).current_dir(dir.path()).status();
        status.map(|s| s.success()).unwrap_or(false)
    };

    let tarball = out.path().join("b.tar.gz");
    assert!(run("tar", &["-czf", tarball.to_str().unwrap(), "."]), "GNU tar");
    let bundle = Bundle::read(&fs::read(&tarball).unwrap(), &Limits::default()).unwrap();
    assert_eq!((&bundle.dags, &bundle.plugins), (&built.dags, &built.plugins));
    let mut ignored: Vec<_> = bundle.ignored.iter().map(|i| i.path.as_str()).collect();
    ignored.sort();
    assert_eq!(
        ignored,
        [".git/objects/x.wasm", ".ml.toml.swp", "README.md", "plugins/src/main.rs", "team/nested.toml"]
    );

    // The folder itself rather than its contents: refused, with the way out.
    let parent = dir.path().parent().unwrap().to_str().unwrap();
    let name = dir.path().file_name().unwrap().to_str().unwrap();
    assert!(run("tar", &["-czf", tarball.to_str().unwrap(), "-C", parent, name]));
    let diagnostics = Bundle::read(&fs::read(&tarball).unwrap(), &Limits::default()).unwrap_err();
    assert_eq!(diagnostics.codes(), [code::NO_DAGS]);
    assert!(diagnostics.to_string().contains("tar -C DIR"), "{diagnostics}");

    let zipped = out.path().join("b.zip");
    if run("zip", &["-q", "-r", zipped.to_str().unwrap(), "."]) {
        let bundle = Bundle::read(&fs::read(&zipped).unwrap(), &Limits::default()).unwrap();
        assert_eq!((&bundle.dags, &bundle.plugins), (&built.dags, &built.plugins));
    } else {
        eprintln!("zip is not installed: its bundle is not tried");
    }
}
