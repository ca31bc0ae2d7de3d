//! Reading `.zip` bundles: the same checks through the zip's central directory.

use std::io::{Cursor, Write};

use sandflow_bundle::{code, Format, Limits};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::support::*;

const CENTRAL: &[u8] = b"PK\x01\x02";
const LOCAL: &[u8] = b"PK\x03\x04";

enum Item {
    File(&'static str, Vec<u8>, SimpleFileOptions),
    Dir(&'static str),
    Symlink(&'static str, &'static str),
}

fn deflated() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Deflated)
}

fn stored() -> SimpleFileOptions {
    SimpleFileOptions::default().compression_method(CompressionMethod::Stored)
}

fn zip(items: Vec<Item>) -> Vec<u8> {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for item in items {
        match item {
            Item::File(name, data, options) => {
                writer.start_file(name, options).unwrap();
                writer.write_all(&data).unwrap();
            }
            Item::Dir(name) => writer.add_directory(name, stored()).unwrap(),
            Item::Symlink(name, target) => writer.add_symlink(name, target, stored()).unwrap(),
        }
    }
    writer.finish().unwrap().into_inner()
}

fn good_items() -> Vec<Item> {
    vec![
        Item::File("a.toml", DAG.into(), deflated()),
        Item::Dir("plugins/"),
        Item::File("plugins/t.wasm", WASM.into(), stored()),
    ]
}

fn with_good(extra: Item) -> Vec<u8> {
    let mut items = good_items();
    items.push(extra);
    zip(items)
}

/// Offsets of every header with this signature.
fn headers(bytes: &[u8], signature: &[u8]) -> Vec<usize> {
    bytes.windows(4).enumerate().filter(|(_, w)| *w == signature).map(|(at, _)| at).collect()
}

/// Rewrites the entry `name`'s headers, local and central, with `patch(header, is_central)`.
fn patch(bytes: &mut [u8], name: &str, patch: impl Fn(&mut [u8], bool)) {
    let mut found = 0;
    for (signature, central, name_at) in [(LOCAL, false, 30), (CENTRAL, true, 46)] {
        for at in headers(bytes, signature) {
            if bytes[at + name_at..].starts_with(name.as_bytes()) {
                patch(&mut bytes[at..], central);
                found += 1;
            }
        }
    }
    assert_eq!(found, 2, "{name}: local and central header");
}

