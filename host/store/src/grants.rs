//! What tasks may touch: admin-declared mounts, sealed secrets, the artifacts tries leave, and
//! the record of what each try was given (for replay).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Audited, Result, Store};

/// A host folder an admin declared, which tasks that name it read at `/data/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MountRow {
    pub name: String,
    pub path: String,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A secret as anyone may see it: its name and who set it when, never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct SecretRow {
    pub name: String,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// A file a successful try left in `/out`, stored as a blob by its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ArtifactRow {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    /// Its path under `/out`, `/`-separated.
    pub name: String,
    pub size: i64,
    /// `sha256:<hex>`: the blob's key.
    pub hash: String,
    pub created_at: DateTime<Utc>,
}

/// An artifact as a worker reports it with its try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewArtifact {
    pub name: String,
    pub size: i64,
    pub hash: String,
}

impl Store {
    /// Every declared mount, by name.
    pub async fn mounts(&self) -> Result<Vec<MountRow>> {
        self.backend.mounts().await
    }

    /// Every secret's name and history, by name (values never leave the store but sealed).
    pub async fn secrets(&self) -> Result<Vec<SecretRow>> {
        self.backend.secrets().await
    }

    /// The sealed values of these secrets (those that exist), for a worker to open and hand to a
    /// try.
    pub async fn sealed_secrets(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.sealed_secrets(names).await
    }

    /// The artifacts of a run's tries (of one task, or all), by task, map index, try and name.
    pub async fn artifacts(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<ArtifactRow>> {
        self.backend.artifacts(run_id, task_id).await
    }

    /// The artifacts these tasks' instances left in this run: only of each instance's current try,
    /// and only if it succeeded (what downstream tasks see at `/in`).
    pub async fn upstream_artifacts(&self, run_id: &str, task_ids: &[String]) -> Result<Vec<ArtifactRow>> {
        if task_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.upstream_artifacts(run_id, task_ids).await
    }

    /// What a try was given (its record, JSON), if it was recorded.
    pub async fn try_record(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        try_number: i64,
    ) -> Result<Option<Value>> {
        self.backend.try_record(run_id, task_id, map_index, try_number).await
    }

    /// Every blob hash an artifact row still names.
    pub async fn artifact_hashes(&self) -> Result<Vec<String>> {
        self.backend.artifact_hashes().await
    }

    /// Deletes the artifact rows recorded before `before`, except those of each DAG's last
    /// `keep_runs` runs; returns how many went. Their blobs are the caller's (see
    /// [`Store::artifact_hashes`]).
    pub async fn delete_artifacts(&self, before: DateTime<Utc>, keep_runs: i64) -> Result<u64> {
        self.backend.delete_artifacts(before, keep_runs).await
    }
}

impl Audited<'_> {
    /// Declares (or moves) a mount.
    pub async fn set_mount(&self, name: &str, path: &str) -> Result<()> {
        self.store.backend.set_mount(name, path, self.audit).await
    }

    /// Removes a mount; `false` when there was none.
    pub async fn delete_mount(&self, name: &str) -> Result<bool> {
        self.store.backend.delete_mount(name, self.audit).await
    }

    /// Sets (or replaces) a secret's sealed value.
    pub async fn set_secret(&self, name: &str, sealed: &[u8]) -> Result<()> {
        self.store.backend.set_secret(name, sealed, self.audit).await
    }

    /// Removes a secret; `false` when there was none.
    pub async fn delete_secret(&self, name: &str) -> Result<bool> {
        self.store.backend.delete_secret(name, self.audit).await
    }
}
