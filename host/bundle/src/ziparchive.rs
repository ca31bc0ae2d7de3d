//! Reading a `.zip`: random access over bytes already in memory.
//!
//! A zip lists its entries in a central directory at its end, with their sizes, so the entry
//! count and each file's size are checked before anything is inflated, and only the files kept
//! are inflated at all. Declared sizes are not trusted: each file is read through a limit one
//! byte over its declared size, so a lying entry is caught without inflating more than that.

use std::io::{Cursor, Read};

use zip::result::ZipError;
use zip::{CompressionMethod, ZipArchive, ZipReadOptions};

use crate::collect::{Collector, Kind, Stop, Take};
use crate::diagnostic::{code, Diagnostic};
use crate::path::printable;

/// The end-of-central-directory record's signature.
const EOCD_SIGNATURE: &[u8] = b"PK\x05\x06";
/// The record's size without its comment.
const EOCD_BYTES: usize = 22;
/// The record is 22 bytes plus a comment of at most 65,535.
const EOCD_SEARCH_BYTES: usize = EOCD_BYTES + 65_535;

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Reads the entries of a zip into the collector.
pub(crate) fn read(bytes: &[u8], collector: &mut Collector<'_>) -> Result<(), Stop> {
    let mut archive = ZipArchive::new(Cursor::new(bytes)).map_err(|e| collector.stop(open_error(bytes, &e)))?;
    collector.expect_entries(archive.len() as u64)?;
    let duplicates = archive.has_duplicate_names();
    if duplicates {
        collector.report(Diagnostic::new(
            code::DUPLICATE_NAME,
            "the zip's central directory lists one name twice (only one of them can be read)",
        ));
    }
    for index in 0..archive.len() {
        let (raw_name, kind, size, encrypted, method) = {
            let entry = archive.by_index_data(index).map_err(|e| collector.stop(corrupt(&e)))?;
            let raw_name = entry.name_raw().to_vec();
            let kind = kind(entry.is_dir(), entry.unix_mode());
            (raw_name, kind, entry.size(), entry.encrypted(), entry.compression())
        };
        let Take::Keep(path) = collector.entry(&raw_name, kind, size)? else { continue };
        let shown = printable(&raw_name);
        if encrypted {
            collector.report(
                Diagnostic::new(code::ENCRYPTED_ENTRY, "an encrypted file: a bundle's files are read as they are")
                    .in_file(shown),
            );
            continue;
        }
        if !matches!(method, CompressionMethod::Stored | CompressionMethod::Deflated) {
            collector.report(
                Diagnostic::new(
                    code::UNSUPPORTED_COMPRESSION,
                    format!("compressed with {method}: a bundle's zip may use only Deflate (or no compression)"),
                )
                .in_file(shown),
            );
            continue;
        }
        collector.declare(&shown, size)?;
        match read_entry(&mut archive, index, size, !duplicates) {
            Ok(bytes) => collector.keep(&path, bytes),
            Err(diagnostic) => collector.report(diagnostic.in_file(shown)),
        }
    }
    Ok(())
}

/// One file's bytes: exactly `size` of them, checksum verified, and (unless the central directory
/// names a file twice, which is reported already) its local header checked against the central
/// directory's, so no other zip reader could see a different name or size.
fn read_entry(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    index: usize,
    size: u64,
    consistent: bool,
) -> Result<Vec<u8>, Diagnostic> {
    let options = ZipReadOptions::new().enforce_header_consistency(consistent);
    let file = archive.by_index_with_options(index, options).map_err(|e| corrupt(&e))?;
    let capacity = usize::try_from(size.min(1 << 20)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    // One byte over the declared size: reading to the end is what makes the zip crate check the
    // CRC, and a file longer than declared shows itself without being inflated further.
    file.take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Diagnostic::new(code::CORRUPT_ARCHIVE, format!("this file's data is damaged: {e}")))?;
    if bytes.len() as u64 != size {
        return Err(Diagnostic::new(
            code::CORRUPT_ARCHIVE,
            format!("this file unpacks to {} bytes, not the {size} its header declares", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// What a zip entry is, from its name (a trailing `/` is a folder) and its Unix mode, when the
/// zip was made on a system that records one.
fn kind(is_dir: bool, unix_mode: Option<u32>) -> Kind {
    match unix_mode.map(|mode| mode & S_IFMT) {
        Some(S_IFLNK) => Kind::Symlink(Vec::new()),
        Some(S_IFCHR | S_IFBLK) => Kind::Device,
        Some(S_IFIFO) => Kind::Fifo,
        Some(S_IFSOCK) => Kind::Other("a socket"),
        _ if is_dir => Kind::Directory,
        Some(S_IFDIR) => Kind::Directory,
        None | Some(0 | S_IFREG) => Kind::File,
        Some(_) => Kind::Other("an entry of an unknown file type"),
    }
}

/// A zip that cannot be opened: truncated when the record that ends its central directory, at its
/// very end, is missing or cut; otherwise damaged.
fn open_error(bytes: &[u8], error: &ZipError) -> Diagnostic {
    let start = bytes.len().saturating_sub(EOCD_SEARCH_BYTES);
    let complete_record = bytes[start..].windows(EOCD_SIGNATURE.len()).enumerate().any(|(at, w)| {
        let at = start + at;
        let comment = bytes.get(at + 20..at + 22).map(|n| usize::from(u16::from_le_bytes([n[0], n[1]])));
        w == EOCD_SIGNATURE && comment.is_some_and(|comment| at + EOCD_BYTES + comment <= bytes.len())
    });
    if complete_record {
        corrupt(error)
    } else {
        Diagnostic::new(
            code::TRUNCATED_ARCHIVE,
            "the zip's central directory (at its end) is missing: was the upload cut short?",
        )
    }
}

fn corrupt(error: &ZipError) -> Diagnostic {
    Diagnostic::new(code::CORRUPT_ARCHIVE, format!("the zip is damaged: {error}"))
}
