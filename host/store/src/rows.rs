//! The rows the store hands out. Field names follow the columns.

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use serde::Serialize;
use serde_json::{Map, Value};

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

pub(crate) const DAG_SELECT: &str =
    "SELECT dag_id, active_version, file_path, is_paused, created_at, updated_at, stale_since FROM dags";

/// A stored plugin, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PluginRow {
    /// `sha256:` of its bytes.
    pub id: String,
    /// `p1_command` or `p2_command`.
    pub kind: String,
    /// Bytes of wasm.
    pub size: i64,
    /// When it was first stored.
    pub created_at: DateTime<Utc>,
}

/// A scheduler's last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SchedulerRow {
    pub id: String,
    pub pid: i64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
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

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// Created by the schedule for a data interval.
    Scheduled,
    /// Triggered by a user or the API.
    Manual,
    /// Created by a backfill.
    Backfill,
}

impl RunType {
    /// The id of a run of this type of `dag_id` at `at` (a scheduled or backfill run's interval
    /// start, a manual run's creation): `scheduled__<dag>__2026-11-01T00:00:00Z`. Run ids are
    /// unique across the store, so they name their DAG: two DAGs on one schedule share interval
    /// starts, and an id of the time alone gave the second DAG no scheduled runs at all.
    /// Manual runs carry microseconds, so two triggers a second apart differ.
    pub fn run_id(self, dag_id: &str, at: DateTime<Utc>) -> String {
        let precision = match self {
            RunType::Manual => chrono::SecondsFormat::Micros,
            RunType::Scheduled | RunType::Backfill => chrono::SecondsFormat::Secs,
        };
        format!("{}__{dag_id}__{}", self.as_str(), at.to_rfc3339_opts(precision, true))
    }

    /// The name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
        }
    }
}

/// A run to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub run_id: String,
    pub dag_id: String,
    pub version: String,
    pub run_type: RunType,
    pub logical_date: DateTime<Utc>,
    /// The data interval `[start, end)`, for scheduled and backfill runs.
    pub interval: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The run's configuration, a JSON object.
    pub conf: String,
    pub note: Option<String>,
    /// Who started it: `scheduler`, a user name, or `task:<dag>/<run>/<task>`.
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
}

/// A DAG run.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct RunRow {
    pub run_id: String,
    pub dag_id: String,
    pub version: String,
    pub run_type: String,
    #[sqlx(try_from = "String")]
    pub state: RunState,
    pub logical_date: DateTime<Utc>,
    pub interval_start: Option<DateTime<Utc>>,
    pub interval_end: Option<DateTime<Utc>>,
    /// The run's configuration.
    #[sqlx(json)]
    pub conf: Map<String, Value>,
    pub note: Option<String>,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

pub(crate) const RUN_SELECT: &str = "SELECT run_id, dag_id, version, run_type, state, logical_date, interval_start,
    interval_end, conf, note, triggered_by, created_at, started_at, ended_at FROM dag_runs";

/// A task instance: one task of one run (and, for mapped tasks, one element).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TaskInstanceRow {
    pub run_id: String,
    pub task_id: String,
    /// -1 for an unmapped task.
    pub map_index: i64,
    #[sqlx(try_from = "String")]
    pub state: TaskState,
    /// The latest try's number (0: never tried).
    pub try_number: i64,
    pub next_try_at: Option<DateTime<Utc>>,
    /// The latest successful try's output.
    #[sqlx(json(nullable))]
    pub output: Option<Value>,
    /// Its metrics, by name.
    #[sqlx(json(nullable))]
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

/// One try of a task instance.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct TryRow {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub plugin_id: String,
    /// None while running.
    pub outcome: Option<String>,
    pub message: Option<String>,
    pub fuel_used: Option<i64>,
    pub peak_memory: Option<i64>,
    pub wall_us: Option<i64>,
    pub log: Option<String>,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// A pool of slots that tasks share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct PoolRow {
    pub name: String,
    pub slots: i64,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A user's action (clear, mark...): the request, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ActionRow {
    pub id: i64,
    pub kind: String,
    /// What was asked, as the scheduler's `Action` serialises it.
    #[sqlx(json)]
    pub payload: Value,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    /// pending | done | failed
    pub state: String,
    pub result: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}
