//! Archives built byte by byte, hostile ones included: the `tar` crate's own builder refuses to
//! write `..`, absolute paths and the like, so headers are filled in here directly.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use sandflow_bundle::{Bundle, Diagnostics, Limits};

/// One tar entry: raw name, type byte, link target, data.
#[derive(Clone)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: u8,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
}

pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> Entry {
    Entry { name: name.as_ref().to_vec(), kind: b'0', link: Vec::new(), data: data.as_ref().to_vec() }
}

pub fn dir(name: impl AsRef<[u8]>) -> Entry {
    Entry { name: name.as_ref().to_vec(), kind: b'5', link: Vec::new(), data: Vec::new() }
}

pub fn typed(name: impl AsRef<[u8]>, kind: u8) -> Entry {
    Entry { name: name.as_ref().to_vec(), kind, link: Vec::new(), data: Vec::new() }
}

pub fn link(name: impl AsRef<[u8]>, kind: u8, target: impl AsRef<[u8]>) -> Entry {
    Entry { name: name.as_ref().to_vec(), kind, link: target.as_ref().to_vec(), data: Vec::new() }
}

/// A valid DAG file's worth of TOML (its content is not checked by this crate).
pub const DAG: &str = "id = \"a\"\n[tasks.t]\nplugin = \"plugins/t.wasm\"\n";
pub const WASM: &[u8] = b"\0asm\x01\0\0\0";

/// A 512-byte GNU tar header.
pub fn header(name: &[u8], kind: u8, link: &[u8], size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(name.len() <= 100 && link.len() <= 100, "use a long-name entry");
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// The blocks of one entry (a GNU long-name entry first when the name is over 100 bytes).
pub fn entry_blocks(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::new();
    let name = if entry.name.len() > 100 {
        let mut long = entry.name.clone();
        long.push(0);
        out.extend(header(b"././@LongLink", b'L', b"", long.len() as u64));
        out.extend(pad(&long));
        &entry.name[..100]
    } else {
        &entry.name[..]
    };
    out.extend(header(name, entry.kind, &entry.link, entry.data.len() as u64));
    out.extend(pad(&entry.data));
    out
}

pub fn pad(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().div_ceil(512) * 512, 0);
    out
}

/// A tar of the entries, with its end-of-archive blocks.
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        out.extend(entry_blocks(entry));
    }
    out.extend([0u8; 1024]);
    out
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

pub fn targz(entries: &[Entry]) -> Vec<u8> {
    gzip(&tar(entries))
}

pub fn read(bytes: &[u8]) -> Result<Bundle, Diagnostics> {
    Bundle::read(bytes, &Limits::default())
}

/// The codes of a refused bundle (panics when it was accepted).
pub fn codes(bytes: &[u8]) -> Vec<&'static str> {
    codes_with(bytes, &Limits::default())
}

pub fn codes_with(bytes: &[u8], limits: &Limits) -> Vec<&'static str> {
    match Bundle::read(bytes, limits) {
        Ok(bundle) => panic!("accepted: {bundle:?}"),
        Err(diagnostics) => diagnostics.codes(),
    }
}

/// The refusal's diagnostics (panics when it was accepted).
pub fn refused(bytes: &[u8]) -> Diagnostics {
    match read(bytes) {
        Ok(bundle) => panic!("accepted: {bundle:?}"),
        Err(diagnostics) => diagnostics,
    }
}

/// A good DAG file and plugin, to put beside an entry under test.
pub fn good() -> Vec<Entry> {
    vec![file("a.toml", DAG), dir("plugins/"), file("plugins/t.wasm", WASM)]
}

pub fn with_good(extra: Entry) -> Vec<u8> {
    let mut entries = good();
    entries.push(extra);
    targz(&entries)
}
