//! Reading `.tar.gz` bundles: what is kept, and each bad input refused with its own code.

use sandflow_bundle::{code, Bundle, Format, IgnoredReason, Limits};

use crate::support::*;

#[test]
fn a_good_bundle_lists_its_dags_and_plugins() {
    let bytes = targz(&[
        dir("./"),
        file("./a.toml", DAG),
        file("b.toml", "id = \"b\"\n"),
        dir("./plugins/"),
        file("./plugins/t.wasm", WASM),
        file("plugins/deep/u.wasm", WASM),
        file("README.md", "# DAGs"),
        file("team/c.toml", "id = \"c\"\n"),
        file(".a.toml.swp", "x"),
        file("plugins/._t.wasm", "resource fork"),
        typed("pax_global_header", b'g'),
    ]);
    let bundle = read(&bytes).unwrap();
    assert_eq!(bundle.format, Format::TarGz);
    assert_eq!(bundle.dags.keys().collect::<Vec<_>>(), ["a.toml", "b.toml"]);
    assert_eq!(bundle.dags["a.toml"], DAG);
    assert_eq!(bundle.plugins.keys().collect::<Vec<_>>(), ["plugins/deep/u.wasm", "plugins/t.wasm"]);
    assert_eq!(bundle.plugins["plugins/t.wasm"], WASM);
    let ignored: Vec<_> = bundle.ignored.iter().map(|i| (i.path.as_str(), i.reason)).collect();
    assert_eq!(
        ignored,
        [
            ("README.md", IgnoredReason::NotDagOrPlugin),
            ("team/c.toml", IgnoredReason::NestedToml),
            (".a.toml.swp", IgnoredReason::Hidden),
            ("plugins/._t.wasm", IgnoredReason::Hidden),
        ]
    );
    assert_eq!(bundle.ignored[0].size, 6);
}

#[test]
fn a_dag_finds_its_plugin_by_relative_path() {
    let bundle = read(&targz(&good())).unwrap();
    assert_eq!(bundle.plugin("a.toml", "plugins/t.wasm"), Some(("plugins/t.wasm", WASM)));
    assert_eq!(bundle.plugin("a.toml", "./plugins/../plugins/t.wasm").map(|p| p.0), Some("plugins/t.wasm"));
    assert_eq!(bundle.plugin("a.toml", "../plugins/t.wasm"), None, "outside the bundle");
    assert_eq!(bundle.plugin("a.toml", "plugins/missing.wasm"), None);
}

#[test]
fn an_absolute_path_is_refused() {
    let diagnostics = refused(&with_good(file("/etc/cron.d/x.toml", DAG)));
    assert_eq!(diagnostics.codes(), [code::ABSOLUTE_PATH]);
    assert_eq!(diagnostics.as_slice()[0].file.as_deref(), Some("/etc/cron.d/x.toml"));
}

#[test]
fn a_parent_component_is_refused() {
    assert_eq!(codes(&with_good(file("../x.toml", DAG))), [code::PARENT_COMPONENT]);
    assert_eq!(codes(&with_good(file("plugins/../../x.wasm", WASM))), [code::PARENT_COMPONENT]);
    assert_eq!(codes(&with_good(dir("../up/"))), [code::PARENT_COMPONENT], "folders too");
}

#[test]
fn a_symlink_is_refused() {
    let diagnostics = refused(&with_good(link("plugins/evil.wasm", b'2', "/etc/passwd")));
    assert_eq!(diagnostics.codes(), [code::SYMLINK]);
    let message = &diagnostics.as_slice()[0].message;
    assert!(message.contains("/etc/passwd"), "{message}");
}

#[test]
fn a_hard_link_is_refused() {
    assert_eq!(codes(&with_good(link("b.toml", b'1', "a.toml"))), [code::HARD_LINK]);
}

#[test]
fn a_device_is_refused() {
    assert_eq!(codes(&with_good(typed("zero", b'3'))), [code::DEVICE], "character device");
    assert_eq!(codes(&with_good(typed("sda", b'4'))), [code::DEVICE], "block device");
}

