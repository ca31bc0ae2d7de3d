//! DAGs, their versions (immutable: a version is the hash of its spec) and the files that failed
//! to load.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, Store};

/// A DAG known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct DagRow {
    pub dag_id: String,
    /// The version scheduled runs use.
    pub active_version: String,
    /// The file it was last loaded from.
    pub file_path: Option<String>,
    pub is_paused: bool,
    pub created_at: DateTime<Utc>,
    /// When the active version last changed.
    pub updated_at: DateTime<Utc>,
    /// Since when no file declares it (deleted, or now declaring another DAG): a stale DAG gets no
    /// new scheduled runs and keeps its history. `None` while its file is there.
    pub stale_since: Option<DateTime<Utc>>,
}

impl DagRow {
    /// Whether no file declares it any more.
    pub fn is_stale(&self) -> bool {
        self.stale_since.is_some()
    }
}

/// A DAG file that failed to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ImportErrorRow {
    pub file_path: String,
    /// The DAG last loaded from that file, if any: it keeps its last good version.
    pub dag_id: Option<String>,
    pub message: String,
    pub at: DateTime<Utc>,
}

/// What [`Store::set_paused`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseChange {
    /// The DAG was in the other state and now is in the one asked for.
    Changed,
    /// The DAG was already in the state asked for (another process may have just put it there):
    /// nothing was written.
    Already,
    /// There is no such DAG.
    NoSuchDag,
}

impl Store {
    /// Records a DAG version loaded from `file_path` and makes it the DAG's active version. A new
    /// DAG starts paused when `paused_if_new`. Clears the file's import error. Returns whether the
    /// version is new to the store. `spec` is what the loader keeps of the version (JSON).
    pub async fn record_dag_version(
        &self,
        dag_id: &str,
        version: &str,
        spec: &Value,
        file_path: &str,
        paused_if_new: bool,
    ) -> Result<bool> {
        self.backend.record_dag_version(dag_id, version, spec, file_path, paused_if_new).await
    }

    /// Records that `file_path` failed to load: `dag_id` is the DAG it declares when that is known,
    /// else the DAG last loaded from that file, if any (it keeps its active version).
    pub async fn record_import_error(&self, file_path: &str, dag_id: Option<&str>, message: &str) -> Result<()> {
        self.backend.record_import_error(file_path, dag_id, message).await
    }

    /// Forgets `file_path`'s import error (the file is gone).
    pub async fn clear_import_error(&self, file_path: &str) -> Result<()> {
        self.backend.clear_import_error(file_path).await
    }

    /// Marks a DAG stale: no file declares it any more. Returns whether it was not stale before
    /// (a guarded write: of two processes marking it, one gets `true`).
    pub async fn mark_stale(&self, dag_id: &str) -> Result<bool> {
        self.backend.mark_stale(dag_id).await
    }

    /// Every file that failed to load, with its message.
    pub async fn import_errors(&self) -> Result<Vec<ImportErrorRow>> {
        self.backend.import_errors().await
    }

    /// Every DAG, by id.
    pub async fn dags(&self) -> Result<Vec<DagRow>> {
        self.backend.dags().await
    }

    /// One DAG.
    pub async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        self.backend.dag(dag_id).await
    }

    /// The stored spec (JSON) of a DAG version.
    pub async fn dag_spec(&self, dag_id: &str, version: &str) -> Result<Option<Value>> {
        self.backend.dag_spec(dag_id, version).await
    }

    /// Every version of a DAG, oldest first.
    pub async fn dag_versions(&self, dag_id: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.backend.dag_versions(dag_id).await
    }

    /// Pauses or unpauses a DAG: a guarded write (`WHERE is_paused = NOT paused`), so of two
    /// processes doing the same, one is told [`PauseChange::Already`].
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<PauseChange> {
        self.backend.set_paused(dag_id, paused).await
    }
}
