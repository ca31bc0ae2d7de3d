//! Tries: one row per attempt at a task instance (what ran, how it ended, what it used, its log).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::{Result, Store};

/// What a running try has written and said so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Running<'a> {
    /// Its log so far.
    pub log: &'a str,
    /// Its last progress: a fraction from 0 to 1 and a message.
    pub progress: Option<(f64, &'a str)>,
}

/// One try of a task instance.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TryRow {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub plugin_id: String,
    /// The outcome's stable name (`success`, `fuel_exhausted`, `interrupted`...; the sandbox's
    /// names); `None` while running.
    pub outcome: Option<String>,
    pub message: Option<String>,
    pub fuel_used: Option<i64>,
    pub peak_memory: Option<i64>,
    pub wall_us: Option<i64>,
    pub log: Option<String>,
    /// What the try last said of its progress, from 0 to 1 (plugin ABI v2), while it ran.
    pub progress: Option<f64>,
    /// The message that came with it.
    pub progress_message: Option<String>,
    /// When the instance was queued for this try (`None` for tries from before it was recorded).
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl Store {
    /// The tries of one task instance, first try first, with their logs.
    pub async fn tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>> {
        self.backend.tries(run_id, task_id, map_index).await
    }

    /// Sets the log and progress of a try that is still running (what it wrote and said so far,
    /// for a live view); a try that has ended keeps the log its report wrote.
    pub async fn write_running(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        try_number: i64,
        running: &Running<'_>,
    ) -> Result<()> {
        self.backend.write_running(run_id, task_id, map_index, try_number, running).await
    }

    /// Every try of a run, in start order, without logs (for benchmarks and timelines).
    pub async fn run_tries(&self, run_id: &str) -> Result<Vec<TryRow>> {
        self.backend.run_tries(run_id).await
    }
}