#[test]
fn a_fifo_is_refused() {
    assert_eq!(codes(&with_good(typed("pipe.toml", b'6'))), [code::FIFO]);
}

#[test]
fn entries_that_are_neither_files_nor_folders_are_refused() {
    assert_eq!(codes(&with_good(typed("odd", b'Z'))), [code::UNSUPPORTED_ENTRY], "unknown type");
    assert_eq!(codes(&with_good(typed("v", b'V'))), [code::UNSUPPORTED_ENTRY], "volume label");
}

#[test]
fn duplicate_names_are_refused_after_normalisation() {
    let exact = targz(&[file("a.toml", DAG), file("a.toml", "id = \"other\"\n")]);
    assert_eq!(codes(&exact), [code::DUPLICATE_NAME]);
    for (first, second) in [("plugins/./t.wasm", "plugins/t.wasm"), ("./b.toml", "b.toml"), ("p//t.wasm", "p/t.wasm")] {
        let bytes = targz(&[file("a.toml", DAG), file(first, WASM), file(second, WASM)]);
        let diagnostics = refused(&bytes);
        assert_eq!(diagnostics.codes(), [code::DUPLICATE_NAME], "{first} / {second}");
        let message = &diagnostics.as_slice()[0].message;
        assert!(message.contains(first) && message.contains(second), "{message}");
    }
    // A folder named twice is harmless.
    assert!(read(&targz(&[dir("p/"), dir("./p"), file("a.toml", DAG)])).is_ok());
}

#[test]
fn a_path_used_as_file_and_folder_is_refused() {
    assert_eq!(codes(&targz(&[file("a.toml", DAG), file("p", "x"), file("p/t.wasm", WASM)])), [code::PATH_CONFLICT]);
    assert_eq!(codes(&targz(&[file("a.toml", DAG), file("p", "x"), dir("p/")])), [code::PATH_CONFLICT]);
}

#[test]
fn a_non_utf8_name_is_refused() {
    let diagnostics = refused(&with_good(file(b"caf\xe9.toml", DAG)));
    assert_eq!(diagnostics.codes(), [code::NON_UTF8_NAME]);
    assert_eq!(diagnostics.as_slice()[0].file.as_deref(), Some("caf\u{fffd}.toml"));
}

#[test]
fn control_characters_and_backslashes_are_refused_and_never_printed_raw() {
    let diagnostics = refused(&with_good(file("evil\x1b]0;owned\x07.toml", DAG)));
    assert_eq!(diagnostics.codes(), [code::INVALID_PATH_CHARACTER]);
    let shown = diagnostics.to_string();
    assert!(!shown.contains('\x1b') && !shown.contains('\x07'), "{shown:?}");
    assert_eq!(codes(&with_good(file("plugins\\t.wasm", WASM))), [code::INVALID_PATH_CHARACTER]);
}

#[test]
fn long_and_deep_paths_are_refused() {
    let long = format!("{}/x.wasm", vec!["d".repeat(200); 6].join("/"));
    assert_eq!(codes(&with_good(file(&long, WASM))), [code::PATH_TOO_LONG]);
    let deep = format!("{}/x.wasm", ["d"; 40].join("/"));
    assert_eq!(codes(&with_good(file(&deep, WASM))), [code::PATH_TOO_DEEP]);
    assert_eq!(codes(&with_good(file("x".repeat(300), "y"))), [code::PATH_TOO_LONG], "one name over 255 bytes");
}

#[test]
fn a_hundred_thousand_tiny_entries_stop_at_the_entry_limit() {
    let entries: Vec<_> = (0..100_000).map(|i| file(format!("f{i}"), "x")).collect();
    let bytes = targz(&entries);
    let diagnostics = refused(&bytes);
    assert_eq!(diagnostics.codes(), [code::TOO_MANY_ENTRIES], "and no `no_dags`: reading stopped");
    assert!(diagnostics.as_slice()[0].message.contains("10000"), "{diagnostics}");
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let bytes = targz(&[
        file("a.toml", DAG),
        file("/abs.toml", DAG),
        file("../up.toml", DAG),
        link("l.wasm", b'2', "x"),
        link("h.wasm", b'1', "a.toml"),
        typed("dev", b'3'),
        typed("fifo", b'6'),
        file(b"\xff.toml", DAG),
        file("./a.toml", DAG),
        file("plugins/t.wasm", WASM),
    ]);
    assert_eq!(
        codes(&bytes),
        [
            code::ABSOLUTE_PATH,
            code::PARENT_COMPONENT,
            code::SYMLINK,
            code::HARD_LINK,
            code::DEVICE,
            code::FIFO,
            code::NON_UTF8_NAME,
            code::DUPLICATE_NAME,
        ]
    );
}

