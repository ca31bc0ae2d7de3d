//! This machine's content-addressed plugin bytes: `<dir>/<hex>.wasm`, written once, verified on read.
//!
//! The store knows nothing of what the bytes mean: [`crate::Sandbox::check`] validates a plugin before
//! it is added. Later, plugins also travel through the database by id; this directory is then the
//! local copy that a worker fetches into and checks against the id.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{PluginError, PluginId};

/// Plugin bytes on disk, by id.
#[derive(Debug, Clone)]
pub struct PluginStore {
    dir: PathBuf,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError + '_ {
    move |source| PluginError::Io { path: path.to_path_buf(), source }
}

impl PluginStore {
    /// A store in `dir`, created if absent.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        Ok(PluginStore { dir })
    }

    fn path(&self, id: &PluginId) -> PathBuf {
        self.dir.join(format!("{}.wasm", id.hex()))
    }

    /// Stores `bytes` (already checked) and returns their id. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<PluginId, PluginError> {
        let id = PluginId::of(bytes);
        let path = self.path(&id);
        if path.exists() {
            return Ok(id);
        }
        write_atomically(&path, bytes).map_err(io_error(&path))?;
        Ok(id)
    }

    /// Whether the store holds `id`.
    pub fn contains(&self, id: &PluginId) -> bool {
        self.path(id).exists()
    }

    /// The bytes of `id`, checked against it.
    pub fn get(&self, id: &PluginId) -> Result<Vec<u8>, PluginError> {
        let path = self.path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(PluginError::NotFound(id.clone())),
            Err(e) => return Err(io_error(&path)(e)),
        };
        let actual = PluginId::of(&bytes);
        if &actual != id {
            return Err(PluginError::HashMismatch { expected: id.clone(), actual });
        }
        Ok(bytes)
    }

    /// Every id in the store, sorted.
    pub fn list(&self) -> Result<Vec<PluginId>, PluginError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let name = entry.map_err(io_error(&self.dir))?.file_name();
            if let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".wasm")) {
                if let Ok(id) = format!("sha256:{hex}").parse() {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}

/// Writes to a temporary file beside `path`, syncs, then renames: readers see all or nothing, and a
/// crash leaves at worst a stray temporary file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_then_get_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::open(dir.path()).unwrap();
        let id = store.put(b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(store.put(b"\0asm\x01\0\0\0").unwrap(), id);
        assert_eq!(store.get(&id).unwrap(), b"\0asm\x01\0\0\0");
        assert_eq!(store.list().unwrap(), vec![id.clone()]);

        fs::write(dir.path().join(format!("{}.wasm", id.hex())), b"tampered").unwrap();
        let err = store.get(&id).unwrap_err();
        assert!(matches!(err, PluginError::HashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("refusing to run them"), "{err}");
    }

    #[test]
    fn an_unknown_id_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = PluginStore::open(dir.path()).unwrap();
        let err = store.get(&PluginId::of(b"nothing")).unwrap_err();
        assert!(err.to_string().starts_with("no plugin sha256:"), "{err}");
    }
}
