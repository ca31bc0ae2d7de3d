//! Artifacts and try records: what a run's tries left in `/out` (rows, and their bytes from the
//! blob store) and what each try was given (for replay).

use sandflow_blobs::{BlobError, Blobs};
use sandflow_store::ArtifactRow;
use serde_json::Value;

use crate::{Result, Service, ServiceError};

/// An artifact's bytes, as a verified stream (it ends in an error if the blob is corrupt).
pub struct ArtifactBytes {
    /// Its row.
    pub artifact: ArtifactRow,
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes.
    pub stream: futures_util::stream::BoxStream<'static, std::result::Result<bytes::Bytes, BlobError>>,
}

impl Service {
    fn blobs(&self) -> Result<Blobs> {
        Blobs::open(&self.config.grants.blobs).map_err(|e| ServiceError::Internal(format!("the blob store: {e}")))
    }

    /// The artifacts of a run (of one task instance when `task` is given), every try's.
    pub async fn artifacts(&self, run_id: &str, task: Option<(&str, i64)>) -> Result<Vec<ArtifactRow>> {
        let rows = match task {
            Some((task_id, map_index)) => {
                self.tries(run_id, task_id, map_index).await?;
                self.store
                    .artifacts(run_id, Some(task_id))
                    .await?
                    .into_iter()
                    .filter(|a| a.map_index == map_index)
                    .collect()
            }
            None => {
                self.run_row(run_id).await?;
                self.store.artifacts(run_id, None).await?
            }
        };
        Ok(rows)
    }

    /// One artifact's bytes: `name` of the instance's try `try_number`, or of its latest try that
    /// left that name.
    pub async fn artifact(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        name: &str,
        try_number: Option<i64>,
    ) -> Result<ArtifactBytes> {
        let rows = self.artifacts(run_id, Some((task_id, map_index))).await?;
        let found = rows
            .into_iter()
            .filter(|a| a.name == name && try_number.is_none_or(|n| a.try_number == n))
            .max_by_key(|a| a.try_number)
            .ok_or_else(|| ServiceError::NotFound {
                what: "artifact",
                id: name.to_string(),
                hint: format!(" of task `{task_id}` in run `{run_id}`"),
            })?;
        let (size, stream) = self.blobs()?.get_stream(&found.hash).await.map_err(|e| match e {
            BlobError::NotFound { .. } => ServiceError::NotFound {
                what: "artifact blob",
                id: found.hash.clone(),
                hint: " (collected by `sandflow artifacts gc`?)".to_string(),
            },
            other => ServiceError::Internal(other.to_string()),
        })?;
        Ok(ArtifactBytes { artifact: found, size, stream })
    }

    /// What try `try_number` of an instance was given (secrets redacted when it was stored).
    pub async fn try_record(&self, run_id: &str, task_id: &str, map_index: i64, try_number: i64) -> Result<Value> {
        self.tries(run_id, task_id, map_index).await?;
        self.store.try_record(run_id, task_id, map_index, try_number).await?.ok_or_else(|| ServiceError::NotFound {
            what: "try record",
            id: try_number.to_string(),
            hint: format!(" of task `{task_id}` in run `{run_id}`"),
        })
    }
}
