//! Task instances: one task of one run (and, for a mapped task, one element). Their states change
//! only through [`Change`](crate::Change)s.

use chrono::{DateTime, Utc};
use sandflow_core::state::TaskState;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Result, Store};

/// A task instance: one task of one run (and, for mapped tasks, one element).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TaskInstanceRow {
    pub run_id: String,
    pub task_id: String,
    /// -1 for an unmapped task.
    pub map_index: i64,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "success")]
    pub state: TaskState,
    /// The latest try's number (0: never tried).
    pub try_number: i64,
    pub next_try_at: Option<DateTime<Utc>>,
    /// The latest successful try's output.
    #[sqlx(json(nullable))]
    pub output: Option<Value>,
    /// Its metrics, by name.
    #[sqlx(json(nullable))]
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Map<String, Value>>,
    /// Why it is not a success: the last failure's message, or why it was skipped.
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// For a mapped instance: the element it handles.
    #[sqlx(json(nullable))]
    pub map_item: Option<Value>,
    /// The try number at the last clear: retries count from there.
    pub tries_before_clear: i64,
}

impl Store {
    /// How many task instances wait or run, by state (scheduled, queued, running, up_for_retry,
    /// up_for_reschedule; a state with none is absent): the queue depth `/metrics` exports.
    pub async fn unfinished_instance_counts(&self) -> Result<Vec<(String, i64)>> {
        self.backend.unfinished_instance_counts().await
    }

    /// The task instances of a run, in task id order (then map index).
    pub async fn task_instances(&self, run_id: &str) -> Result<Vec<TaskInstanceRow>> {
        self.backend.task_instances(run_id).await
    }

    /// Per task instance of a run: its failed tries since its last clear (sensor pokes that asked
    /// to wait are not failures), as (task id, map index, count). The try of an instance still
    /// `running` is not counted even once its worker has reported it failed: it is not judged yet,
    /// and the scheduler that judges it counts it then (counting it here too would spend a retry).
    pub async fn failed_tries(&self, run_id: &str) -> Result<Vec<(String, i64, i64)>> {
        self.backend.failed_tries(run_id).await
    }
}