#[test]
fn a_non_archive_is_one_clear_diagnostic() {
    for (bytes, says) in [
        (&b"id = \"a\"\n"[..], "neither a .tar.gz"),
        (b"", "empty"),
        (WASM, "wasm module"),
        (b"BZh91AY&SY", "bzip2"),
        (b"\xfd7zXZ\0\0", "xz"),
    ] {
        let diagnostics = refused(bytes);
        assert_eq!(diagnostics.codes(), [code::NOT_AN_ARCHIVE]);
        assert!(diagnostics.as_slice()[0].message.contains(says), "{diagnostics}");
    }
    let plain_tar = tar(&good());
    assert!(refused(&plain_tar).to_string().contains("uncompressed tar"));
    for inner in [&b"id = \"a\"\n"[..], &[7u8; 5000][..]] {
        let diagnostics = refused(&gzip(inner));
        assert_eq!(diagnostics.codes(), [code::NOT_AN_ARCHIVE], "gzip of a {}-byte non-tar", inner.len());
        assert!(diagnostics.to_string().contains("not a tar archive"), "{diagnostics}");
    }
}

#[test]
fn a_truncated_archive_is_refused() {
    let mut entries = good();
    entries.push(file("plugins/big.wasm", (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>()));
    let bytes = targz(&entries);
    for cut in [bytes.len() / 2, bytes.len() - 4, 20] {
        assert_eq!(codes(&bytes[..cut]), [code::TRUNCATED_ARCHIVE], "cut at {cut} of {}", bytes.len());
    }
    // Whole gzip, cut tar: the tar ends inside a file's data.
    let tar = tar(&entries);
    assert_eq!(codes(&gzip(&tar[..tar.len() / 2])), [code::TRUNCATED_ARCHIVE]);
}

#[test]
fn a_damaged_archive_is_refused() {
    let mut bytes = targz(&good());
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    assert!(matches!(codes(&bytes)[..], [code::CORRUPT_ARCHIVE] | [code::TRUNCATED_ARCHIVE]), "{:?}", codes(&bytes));
    // A bad header checksum, inside a sound gzip stream.
    let mut tar = tar(&good());
    tar[0] ^= 1;
    assert_eq!(codes(&gzip(&tar)), [code::CORRUPT_ARCHIVE]);
    // A bad gzip checksum.
    let mut bytes = targz(&good());
    let crc = bytes.len() - 8;
    bytes[crc] ^= 0xff;
    assert_eq!(codes(&bytes), [code::CORRUPT_ARCHIVE]);
}

#[test]
fn data_after_the_tar_end_is_refused() {
    let mut tar = tar(&good());
    tar.extend(entry_blocks(&file("hidden.toml", DAG)));
    assert_eq!(codes(&gzip(&tar)), [code::TRAILING_DATA]);
}

#[test]
fn record_padding_after_the_tar_end_is_accepted() {
    let mut tar = tar(&good());
    tar.resize(tar.len().div_ceil(10_240) * 10_240, 0);
    assert!(read(&gzip(&tar)).is_ok());
}

#[test]
fn long_names_through_gnu_extensions_are_read() {
    let name = format!("plugins/{}/t.wasm", "n".repeat(150));
    let bundle = read(&targz(&[file("a.toml", DAG), file(&name, WASM)])).unwrap();
    assert!(bundle.plugins.contains_key(&name));
}

#[test]
fn an_oversized_extension_header_is_refused() {
    let mut tar = Vec::new();
    let record = |key: &str, value: &str| {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}")
    };
    let records = record("comment", &"c".repeat(200_000));
    tar.extend(header(b"PaxHeaders/a.toml", b'x', b"", records.len() as u64));
    tar.extend(pad(records.as_bytes()));
    tar.extend(entry_blocks(&file("a.toml", DAG)));
    tar.extend([0u8; 1024]);
    assert_eq!(codes(&gzip(&tar)), [code::HEADER_TOO_LARGE]);
}

