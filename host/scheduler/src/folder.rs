//! The DAG folder: which files there are, when each has settled, which DAG each declares, and what
//! that means for the store. A watcher task ([`DagFolder::watch`]) follows the folder's events and
//! loads what changed into the store, then wakes the scheduler, which only ever reads the store: a
//! slow, huge or hostile file never holds up the scheduler's loop.
//!
//! - **Settling.** A file is loaded once its size, mtime and inode have stayed the same for
//!   [`SETTLE`]: an editor or a copy half-way through a file does not become a version.
//! - **One file per DAG id.** Two files declaring the same id are both import errors until one of
//!   them changes; the DAG keeps its last good version.
//! - **Stale DAGs.** A DAG whose file is gone, or now declares another DAG, is marked stale (no new
//!   scheduled runs, its history kept), also when that happened while no scheduler ran. Loading its
//!   file again makes it fresh.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::loader::{parse_file, record, LoadContext, Loaded, Parsed};
use crate::SchedulerError;

/// How long a DAG file must stay unchanged (size, mtime, inode) before it is loaded. Editors and
/// copies write a file in bursts a few milliseconds apart; 300 ms is well past those, and short
/// enough that a saved file runs without a noticeable wait.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How long [`DagFolder::load_settled`] waits for files that keep changing before it leaves them.
const SETTLE_GIVE_UP: Duration = Duration::from_secs(10);

/// How often the folder is re-read when the operating system's file events are not available.
const POLL_FALLBACK: Duration = Duration::from_secs(1);

/// What one pass over the folder did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// DAGs loaded from new or changed files.
    pub loaded: Vec<Loaded>,
    /// Files that failed, with every diagnostic (one per line).
    pub errors: Vec<(PathBuf, String)>,
    /// DAGs that became stale: no file declares them any more.
    pub stale: Vec<String>,
    /// Files still being written when the pass ended (loaded by a later pass).
    pub unsettled: Vec<PathBuf>,
}

impl LoadReport {
    fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.errors.is_empty() && self.stale.is_empty()
    }

    fn extend(&mut self, other: LoadReport) {
        self.loaded.extend(other.loaded);
        self.errors.extend(other.errors);
        self.stale.extend(other.stale);
        self.unsettled = other.unsettled;
    }
}

/// What identifies a version of a file without opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// What the folder knows of one file.
#[derive(Debug)]
struct FileState {
    stamp: Stamp,
    /// When `stamp` was first seen.
    since: Instant,
    /// Whether this stamp has been loaded (or failed).
    done: bool,
    /// The DAG id its last successful parse declared; `None` when it did not parse.
    declares: Option<String>,
    /// The other files declaring the same id, when that was recorded as an import error.
    clash: Option<Vec<PathBuf>>,
}

/// A folder of DAG files, loaded into the store.
pub struct DagFolder {
    dir: PathBuf,
    cx: LoadContext,
    files: BTreeMap<PathBuf, FileState>,
    /// Whether a pass has looked for stale DAGs yet (the first always does: files may have gone
    /// while no scheduler ran).
    looked_for_stale: bool,
}

impl DagFolder {
    /// A folder; nothing is read until [`DagFolder::load_settled`] or [`DagFolder::watch`].
    pub fn new(dir: impl Into<PathBuf>, cx: LoadContext) -> Self {
        DagFolder { dir: dir.into(), cx, files: BTreeMap::new(), looked_for_stale: false }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads every new or changed file once it has settled, waiting for that (files still changing
    /// after 10 s are left, in [`LoadReport::unsettled`]): for start-up and one-shot commands.
    pub async fn load_settled(&mut self) -> Result<LoadReport, SchedulerError> {
        let give_up = Instant::now() + SETTLE_GIVE_UP;
        let mut report = LoadReport::default();
        loop {
            let (pass, next) = self.pass().await?;
            report.extend(pass);
            match next {
                Some(at) if at < give_up => tokio::time::sleep_until(at.into()).await,
                _ => return Ok(report),
            }
        }
    }

    /// Follows the folder until `shutdown`: every change is loaded once settled, and `wake` is
    /// called after each pass that changed the store. File events come from the operating system
    /// (inotify and the like), with polling as the fallback where those are not available.
    pub async fn watch(mut self, wake: impl Fn() + Send + 'static, shutdown: CancellationToken) {
        // The task keeps a sender, so the channel stays open even without a watcher.
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let _watcher = match start_watcher(&self.dir, events_tx.clone()) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                warn!(dir = %self.dir.display(), "cannot watch the DAG folder, no longer loading changes: {e}");
                None
            }
        };
        let mut due = Some(Instant::now());
        loop {
            let sleep = tokio::time::sleep_until(due.unwrap_or_else(far_future).into());
            tokio::select! {
                () = shutdown.cancelled() => return,
                event = events.recv() => {
                    if event.is_none() {
                        return;
                    }
                    while events.try_recv().is_ok() {}
                    due = Some(due.map_or_else(Instant::now, |at| at.min(Instant::now())));
                }
                () = sleep, if due.is_some() => {
                    match self.pass().await {
                        Ok((report, next)) => {
                            due = next;
                            if !report.is_empty() {
                                wake();
                            }
                        }
                        Err(e) => {
                            warn!(dir = %self.dir.display(), "reading the DAG folder failed, trying again: {e}");
                            due = Some(Instant::now() + POLL_FALLBACK);
                        }
                    }
                }
            }
        }
    }

