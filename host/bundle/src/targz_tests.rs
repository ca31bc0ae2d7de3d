//! Gzip bombs (see `bomb.rs`) refused after a bounded amount of work.

use std::io::Read;

use crate::bomb::{header, small_dag, Bomb, GIB, MIB, WINDOW};
use crate::{code, Bundle, Limits};

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
    let bytes = crate::bomb::one_file_of_10_gib();
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
    let bytes = crate::bomb::many_files_of_10_gib();
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
