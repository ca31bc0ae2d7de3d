//! The scheduler loop: one task owns the working set of active runs, decides every transition with
//! the pure rules of `sandflow_core::state`, commits the decisions in batches, and only then acts.
//!
//! A loop turn: take every event that has arrived (tries that ended, wake-ups), commit what they
//! change; advance the touched runs (tasks become scheduled, skipped or upstream_failed; runs start
//! and end), commit; start tries while slots are free, commit, spawn them. A try's end is an event
//! on the loop's channel, so a finished task's successors start in the same turn, without polling.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sandflow_core::dag::{Caps, Dag};
use sandflow_core::state::{readiness, run_outcome, Readiness, RetryPolicy, RunState, TaskState};
use sandflow_sandbox::{KillSwitch, Limits, Outcome, TryReport};
use sandflow_sdk::{DataInterval, TaskContext};
use sandflow_store::{Change, DagRow, NewRun, RunRow, RunType, Store, TryEnd};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::executor::{Executor, Job};
use crate::loader::{DagFolder, StoredSpec};
use crate::timetable::due_intervals;
use crate::{Notice, SchedulerError};

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Tries running at once, across all DAGs.
    pub parallelism: usize,
    /// Whether DAGs seen for the first time start paused (a DAG file's `is_paused_upon_creation`
    /// overrides it).
    pub paused_at_creation: bool,
    /// How often the store (runs triggered by other processes, pauses) and the DAG folder are
    /// looked at.
    pub poll_interval: Duration,
    /// The server's caps on what a DAG may ask for.
    pub caps: Caps,
    /// The DAG folder to load and watch, if any.
    pub dags_dir: Option<PathBuf>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            parallelism: 32,
            paused_at_creation: false,
            poll_interval: Duration::from_millis(500),
            caps: Caps::default(),
            dags_dir: None,
        }
    }
}

/// A task instance, by run and task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct TaskKey {
    run_id: String,
    task_id: String,
}

enum Event {
    Finished { key: TaskKey, try_number: u32, report: Box<TryReport> },
    Wake,
}

struct TaskMem {
    state: TaskState,
    try_number: u32,
    next_try_at: Option<DateTime<Utc>>,
    output: Option<Value>,
}

struct RunMem {
    row: RunRow,
    dag: Arc<Dag>,
    conf: Map<String, Value>,
    tasks: HashMap<String, TaskMem>,
}

struct DagMem {
    row: DagRow,
    last_scheduled_end: Option<DateTime<Utc>>,
}

/// A handle on a running scheduler: wake it, or listen to what it does.
#[derive(Clone)]
pub struct SchedulerHandle {
    events: mpsc::UnboundedSender<Event>,
    notices: broadcast::Sender<Notice>,
}

impl SchedulerHandle {
    /// Makes the scheduler look at the store now (after a trigger or a pause in this process).
    pub fn wake(&self) {
        let _ = self.events.send(Event::Wake);
    }

    /// Every task and run that ends from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }
}

/// The scheduler and its in-process executor.
pub struct Scheduler {
    store: Store,
    executor: Arc<Executor>,
    config: SchedulerConfig,
    folder: Option<DagFolder>,
    dags: HashMap<String, DagMem>,
    specs: HashMap<(String, String), Arc<Dag>>,
    runs: BTreeMap<String, RunMem>,
    ready: VecDeque<TaskKey>,
    running: HashMap<TaskKey, KillSwitch>,
    dirty: BTreeSet<String>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    notices: broadcast::Sender<Notice>,
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Scheduler {
    /// A scheduler over `store`, running tries in `sandbox`.
    pub fn new(store: Store, sandbox: sandflow_sandbox::Sandbox, config: SchedulerConfig) -> Scheduler {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (notices, _) = broadcast::channel(65_536);
        let folder = config
            .dags_dir
            .clone()
            .map(|dir| DagFolder::new(dir, store.clone(), sandbox.clone(), config.caps, config.paused_at_creation));
        Scheduler {
            executor: Arc::new(Executor::new(store.clone(), sandbox)),
            store,
            config,
            folder,
            dags: HashMap::new(),
            specs: HashMap::new(),
            runs: BTreeMap::new(),
            ready: VecDeque::new(),
            running: HashMap::new(),
            dirty: BTreeSet::new(),
            events_tx,
            events_rx,
            notices,
        }
    }

    /// A handle to wake the scheduler and to subscribe to its notices.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle { events: self.events_tx.clone(), notices: self.notices.clone() }
    }

