//! Reading a `.tar.gz` as a stream, with every inflated byte paid for in advance.
//!
//! Gzip gives no size up front that can be trusted (its trailer's size is modulo 4 GiB and comes
//! last), so the limit is enforced on the stream itself: a [`Metered`] reader sits between the
//! inflater and the tar parser and refuses to produce a byte past its allowance. The allowance is
//! raised one entry at a time, by what that entry may legitimately need: its declared size, once
//! the collector has checked it against the limits, plus room for the next entry's headers. So a
//! gzip bomb (a small archive that inflates to gigabytes) costs at most the allowance in
//! decompression work, and memory is held to the files actually kept. The `tar` crate reads PAX
//! records and GNU long names whole into memory before yielding an entry; the header allowance is
//! what bounds those.

use std::cell::{Cell, RefCell};
use std::io::{self, Read};
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use crate::collect::{unpacked_too_large, Collector, Kind, Stop, Take};
use crate::diagnostic::{code, Diagnostic};
use crate::limits::{MAX_HEADER_BYTES, MAX_TRAILING_BYTES};
use crate::path::printable;

const BLOCK: u64 = 512;

/// What a read cost, for tests that a refusal came early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stats {
    /// Compressed bytes the inflater took in.
    pub(crate) compressed: u64,
    /// Bytes it inflated to (what the tar parser was given).
    pub(crate) inflated: u64,
}

/// Reads the entries of a gzip-compressed tar into the collector.
pub(crate) fn read(bytes: &[u8], collector: &mut Collector<'_>) -> Stats {
    let meter = Rc::new(Meter::default());
    let input = Counted { inner: bytes, meter: Rc::clone(&meter) };
    let stream = Metered { inner: MultiGzDecoder::new(input), meter: Rc::clone(&meter) };
    let _ = walk(bytes, stream, &meter, collector);
    Stats { compressed: meter.compressed.get(), inflated: meter.inflated.get() }
}

fn walk(
    input: &[u8],
    stream: Metered<MultiGzDecoder<Counted<'_>>>,
    meter: &Meter,
    collector: &mut Collector<'_>,
) -> Result<(), Stop> {
    let max = collector.limits().max_unpacked_bytes;
    meter.allow_up_to(BLOCK + MAX_HEADER_BYTES, max);
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|e| fail(input, collector, meter, &e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(input, collector, meter, &e))?;
        let raw_name = entry.path_bytes().into_owned();
        let size = entry.size();
        // The collector's checks first, so an entry both over the file limit and over what is
        // left says both.
        let take = collector.entry(&raw_name, kind(&entry), size)?;
        // The entry's data, padded to whole blocks, must fit what is left; then the next entry's
        // headers may follow.
        let data_end = size
            .checked_add(BLOCK - 1)
            .map(|padded| padded & !(BLOCK - 1))
            .and_then(|padded| padded.checked_add(meter.inflated.get()));
        match data_end {
            Some(end) if end <= max => meter.allow_up_to(end.saturating_add(BLOCK + MAX_HEADER_BYTES), max),
            _ => return Err(collector.stop(unpacked_too_large(max).in_file(printable(&raw_name)))),
        }
        match take {
            Take::Skip => {}
            Take::Keep(path) => {
                // Bounded: `size` was checked against the per-file limit, and the entry's reader
                // stops at `size`.
                let capacity = usize::try_from(size.min(1 << 20)).unwrap_or(0);
                let mut bytes = Vec::with_capacity(capacity);
                entry.read_to_end(&mut bytes).map_err(|e| fail(input, collector, meter, &e))?;
                if bytes.len() as u64 != size {
                    return Err(collector.stop(
                        Diagnostic::new(code::TRUNCATED_ARCHIVE, "the archive ends in the middle of this file")
                            .in_file(printable(&raw_name)),
                    ));
                }
                collector.keep(&path, bytes);
            }
        }
    }
    let stream = archive.into_inner();
    drain(input, stream, meter, collector)
}

/// Reads what follows the tar's end-of-archive block to the end of the gzip stream: zeros (tar
/// pads to whole records) and the gzip trailer, whose checksum and length then prove the whole
/// stream arrived intact.
fn drain(
    input: &[u8],
    mut stream: Metered<MultiGzDecoder<Counted<'_>>>,
    meter: &Meter,
    collector: &mut Collector<'_>,
) -> Result<(), Stop> {
    meter.allowed.set(meter.inflated.get().saturating_add(MAX_TRAILING_BYTES));
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) if buf[..n].iter().all(|&b| b == 0) => {}
            Ok(_) => {
                return Err(collector.stop(Diagnostic::new(
                    code::TRAILING_DATA,
                    "data after the end of the tar archive: two archives in one file, or a damaged one",
                )))
            }
            Err(_) if meter.refused.get() => {
                return Err(collector.stop(Diagnostic::new(
                    code::TRAILING_DATA,
                    format!("more than {MAX_TRAILING_BYTES} bytes after the end of the tar archive"),
                )))
            }
            Err(e) => return Err(fail(input, collector, meter, &e)),
        }
    }
}

