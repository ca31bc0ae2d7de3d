//! Sandflow's scheduler and worker.
//!
//! Why it is shaped this way:
//! - **The rules are elsewhere.** Trigger rules, run outcomes and retry delays are pure functions
//!   in `sandflow_core::state`; this crate applies them to the working set and commits the result.
//! - **It knows nothing of wasmtime or SQL.** Tries run through `sandflow_sandbox::Sandbox`'s
//!   plain types; state goes through `sandflow_store::Store`'s [`Change`](sandflow_store::Change)s.
//! - **Commit, then act.** Every transition is committed before it takes effect: an instance is
//!   queued before a worker may claim it, a try started (claimed) before its plugin runs, its end
//!   reported and judged before its successors are queued.
//! - **The scheduler decides, workers run** ([`Scheduler`], [`Worker`]): they meet only in the
//!   store (claims under leases, see `sandflow_store`'s claims), so `standalone`'s in-process
//!   worker and `sandflow worker` on another machine are one code path. A try whose worker died
//!   is found by its expired lease, recorded as interrupted, and retried per its policy; a worker
//!   that is stopped ([`Shutdown`]) lets its tries finish within a grace and reports the rest as
//!   interrupted itself.
//! - **Event-driven.** A commit wakes who waits on it at once (a watch channel in one process,
//!   `LISTEN/NOTIFY` across processes); timers only for retries, schedules and polling as the
//!   safety net.

pub mod actions;
mod engine;
mod executor;
mod folder;
mod grants;
mod loader;
pub mod replay;
mod shutdown;
pub mod telemetry;
pub mod timetable;
mod worker;
mod working;

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use sandflow_store::{NewRun, RunRow, RunType, Store};
use serde_json::{Map, Value};

pub use engine::{task_limits, Scheduler, SchedulerConfig, SchedulerHandle};
pub use executor::{Executor, Job};
pub use folder::{DagFolder, LoadReport, SETTLE};
pub use grants::{GrantConfig, InputFile, JobGrants, TryRecord};
pub use loader::{
    load_file, plugin_ids, read_regular_file, stored_kind, LoadContext, Loaded, StoredSpec, MAX_DAG_FILE_BYTES,
};
pub use shutdown::{Shutdown, Stopping};
pub use worker::{JobSpec, Worker, WorkerConfig, DEFAULT_SHUTDOWN_GRACE};

/// What can stop the scheduler or a trigger. Callers tell apart the user's mistakes (an unknown DAG
/// or version) from failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// No DAG with that id.
    #[error("no DAG `{}`{}", sandflow_core::text::shorten(.dag_id, 100), known_list(.known))]
    UnknownDag {
        /// The id asked for.
        dag_id: String,
        /// The DAGs there are.
        known: Vec<String>,
    },
    /// The DAG has no such version.
    #[error("DAG `{dag_id}` has no version `{}`", sandflow_core::text::shorten(.version, 100))]
    UnknownVersion {
        /// The DAG.
        dag_id: String,
        /// The version asked for.
        version: String,
    },
    /// A stored DAG version no longer parses (a store written by another build).
    #[error("the stored spec of {file} does not parse: {detail}")]
    BadStoredSpec {
        /// The file it came from.
        file: String,
        /// Why.
        detail: String,
    },
    /// The DAG folder could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] sandflow_store::StoreError),
}

/// The DAGs there are, for an error: the first few, and how many more.
/// ` (known: a, b, ...)`: the DAGs there are, for a message about one that is not.
pub fn known_list(known: &[String]) -> String {
    const SHOWN: usize = 20;
    match known.len() {
        0 => " (no DAGs are loaded)".to_string(),
        n if n <= SHOWN => format!(" (known: {})", known.join(", ")),
        n => format!(" (known: {}, and {} more)", known[..SHOWN].join(", "), n - SHOWN),
    }
}

/// What the scheduler tells its subscribers.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A run left the queue.
    RunStarted {
        /// Its DAG.
        dag_id: String,
        /// The run.
        run_id: String,
    },
    /// A try ended.
    TaskFinished {
        /// Its DAG.
        dag_id: String,
        /// Its run.
        run_id: String,
        /// The task.
        task_id: String,
        /// Which instance of a mapped task (-1 for an unmapped task).
        map_index: i64,
        /// Which try.
        try_number: u32,
        /// The task instance's state after it (success, up_for_retry, failed...).
        state: TaskState,
        /// The try's one-line outcome.
        message: String,
        /// How long the try ran.
        wall: std::time::Duration,
    },
    /// A task instance ended without a try of its own: skipped, upstream_failed, or a mapped
    /// task whose instances have all ended.
    TaskSettled {
        /// Its DAG.
        dag_id: String,
        /// Its run.
        run_id: String,
        /// The task.
        task_id: String,
        /// Its state.
        state: TaskState,
        /// Why, when it did not succeed.
        reason: Option<String>,
    },
    /// A run ended.
    RunFinished {
        /// Its DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// success or failed.
        state: RunState,
    },
}