#[test]
fn the_archive_size_limit_is_checked_first() {
    let limits = Limits { max_archive_bytes: 100, ..Limits::default() };
    let diagnostics = Bundle::read(&[0u8; 101], &limits).unwrap_err();
    assert_eq!(diagnostics.codes(), [code::ARCHIVE_TOO_LARGE]);
}

#[test]
fn a_file_over_the_file_limit_is_refused_and_reading_goes_on() {
    let limits = Limits { max_file_bytes: 1000, ..Limits::default() };
    let bytes = targz(&[file("a.toml", DAG), file("big.wasm", vec![1u8; 1001]), link("l", b'2', "x")]);
    assert_eq!(codes_with(&bytes, &limits), [code::FILE_TOO_LARGE, code::SYMLINK]);
}

#[test]
fn files_over_the_unpacked_limit_stop_the_read() {
    let limits = Limits { max_unpacked_bytes: 10_000, ..Limits::default() };
    let entries: Vec<_> = (0..10).map(|i| file(format!("p{i}.wasm"), vec![7u8; 2000])).collect();
    let diagnostics = Bundle::read(&targz(&entries), &limits).unwrap_err();
    assert_eq!(diagnostics.codes(), [code::UNPACKED_TOO_LARGE]);
    assert_eq!(diagnostics.as_slice()[0].file.as_deref(), Some("p3.wasm"), "4 × (512 + 2048) is over 10,000");
}

#[test]
fn a_dag_file_that_is_not_utf8_says_where() {
    let diagnostics = refused(&targz(&[file("a.toml", b"id = \"a\"\n# caf\xe9\n")]));
    assert_eq!(diagnostics.codes(), [code::NON_UTF8_TEXT]);
    let d = &diagnostics.as_slice()[0];
    assert_eq!((d.file.as_deref(), d.line, d.column), (Some("a.toml"), Some(2), Some(6)));
    assert_eq!(d.to_string(), "a.toml:2:6: a DAG file must be UTF-8 text");
}

#[test]
fn a_bundle_without_dags_is_refused_with_a_hint() {
    let diagnostics = refused(&targz(&[dir("dags/"), file("dags/a.toml", DAG), file("dags/plugins/t.wasm", WASM)]));
    assert_eq!(diagnostics.codes(), [code::NO_DAGS]);
    assert!(diagnostics.to_string().contains("`dags/a.toml` is in a folder"), "{diagnostics}");
    assert_eq!(codes(&targz(&[])), [code::NO_DAGS], "an empty archive");
}

#[test]
fn diagnostics_serialise_as_the_api_will_send_them() {
    let diagnostics = refused(&with_good(link("l.wasm", b'2', "/etc/passwd")));
    let json = serde_json::to_value(&diagnostics).unwrap();
    assert_eq!(
        json,
        serde_json::json!([{
            "file": "l.wasm", "line": null, "column": null, "field": null, "code": "symlink",
            "message": "a symbolic link (to `/etc/passwd`): a bundle holds only files and folders; put the file itself in the bundle"
        }])
    );
}

/// Every one-byte change (of the tar, and of its gzip) and every cut of a small bundle is read
/// without a panic.
#[test]
fn damaged_bundles_never_panic() {
    let tar = tar(&[file("a.toml", DAG), link("l", b'2', "x"), file(format!("{}.wasm", "n".repeat(120)), WASM)]);
    for at in 0..tar.len().min(4096) {
        for bits in [0x01, 0x80, 0xff] {
            let mut damaged = tar.clone();
            damaged[at] ^= bits;
            let _ = read(&gzip(&damaged));
        }
    }
    let bytes = gzip(&tar);
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x55;
        let _ = read(&damaged);
        let _ = read(&bytes[..at]);
    }
}
