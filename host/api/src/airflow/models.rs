//! Airflow's response models, as the official client checks them: field names, types and enum
//! values from `airflow_client.client.models` (3.x). Sandflow's own figures are extra fields,
//! which the client ignores.

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use sandflow_service::dags::{DagSummary, TaskView};
use sandflow_store::{RunRow, RunType, TaskInstanceRow, TryRow};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Digest;

/// A stable UUID (version 8, RFC 9562's "custom") for an id Sandflow keeps as text: the client
/// requires `TaskInstanceResponse.id` and `DagVersionResponse.id` to be UUIDs.
pub(crate) fn uuid_of(parts: &[&str]) -> String {
    let mut hasher = sha2::Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let mut b: [u8; 16] = hasher.finalize()[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DagTag {
    pub name: String,
    pub dag_id: String,
    pub dag_display_name: String,
}

/// `DAGResponse`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Dag {
    pub dag_id: String,
    pub dag_display_name: String,
    pub is_paused: bool,
    pub is_stale: bool,
    pub fileloc: String,
    pub relative_fileloc: Option<String>,
    pub file_token: String,
    pub description: Option<String>,
    pub timetable_summary: Option<String>,
    pub timetable_description: Option<String>,
    pub timetable_periodic: bool,
    pub timetable_partitioned: bool,
    pub tags: Vec<DagTag>,
    pub owners: Vec<String>,
    pub has_import_errors: bool,
    pub has_task_concurrency_limits: bool,
    pub is_backfillable: bool,
    pub max_active_tasks: i64,
    pub max_active_runs: Option<i64>,
    pub max_consecutive_failed_dag_runs: i64,
    pub last_parsed_time: Option<DateTime<Utc>>,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    /// Sandflow: the version new runs use.
    pub sandflow_active_version: String,
}

impl From<&DagSummary> for Dag {
    fn from(d: &DagSummary) -> Dag {
        Dag {
            dag_id: d.dag_id.clone(),
            dag_display_name: d.dag_id.clone(),
            is_paused: d.is_paused,
            is_stale: d.is_stale,
            fileloc: d.file.clone().unwrap_or_default(),
            relative_fileloc: d.file.clone(),
            file_token: uuid_of(&["file", &d.dag_id]),
            description: d.description.clone(),
            timetable_summary: d.schedule.clone(),
            timetable_description: d.schedule.clone(),
            timetable_periodic: d.schedule.is_some(),
            timetable_partitioned: false,
            tags: d
                .tags
                .iter()
                .map(|t| DagTag { name: t.clone(), dag_id: d.dag_id.clone(), dag_display_name: d.dag_id.clone() })
                .collect(),
            owners: d.owner.iter().cloned().collect(),
            has_import_errors: false,
            has_task_concurrency_limits: false,
            is_backfillable: d.schedule.is_some(),
            max_active_tasks: 16,
            max_active_runs: None,
            max_consecutive_failed_dag_runs: 0,
            last_parsed_time: Some(d.updated_at),
            bundle_name: Some("sandflow".into()),
            bundle_version: Some(d.active_version.clone()),
            sandflow_active_version: d.active_version.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DagCollection {
    pub dags: Vec<Dag>,
    pub total_entries: i64,
}

/// `DagVersionResponse`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DagVersion {
    pub id: String,
    pub version_number: i64,
    pub dag_id: String,
    pub dag_display_name: String,
    pub bundle_name: Option<String>,
    pub bundle_version: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A DAG's versions, oldest first, numbered from 1 as Airflow numbers them.
pub(crate) struct VersionNumbers(pub Vec<(String, DateTime<Utc>)>);

impl VersionNumbers {
    pub fn version(&self, dag_id: &str, version: &str) -> DagVersion {
        let found = self.0.iter().position(|(v, _)| v == version);
        DagVersion {
            id: uuid_of(&["version", dag_id, version]),
            version_number: found.map_or(0, |i| i as i64 + 1),
            dag_id: dag_id.into(),
            dag_display_name: dag_id.into(),
            bundle_name: Some("sandflow".into()),
            bundle_version: Some(version.into()),
            created_at: found.map_or_else(Utc::now, |i| self.0[i].1),
        }
    }
}

/// Airflow's `DagRunState`: Sandflow's run states are Airflow's names.
fn run_state(state: RunState) -> &'static str {
    state.as_str()
}

/// Airflow's `DagRunType` and `DagRunTriggeredByType` for a run.
fn run_type(run_type: RunType) -> (&'static str, &'static str) {
    match run_type {
        RunType::Manual => ("manual", "rest_api"),
        RunType::Scheduled => ("scheduled", "timetable"),
        RunType::Backfill => ("backfill", "backfill"),
    }
}

fn seconds(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    Some((end? - start?).num_microseconds()? as f64 / 1e6)
}

/// `DAGRunResponse`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DagRun {
    pub dag_run_id: String,
    pub dag_id: String,
    pub dag_display_name: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    pub run_type: &'static str,
    pub state: &'static str,
    pub triggered_by: &'static str,
    pub triggering_user_name: Option<String>,
    #[schema(value_type = Object)]
    pub conf: Map<String, Value>,
    pub note: Option<String>,
    pub dag_versions: Vec<DagVersion>,
    pub bundle_version: Option<String>,
    /// Sandflow: the version the run is pinned to, and its experiment.
    pub sandflow_version: String,
    pub sandflow_experiment: Option<String>,
}

impl DagRun {
    pub fn of(run: &RunRow, versions: &VersionNumbers) -> DagRun {
        let (run_type, triggered_by) = run_type(run.run_type);
        DagRun {
            dag_run_id: run.run_id.clone(),
            dag_id: run.dag_id.clone(),
            dag_display_name: run.dag_id.clone(),
            logical_date: Some(run.logical_date),
            queued_at: Some(run.created_at),
            start_date: run.started_at,
            end_date: run.ended_at,
            duration: seconds(run.started_at, run.ended_at),
            data_interval_start: run.interval_start,
            data_interval_end: run.interval_end,
            run_after: run.logical_date,
            last_scheduling_decision: None,
            run_type,
            state: run_state(run.state),
            triggered_by,
            triggering_user_name: Some(run.triggered_by.clone()),
            conf: run.conf.clone(),
            note: run.note.clone(),
            dag_versions: vec![versions.version(&run.dag_id, &run.version)],
            bundle_version: Some(run.version.clone()),
            sandflow_version: run.version.clone(),
            sandflow_experiment: run.experiment.clone(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DagRunCollection {
    pub dag_runs: Vec<DagRun>,
    pub total_entries: i64,
}

/// Airflow's `TaskInstanceState`: Sandflow's task states are Airflow's names; no state yet is
/// `null` there.
pub(crate) fn task_state(state: TaskState) -> Option<&'static str> {
    (state != TaskState::None).then(|| state.as_str())
}

/// `TaskInstanceResponse`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskInstance {
    pub id: String,
    pub task_id: String,
    pub task_display_name: String,
    pub dag_id: String,
    pub dag_display_name: String,
    pub dag_run_id: String,
    pub map_index: i64,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub state: Option<&'static str>,
    pub try_number: i64,
    pub max_tries: i64,
    pub pool: String,
    pub pool_slots: i64,
    pub executor_config: String,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub note: Option<String>,
    pub rendered_map_index: Option<String>,
    pub dag_version: Option<DagVersion>,
    /// Sandflow: why the instance is in its state, its output, and its latest try's figures.
    pub sandflow_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub sandflow_output: Option<Value>,
    pub sandflow_fuel_used: Option<i64>,
    pub sandflow_peak_memory: Option<i64>,
}

impl TaskInstance {
    pub fn of(
        run: &RunRow,
        ti: &TaskInstanceRow,
        task: Option<&TaskView>,
        last_try: Option<&TryRow>,
        versions: &VersionNumbers,
    ) -> TaskInstance {
        TaskInstance {
            id: uuid_of(&["ti", &ti.run_id, &ti.task_id, &ti.map_index.to_string()]),
            task_id: ti.task_id.clone(),
            task_display_name: ti.task_id.clone(),
            dag_id: run.dag_id.clone(),
            dag_display_name: run.dag_id.clone(),
            dag_run_id: run.run_id.clone(),
            map_index: ti.map_index,
            logical_date: Some(run.logical_date),
            run_after: run.logical_date,
            start_date: ti.started_at,
            end_date: ti.ended_at,
            duration: seconds(ti.started_at, ti.ended_at),
            state: task_state(ti.state),
            try_number: ti.try_number,
            max_tries: task.map_or(0, |t| i64::from(t.retries)),
            pool: task.map_or_else(|| "default_pool".to_string(), |t| t.pool.clone()),
            pool_slots: 1,
            executor_config: "{}".into(),
            operator: task.map(|t| t.plugin_id.clone()),
            operator_name: task.map(|t| t.kind.clone()),
            note: None,
            rendered_map_index: (ti.map_index >= 0).then(|| ti.map_index.to_string()),
            dag_version: Some(versions.version(&run.dag_id, &run.version)),
            sandflow_reason: ti.reason.clone(),
            sandflow_output: ti.output.clone(),
            sandflow_fuel_used: last_try.and_then(|t| t.fuel_used),
            sandflow_peak_memory: last_try.and_then(|t| t.peak_memory),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskInstanceCollection {
    pub task_instances: Vec<TaskInstance>,
    pub total_entries: i64,
}

/// `TaskInstancesLogResponse`: the log as lines.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct TaskLog {
    pub content: Vec<String>,
    pub continuation_token: Option<String>,
}