    /// Loads the DAG folder once (if any): for callers that want DAGs in the store before running.
    pub async fn load_dags(&mut self) -> Result<crate::LoadReport, SchedulerError> {
        match &mut self.folder {
            Some(folder) => folder.scan().await,
            None => Ok(crate::LoadReport::default()),
        }
    }

    /// Runs until `shutdown` is cancelled. Tries still running then are left to the next start,
    /// which records them as interrupted and retries them per their policy.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        self.recover().await?;
        let mut next_poll = Instant::now();
        loop {
            if Instant::now() >= next_poll {
                self.poll().await?;
                next_poll = Instant::now() + self.config.poll_interval;
            }
            self.advance().await?;
            self.dispatch().await?;

            let wake_at = self.next_wake(next_poll);
            let event = tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.events_rx.recv() => event,
                () = tokio::time::sleep_until(wake_at.into()) => None,
            };
            let mut changes = Vec::new();
            let mut pending = event;
            while let Some(event) = pending {
                match event {
                    Event::Finished { key, try_number, report } => {
                        self.finished(key, try_number, *report, &mut changes).await?;
                    }
                    Event::Wake => next_poll = Instant::now(),
                }
                pending = self.events_rx.try_recv().ok();
            }
            self.store.apply(&changes).await?;
        }
        for kill in self.running.values() {
            kill.kill();
        }
        Ok(())
    }

    fn next_wake(&self, next_poll: Instant) -> Instant {
        let now_wall = now();
        let mut wake = next_poll;
        for run in self.runs.values() {
            for task in run.tasks.values() {
                if let (TaskState::UpForRetry, Some(at)) = (task.state, task.next_try_at) {
                    let wait = (at - now_wall).to_std().unwrap_or(Duration::ZERO);
                    wake = wake.min(Instant::now() + wait);
                }
            }
        }
        wake
    }

    // ---- loading ----

    async fn spec(&mut self, dag_id: &str, version: &str) -> Result<Arc<Dag>, SchedulerError> {
        let key = (dag_id.to_string(), version.to_string());
        if let Some(dag) = self.specs.get(&key) {
            return Ok(dag.clone());
        }
        let json = self.store.dag_spec(dag_id, version).await?.ok_or_else(|| SchedulerError::UnknownVersion {
            dag_id: dag_id.to_string(),
            version: version.to_string(),
        })?;
        let spec: StoredSpec = serde_json::from_str(&json)
            .map_err(|e| SchedulerError::BadStoredSpec { file: dag_id.to_string(), detail: e.to_string() })?;
        let dag = Arc::new(spec.to_dag(&self.config.caps)?);
        self.specs.insert(key, dag.clone());
        Ok(dag)
    }

    async fn load_run(&mut self, row: RunRow) -> Result<(), SchedulerError> {
        let dag = self.spec(&row.dag_id, &row.version).await?;
        let conf = match serde_json::from_str(&row.conf) {
            Ok(Value::Object(conf)) => conf,
            _ => Map::new(),
        };
        let mut tasks = HashMap::new();
        for ti in self.store.task_instances(&row.run_id).await? {
            let output = ti.output.as_deref().and_then(|o| serde_json::from_str(o).ok());
            let try_number = u32::try_from(ti.try_number).unwrap_or(0);
            tasks.insert(ti.task_id, TaskMem { state: ti.state, try_number, next_try_at: ti.next_try_at, output });
        }
        self.dirty.insert(row.run_id.clone());
        self.runs.insert(row.run_id.clone(), RunMem { row, dag, conf, tasks });
        Ok(())
    }

    /// After a crash or kill: tries that were running are recorded as interrupted and go to retry
    /// (or fail) per their policy; tasks that were scheduled or queued are considered again.
    async fn recover(&mut self) -> Result<(), SchedulerError> {
        for row in self.store.active_runs().await? {
            self.load_run(row).await?;
        }
        let at = now();
        let mut changes = Vec::new();
        for (run_id, run) in &mut self.runs {
            for (task_id, mem) in &mut run.tasks {
                match mem.state {
                    TaskState::Running => {
                        let Some(task) = run.dag.task(task_id) else { continue };
                        let message = "interrupted: the process running this try stopped before it ended".to_string();
                        let (state, next_try_at) = after_failure(task_policy(task), mem.try_number, at);
                        warn!(run_id, task_id, try_number = mem.try_number, "recovering an interrupted try: {}", state);
                        changes.push(Change::TryEnded(Box::new(TryEnd {
                            run_id: run_id.clone(),
                            task_id: task_id.clone(),
                            map_index: -1,
                            try_number: i64::from(mem.try_number),
                            outcome: "interrupted".into(),
                            message,
                            log: String::new(),
                            fuel_used: 0,
                            peak_memory: 0,
                            wall: Duration::ZERO,
                            at,
                            state,
                            output: None,
                            metrics: None,
                            next_try_at,
                        })));
                        mem.state = state;
                        mem.next_try_at = next_try_at;
                    }
                    TaskState::Scheduled | TaskState::Queued => {
                        changes.push(task_state(run_id, task_id, TaskState::None, None, at));
                        mem.state = TaskState::None;
                    }
                    _ => {}
                }
            }
        }
        self.store.apply(&changes).await?;
        Ok(())
    }

    /// Looks at the store and the DAG folder: DAG changes, pauses, runs created elsewhere, and
    /// scheduled runs that are due.
    async fn poll(&mut self) -> Result<(), SchedulerError> {
        if let Some(folder) = &mut self.folder {
            let report = folder.scan().await?;
            for loaded in report.loaded {
                self.specs.insert((loaded.dag.id.clone(), loaded.version.clone()), loaded.dag.clone());
            }
        }
        for row in self.store.dags().await? {
            match self.dags.get_mut(&row.dag_id) {
                Some(mem) => {
                    if mem.row.is_paused && !row.is_paused {
                        self.dirty.extend(self.runs.values().filter(|r| r.row.dag_id == row.dag_id).map(|r| r.row.run_id.clone()));
                    }
                    mem.row = row;
                }
                None => {
                    let last_scheduled_end = self.store.last_scheduled_interval_end(&row.dag_id).await?;
                    self.dags.insert(row.dag_id.clone(), DagMem { row, last_scheduled_end });
                }
            }
        }
        for row in self.store.active_runs().await? {
            if !self.runs.contains_key(&row.run_id) {
                debug!(run_id = %row.run_id, "picked up a run created elsewhere");
                self.load_run(row).await?;
            }
        }
        self.create_scheduled_runs().await
    }

    async fn create_scheduled_runs(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        let dag_ids: Vec<String> = self.dags.keys().cloned().collect();
        for dag_id in dag_ids {
            let (paused, version, created_at, last_end) = {
                let mem = &self.dags[&dag_id];
                (mem.row.is_paused, mem.row.active_version.clone(), mem.row.created_at, mem.last_scheduled_end)
            };
            if paused {
                continue;
            }
            let dag = self.spec(&dag_id, &version).await?;
            let active = self.runs.values().filter(|r| r.row.dag_id == dag_id).count();
            let room = (dag.max_active_runs as usize).saturating_sub(active);
            for (start, end) in due_intervals(&dag, last_end, created_at, at, room) {
                let run = NewRun {
                    run_id: format!("scheduled__{}", start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    dag_id: dag_id.clone(),
                    version: version.clone(),
                    run_type: RunType::Scheduled,
                    logical_date: start,
                    interval: Some((start, end)),
                    conf: "{}".into(),
                    note: None,
                    triggered_by: "scheduler".into(),
                    created_at: at,
                };
                let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
                if self.store.create_run(&run, &task_ids).await? {
                    info!(dag_id, run_id = %run.run_id, "created a scheduled run");
                    if let Some(row) = self.store.run(&run.run_id).await? {
                        self.load_run(row).await?;
                    }
                }
                if let Some(mem) = self.dags.get_mut(&dag_id) {
                    mem.last_scheduled_end = Some(end);
                }
            }
        }
        Ok(())
    }

    // ---- deciding ----

    fn paused(&self, dag_id: &str) -> bool {
        self.dags.get(dag_id).is_some_and(|d| d.row.is_paused)
    }

    /// Starts queued runs that have room, moves due retries back to scheduled, and advances every
    /// touched run: the decisions are committed in one transaction.
    async fn advance(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        let mut changes = Vec::new();
        self.start_queued_runs(at, &mut changes);
        self.due_retries(at, &mut changes);
        let dirty = std::mem::take(&mut self.dirty);
        let mut finished = Vec::new();
        for run_id in dirty {
            let Some(run) = self.runs.get_mut(&run_id) else { continue };
            if run.row.state != RunState::Running || self.dags.get(&run.row.dag_id).is_some_and(|d| d.row.is_paused) {
                continue;
            }
            advance_run(run, at, &mut changes, &mut self.ready);
            let states: Vec<TaskState> = run.dag.tasks.iter().map(|t| run.tasks.get(&t.id).map_or(TaskState::None, |m| m.state)).collect();
            let leaves: Vec<TaskState> = run
                .dag
                .tasks
                .iter()
                .filter(|t| run.dag.downstream(&t.id).is_empty())
                .map(|t| run.tasks.get(&t.id).map_or(TaskState::None, |m| m.state))
                .collect();
            if let Some(state) = run_outcome(&states, &leaves) {
                changes.push(Change::RunState { run_id: run_id.clone(), state, at });
                finished.push((run_id, state));
            }
        }
        self.store.apply(&changes).await?;
        for (run_id, state) in finished {
            if let Some(run) = self.runs.remove(&run_id) {
                info!(dag_id = %run.row.dag_id, run_id, %state, "run ended");
                let _ = self.notices.send(Notice::RunFinished { dag_id: run.row.dag_id, run_id, state });
            }
        }
        Ok(())
    }

    fn start_queued_runs(&mut self, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        let mut active: HashMap<String, usize> = HashMap::new();
        for run in self.runs.values() {
            if run.row.state == RunState::Running {
                *active.entry(run.row.dag_id.clone()).or_default() += 1;
            }
        }
        let queued: Vec<String> =
            self.runs.values().filter(|r| r.row.state == RunState::Queued).map(|r| r.row.run_id.clone()).collect();
        for run_id in queued {
            let dag_id = self.runs[&run_id].row.dag_id.clone();
            if self.paused(&dag_id) {
                continue;
            }
            let limit = self.runs[&run_id].dag.max_active_runs as usize;
            let count = active.entry(dag_id.clone()).or_default();
            if *count >= limit {
                continue;
            }
            *count += 1;
            let run = self.runs.get_mut(&run_id).expect("listed above");
            run.row.state = RunState::Running;
            changes.push(Change::RunState { run_id: run_id.clone(), state: RunState::Running, at });
            self.dirty.insert(run_id.clone());
            info!(dag_id, run_id, "run started");
            let _ = self.notices.send(Notice::RunStarted { dag_id, run_id });
        }
    }

    fn due_retries(&mut self, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        for (run_id, run) in &mut self.runs {
            for (task_id, mem) in &mut run.tasks {
                if mem.state == TaskState::UpForRetry && mem.next_try_at.is_none_or(|t| t <= at) {
                    mem.state = TaskState::None;
                    mem.next_try_at = None;
                    changes.push(task_state(run_id, task_id, TaskState::None, None, at));
                    self.dirty.insert(run_id.clone());
                }
            }
        }
    }

    // ---- acting ----

    /// Starts tries while slots are free: each start is committed before its try runs.
    async fn dispatch(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        let mut changes = Vec::new();
        let mut jobs = Vec::new();
        let mut deferred = Vec::new();
        while self.running.len() + jobs.len() < self.config.parallelism {
            let Some(key) = self.ready.pop_front() else { break };
            let Some(run) = self.runs.get(&key.run_id) else { continue };
            if self.paused(&run.row.dag_id) {
                deferred.push(key);
                continue;
            }
            let run = self.runs.get_mut(&key.run_id).expect("checked above");
            let Some(task) = run.dag.task(&key.task_id).cloned() else { continue };
            let Some(mem) = run.tasks.get_mut(&key.task_id) else { continue };
            if mem.state != TaskState::Scheduled {
                continue;
            }
            mem.try_number += 1;
            mem.state = TaskState::Running;
            let try_number = mem.try_number;
            changes.push(Change::TryStarted {
                run_id: key.run_id.clone(),
                task_id: key.task_id.clone(),
                map_index: -1,
                try_number: i64::from(try_number),
                plugin_id: task.plugin_id.clone(),
                at,
            });
            let context = build_context(run, &task, try_number);
            let kill = KillSwitch::new();
            let job = Job { plugin_id: task.plugin_id.clone(), context, limits: task_limits(&task), kill: kill.clone() };
            jobs.push((key, try_number, job, kill));
        }
        self.ready.extend(deferred);
        if jobs.is_empty() {
            return Ok(());
        }
        self.store.apply(&changes).await?;
        for (key, try_number, job, kill) in jobs {
            self.running.insert(key.clone(), kill);
            let executor = self.executor.clone();
            let events = self.events_tx.clone();
            let span = info_span!("task_try", run_id = %key.run_id, task_id = %key.task_id, try_number);
            tokio::spawn(
                async move {
                    let report = executor.run(&job).await;
                    let _ = events.send(Event::Finished { key, try_number, report: Box::new(report) });
                }
                .instrument(span),
            );
        }
        Ok(())
    }

    /// A try ended: decide the task's new state, and queue the changes.
    async fn finished(&mut self, key: TaskKey, try_number: u32, report: TryReport, changes: &mut Vec<Change>) -> Result<(), SchedulerError> {
        self.running.remove(&key);
        let at = now();
        let Some(run) = self.runs.get(&key.run_id) else { return Ok(()) };
        let Some(task) = run.dag.task(&key.task_id).cloned() else { return Ok(()) };
        let dag_id = run.row.dag_id.clone();

        let mut output = None;
        let mut metrics = None;
        let mut failure = match &report.outcome {
            Outcome::Success { result } => {
                if result.branch.is_some() {
                    Some("the result has `branch`, but this task is not a branch task".to_string())
                } else if result.sensor.is_some() {
                    Some("the result has `sensor`, but this task is not a sensor task".to_string())
                } else {
                    output = Some(result.output.clone());
                    metrics = Some(serde_json::to_string(&result.metrics).unwrap_or_else(|_| "{}".into()));
                    None
                }
            }
            failed => Some(format!("{failed}")),
        };
        if failure.is_none() {
            if let Outcome::Success { result } = &report.outcome {
                for request in &result.trigger {
                    if let Err(e) = self.trigger_from_task(&key, &dag_id, request).await {
                        failure = Some(format!("trigger: {e}"));
                        output = None;
                        break;
                    }
                }
            }
        }

        let (state, next_try_at, message) = match &failure {
            None => (TaskState::Success, None, "success".to_string()),
            Some(message) if matches!(report.outcome, Outcome::Killed) => (TaskState::Failed, None, message.clone()),
            Some(message) => {
                let (state, next) = after_failure(task_policy(&task), try_number, at);
                (state, next, message.clone())
            }
        };
        let outcome = match (&report.outcome, &failure) {
            (Outcome::Success { .. }, Some(_)) => "invalid_result".to_string(),
            (outcome, _) => outcome.name().to_string(),
        };
        let output_json = output.as_ref().map(|o| serde_json::to_string(o).unwrap_or_else(|_| "null".into()));
        changes.push(Change::TryEnded(Box::new(TryEnd {
            run_id: key.run_id.clone(),
            task_id: key.task_id.clone(),
            map_index: -1,
            try_number: i64::from(try_number),
            outcome,
            message: if failure.is_some() { format!("{message} (plugin {})", report.plugin) } else { message.clone() },
            log: report.log.clone(),
            fuel_used: i64::try_from(report.fuel_used).unwrap_or(i64::MAX),
            peak_memory: i64::try_from(report.peak_memory_bytes).unwrap_or(i64::MAX),
            wall: report.wall_time,
            at,
            state,
            output: output_json,
            metrics,
            next_try_at,
        })));
        if let Some(run) = self.runs.get_mut(&key.run_id) {
            if let Some(mem) = run.tasks.get_mut(&key.task_id) {
                mem.state = state;
                mem.next_try_at = next_try_at;
                if output.is_some() {
                    mem.output = output;
                }
            }
        }
        self.dirty.insert(key.run_id.clone());
        debug!(run_id = %key.run_id, task_id = %key.task_id, try_number, %state, "{message}");
        let _ = self.notices.send(Notice::TaskFinished {
            dag_id,
            run_id: key.run_id,
            task_id: key.task_id,
            try_number,
            state,
            message,
            wall: report.wall_time,
        });
        Ok(())
    }

    async fn trigger_from_task(&mut self, key: &TaskKey, dag_id: &str, request: &sandflow_sdk::TriggerRequest) -> Result<(), SchedulerError> {
        let by = format!("task:{dag_id}/{}/{}", key.run_id, key.task_id);
        let row = crate::trigger(
            &self.store,
            &request.dag_id,
            crate::TriggerOptions { conf: request.conf.clone(), note: None, triggered_by: by, version: None },
        )
        .await?;
        self.load_run(row).await
    }
}