    /// One pass: looks at every file, loads those that settled, records clashes, import errors and
    /// stale DAGs. Returns what it did and when files still settling should be looked at again.
    async fn pass(&mut self) -> Result<(LoadReport, Option<Instant>), SchedulerError> {
        let dir = self.dir.clone();
        let listed = tokio::task::spawn_blocking(move || list(&dir))
            .await
            .map_err(|e| SchedulerError::Io { path: self.dir.clone(), source: std::io::Error::other(e) })??;
        let now = Instant::now();
        let mut report = LoadReport::default();
        let mut changed = self.forget_gone(&listed).await?;
        for (path, stamp) in &listed {
            match self.files.get_mut(path) {
                Some(state) if state.stamp == *stamp => {}
                Some(state) => {
                    (state.stamp, state.since, state.done) = (*stamp, now, false);
                }
                None => {
                    let state = FileState { stamp: *stamp, since: now, done: false, declares: None, clash: None };
                    self.files.insert(path.clone(), state);
                }
            }
        }
        // Loading a file (or one going) can end a clash, which makes the other file load: until
        // nothing is ready.
        loop {
            let declarers = self.declarers();
            changed |= self.record_clashes(&declarers, &mut report).await?;
            let ready: Vec<PathBuf> = self
                .files
                .iter()
                .filter(|(_, state)| !state.done && now.duration_since(state.since) >= SETTLE)
                .map(|(path, _)| path.clone())
                .collect();
            if ready.is_empty() {
                break;
            }
            changed = true;
            self.load_ready(&ready, &mut report).await?;
        }
        if changed || !self.looked_for_stale {
            report.stale = self.mark_stale(&listed).await?;
            self.looked_for_stale = true;
        }
        let next = self.files.values().filter(|s| !s.done).map(|s| s.since + SETTLE).min();
        report.unsettled = self.files.iter().filter(|(_, s)| !s.done).map(|(p, _)| p.clone()).collect();
        Ok((report, next))
    }

    /// Drops the files that are gone, and their import errors. Returns whether there were any.
    async fn forget_gone(&mut self, listed: &BTreeMap<PathBuf, Stamp>) -> Result<bool, SchedulerError> {
        let gone: Vec<PathBuf> = self.files.keys().filter(|p| !listed.contains_key(*p)).cloned().collect();
        for path in &gone {
            if let Some(state) = self.files.remove(path) {
                info!(file = %path.display(), dag = ?state.declares, "a DAG file is gone");
            }
            self.cx.store.clear_import_error(&path.display().to_string()).await?;
        }
        Ok(!gone.is_empty())
    }

    /// Parses the ready files, then records each as a version, or as an import error (its own, or
    /// a clash with another file declaring the same DAG).
    async fn load_ready(&mut self, ready: &[PathBuf], report: &mut LoadReport) -> Result<(), SchedulerError> {
        let mut parsed: BTreeMap<PathBuf, Parsed> = BTreeMap::new();
        for path in ready {
            let result = parse_file(path, &self.cx).await;
            let Some(state) = self.files.get_mut(path) else { continue };
            state.done = true;
            match result {
                Ok(p) => {
                    state.declares = Some(p.dag.id.clone());
                    parsed.insert(path.clone(), p);
                }
                Err(message) => {
                    state.declares = None;
                    state.clash = None;
                    self.record_error(path, None, message, report).await?;
                }
            }
        }
        let declarers = self.declarers();
        for (path, p) in parsed {
            let id = p.dag.id.clone();
            if others_declaring(&declarers, &id, &path).is_empty() {
                if let Some(state) = self.files.get_mut(&path) {
                    state.clash = None;
                }
                match record(p, &self.cx).await {
                    Ok(loaded) => {
                        if loaded.new_version {
                            info!(dag = %loaded.dag.id, version = %loaded.version, file = %path.display(), "loaded a new DAG version");
                        }
                        report.loaded.push(loaded);
                    }
                    Err(message) => self.record_error(&path, Some(id), message, report).await?,
                }
            }
        }
        Ok(())
    }

