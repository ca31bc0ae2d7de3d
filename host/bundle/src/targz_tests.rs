//! Gzip bombs: archives that inflate to 10 GiB, generated in a few megabytes without inflating
//! anything, and refused after a bounded amount of work.
//!
//! A deflate stream for 1 MiB of zeros, compressed after at least 32 KiB of zeros and ended with
//! a sync flush, is byte-aligned and refers only to the zeros before it, so it can be repeated
//! anywhere the last 32 KiB were zeros: 10 GiB is 10,240 copies of about a kilobyte. The CRC and
//! length in the gzip trailer are computed too (CRCs of the pieces combined), so the bombs are
//! valid archives: what refuses them is the limits, not damage.

use std::io::Read;

use flate2::{Compress, Compression, Crc, FlushCompress};

use crate::{code, Bundle, Limits};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// Zeros compressed for real before repeating the 1 MiB piece: deflate's window.
const WINDOW: usize = 32 << 10;

struct Bomb {
    deflate: Compress,
    out: Vec<u8>,
    crc: Crc,
    len: u64,
    /// Deflate blocks for 1 MiB of zeros, valid after `WINDOW` zeros.
    mib_of_zeros: Vec<u8>,
    mib_crc: Crc,
}

impl Bomb {
    fn new() -> Self {
        let zeros = vec![0u8; MIB as usize];
        let mut piece = Compress::new(Compression::best(), false);
        let mut warm_up = Vec::new();
        deflate(&mut piece, &zeros, &mut warm_up, FlushCompress::Sync);
        let mut mib_of_zeros = Vec::new();
        deflate(&mut piece, &zeros, &mut mib_of_zeros, FlushCompress::Sync);
        let mut mib_crc = Crc::new();
        mib_crc.update(&zeros);
        // gzip header: deflate, no flags, no time, unknown OS.
        let out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
        Bomb { deflate: Compress::new(Compression::fast(), false), out, crc: Crc::new(), len: 0, mib_of_zeros, mib_crc }
    }