fn set_u16(header: &mut [u8], at: usize, value: u16) {
    header[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn a_good_zip_lists_its_dags_and_plugins() {
    let mut items = good_items();
    items.push(Item::File("README.md", b"# hi".to_vec(), deflated()));
    items.push(Item::File("plugins/big.wasm", vec![9u8; 100_000], deflated()));
    let bundle = read(&zip(items)).unwrap();
    assert_eq!(bundle.format, Format::Zip);
    assert_eq!(bundle.dags["a.toml"], DAG);
    assert_eq!(bundle.plugins.keys().collect::<Vec<_>>(), ["plugins/big.wasm", "plugins/t.wasm"]);
    assert_eq!(bundle.plugins["plugins/big.wasm"], vec![9u8; 100_000]);
    assert_eq!(bundle.ignored.len(), 1);
}

#[test]
fn paths_links_and_duplicates_are_refused_in_a_zip_too() {
    let bytes = zip(vec![
        Item::File("a.toml", DAG.into(), deflated()),
        Item::File("/abs.toml", DAG.into(), stored()),
        Item::File("../up.toml", DAG.into(), stored()),
        Item::Symlink("plugins/l.wasm", "/etc/passwd"),
        Item::File("./a.toml", DAG.into(), stored()),
    ]);
    assert_eq!(codes(&bytes), [code::ABSOLUTE_PATH, code::PARENT_COMPONENT, code::SYMLINK, code::DUPLICATE_NAME]);
}

#[test]
fn devices_fifos_and_sockets_are_refused_by_their_unix_mode() {
    let with_mode = |mode: u32| stored().external_attributes(mode << 16);
    let bytes = zip(vec![
        Item::File("a.toml", DAG.into(), deflated()),
        Item::File("dev", Vec::new(), with_mode(0o020_644)),
        Item::File("blk", Vec::new(), with_mode(0o060_644)),
        Item::File("fifo", Vec::new(), with_mode(0o010_644)),
        Item::File("sock", Vec::new(), with_mode(0o140_644)),
    ]);
    assert_eq!(codes(&bytes), [code::DEVICE, code::DEVICE, code::FIFO, code::UNSUPPORTED_ENTRY]);
}

#[test]
fn a_non_utf8_name_is_refused_in_a_zip() {
    let mut bytes = with_good(Item::File("cafe.toml", DAG.into(), stored()));
    patch(&mut bytes, "cafe.toml", |header, central| {
        let name_at = if central { 46 } else { 30 };
        header[name_at + 3] = 0xe9;
    });
    assert_eq!(codes(&bytes), [code::NON_UTF8_NAME]);
}

#[test]
fn the_same_name_twice_in_a_zip_is_refused() {
    let mut bytes = zip(vec![Item::File("a.toml", DAG.into(), stored()), Item::File("b.toml", DAG.into(), stored())]);
    patch(&mut bytes, "b.toml", |header, central| {
        let name_at = if central { 46 } else { 30 };
        header[name_at] = b'a';
    });
    assert_eq!(codes(&bytes), [code::DUPLICATE_NAME]);
}

#[test]
fn a_hundred_thousand_tiny_entries_are_refused_before_any_is_read() {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for i in 0..100_000 {
        writer.start_file(format!("f{i}"), stored()).unwrap();
        writer.write_all(b"x").unwrap();
    }
    let bytes = writer.finish().unwrap().into_inner();
    let diagnostics = refused(&bytes);
    assert_eq!(diagnostics.codes(), [code::TOO_MANY_ENTRIES]);
    assert!(diagnostics.to_string().contains("100000 entries"), "{diagnostics}");
}

#[test]
fn a_truncated_zip_is_refused() {
    let noise: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let bytes = with_good(Item::File("plugins/big.wasm", noise, deflated()));
    // Cut in the data, in the central directory, and in its end record.
    for cut in [bytes.len() / 2, bytes.len() - 40, bytes.len() - 10] {
        assert_eq!(codes(&bytes[..cut]), [code::TRUNCATED_ARCHIVE], "cut at {cut}");
    }
}

#[test]
fn a_damaged_zip_entry_is_refused_and_the_others_are_still_checked() {
    let mut bytes = zip(vec![
        Item::File("a.toml", DAG.into(), stored()),
        Item::File("plugins/t.wasm", WASM.into(), stored()),
        Item::Symlink("l", "x"),
    ]);
    // Flip a byte of a.toml's stored data: its CRC no longer matches.
    let data = headers(&bytes, LOCAL)[0] + 30 + "a.toml".len();
    bytes[data] ^= 0x20;
    assert_eq!(codes(&bytes), [code::CORRUPT_ARCHIVE, code::SYMLINK]);
}

#[test]
fn an_entry_longer_than_it_declares_is_refused() {
    let mut bytes = with_good(Item::File("plugins/big.wasm", vec![5u8; 10_000], deflated()));
    patch(&mut bytes, "plugins/big.wasm", |header, central| {
        let size_at = if central { 24 } else { 22 };
        header[size_at..size_at + 4].copy_from_slice(&100u32.to_le_bytes());
    });
    assert_eq!(codes(&bytes), [code::CORRUPT_ARCHIVE]);
}

#[test]
fn declared_sizes_over_the_limits_are_refused_before_inflating() {
    let items = || {
        (0..5).map(|i| {
            Item::File(["p0.wasm", "p1.wasm", "p2.wasm", "p3.wasm", "p4.wasm"][i], vec![0u8; 3000], deflated())
        })
    };
    let mut all = vec![Item::File("a.toml", DAG.into(), stored())];
    all.extend(items());
    let bytes = zip(all);
    let limits = Limits { max_unpacked_bytes: 10_000, ..Limits::default() };
    assert_eq!(codes_with(&bytes, &limits), [code::UNPACKED_TOO_LARGE]);
    let limits = Limits { max_file_bytes: 2_000, ..Limits::default() };
    assert_eq!(codes_with(&bytes, &limits), [code::FILE_TOO_LARGE; 5]);
}

#[test]
fn unsupported_compression_and_encryption_are_refused() {
    let mut bytes = zip(vec![
        Item::File("a.toml", DAG.into(), stored()),
        Item::File("b.wasm", WASM.into(), stored()),
        Item::File("c.wasm", WASM.into(), stored()),
    ]);
    patch(&mut bytes, "b.wasm", |header, central| set_u16(header, if central { 10 } else { 8 }, 12)); // bzip2
    patch(&mut bytes, "c.wasm", |header, central| {
        let flags = if central { 8 } else { 6 };
        header[flags] |= 1;
    });
    let diagnostics = refused(&bytes);
    assert_eq!(diagnostics.codes(), [code::UNSUPPORTED_COMPRESSION, code::ENCRYPTED_ENTRY]);
    assert!(diagnostics.as_slice()[0].message.contains("Bzip2"), "{diagnostics}");
}

/// Every one-byte change and every cut of a small zip is read without a panic.
#[test]
fn damaged_zips_never_panic() {
    let bytes = with_good(Item::Symlink("l", "x"));
    for at in 0..bytes.len() {
        for bits in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= bits;
            let _ = read(&damaged);
        }
        let _ = read(&bytes[..at]);
    }
}
