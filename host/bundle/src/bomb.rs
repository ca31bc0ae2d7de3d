//! Gzip bombs for tests and benchmarks: `.tar.gz` archives that inflate to gigabytes, generated
//! in a few megabytes without inflating anything. Not for production use; public so that the API's
//! tests and benches can upload them to a real server.
//!
//! A deflate stream for 1 MiB of zeros, compressed after at least 32 KiB of zeros and ended with
//! a sync flush, is byte-aligned and refers only to the zeros before it, so it can be repeated
//! anywhere the last 32 KiB were zeros: 10 GiB is 10,240 copies of about a kilobyte. The CRC and
//! length in the gzip trailer are computed too (CRCs of the pieces combined), so the bombs are
//! valid archives: what refuses them is the limits, not damage.

use flate2::{Compress, Compression, Crc, FlushCompress};

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// Zeros compressed for real before repeating the 1 MiB piece: deflate's window.
pub const WINDOW: usize = 32 << 10;

/// A `.tar.gz` being written: tar blocks as data, runs of zeros as repeated pieces.
pub struct Bomb {
    deflate: Compress,
    out: Vec<u8>,
    crc: Crc,
    len: u64,
    /// Deflate blocks for 1 MiB of zeros, valid after `WINDOW` zeros.
    mib_of_zeros: Vec<u8>,
    mib_crc: Crc,
}

impl Bomb {
    pub fn new() -> Self {
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

    /// Bytes compressed for real.
    pub fn data(&mut self, bytes: &[u8]) {
        deflate(&mut self.deflate, bytes, &mut self.out, FlushCompress::Sync);
        self.crc.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// `WINDOW` zeros for real, then `mib` MiB of repeated pieces.
    pub fn zeros(&mut self, mib: u64) {
        self.data(&[0u8; WINDOW]);
        for _ in 0..mib {
            self.out.extend_from_slice(&self.mib_of_zeros);
            self.crc.combine(&self.mib_crc);
            self.len += MIB;
        }
    }

    /// The archive.
    pub fn finish(mut self) -> Vec<u8> {
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
pub fn header(name: &str, kind: u8, size: u64) -> [u8; 512] {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_cksum();
    *header.as_bytes()
}

/// A one-line DAG file `a.toml`, so the archive is a bundle.
pub fn small_dag(bomb: &mut Bomb) {
    let dag = b"id = \"a\"\n";
    bomb.data(&header("a.toml", b'0', dag.len() as u64));
    let mut block = [0u8; 512];
    block[..dag.len()].copy_from_slice(dag);
    bomb.data(&block);
}

impl Default for Bomb {
    fn default() -> Self {
        Bomb::new()
    }
}

/// A bundle whose one plugin declares and inflates to 10 GiB (refused at its header).
pub fn one_file_of_10_gib() -> Vec<u8> {
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    bomb.data(&header("plugins/z.wasm", b'0', WINDOW as u64 + 10 * GIB));
    bomb.zeros(10 * GIB / MIB);
    bomb.data(&[0u8; 1024]);
    bomb.finish()
}

/// A bundle of 1,280 plugins of 8 MiB each, 10 GiB in all, each under the file limit (refused at
/// the unpacked limit).
pub fn many_files_of_10_gib() -> Vec<u8> {
    let mut bomb = Bomb::new();
    small_dag(&mut bomb);
    for i in 0..1280 {
        bomb.data(&header(&format!("plugins/z{i}.wasm"), b'0', WINDOW as u64 + 8 * MIB));
        bomb.zeros(8);
    }
    bomb.data(&[0u8; 1024]);
    bomb.finish()
}
