//! Loading one DAG file into the store: read it safely, parse it, pin every plugin to its `sha256:`
//! id, record the version. A broken file is an error the caller records; its DAG keeps its last good
//! version.
//!
//! A version is stored as the file's TOML text plus the plugin ids it resolved to ([`StoredSpec`]),
//! so any process re-creates exactly the same [`Dag`] from the store without the file or the
//! plugin files, and re-parsing it gives the same version.
//!
//! A DAG file is written by whoever can write the DAG folder (or upload a bundle), so every read is
//! bounded: files are opened without blocking (a FIFO would otherwise wait for a writer forever),
//! must be regular files (not `/dev/zero`, not a device), are read up to a size cap, and plugin
//! paths must stay inside the DAG folder (no `..` above it, no symlink leading out of it).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use sandflow_core::dag::{parse_dag, Caps, Dag, PluginRef};
use sandflow_sandbox::{Sandbox, MAX_PLUGIN_BYTES};
use sandflow_store::Store;
use serde::{Deserialize, Serialize};

use crate::SchedulerError;

/// The largest DAG file read. Generated DAG files with thousands of tasks are a few hundred KB;
/// 4 MiB is ten times that, still parses in well under a second, and keeps a mistaken or hostile
/// file (a log, a disk image) from filling the scheduler's memory.
pub const MAX_DAG_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What the store keeps of a DAG version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredSpec {
    /// The file name it was loaded from, for messages.
    pub file: String,
    /// The TOML text.
    pub source: String,
    /// Each plugin path in the file, pinned to the id its bytes had.
    pub plugins: BTreeMap<String, String>,
}

impl StoredSpec {
    /// Rebuilds the [`Dag`] (no file or plugin is read).
    pub fn to_dag(&self, caps: &Caps) -> Result<Dag, SchedulerError> {
        let mut resolve = |plugin: &PluginRef| match plugin {
            PluginRef::Id(id) => Ok(id.clone()),
            PluginRef::Path(path) => {
                self.plugins.get(path).cloned().ok_or_else(|| format!("plugin {path} is not pinned in the stored spec"))
            }
        };
        parse_dag(&self.file, &self.source, caps, &mut resolve).map_err(|diagnostics| SchedulerError::BadStoredSpec {
            file: self.file.clone(),
            detail: diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        })
    }
}

/// A loaded DAG.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The DAG.
    pub dag: Arc<Dag>,
    /// Its version.
    pub version: String,
    /// Whether the store had not seen this version before.
    pub new_version: bool,
}

/// A DAG file parsed and its plugins pinned (and stored), not yet recorded as a version.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The DAG.
    pub dag: Arc<Dag>,
    /// Its version.
    pub version: String,
    file: String,
    spec: serde_json::Value,
}

/// What loading needs: where versions and plugins go, and the rules they are checked against.
#[derive(Clone)]
pub struct LoadContext {
    /// Where versions and plugin bytes are recorded.
    pub store: Store,
    /// Checks plugins.
    pub sandbox: Sandbox,
    /// The server's caps.
    pub caps: Caps,
    /// Whether a DAG seen for the first time starts paused (its file's `is_paused_upon_creation`
    /// overrides it).
    pub paused_at_creation: bool,
    /// Where a `sha256:` plugin id missing from `store` is looked up and copied from: the home's
    /// store, for commands that load into a store in memory (`dags test`).
    pub plugin_source: Option<Store>,
    /// What DAGs may be granted: each DAG is checked against it before it is recorded.
    pub grants: crate::GrantConfig,
}

impl LoadContext {
    /// A context with no other plugin source.
    pub fn new(store: Store, sandbox: Sandbox, caps: Caps, paused_at_creation: bool) -> Self {
        LoadContext { store, sandbox, caps, paused_at_creation, plugin_source: None, grants: Default::default() }
    }

    /// This context, checking grants against `grants`.
    pub fn with_grants(self, grants: crate::GrantConfig) -> Self {
        LoadContext { grants, ..self }
    }
}

/// Loads one DAG file (plugin paths relative to its folder): every error is returned as text, one
/// diagnostic per line.
pub async fn load_file(path: &Path, cx: &LoadContext) -> Result<Loaded, String> {
    record(parse_file(path, cx).await?, cx).await
}