    /// Records a clash on every file declaring an id that another file declares too, when that
    /// file's clash was not already recorded as it is; a file whose clash is over is loaded again.
    /// Returns whether anything changed.
    async fn record_clashes(
        &mut self,
        declarers: &BTreeMap<String, Vec<PathBuf>>,
        report: &mut LoadReport,
    ) -> Result<bool, SchedulerError> {
        let mut changed = false;
        let paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        for path in paths {
            let Some(state) = self.files.get_mut(&path) else { continue };
            let Some(id) = state.declares.clone() else { continue };
            let others = others_declaring(declarers, &id, &path);
            if others.is_empty() {
                if state.clash.take().is_some() {
                    // Its clash is over: load it again (it is settled).
                    state.done = false;
                    changed = true;
                }
                continue;
            }
            if state.clash.as_ref() == Some(&others) {
                continue;
            }
            state.clash = Some(others.clone());
            let names: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
            let message = format!(
                "{}: DAG `{id}` is also declared in {}: a DAG id must be declared by one file only; none of them is \
                 loaded (the DAG keeps its last good version) until only one declares it",
                path.display(),
                names.join(", ")
            );
            self.record_error(&path, Some(id), message, report).await?;
            changed = true;
        }
        Ok(changed)
    }

    async fn record_error(
        &self,
        path: &Path,
        dag_id: Option<String>,
        message: String,
        report: &mut LoadReport,
    ) -> Result<(), SchedulerError> {
        warn!(file = %path.display(), "DAG file not loaded:\n{message}");
        self.cx.store.record_import_error(&path.display().to_string(), dag_id.as_deref(), &message).await?;
        report.errors.push((path.to_path_buf(), message));
        Ok(())
    }

    /// Every DAG id that files declare, with the files.
    fn declarers(&self) -> BTreeMap<String, Vec<PathBuf>> {
        let mut declarers: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (path, state) in &self.files {
            if let Some(id) = &state.declares {
                declarers.entry(id.clone()).or_default().push(path.clone());
            }
        }
        declarers
    }

    /// Marks stale every DAG last loaded from a file of this folder that is gone or now declares
    /// another DAG. Returns the DAGs that became stale.
    async fn mark_stale(&self, listed: &BTreeMap<PathBuf, Stamp>) -> Result<Vec<String>, SchedulerError> {
        let Ok(root) = self.dir.canonicalize() else { return Ok(Vec::new()) };
        let present: BTreeMap<std::ffi::OsString, &PathBuf> =
            listed.keys().filter_map(|p| p.file_name().map(|n| (n.to_os_string(), p))).collect();
        let mut stale = Vec::new();
        let mut parents: BTreeMap<PathBuf, bool> = BTreeMap::new();
        for dag in self.cx.store.dags().await? {
            let Some(file) = dag.file_path.as_deref().map(Path::new) else { continue };
            let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else { continue };
            let in_this_folder = *parents
                .entry(parent.to_path_buf())
                .or_insert_with(|| parent.canonicalize().ok().as_ref() == Some(&root));
            if !in_this_folder || dag.is_stale() {
                continue;
            }
            let declared_elsewhere = match present.get(name) {
                None => true,
                Some(path) => {
                    self.files.get(*path).and_then(|s| s.declares.as_ref()).is_some_and(|id| *id != dag.dag_id)
                }
            };
            if declared_elsewhere && self.cx.store.mark_stale(&dag.dag_id).await? {
                info!(dag = %dag.dag_id, file = %file.display(), "no file declares this DAG any more: it is stale");
                stale.push(dag.dag_id);
            }
        }
        Ok(stale)
    }
}

/// The files of `declarers[id]` other than `path`.
fn others_declaring(declarers: &BTreeMap<String, Vec<PathBuf>>, id: &str, path: &Path) -> Vec<PathBuf> {
    declarers.get(id).map(|paths| paths.iter().filter(|p| *p != path).cloned().collect()).unwrap_or_default()
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The folder's `*.toml` entries that are not directories or hidden files (editors keep lock and
/// swap files there), with their stamps. Nothing is opened: a FIFO is listed, and refused when loaded.
fn list(dir: &Path) -> Result<BTreeMap<PathBuf, Stamp>, SchedulerError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| SchedulerError::Io { path: dir.to_path_buf(), source };
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let Ok(entry) = entry else { continue };
        let path = entry.path();
        let hidden = entry.file_name().to_str().is_none_or(|name| name.starts_with('.'));
        if hidden || path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        // Follows symlinks; a dangling one is listed by its own stamp, and fails when loaded.
        let Ok(meta) = std::fs::metadata(&path).or_else(|_| std::fs::symlink_metadata(&path)) else { continue };
        if meta.is_dir() {
            continue;
        }
        files.insert(path, Stamp { len: meta.len(), modified: meta.modified().ok(), inode: meta.ino() });
    }
    Ok(files)
}

