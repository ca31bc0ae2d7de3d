//! Plugin identity (`sha256:` of the wasm bytes), kinds, and what `plugin inspect` shows.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PluginError;

/// A plugin's id: `sha256:` and the 64 lowercase hex digits of the SHA-256 of its wasm bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PluginId(String);

impl PluginId {
    /// The id of these bytes.
    pub fn of(bytes: &[u8]) -> PluginId {
        PluginId(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The 64 hex digits, for file names.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The id as text, `sha256:...`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short form for humans: `sha256:` and the first 12 digits.
    pub fn short(&self) -> &str {
        &self.0[..("sha256:".len() + 12)]
    }
}

impl FromStr for PluginId {
    type Err = PluginError;
    fn from_str(text: &str) -> Result<Self, PluginError> {
        let hex = text.strip_prefix("sha256:").ok_or_else(|| PluginError::BadId(text.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(PluginError::BadId(text.to_string()));
        }
        Ok(PluginId(text.to_string()))
    }
}

impl TryFrom<String> for PluginId {
    type Error = PluginError;
    fn try_from(text: String) -> Result<Self, PluginError> {
        text.parse()
    }
}

impl From<PluginId> for String {
    fn from(id: PluginId) -> String {
        id.0
    }
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two kinds of plugin the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PluginKind {
    /// A core module importing `wasi_snapshot_preview1` and exporting `_start`.
    P1Command,
    /// A component of the `wasi:cli/command` world.
    P2Command,
    /// A component of the `sandflow:operator` world (ABI v2).
    V2Operator,
}

impl PluginKind {
    /// The plugin ABI it speaks: 1 for commands (JSON on stdin and stdout), 2 for operators.
    pub fn abi(self) -> u32 {
        match self {
            PluginKind::P1Command | PluginKind::P2Command => 1,
            PluginKind::V2Operator => 2,
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PluginKind::P1Command => "wasi preview1 command (core module)",
            PluginKind::P2Command => "wasi preview2 command (component)",
            PluginKind::V2Operator => "sandflow:operator@2 operator (component, ABI v2)",
        })
    }
}

/// The two binary encodings, told apart by the 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Module,
    Component,
}

pub(crate) fn encoding(bytes: &[u8]) -> Result<Encoding, PluginError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(PluginError::NotWasm(if bytes.len() < 8 && bytes.starts_with(&MAGIC[..bytes.len().min(4)]) {
            format!("only {} bytes, shorter than a wasm header", bytes.len())
        } else {
            "it does not start with the wasm magic bytes \\0asm".to_string()
        }));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Ok(Encoding::Module),
        [0x0d, 0, 1, 0] => Ok(Encoding::Component),
        [a, b, c, d] => Err(PluginError::UnsupportedKind(format!(
            "wasm version/layer {a:#04x} {b:#04x} {c:#04x} {d:#04x} is neither a core module (1) nor a component (0x0d, layer 1)"
        ))),
        _ => unreachable!("slice of four"),
    }
}

/// What the host knows of a plugin after checking it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Its id.
    pub id: PluginId,
    /// Its kind.
    pub kind: PluginKind,
    /// Size of the wasm bytes.
    pub size: u64,
    /// Imports, as `module::name (kind)` for modules and instance names for components.
    pub imports: Vec<String>,
    /// Exports, likewise.
    pub exports: Vec<String>,
    /// Bytes of linear memory the plugin has before it runs a single instruction (its largest
    /// memory's initial size; a stack linked into memory, as Zig's, counts here). It counts toward
    /// the memory limit: a limit below it stops the try before it starts.
    #[serde(default)]
    pub initial_memory_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sha256_of_the_bytes() {
        let id = PluginId::of(b"");
        assert_eq!(id.as_str(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(id.as_str().parse::<PluginId>().unwrap(), id);
        assert_eq!(id.short(), "sha256:e3b0c44298fc");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "sha256:",
            "md5:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:zz",
        ] {
            assert!(bad.parse::<PluginId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_header_tells_modules_from_components() {
        assert_eq!(encoding(b"\0asm\x01\0\0\0").unwrap(), Encoding::Module);
        assert_eq!(encoding(b"\0asm\x0d\0\x01\0").unwrap(), Encoding::Component);
        assert!(matches!(encoding(b"\x7fELF\x02\x01\x01\0"), Err(PluginError::NotWasm(_))));
        assert!(matches!(encoding(b"\0as"), Err(PluginError::NotWasm(m)) if m.contains("shorter")));
        assert!(matches!(encoding(b"\0asm\x02\0\0\0"), Err(PluginError::UnsupportedKind(_))));
    }
}