/// Reads and parses one DAG file, pinning and storing its plugins; the version is not recorded.
pub async fn parse_file(path: &Path, cx: &LoadContext) -> Result<Parsed, String> {
    let file = path.display().to_string();
    let (path, cx2) = (path.to_path_buf(), cx.clone());
    // Reading files and checking plugins (which compiles them) block: off the async threads.
    tokio::task::spawn_blocking(move || parse_blocking(&path, &cx2))
        .await
        .map_err(|e| format!("{file}: loading failed: {e}"))?
}

fn parse_blocking(path: &Path, cx: &LoadContext) -> Result<Parsed, String> {
    let file = path.display().to_string();
    let bytes = read_regular_file(path, MAX_DAG_FILE_BYTES, "a DAG file")?;
    let source = String::from_utf8(bytes).map_err(|_| format!("{file}: not UTF-8 text"))?;
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let handle = tokio::runtime::Handle::current();
    let mut pinned = BTreeMap::new();
    let mut resolve = |plugin: &PluginRef| resolve_plugin(plugin, &dir, cx, &handle, &mut pinned);
    let dag = parse_dag(&file, &source, &cx.caps, &mut resolve)
        .map_err(|diagnostics| diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let version = dag.version();
    let spec = StoredSpec { file: file.clone(), source, plugins: pinned };
    let spec = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    Ok(Parsed { dag: Arc::new(dag), version, file, spec })
}

/// Records a parsed DAG as its DAG's active version.
pub async fn record(parsed: Parsed, cx: &LoadContext) -> Result<Loaded, String> {
    let Parsed { dag, version, file, spec } = parsed;
    // A DAG file on the server's own disk was put there by whoever runs the server: it may grant
    // secrets; mounts, origins and quotas are held to the server's settings.
    let policy = cx.grants.policy(&cx.store, true).await.map_err(|e| format!("{file}: {e}"))?;
    if let Err(refused) = policy.check(&dag) {
        return Err(format!("{file}: refused: {}", refused.join("; ")));
    }
    let paused = dag.paused.unwrap_or(cx.paused_at_creation);
    let plugin_ids = plugin_ids(&dag);
    let recorded = cx
        .store
        .record_version(&sandflow_store::NewVersion {
            dag_id: &dag.id,
            version: &version,
            spec: &spec,
            file_path: &file,
            plugin_ids: &plugin_ids,
            paused_if_new: paused,
            origin: sandflow_store::VersionOrigin::Folder,
            uploaded_by: None,
            placement: sandflow_store::Placement::Activate,
        })
        .await
        .map_err(|e| format!("{file}: {e}"))?;
    Ok(Loaded { dag, version, new_version: recorded.new_version })
}

/// Every plugin a DAG's tasks pin, once each, sorted.
pub fn plugin_ids(dag: &Dag) -> Vec<String> {
    let ids: std::collections::BTreeSet<&str> = dag.tasks.iter().map(|t| t.plugin_id.as_str()).collect();
    ids.into_iter().map(String::from).collect()
}

/// Pins one plugin reference: a path is read, checked by the sandbox and stored; an id must be in
/// the store already (or in the context's plugin source, and is copied).
fn resolve_plugin(
    plugin: &PluginRef,
    dir: &Path,
    cx: &LoadContext,
    handle: &tokio::runtime::Handle,
    pinned: &mut BTreeMap<String, String>,
) -> Result<String, String> {
    match plugin {
        PluginRef::Id(id) => {
            if handle.block_on(cx.store.has_plugin(id)).map_err(|e| e.to_string())? {
                return Ok(id.clone());
            }
            let missing = || format!("no plugin {id} in the store: add it first (sandflow plugin add)");
            let source = cx.plugin_source.as_ref().ok_or_else(missing)?;
            let bytes = handle.block_on(source.plugin_bytes(id)).map_err(|e| e.to_string())?.ok_or_else(missing)?;
            store_plugin(&bytes, cx, handle).map_err(|e| format!("{id}: {e}"))
        }
        // Tasks of one file often share a plugin: it is read, checked and stored once per load.
        PluginRef::Path(path) if pinned.contains_key(path) => Ok(pinned[path].clone()),
        PluginRef::Path(path) => {
            let full = plugin_path(dir, path)?;
            let bytes = read_regular_file(&full, MAX_PLUGIN_BYTES, "a plugin")?;
            let id = store_plugin(&bytes, cx, handle).map_err(|e| format!("{}: {e}", full.display()))?;
            pinned.insert(path.clone(), id.clone());
            Ok(id)
        }
    }
}

/// The store's name for the sandbox's kind of plugin.
pub fn stored_kind(kind: sandflow_sandbox::PluginKind) -> sandflow_store::PluginKind {
    match kind {
        sandflow_sandbox::PluginKind::P1Command => sandflow_store::PluginKind::P1Command,
        sandflow_sandbox::PluginKind::P2Command => sandflow_store::PluginKind::P2Command,
        sandflow_sandbox::PluginKind::V2Operator => sandflow_store::PluginKind::V2Operator,
    }
}

/// Checks plugin bytes with the sandbox and stores them; returns their id.
fn store_plugin(bytes: &[u8], cx: &LoadContext, handle: &tokio::runtime::Handle) -> Result<String, String> {
    let info = cx.sandbox.check(bytes).map_err(|e| e.to_string())?;
    handle.block_on(cx.store.put_plugin(info.id.as_str(), bytes, stored_kind(info.kind))).map_err(|e| e.to_string())?;
    Ok(info.id.to_string())
}

/// The file a relative plugin path names, which must be inside `dir`: a path climbing above it with
/// `..` is refused before anything is looked up (so nothing is learnt about the host's files), and a
/// path whose symlinks lead out of it is refused too.
fn plugin_path(dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let outside =
        || format!("plugin path {relative:?} leads outside the DAG folder: a plugin must be a file inside it");
    let mut depth = 0usize;
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(outside)?,
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    let joined = dir.join(relative);
    let full = joined.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("no such file: {}", joined.display()),
        _ => format!("{}: {e}", joined.display()),
    })?;
    let root = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    if !full.starts_with(&root) {
        return Err(outside());
    }
    Ok(full)
}