/// Watches `dir` (not its subfolders) with the operating system's events, or by polling where they
/// are not available; every event sends `()`.
/// Whether a file event may mean the folder's contents changed. Reading is not a change: each pass
/// lists the folder and reads files, which the OS reports as opened, accessed and closed, and
/// taking those for changes made every pass start the next one, a busy loop for the scheduler's
/// whole life (measured: a 5-DAG bench made 774 directory reads where one would do). A file closed
/// after writing is a change.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        notify::EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        notify::EventKind::Access(_) => false,
        _ => true,
    }
}

fn start_watcher(dir: &Path, events: mpsc::UnboundedSender<()>) -> notify::Result<Box<dyn notify::Watcher + Send>> {
    use notify::Watcher;
    let handler = {
        let events = events.clone();
        move |event: notify::Result<notify::Event>| {
            if event.as_ref().is_ok_and(|e| !is_change(&e.kind)) {
                return;
            }
            let _ = events.send(());
        }
    };
    let native = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match native {
        Ok(watcher) => Ok(Box::new(watcher)),
        Err(e) => {
            warn!(dir = %dir.display(), "no file events for the DAG folder ({e}): polling it every {POLL_FALLBACK:?}");
            let config = notify::Config::default().with_poll_interval(POLL_FALLBACK);
            let mut watcher = notify::PollWatcher::new(
                move |_: notify::Result<notify::Event>| {
                    let _ = events.send(());
                },
                config,
            )?;
            watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
            Ok(Box::new(watcher))
        }
    }
}

#[cfg(test)]
mod tests {
    use sandflow_sandbox::{Sandbox, SandboxConfig};
    use sandflow_store::Store;

    use super::*;

    const PLUGIN: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn dag(tasks: usize) -> String {
        let mut text = "id = \"growing\"\n".to_string();
        for n in 0..tasks {
            text.push_str(&format!("[tasks.t{n}]\nplugin = \"{PLUGIN}\"\n"));
        }
        text
    }

    #[tokio::test]
    async fn a_file_loads_only_once_it_has_stopped_changing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_memory().await.unwrap();
        store.put_plugin(PLUGIN, b"-", sandflow_store::PluginKind::P1Command).await.unwrap();
        let sandbox = Sandbox::new(SandboxConfig { max_concurrent_tries: 1, ..SandboxConfig::default() }).unwrap();
        let mut folder =
            DagFolder::new(dir.path(), LoadContext::new(store.clone(), sandbox, Default::default(), false));
        let path = dir.path().join("growing.toml");
        // Half-written (but valid): seen, not loaded.
        std::fs::write(&path, dag(1)).unwrap();
        let (report, next) = folder.pass().await.unwrap();
        assert!(report.loaded.is_empty() && next.is_some());
        assert_eq!(report.unsettled, vec![path.clone()]);
        // Written further: seen anew, still not loaded, however long the first look was ago.
        tokio::time::sleep(SETTLE).await;
        std::fs::write(&path, dag(2)).unwrap();
        let (report, _) = folder.pass().await.unwrap();
        assert!(report.loaded.is_empty());
        // Unchanged for the settle time: loaded, and only the whole file is a version.
        tokio::time::sleep(SETTLE).await;
        let (report, next) = folder.pass().await.unwrap();
        assert_eq!(report.loaded.len(), 1);
        assert_eq!(report.loaded[0].dag.tasks.len(), 2);
        assert!(next.is_none() && report.unsettled.is_empty());
        assert_eq!(store.dag_versions("growing").await.unwrap().len(), 1);
    }

    #[test]
    fn reading_the_folder_is_not_a_change() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
        use notify::EventKind;
        for read in [AccessKind::Open(AccessMode::Any), AccessKind::Read, AccessKind::Close(AccessMode::Read)] {
            assert!(!is_change(&EventKind::Access(read)), "{read:?}");
        }
        assert!(is_change(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(is_change(&EventKind::Create(CreateKind::File)));
        assert!(is_change(&EventKind::Modify(ModifyKind::Any)));
        assert!(is_change(&EventKind::Remove(RemoveKind::File)));
        assert!(is_change(&EventKind::Any));
    }
}
