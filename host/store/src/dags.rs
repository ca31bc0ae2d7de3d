//! DAGs, their versions (immutable: a version is the hash of its spec) and the files that failed
//! to load.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::{Result, Store, UnknownName};

/// A DAG known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionOrigin {
    /// A DAG folder a scheduler watches (or `sandflow dags load`).
    Folder,
    /// A bundle uploaded over HTTP.
    Bundle,
}

impl VersionOrigin {
    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionOrigin::Folder => "folder",
            VersionOrigin::Bundle => "bundle",
        }
    }
}

impl std::str::FromStr for VersionOrigin {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [VersionOrigin::Folder, VersionOrigin::Bundle]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownName { what: "version origin", name: s.to_string() })
    }
}

impl TryFrom<String> for VersionOrigin {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        s.parse()
    }
}

/// What recording a version does to its DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// The version becomes the one the schedule uses.
    Activate,
    /// The version is stored and the active one stays (`--no-activate`); a DAG's first version
    /// is active all the same, having nothing else to run.
    Keep,
    /// The version joins a named experiment: never scheduled, never active. The DAG must exist.
    Experiment {
        /// The experiment's name.
        name: &'a str,
        /// Its note.
        note: Option<&'a str>,
    },
}

/// A version to record.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    pub dag_id: &'a str,
    pub version: &'a str,
    /// What the loader keeps of the version (JSON).
    pub spec: &'a Value,
    /// The file it came from: a folder's path, or `bundle:<path in the bundle>`.
    pub file_path: &'a str,
    /// Every plugin id the version pins.
    pub plugin_ids: &'a [String],
    /// Whether a DAG seen for the first time starts paused.
    pub paused_if_new: bool,
    pub origin: VersionOrigin,
    /// Who uploaded it (`None` for a folder).
    pub uploaded_by: Option<&'a str>,
    pub placement: Placement<'a>,
}

/// What [`Store::record_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The store had not seen this version of this DAG before.
    pub new_version: bool,
    /// The version is now the DAG's active one and was not before.
    pub activated: bool,
    /// The DAG was new to the store.
    pub new_dag: bool,
}

/// A version of a DAG, without its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct VersionRow {
    pub dag_id: String,
    pub version: String,
    /// When the store first saw it.
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    pub origin: VersionOrigin,
    /// Who first uploaded it (`None` for a folder).
    pub uploaded_by: Option<String>,
}

/// A version's membership of an experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ExperimentRow {
    pub dag_id: String,
    /// The experiment's name.
    pub name: String,
    pub version: String,
    /// Who pushed this version into it.
    pub author: String,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What [`Store::activate_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivateChange {
    /// The version is now the active one.
    Changed,
    /// It already was.
    Already,
    /// The DAG has no such version (or there is no such DAG).
    NoSuchVersion,
}

/// A DAG file that failed to load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
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
        let recorded = self
            .record_version(&NewVersion {
                dag_id,
                version,
                spec,
                file_path,
                plugin_ids: &[],
                paused_if_new,
                origin: VersionOrigin::Folder,
                uploaded_by: None,
                placement: Placement::Activate,
            })
            .await?;
        Ok(recorded.new_version)
    }

    /// Records a version as `placement` says, with the plugins it pins, in one transaction. A
    /// version already stored keeps its first origin and uploader. An experiment of a DAG the
    /// store does not have is [`StoreError::NoSuchDag`](crate::StoreError::NoSuchDag).
    pub async fn record_version(&self, version: &NewVersion<'_>) -> Result<Recorded> {
        let recorded = self.backend.record_versions(std::slice::from_ref(version), None).await?;
        recorded.into_iter().next().ok_or_else(|| crate::StoreError::Invalid("no version was recorded".into()))
    }

    /// Records several versions (a bundle's) in one transaction: all or none.
    pub async fn record_versions(&self, versions: &[NewVersion<'_>]) -> Result<Vec<Recorded>> {
        self.backend.record_versions(versions, None).await
    }

    /// Makes a stored version the DAG's active one (a guarded write).
    pub async fn activate_version(&self, dag_id: &str, version: &str) -> Result<ActivateChange> {
        self.backend.activate_version(dag_id, version, None).await
    }

    /// Every version of a DAG, newest first.
    pub async fn versions(&self, dag_id: &str) -> Result<Vec<VersionRow>> {
        self.backend.versions(dag_id).await
    }

    /// Every experiment membership of a DAG's versions, newest first.
    pub async fn experiments(&self, dag_id: &str) -> Result<Vec<ExperimentRow>> {
        self.backend.experiments(dag_id).await
    }

    /// The DAG versions that pin a plugin, newest first.
    pub async fn versions_using(&self, plugin_id: &str) -> Result<Vec<VersionRow>> {
        self.backend.versions_using(plugin_id).await
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
        self.backend.set_paused(dag_id, paused, None).await
    }
}