/// Reads a file that must be a regular file of at most `cap` bytes (`what` names it in messages).
/// It is opened without blocking, so a FIFO cannot stall the reader waiting for a writer; its type
/// is checked on the opened handle (no race with a swap after a check by name); and at most
/// `cap + 1` bytes are read, so a file that grows while being read is refused too.
pub fn read_regular_file(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>, String> {
    let name = path.display();
    let file =
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("no such file: {name}"),
                _ => format!("{name}: {e}"),
            },
        )?;
    let meta = file.metadata().map_err(|e| format!("{name}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{name}: {}, not a regular file: {what} must be a regular file", file_kind(&meta)));
    }
    let too_large =
        |size: String| format!("{name}: {size}, over the {} limit for {what}", sandflow_sandbox::human_bytes(cap));
    if meta.len() > cap {
        return Err(too_large(sandflow_sandbox::human_bytes(meta.len())));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes).map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > cap {
        return Err(too_large("more bytes than that".to_string()));
    }
    Ok(bytes)
}

/// What a file that is not a regular file is, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_paths_that_climb_out_are_refused_without_looking() {
        let dir = tempfile::tempdir().unwrap();
        for path in ["../x.wasm", "plugins/../../x.wasm", "../../../../dev/zero", "a/b/../../../c"] {
            let err = plugin_path(dir.path(), path).unwrap_err();
            assert!(err.contains("leads outside the DAG folder"), "{path}: {err}");
        }
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        std::fs::write(dir.path().join("x.wasm"), b"x").unwrap();
        assert!(plugin_path(dir.path(), "plugins/../x.wasm").is_ok());
        assert!(plugin_path(dir.path(), "./x.wasm").is_ok());
    }

    #[test]
    fn special_files_are_refused_on_the_opened_handle() {
        let err = read_regular_file(Path::new("/dev/zero"), 10, "a plugin").unwrap_err();
        assert_eq!(err, "/dev/zero: a character device, not a regular file: a plugin must be a regular file");
        let dir = tempfile::tempdir().unwrap();
        let err = read_regular_file(dir.path(), 10, "a plugin").unwrap_err();
        assert!(err.ends_with("a directory, not a regular file: a plugin must be a regular file"), "{err}");
    }

    #[test]
    fn files_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 2048]).unwrap();
        let err = read_regular_file(&path, 1024, "a DAG file").unwrap_err();
        assert!(err.ends_with(": 2 KiB, over the 1 KiB limit for a DAG file"), "{err}");
        assert_eq!(read_regular_file(&path, 2048, "a DAG file").unwrap().len(), 2048);
    }
}
