//! Reads for overviews (the UI's DAG list and grid, the plugin list): the latest runs of every
//! DAG, the states of many runs' task instances, which versions pin which plugin. Each is one
//! query whatever the number of DAGs, runs or mapped instances, so a page of 1,000 DAGs costs
//! what a page of ten does.

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use serde::Serialize;

use crate::{Result, RunType, Store};

/// The task instances of one run and task that are in one state: a cell of the grid, or, for a
/// mapped task, one slice of its cell.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StateCount {
    pub run_id: String,
    pub task_id: String,
    /// Whether these are a mapped task's instances (`map_index` ≥ 0), not the task's own row
    /// (which, for a mapped task, holds the state of the whole).
    pub mapped: bool,
    #[sqlx(try_from = "String")]
    pub state: TaskState,
    /// How many instances are in this state (1 for an unmapped task).
    pub instances: i64,
    /// The highest try number among them.
    pub try_number: i64,
    /// The first start among them.
    pub started_at: Option<DateTime<Utc>>,
    /// The last end among them.
    pub ended_at: Option<DateTime<Utc>>,
}

/// A run as a list of DAGs shows it: what its square and tooltip say, without its conf and note.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct RunBrief {
    pub run_id: String,
    pub dag_id: String,
    #[sqlx(try_from = "String")]
    pub run_type: RunType,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "success")]
    pub state: RunState,
    pub logical_date: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub triggered_by: String,
    pub experiment: Option<String>,
}

impl From<crate::RunRow> for RunBrief {
    fn from(r: crate::RunRow) -> RunBrief {
        RunBrief {
            run_id: r.run_id,
            dag_id: r.dag_id,
            run_type: r.run_type,
            state: r.state,
            logical_date: r.logical_date,
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            triggered_by: r.triggered_by,
            experiment: r.experiment,
        }
    }
}

/// A DAG version that pins a plugin.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PluginUse {
    pub plugin_id: String,
    pub dag_id: String,
    pub version: String,
}

impl Store {
    /// The `per_dag` newest runs of every DAG, by DAG id and then newest first.
    pub async fn recent_runs(&self, per_dag: i64) -> Result<Vec<RunBrief>> {
        self.backend.recent_runs(per_dag.clamp(0, 100), None).await
    }

    /// The `per_dag` newest runs of each of `dag_ids`, by DAG id and then newest first.
    pub async fn recent_runs_of(&self, per_dag: i64, dag_ids: &[String]) -> Result<Vec<RunBrief>> {
        if dag_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.recent_runs(per_dag.clamp(0, 100), Some(dag_ids)).await
    }

    /// Each DAG with a scheduled run and the end of its latest scheduled interval.
    pub async fn last_scheduled_interval_ends(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        self.backend.last_scheduled_interval_ends().await
    }

    /// The task instances of `run_ids`, counted by run, task and state.
    pub async fn state_counts(&self, run_ids: &[String]) -> Result<Vec<StateCount>> {
        if run_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.backend.state_counts(run_ids).await
    }

    /// Every (plugin, DAG version) pin, by plugin id.
    pub async fn plugin_uses(&self) -> Result<Vec<PluginUse>> {
        self.backend.plugin_uses().await
    }
}