/// Moves a run's tasks forward by the trigger rules, in topological order, so a skip or an
/// upstream failure cascades in one pass.
fn advance_run(run: &mut RunMem, at: DateTime<Utc>, changes: &mut Vec<Change>, ready: &mut VecDeque<TaskKey>) {
    let run_id = run.row.run_id.clone();
    for task in run.dag.tasks.iter() {
        let state = run.tasks.get(&task.id).map_or(TaskState::None, |m| m.state);
        if state != TaskState::None {
            continue;
        }
        let upstream: Vec<TaskState> =
            task.upstream.iter().map(|up| run.tasks.get(up).map_or(TaskState::Removed, |m| m.state)).collect();
        let (next, reason) = match readiness(task.trigger_rule, &upstream) {
            Readiness::Wait => continue,
            Readiness::Run => (TaskState::Scheduled, None),
            Readiness::Skip => (TaskState::Skipped, Some(format!("skipped by trigger rule {}", task.trigger_rule.as_str()))),
            Readiness::UpstreamFailed => (TaskState::UpstreamFailed, Some("an upstream task failed".to_string())),
        };
        if let Some(mem) = run.tasks.get_mut(&task.id) {
            mem.state = next;
        }
        changes.push(task_state(&run_id, &task.id, next, reason, at));
        if next == TaskState::Scheduled {
            ready.push_back(TaskKey { run_id: run_id.clone(), task_id: task.id.clone() });
        }
    }
}