    fn data(&mut self, bytes: &[u8]) {
        deflate(&mut self.deflate, bytes, &mut self.out, FlushCompress::Sync);
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// `WINDOW` zeros for real, then `mib` MiB of repeated pieces.
    fn zeros(&mut self, mib: u64) {
        self.data(&[0u8; WINDOW]);
        for _ in 0..mib {
            self.out.extend_from_slice(&self.mib_of_zeros);
            self.crc.combine(&self.mib_crc);
            self.len += MIB;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        deflate(&mut self.deflate, &[], &mut self.out, FlushCompress::Finish);
        self.out.extend(self.crc.sum().to_le_bytes());
        self.out.extend((self.len as u32).to_le_bytes()); // ISIZE is the length modulo 2^32
        self.out
    }
}

fn deflate(compress: &mut Compress, mut input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    loop {
        out.reserve(64 << 10);
        let before_in = compress.total_in();
        let room = out.capacity() - out.len();
        let before_out = out.len();
        compress.compress_vec(input, out, flush).unwrap();
        input = &input[(compress.total_in() - before_in) as usize..];
        if input.is_empty() && out.len() - before_out < room {
            return;
        }
    }
}

/// A tar header for a regular file (or another type) of `size` bytes.
fn header(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_cksum();
    *header.as_bytes()
}

fn small_dag(bomb: &mut Bomb) {
    let dag = b"id = \"a\"\n";
    bomb.data(&header("a.toml", b'0', dag.len() as u64));
    let mut block = [0u8; 512];
    block[..dag.len()].copy_from_slice(dag);
    bomb.data(&block);
}

#[test]
fn generated_bombs_are_valid_archives() {
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    let size = WINDOW as u64 + 3 * MIB;
    bomb.data(&header("plugins/z.wasm", b'0', size));
    bomb.zeros(3);
    bomb.data(&[0u8; 1024]);
    let bytes = bomb.finish();
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut inflated).unwrap();
    assert_eq!(inflated.len() as u64, 3 * 512 + size + 1024);
    let bundle = Bundle::read(&bytes, &Limits::default()).unwrap();
    assert_eq!(bundle.plugins["plugins/z.wasm"].len() as u64, size);
    assert!(bundle.plugins["plugins/z.wasm"].iter().all(|&b| b == 0));
}

#[test]
fn a_gzip_bomb_of_one_10_gib_file_is_refused_from_its_header() {
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    bomb.data(&header("plugins/z.wasm", b'0', WINDOW as u64 + 10 * GIB));
    bomb.zeros(10 * GIB / MIB);
    bomb.data(&[0u8; 1024]);
    let bytes = bomb.finish();
    assert!(bytes.len() > 5 * MIB as usize, "a real 10 GiB bomb: {} bytes", bytes.len());

    let (result, stats) = Bundle::read_counted(&bytes, &Limits::default());
    let diagnostics = result.unwrap_err();
    assert_eq!(diagnostics.codes(), [code::FILE_TOO_LARGE, code::UNPACKED_TOO_LARGE]);
    assert_eq!(diagnostics.as_slice()[1].file.as_deref(), Some("plugins/z.wasm"));
    // Stopped at the file's header: nothing of its data inflated, a sliver of the input read.
    assert!(stats.inflated <= 4 * 512, "{stats:?}");
    assert!(stats.compressed <= 64 << 10, "{stats:?} of {}", bytes.len());
}

#[test]
fn a_gzip_bomb_of_many_files_under_the_file_limit_stops_at_the_unpacked_limit() {
    // 1,280 files of 8 MiB: 10 GiB, each file well under the file limit.
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    for i in 0..1280 {
        bomb.data(&header(&format!("plugins/z{i}.wasm"), b'0', WINDOW as u64 + 8 * MIB));
        bomb.zeros(8);
    }
    bomb.data(&[0u8; 1024]);
    let bytes = bomb.finish();
    let limits = Limits { max_unpacked_bytes: 64 * MIB, ..Limits::default() };

    let (result, stats) = Bundle::read_counted(&bytes, &limits);
    let diagnostics = result.unwrap_err();
    assert_eq!(diagnostics.codes(), [code::UNPACKED_TOO_LARGE]);
    assert_eq!(diagnostics.as_slice()[0].file.as_deref(), Some("plugins/z7.wasm"), "7 files fit in 64 MiB, not 8");
    assert!(stats.inflated <= limits.max_unpacked_bytes, "{stats:?}");
    assert!(stats.compressed < bytes.len() as u64 / 50, "{stats:?} of {}", bytes.len());
}

#[test]
fn a_10_gib_extension_header_is_refused_at_the_header_allowance() {
    // The `tar` crate reads PAX records whole into memory: only the meter bounds them.
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    bomb.data(&header("PaxHeaders/x", b'x', WINDOW as u64 + 10 * GIB));
    bomb.zeros(10 * GIB / MIB);
    bomb.data(&header("x.wasm", b'0', 0));
    bomb.data(&[0u8; 1024]);
    let bytes = bomb.finish();

    let (result, stats) = Bundle::read_counted(&bytes, &Limits::default());
    assert_eq!(result.unwrap_err().codes(), [code::HEADER_TOO_LARGE]);
    assert!(stats.inflated <= 3 * 512 + super::MAX_HEADER_BYTES + 512, "{stats:?}");
}

#[test]
fn a_10_gib_tail_of_zeros_after_the_archive_is_refused_early() {
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    bomb.data(&[0u8; 1024]);
    bomb.zeros(10 * GIB / MIB);
    let bytes = bomb.finish();

    let (result, stats) = Bundle::read_counted(&bytes, &Limits::default());
    assert_eq!(result.unwrap_err().codes(), [code::TRAILING_DATA]);
    assert!(stats.inflated <= 2 * MIB, "{stats:?}");
}
