//! DAG runs: created queued with their task instances in one transaction, at most one scheduled
//! run per interval whatever the number of schedulers creating them.

use chrono::{DateTime, Utc};
use sandflow_core::state::RunState;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{Result, Store, UnknownName};

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
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

impl std::str::FromStr for RunType {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        [RunType::Scheduled, RunType::Manual, RunType::Backfill]
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownName { what: "run type", name: s.to_string() })
    }
}

impl TryFrom<String> for RunType {
    type Error = UnknownName;
    fn try_from(s: String) -> Result<Self, UnknownName> {
        s.parse()
    }
}

impl std::fmt::Display for RunType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
    /// The run's configuration.
    pub conf: Map<String, Value>,
    pub note: Option<String>,
    /// Who started it: `scheduler`, a user name, or `task:<dag>/<run>/<task>`.
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    /// The experiment whose version it runs, if any.
    pub experiment: Option<String>,
}

/// A DAG run.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RunRow {
    pub run_id: String,
    pub dag_id: String,
    pub version: String,
    #[sqlx(try_from = "String")]
    pub run_type: RunType,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "running")]
    pub state: RunState,
    pub logical_date: DateTime<Utc>,
    pub interval_start: Option<DateTime<Utc>>,
    pub interval_end: Option<DateTime<Utc>>,
    /// The run's configuration.
    #[sqlx(json)]
    #[schema(value_type = Object)]
    pub conf: Map<String, Value>,
    pub note: Option<String>,
    pub triggered_by: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The experiment whose version it runs, if any.
    pub experiment: Option<String>,
}

/// Which runs to list, and which page: newest first (or oldest first), after a cursor or from an
/// offset. A cursor (the last row's `created_at` and `run_id`) costs the same on every page; an
/// offset reads and skips the rows before it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunQuery {
    pub dag_id: Option<String>,
    /// Any of these states; empty for all.
    pub states: Vec<RunState>,
    pub run_type: Option<RunType>,
    pub experiment: Option<String>,
    pub triggered_by: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
    /// Rows strictly after this one in the order asked.
    pub after: Option<RunCursor>,
    pub offset: i64,
    /// At most this many rows (the store caps it at [`MAX_PAGE`]).
    pub limit: i64,
}

/// The largest page of a list.
pub const MAX_PAGE: i64 = 1000;

/// Where a page of runs ends: the last row's creation time and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCursor {
    pub created_at: DateTime<Utc>,
    pub run_id: String,
}

impl RunCursor {
    /// The cursor after `row`.
    pub fn after(row: &RunRow) -> RunCursor {
        RunCursor { created_at: row.created_at, run_id: row.run_id.clone() }
    }
}

impl Store {
    /// Creates a queued run and its task instances (state none), in one transaction. For a
    /// scheduled run whose interval already has a run (created by this process or any other, at
    /// the same moment or before), returns `false` and creates nothing.
    pub async fn create_run(&self, run: &NewRun, task_ids: &[String]) -> Result<bool> {
        self.backend.create_run(run, task_ids, None).await
    }

    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        self.backend.run(run_id).await
    }

    /// Runs of a DAG (or of every DAG), newest first.
    pub async fn runs(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        self.backend.runs(dag_id, limit).await
    }

    /// A page of runs (see [`RunQuery`]).
    pub async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRow>> {
        let mut query = query.clone();
        query.limit = query.limit.clamp(0, MAX_PAGE);
        query.offset = query.offset.max(0);
        self.backend.list_runs(&query).await
    }

    /// How many runs match `query` (its page, cursor and order aside).
    pub async fn count_runs(&self, query: &RunQuery) -> Result<i64> {
        self.backend.count_runs(query).await
    }

    /// Runs that are queued or running, oldest first: the scheduler's working set.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        self.backend.active_runs().await
    }

    /// The end of the latest scheduled interval of a DAG, if it has any scheduled run.
    pub async fn last_scheduled_interval_end(&self, dag_id: &str) -> Result<Option<DateTime<Utc>>> {
        self.backend.last_scheduled_interval_end(dag_id).await
    }

    /// Runs of a DAG whose logical date is in `[from, to]`, oldest first.
    pub async fn runs_between(&self, dag_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>> {
        self.backend.runs_between(dag_id, from, to).await
    }
}