fn task_state(run_id: &str, task_id: &str, state: TaskState, reason: Option<String>, at: DateTime<Utc>) -> Change {
    Change::TaskState { run_id: run_id.to_string(), task_id: task_id.to_string(), map_index: -1, state, reason, at }
}

fn task_policy(task: &sandflow_core::dag::Task) -> RetryPolicy {
    RetryPolicy {
        retries: task.retries,
        delay: task.retry_delay,
        exponential_backoff: task.retry_exponential_backoff,
        max_delay: task.max_retry_delay,
    }
}

/// After try `try_number` failed: up_for_retry with its time, or failed.
fn after_failure(policy: RetryPolicy, try_number: u32, at: DateTime<Utc>) -> (TaskState, Option<DateTime<Utc>>) {
    match policy.after_failure(try_number) {
        Some(delay) => {
            let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            (TaskState::UpForRetry, Some(at.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC)))
        }
        None => (TaskState::Failed, None),
    }
}

fn task_limits(task: &sandflow_core::dag::Task) -> Limits {
    let mut limits = Limits::default();
    if let Some(fuel) = task.fuel {
        limits.fuel = fuel;
    }
    if let Some(mb) = task.memory_mb {
        limits.memory_bytes = mb.saturating_mul(1024 * 1024);
    }
    if let Some(timeout) = task.timeout {
        limits.timeout = timeout;
    }
    limits
}

fn build_context(run: &RunMem, task: &sandflow_core::dag::Task, try_number: u32) -> Vec<u8> {
    let mut inputs = Map::new();
    for up in &task.upstream {
        if let Some(output) = run.tasks.get(up).and_then(|m| m.output.clone()) {
            inputs.insert(up.clone(), output);
        }
    }
    let context = TaskContext {
        abi: sandflow_sdk::ABI_VERSION,
        dag_id: run.row.dag_id.clone(),
        dag_version: run.row.version.clone(),
        run_id: run.row.run_id.clone(),
        task_id: task.id.clone(),
        map_index: None,
        map_item: None,
        try_number,
        logical_date: Some(run.row.logical_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        data_interval: match (run.row.interval_start, run.row.interval_end) {
            (Some(start), Some(end)) => Some(DataInterval {
                start: start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                end: end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
            _ => None,
        },
        conf: run.conf.clone(),
        params: task.params.clone(),
        inputs,
    };
    serde_json::to_vec(&context).unwrap_or_default()
}