/// How a manual run is started.
#[derive(Debug, Clone, Default)]
pub struct TriggerOptions {
    /// The run's configuration.
    pub conf: Map<String, Value>,
    /// A note shown with the run.
    pub note: Option<String>,
    /// Who started it.
    pub triggered_by: String,
    /// A version to pin; `None` for the DAG's active version.
    pub version: Option<String>,
    /// The experiment the pinned version belongs to, recorded with the run.
    pub experiment: Option<String>,
    /// The audit entry to commit with the run (a user's trigger); `None` records none.
    pub audit: Option<sandflow_store::NewAudit>,
}

/// Creates a queued manual run of `dag_id`. A running scheduler picks it up at its next poll (or at
/// once after [`SchedulerHandle::wake`]).
pub async fn trigger(store: &Store, dag_id: &str, options: TriggerOptions) -> Result<RunRow, SchedulerError> {
    let audit = options.audit.clone();
    let planned = plan_manual_run(store, dag_id, options).await?;
    loop {
        let run = planned.at(Utc::now());
        // Two triggers in the same microsecond: the second takes the next one.
        let created = match &audit {
            Some(entry) => {
                let mut entry = entry.clone();
                entry.detail["run_id"] = serde_json::Value::String(run.run_id.clone());
                store.audited(&entry).create_run(&run, &planned.task_ids).await?
            }
            None => store.create_run(&run, &planned.task_ids).await?,
        };
        if created {
            return store
                .run(&run.run_id)
                .await?
                .ok_or_else(|| SchedulerError::UnknownDag { dag_id: dag_id.to_string(), known: vec![] });
        }
        tokio::task::yield_now().await;
    }
}

/// A manual run whose DAG and version are checked, ready to be created at a given time.
pub(crate) struct PlannedRun {
    pub(crate) dag_id: String,
    pub(crate) version: String,
    pub(crate) task_ids: Vec<String>,
    conf: Map<String, Value>,
    note: Option<String>,
    triggered_by: String,
    experiment: Option<String>,
}

impl PlannedRun {
    /// The run as created at `at`: its id is `manual__<dag>__<at>`.
    pub(crate) fn at(&self, at: DateTime<Utc>) -> NewRun {
        NewRun {
            run_id: RunType::Manual.run_id(&self.dag_id, at),
            dag_id: self.dag_id.clone(),
            version: self.version.clone(),
            run_type: RunType::Manual,
            logical_date: at,
            interval: None,
            conf: self.conf.clone(),
            note: self.note.clone(),
            triggered_by: self.triggered_by.clone(),
            created_at: at,
            experiment: self.experiment.clone(),
        }
    }
}

/// Checks that `dag_id` (and the pinned version, if any) can run, writing nothing: an unknown DAG
/// or version, or a stored spec that no longer parses, is an error here.
pub(crate) async fn plan_manual_run(
    store: &Store,
    dag_id: &str,
    options: TriggerOptions,
) -> Result<PlannedRun, SchedulerError> {
    let Some(dag) = store.dag(dag_id).await? else {
        let known = store.dags().await?.into_iter().map(|d| d.dag_id).collect();
        return Err(SchedulerError::UnknownDag { dag_id: dag_id.to_string(), known });
    };
    let version = options.version.unwrap_or(dag.active_version);
    let spec = store
        .dag_spec(dag_id, &version)
        .await?
        .ok_or_else(|| SchedulerError::UnknownVersion { dag_id: dag_id.to_string(), version: version.clone() })?;
    let spec: StoredSpec = serde_json::from_value(spec)
        .map_err(|e| SchedulerError::BadStoredSpec { file: dag_id.to_string(), detail: e.to_string() })?;
    let parsed = spec.to_dag(&sandflow_core::dag::Caps::default())?;
    Ok(PlannedRun {
        dag_id: dag_id.to_string(),
        version,
        task_ids: parsed.tasks.iter().map(|t| t.id.clone()).collect(),
        conf: options.conf,
        note: options.note,
        triggered_by: options.triggered_by,
        experiment: options.experiment,
    })
}
