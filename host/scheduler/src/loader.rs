//! Loading DAG files into the store: parse, pin every plugin to its `sha256:` id, record the
//! version. A broken file is recorded as an import error and its DAG keeps its last good version.
//!
//! A version is stored as the file's TOML text plus the plugin ids it resolved to ([`StoredSpec`]),
//! so any process re-creates exactly the same [`Dag`] from the store without the file or the
//! plugin files, and re-parsing it gives the same version.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use sandflow_core::dag::{parse_dag, Caps, Dag, PluginRef};
use sandflow_sandbox::Sandbox;
use sandflow_store::Store;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::SchedulerError;

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

/// What one pass over the folder found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// DAGs loaded from new or changed files.
    pub loaded: Vec<Loaded>,
    /// Files that failed, with every diagnostic (one per line).
    pub errors: Vec<(PathBuf, String)>,
}

/// Reads a folder of DAG files into the store, re-reading only files that changed since the last
/// pass.
pub struct DagFolder {
    dir: PathBuf,
    store: Store,
    sandbox: Sandbox,
    caps: Caps,
    paused_at_creation: bool,
    seen: HashMap<PathBuf, (SystemTime, u64)>,
}

impl DagFolder {
    /// A folder; nothing is read until [`DagFolder::scan`].
    pub fn new(dir: impl Into<PathBuf>, store: Store, sandbox: Sandbox, caps: Caps, paused_at_creation: bool) -> Self {
        DagFolder { dir: dir.into(), store, sandbox, caps, paused_at_creation, seen: HashMap::new() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every `*.toml` file that is new or changed since the last scan.
    pub async fn scan(&mut self) -> Result<LoadReport, SchedulerError> {
        let mut report = LoadReport::default();
        let entries =
            std::fs::read_dir(&self.dir).map_err(|source| SchedulerError::Io { path: self.dir.clone(), source })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
            .collect();
        files.sort();
        for path in files {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
            if self.seen.get(&path) == Some(&stamp) {
                continue;
            }
            self.seen.insert(path.clone(), stamp);
            match load_file(&path, &self.store, &self.sandbox, &self.caps, self.paused_at_creation).await {
                Ok(loaded) => {
                    if loaded.new_version {
                        info!(dag = %loaded.dag.id, version = %loaded.version, file = %path.display(), "loaded a new DAG version");
                    }
                    report.loaded.push(loaded);
                }
                Err(message) => {
                    warn!(file = %path.display(), "DAG file not loaded:\n{message}");
                    self.store.record_import_error(&path.display().to_string(), &message).await?;
                    report.errors.push((path, message));
                }
            }
        }
        Ok(report)
    }
}

/// Loads one DAG file: every error is returned as text, one diagnostic per line.
pub async fn load_file(
    path: &Path,
    store: &Store,
    sandbox: &Sandbox,
    caps: &Caps,
    paused_at_creation: bool,
) -> Result<Loaded, String> {
    let source = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file = path.display().to_string();
    let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let (store2, sandbox, caps2, file2, source2) =
        (store.clone(), sandbox.clone(), *caps, file.clone(), source.clone());
    // Checking plugins compiles them: off the async threads.
    let parsed = tokio::task::spawn_blocking(move || {
        let handle = tokio::runtime::Handle::current();
        let mut pinned = BTreeMap::new();
        let mut resolve = |plugin: &PluginRef| resolve_plugin(plugin, &dir, &store2, &sandbox, &handle, &mut pinned);
        let dag = parse_dag(&file2, &source2, &caps2, &mut resolve);
        (dag, pinned)
    })
    .await
    .map_err(|e| format!("{file}: loading failed: {e}"))?;
    let (dag, plugins) = parsed;
    let dag = dag.map_err(|diagnostics| diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))?;
    let version = dag.version();
    let spec = StoredSpec { file: file.clone(), source, plugins };
    let spec_json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let paused = dag.paused.unwrap_or(paused_at_creation);
    let new_version = store
        .record_dag_version(&dag.id, &version, &spec_json, &file, paused)
        .await
        .map_err(|e| format!("{file}: {e}"))?;
    Ok(Loaded { dag: Arc::new(dag), version, new_version })
}

/// Pins one plugin reference: a path is read, checked by the sandbox and stored; an id must be in
/// the store already.
fn resolve_plugin(
    plugin: &PluginRef,
    dir: &Path,
    store: &Store,
    sandbox: &Sandbox,
    handle: &tokio::runtime::Handle,
    pinned: &mut BTreeMap<String, String>,
) -> Result<String, String> {
    match plugin {
        PluginRef::Id(id) => match handle.block_on(store.has_plugin(id)) {
            Ok(true) => Ok(id.clone()),
            Ok(false) => Err(format!("no plugin {id} in the store: add it first (sandflow plugin add)")),
            Err(e) => Err(e.to_string()),
        },
        PluginRef::Path(path) => {
            let full = dir.join(path);
            let bytes = std::fs::read(&full).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => format!("no such file: {}", full.display()),
                _ => format!("{}: {e}", full.display()),
            })?;
            let info = sandbox.check(&bytes).map_err(|e| format!("{}: {e}", full.display()))?;
            let kind =
                serde_json::to_value(info.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            handle.block_on(store.put_plugin(info.id.as_str(), &bytes, &kind)).map_err(|e| e.to_string())?;
            pinned.insert(path.clone(), info.id.to_string());
            Ok(info.id.to_string())
        }
    }
}