fn kind<R: Read>(entry: &tar::Entry<'_, R>) -> Kind {
    use tar::EntryType;
    let link = || entry.link_name_bytes().map(|name| name.into_owned()).unwrap_or_default();
    match entry.header().entry_type() {
        EntryType::Regular | EntryType::Continuous => Kind::File,
        EntryType::Directory => Kind::Directory,
        EntryType::Symlink => Kind::Symlink(link()),
        EntryType::Link => Kind::HardLink(link()),
        EntryType::Char | EntryType::Block => Kind::Device,
        EntryType::Fifo => Kind::Fifo,
        EntryType::XGlobalHeader => Kind::Metadata,
        EntryType::GNUSparse => Kind::Other("a sparse file"),
        EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader => {
            Kind::Other("an extension header in an old-style tar header")
        }
        _ => Kind::Other("an entry of an unknown tar type"),
    }
}

/// Stops the walk on a failed read.
fn fail(input: &[u8], collector: &mut Collector<'_>, meter: &Meter, error: &io::Error) -> Stop {
    // A tar that fails before its first entry may be no tar at all (a gzip of something else), or
    // one whose first header is damaged: ustar and GNU headers say which by their magic.
    let not_tar = !collector.seen_any() && !starts_with_tar_header(input);
    let diagnostic = broken(meter, collector.limits().max_unpacked_bytes, not_tar, error);
    collector.stop(diagnostic)
}

/// Whether the gzip stream starts with a ustar or GNU tar header (inflating 512 bytes only).
fn starts_with_tar_header(input: &[u8]) -> bool {
    let mut block = [0u8; BLOCK as usize];
    let mut decoder = MultiGzDecoder::new(input).take(BLOCK);
    decoder.read_exact(&mut block).is_ok() && &block[257..262] == b"ustar"
}

/// The diagnostic for a read that failed: over the allowance, a broken gzip stream, or a broken
/// tar inside a sound one.
fn broken(meter: &Meter, max: u64, not_tar: bool, error: &io::Error) -> Diagnostic {
    if meter.refused.get() {
        return if meter.allowed.get() >= max {
            unpacked_too_large(max)
        } else {
            Diagnostic::new(
                code::HEADER_TOO_LARGE,
                format!(
                    "a tar entry's extension headers (PAX records or GNU long names) are over {MAX_HEADER_BYTES} bytes"
                ),
            )
        };
    }
    if let Some((kind, message)) = meter.failure.borrow().as_ref() {
        return if *kind == io::ErrorKind::UnexpectedEof {
            Diagnostic::new(code::TRUNCATED_ARCHIVE, "the gzip stream ends early: was the upload cut short?")
        } else {
            Diagnostic::new(code::CORRUPT_ARCHIVE, format!("the gzip data is damaged: {message}"))
        };
    }
    if not_tar {
        return Diagnostic::new(
            code::NOT_AN_ARCHIVE,
            "this is gzip-compressed, but what it holds is not a tar archive: a bundle is a compressed tar (`tar -czf`) or a zip",
        );
    }
    if meter.ended.get() {
        return Diagnostic::new(code::TRUNCATED_ARCHIVE, "the tar archive inside the gzip stream ends early");
    }
    Diagnostic::new(code::CORRUPT_ARCHIVE, format!("the tar archive is damaged: {error}"))
}

/// Shared between the readers and the walk: what was read, and what may be.
#[derive(Debug, Default)]
struct Meter {
    compressed: Cell<u64>,
    inflated: Cell<u64>,
    /// Inflated bytes allowed so far, in total.
    allowed: Cell<u64>,
    /// A read asked for more than was allowed.
    refused: Cell<bool>,
    /// The inflater reported the end of its stream.
    ended: Cell<bool>,
    /// The inflater failed: its error's kind and message.
    failure: RefCell<Option<(io::ErrorKind, String)>>,
}

impl Meter {
    /// Allows reading up to `end` bytes in total, never past `max`; an allowance only grows.
    fn allow_up_to(&self, end: u64, max: u64) {
        self.allowed.set(end.min(max).max(self.allowed.get()));
    }
}

/// The inflated stream, refusing to go past its allowance.
struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.meter.allowed.get().saturating_sub(self.meter.inflated.get());
        if room == 0 {
            self.meter.refused.set(true);
            return Err(io::Error::other("over the bundle's size allowance"));
        }
        let len = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..len]) {
            Ok(0) => {
                self.meter.ended.set(true);
                Ok(0)
            }
            Ok(n) => {
                self.meter.inflated.set(self.meter.inflated.get() + n as u64);
                Ok(n)
            }
            Err(e) => {
                *self.meter.failure.borrow_mut() = Some((e.kind(), e.to_string()));
                Err(e)
            }
        }
    }
}

/// The compressed bytes, counted.
struct Counted<'a> {
    inner: &'a [u8],
    meter: Rc<Meter>,
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.set(self.meter.compressed.get() + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
#[path = "targz_tests.rs"]
mod tests;
