//! The scheduler loop: one task owns the working set of active runs, decides every transition with
//! the pure rules of `sandflow_core::state`, commits the decisions in batches, and only then acts.
//!
//! A loop turn: take every event that has arrived (tries that ended, wake-ups), commit what they
//! change; advance the touched runs (tasks become scheduled, skipped or upstream_failed; runs start
//! and end), commit; start tries while slots are free, commit, spawn them. A try's end is an event
//! on the loop's channel, so a finished task's successors start in the same turn, without polling.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sandflow_core::dag::{Caps, Task, TaskKind};
use sandflow_core::state::{RetryPolicy, RunState, TaskState};
use sandflow_sandbox::{KillSwitch, Limits, Outcome, TryReport};
#[cfg(test)]
use sandflow_sdk::TaskContext;
use sandflow_sdk::{DataInterval, TaskResult};
use sandflow_store::{ActionState, Change, DagRow, NewRun, RunRow, RunType, Store, TryEnd};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::executor::{Executor, Job};
use crate::folder::DagFolder;
use crate::loader::{LoadContext, StoredSpec};
use crate::timetable::due_intervals;
use crate::working::{Graph, ReadyQueue, RunMem, StateChange, TaskKey, Timers};
use crate::{Notice, SchedulerError};

mod carry_out;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Tries running at once, across all DAGs.
    pub parallelism: usize,
    /// Whether DAGs seen for the first time start paused (a DAG file's `is_paused_upon_creation`
    /// overrides it).
    pub paused_at_creation: bool,
    /// How often the store is looked at (runs triggered by other processes, pauses). The DAG folder
    /// is watched by its own task, which wakes the scheduler when it has loaded something.
    pub poll_interval: Duration,
    /// The server's caps on what a DAG may ask for.
    pub caps: Caps,
    /// The DAG folder to load and watch, if any: a task of its own loads its files into the store
    /// (the scheduler's loop never reads a file).
    pub dags_dir: Option<PathBuf>,
    /// Whether this scheduler creates runs from schedules (off for a backfill's own scheduler).
    pub create_scheduled_runs: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            parallelism: 32,
            paused_at_creation: false,
            poll_interval: Duration::from_millis(500),
            caps: Caps::default(),
            dags_dir: None,
            create_scheduled_runs: true,
        }
    }
}

enum Event {
    Finished { key: TaskKey, try_number: u32, report: Box<TryReport> },
    Wake,
}

/// A try the executor is running.
struct RunningTry {
    kill: KillSwitch,
    dag_id: String,
    pool: String,
    slots: u32,
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
    specs: HashMap<(String, String), Arc<Graph>>,
    runs: BTreeMap<String, RunMem>,
    ready: ReadyQueue,
    /// Retries and sensor pokes waiting for their time.
    timers: Timers,
    running: HashMap<TaskKey, RunningTry>,
    pools: HashMap<String, u32>,
    dirty: BTreeSet<String>,
    /// Notices wait here until what they tell is committed.
    unsent: Vec<Notice>,
    /// Runs that tasks' results triggered, to load once the batch creating them is committed.
    created: Vec<String>,
    /// When the last run a task triggered was created: each gets a later microsecond (its id).
    last_created_at: DateTime<Utc>,
    id: String,
    started_at: DateTime<Utc>,
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
        let folder = config.dags_dir.clone().map(|dir| {
            DagFolder::new(
                dir,
                LoadContext::new(store.clone(), sandbox.clone(), config.caps, config.paused_at_creation),
            )
        });
        Scheduler {
            executor: Arc::new(Executor::new(store.clone(), sandbox)),
            store,
            config,
            folder,
            dags: HashMap::new(),
            specs: HashMap::new(),
            runs: BTreeMap::new(),
            ready: ReadyQueue::default(),
            timers: Timers::default(),
            running: HashMap::new(),
            pools: HashMap::new(),
            dirty: BTreeSet::new(),
            unsent: Vec::new(),
            created: Vec::new(),
            last_created_at: DateTime::<Utc>::MIN_UTC,
            id: format!("{}-{}", std::process::id(), Utc::now().timestamp_micros()),
            started_at: Utc::now(),
            events_tx,
            events_rx,
            notices,
        }
    }

    /// A handle to wake the scheduler and to subscribe to its notices.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle { events: self.events_tx.clone(), notices: self.notices.clone() }
    }

    /// Loads the DAG folder once (if any), waiting for files being written to settle: for callers
    /// that want DAGs in the store before running.
    pub async fn load_dags(&mut self) -> Result<crate::LoadReport, SchedulerError> {
        match &mut self.folder {
            Some(folder) => folder.load_settled().await,
            None => Ok(crate::LoadReport::default()),
        }
    }

    /// Runs until `shutdown` is cancelled. Tries still running then are left to the next start,
    /// which records them as interrupted and retries them per their policy.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), SchedulerError> {
        // The folder's watcher stops with the loop, however the loop ends.
        let _stop_watching = self.folder.take().map(|folder| {
            let stop = shutdown.child_token();
            let events = self.events_tx.clone();
            let wake = move || {
                let _ = events.send(Event::Wake);
            };
            tokio::spawn(folder.watch(wake, stop.clone()));
            stop.drop_guard()
        });
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
            self.load_created_runs().await?;
            self.send_notices();
        }
        for running in self.running.values() {
            running.kill.kill();
        }
        self.store.remove_scheduler(&self.id).await?;
        Ok(())
    }

    /// Loads the runs that the batch just committed created (runs triggered by tasks' results).
    async fn load_created_runs(&mut self) -> Result<(), SchedulerError> {
        for run_id in std::mem::take(&mut self.created) {
            if let Some(row) = self.store.run(&run_id).await? {
                self.load_run(row).await?;
            }
        }
        Ok(())
    }

    /// Carries out every pending action now, without running the loop: for a command-line tool
    /// when no scheduler is alive. Returns each action's id and result.
    pub async fn carry_out_pending(&mut self) -> Result<Vec<(i64, Result<String, String>)>, SchedulerError> {
        self.refresh_dags().await?;
        let results = self.carry_out_actions().await?;
        // Settle what the actions changed (a run whose leaf was marked failed is failed now);
        // tries are left to the next scheduler that runs.
        self.advance().await?;
        Ok(results)
    }

    /// Claims and carries out every pending action, recording each result; returns them.
    async fn carry_out_actions(&mut self) -> Result<Vec<(i64, Result<String, String>)>, SchedulerError> {
        let mut results = Vec::new();
        for row in self.store.pending_actions().await? {
            if !self.store.claim_action(row.id).await? {
                continue;
            }
            let result = self.carry_out(&row.payload, &row.requested_by).await?;
            let (state, text) = match &result {
                Ok(summary) => (ActionState::Done, summary.as_str()),
                Err(message) => (ActionState::Failed, message.as_str()),
            };
            self.store.finish_action(row.id, state, text).await?;
            results.push((row.id, result));
        }
        Ok(results)
    }

    fn next_wake(&self, next_poll: Instant) -> Instant {
        match self.timers.next() {
            Some(at) => next_poll.min(Instant::now() + (at - now()).to_std().unwrap_or(Duration::ZERO)),
            None => next_poll,
        }
    }

    // ---- loading ----

    /// A DAG version, parsed and indexed once and shared by all its runs.
    async fn graph(&mut self, dag_id: &str, version: &str) -> Result<Arc<Graph>, SchedulerError> {
        let key = (dag_id.to_string(), version.to_string());
        if let Some(dag) = self.specs.get(&key) {
            return Ok(dag.clone());
        }
        let json = self.store.dag_spec(dag_id, version).await?.ok_or_else(|| SchedulerError::UnknownVersion {
            dag_id: dag_id.to_string(),
            version: version.to_string(),
        })?;
        let spec: StoredSpec = serde_json::from_value(json)
            .map_err(|e| SchedulerError::BadStoredSpec { file: dag_id.to_string(), detail: e.to_string() })?;
        let graph = Arc::new(Graph::new(Arc::new(spec.to_dag(&self.config.caps)?)));
        self.specs.insert(key, graph.clone());
        Ok(graph)
    }

    async fn load_run(&mut self, row: RunRow) -> Result<(), SchedulerError> {
        let graph = self.graph(&row.dag_id, &row.version).await?;
        let failed: HashMap<(String, i64), i64> =
            self.store.failed_tries(&row.run_id).await?.into_iter().map(|(t, m, n)| ((t, m), n)).collect();
        let rows = self.store.task_instances(&row.run_id).await?;
        let run = RunMem::new(row, graph, &rows, &failed);
        for (key, at) in run.waiting() {
            self.timers.push(at, key);
        }
        self.dirty.insert(run.row.run_id.clone());
        self.runs.insert(run.row.run_id.clone(), run);
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
            let graph = run.graph.clone();
            for (task_id, map_index, state) in run.instances() {
                let Some(task) = graph.task(&task_id) else { continue };
                match state {
                    TaskState::Running if !(task.map_over.is_some() && map_index < 0) => {
                        let Some(mem) = run.ti_mut(&task_id, map_index) else { continue };
                        mem.failed_tries += 1;
                        let (next, next_try_at) = after_failure(task_policy(task), mem.failed_tries, at);
                        let try_number = mem.try_number;
                        warn!(run_id, task_id, map_index, try_number, "recovering an interrupted try: {next}");
                        let end = TryEnd {
                            run_id: run_id.clone(),
                            task_id: task_id.clone(),
                            map_index,
                            try_number: i64::from(try_number),
                            outcome: "interrupted".into(),
                            message: "interrupted: the process running this try stopped before it ended".into(),
                            log: String::new(),
                            fuel_used: 0,
                            peak_memory: 0,
                            wall: Duration::ZERO,
                            at,
                            state: Some(next),
                            output: None,
                            metrics: None,
                            next_try_at,
                        };
                        run.end_try(end, None, &mut changes);
                        if let Some(at) = next_try_at {
                            self.timers.push(at, TaskKey { run_id: run_id.clone(), task_id, map_index });
                        }
                    }
                    TaskState::Scheduled | TaskState::Queued => {
                        run.set_state(&task_id, map_index, StateChange::to(TaskState::None), at, &mut changes);
                    }
                    _ => {}
                }
            }
        }
        self.store.apply(&changes).await?;
        Ok(())
    }

    /// Looks at the store: DAG changes (loaded by the folder's watcher), pauses, runs created
    /// elsewhere, and scheduled runs that are due.
    async fn poll(&mut self) -> Result<(), SchedulerError> {
        self.store.heartbeat(&self.id, std::process::id(), self.started_at).await?;
        self.refresh_dags().await?;
        self.pools =
            self.store.pools().await?.into_iter().map(|p| (p.name, u32::try_from(p.slots).unwrap_or(0))).collect();
        self.carry_out_actions().await?;
        for row in self.store.active_runs().await? {
            if !self.runs.contains_key(&row.run_id) {
                debug!(run_id = %row.run_id, "picked up a run created elsewhere");
                self.load_run(row).await?;
            }
        }
        if self.config.create_scheduled_runs {
            self.create_scheduled_runs().await?;
        }
        Ok(())
    }

    async fn refresh_dags(&mut self) -> Result<(), SchedulerError> {
        for row in self.store.dags().await? {
            match self.dags.get_mut(&row.dag_id) {
                Some(mem) => {
                    if mem.row.is_paused && !row.is_paused {
                        self.dirty.extend(
                            self.runs.values().filter(|r| r.row.dag_id == row.dag_id).map(|r| r.row.run_id.clone()),
                        );
                    }
                    mem.row = row;
                }
                None => {
                    let last_scheduled_end = self.store.last_scheduled_interval_end(&row.dag_id).await?;
                    self.dags.insert(row.dag_id.clone(), DagMem { row, last_scheduled_end });
                }
            }
        }
        Ok(())
    }

    async fn create_scheduled_runs(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        let dag_ids: Vec<String> = self.dags.keys().cloned().collect();
        for dag_id in dag_ids {
            let (paused, stale, version, created_at, last_end) = {
                let mem = &self.dags[&dag_id];
                let row = &mem.row;
                (row.is_paused, row.is_stale(), row.active_version.clone(), row.created_at, mem.last_scheduled_end)
            };
            // A stale DAG's file is gone: no new scheduled runs until it is back.
            if paused || stale {
                continue;
            }
            let dag = self.graph(&dag_id, &version).await?.dag.clone();
            let active = self.runs.values().filter(|r| r.row.dag_id == dag_id).count();
            let room = (dag.max_active_runs as usize).saturating_sub(active);
            for (start, end) in due_intervals(&dag, last_end, created_at, at, room) {
                let run = NewRun {
                    run_id: RunType::Scheduled.run_id(&dag_id, start),
                    dag_id: dag_id.clone(),
                    version: version.clone(),
                    run_type: RunType::Scheduled,
                    logical_date: start,
                    interval: Some((start, end)),
                    conf: Map::new(),
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
            let paused = self.runs.get(&run_id).is_some_and(|run| self.paused(&run.row.dag_id));
            let Some(run) = self.runs.get_mut(&run_id) else { continue };
            if run.row.state != RunState::Running || paused {
                continue;
            }
            let before = changes.len();
            run.advance(at, &mut changes, &mut self.ready);
            for change in &changes[before..] {
                if let Change::TaskState { task_id, map_index: -1, to: state, reason, .. } = change {
                    if state.is_finished() {
                        self.unsent.push(Notice::TaskSettled {
                            dag_id: run.row.dag_id.clone(),
                            run_id: run_id.clone(),
                            task_id: task_id.clone(),
                            state: *state,
                            reason: reason.clone(),
                        });
                    }
                }
            }
            if let Some(state) = run.outcome() {
                run.set_run_state(state, at, &mut changes);
                finished.push((run_id, state));
            }
        }
        self.store.apply(&changes).await?;
        for (run_id, state) in finished {
            if let Some(run) = self.runs.remove(&run_id) {
                info!(dag_id = %run.row.dag_id, run_id, %state, "run ended");
                self.unsent.push(Notice::RunFinished { dag_id: run.row.dag_id, run_id, state });
            }
        }
        self.send_notices();
        Ok(())
    }

    /// Sends the notices whose changes are committed.
    fn send_notices(&mut self) {
        for notice in self.unsent.drain(..) {
            let _ = self.notices.send(notice);
        }
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
            let limit = self.runs[&run_id].dag().max_active_runs as usize;
            let count = active.entry(dag_id.clone()).or_default();
            if *count >= limit {
                continue;
            }
            *count += 1;
            let run = self.runs.get_mut(&run_id).expect("listed above");
            run.set_run_state(RunState::Running, at, changes);
            self.dirty.insert(run_id.clone());
            info!(dag_id, run_id, "run started");
            self.unsent.push(Notice::RunStarted { dag_id, run_id });
        }
    }

    /// Retries and sensor pokes whose time has come go back to the ready queue.
    fn due_retries(&mut self, at: DateTime<Utc>, changes: &mut Vec<Change>) {
        for key in self.timers.due(at) {
            let Some(run) = self.runs.get_mut(&key.run_id) else { continue };
            let Some(mem) = run.ti(&key.task_id, key.map_index) else { continue };
            // The instance may have been cleared or marked since it started waiting.
            if !matches!(mem.state(), TaskState::UpForRetry | TaskState::UpForReschedule)
                || mem.next_try_at.is_some_and(|t| t > at)
            {
                continue;
            }
            run.set_state(&key.task_id, key.map_index, StateChange::to(TaskState::Scheduled), at, changes);
            if let Some(mem) = run.ti_mut(&key.task_id, key.map_index) {
                mem.next_try_at = None;
            }
            let priority = run.graph.task(&key.task_id).map_or(1, |t| t.priority_weight);
            self.dirty.insert(key.run_id.clone());
            self.ready.push(priority, key);
        }
    }

    // ---- acting ----

    /// Starts tries while slots are free (parallelism, the task's pool, its DAG's
    /// max_active_tasks), highest priority first: each start is committed before its try runs.
    async fn dispatch(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        let mut changes = Vec::new();
        let mut jobs = Vec::new();
        let mut deferred = Vec::new();
        let mut pool_used: HashMap<String, u32> = HashMap::new();
        let mut dag_running: HashMap<String, u32> = HashMap::new();
        for running in self.running.values() {
            *pool_used.entry(running.pool.clone()).or_default() += running.slots;
            *dag_running.entry(running.dag_id.clone()).or_default() += 1;
        }
        while self.running.len() + jobs.len() < self.config.parallelism {
            let Some((priority, key)) = self.ready.pop() else { break };
            let Some(run) = self.runs.get(&key.run_id) else { continue };
            let dag_id = run.row.dag_id.clone();
            if self.paused(&dag_id) {
                deferred.push((priority, key));
                continue;
            }
            let graph = run.graph.clone();
            let Some(task) = graph.task(&key.task_id) else { continue };
            if run.ti(&key.task_id, key.map_index).is_none_or(|m| m.state() != TaskState::Scheduled) {
                continue;
            }
            let max_active_tasks = run.dag().max_active_tasks;
            if dag_running.get(&dag_id).copied().unwrap_or(0) >= max_active_tasks {
                deferred.push((priority, key));
                continue;
            }
            let pool_size = self.pools.get(&task.pool).copied();
            let fits = match pool_size {
                None => {
                    Err(format!("no pool `{}` (create it with: sandflow pools set {} SLOTS)", task.pool, task.pool))
                }
                Some(size) if task.pool_slots > size => {
                    Err(format!("needs {} slots of pool `{}`, which has {size}", task.pool_slots, task.pool))
                }
                Some(size) => Ok(pool_used.get(&task.pool).copied().unwrap_or(0) + task.pool_slots <= size),
            };
            match fits {
                Err(reason) => {
                    if let Some(run) = self.runs.get_mut(&key.run_id) {
                        let failed = StateChange::because(TaskState::Failed, reason);
                        run.set_state(&key.task_id, key.map_index, failed, at, &mut changes);
                    }
                    self.dirty.insert(key.run_id.clone());
                    continue;
                }
                Ok(false) => {
                    deferred.push((priority, key));
                    continue;
                }
                Ok(true) => {}
            }
            *pool_used.entry(task.pool.clone()).or_default() += task.pool_slots;
            *dag_running.entry(dag_id.clone()).or_default() += 1;

            let dag_runs = self.watched_runs(task).await?;
            let run = self.runs.get_mut(&key.run_id).expect("checked above");
            let inputs = run.instance_inputs(task, key.map_index);
            let conf = run.instance_conf(task, key.map_index);
            let try_number = run.start_try(&key, &task.plugin_id, at, &mut changes);
            let map_item = run.ti(&key.task_id, key.map_index).and_then(|m| m.map_item.clone());
            let context =
                build_context(run, task, key.map_index, map_item, inputs, conf.as_ref(), try_number, dag_runs);
            let kill = KillSwitch::new();
            let job = Job { plugin_id: task.plugin_id.clone(), context, limits: task_limits(task), kill: kill.clone() };
            let running = RunningTry { kill, dag_id, pool: task.pool.clone(), slots: task.pool_slots };
            jobs.push((key, try_number, job, running));
        }
        for (priority, key) in deferred {
            self.ready.push(priority, key);
        }
        self.store.apply(&changes).await?;
        for (key, try_number, job, running) in jobs {
            self.running.insert(key.clone(), running);
            let executor = self.executor.clone();
            let events = self.events_tx.clone();
            let span = info_span!("task_try", run_id = %key.run_id, task_id = %key.task_id, map_index = key.map_index, try_number);
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

    /// For a sensor that watches other DAGs: their latest runs, for its context.
    async fn watched_runs(&self, task: &Task) -> Result<Option<Value>, SchedulerError> {
        if task.watch_dags.is_empty() {
            return Ok(None);
        }
        let mut runs = Map::new();
        for dag_id in &task.watch_dags {
            let rows = self.store.runs(Some(dag_id), 20).await?;
            let list: Vec<Value> = rows
                .iter()
                .map(|r| {
                    json!({"run_id": r.run_id, "state": r.state, "run_type": r.run_type,
                        "logical_date": rfc3339(r.logical_date), "interval_start": r.interval_start.map(rfc3339),
                        "interval_end": r.interval_end.map(rfc3339)})
                })
                .collect();
            runs.insert(dag_id.clone(), Value::Array(list));
        }
        Ok(Some(Value::Object(runs)))
    }

    /// A try ended: decide the task instance's new state, and queue the changes.
    async fn finished(
        &mut self,
        key: TaskKey,
        try_number: u32,
        report: TryReport,
        changes: &mut Vec<Change>,
    ) -> Result<(), SchedulerError> {
        self.running.remove(&key);
        let at = now();
        let Some(run) = self.runs.get(&key.run_id) else {
            changes.push(try_only(&key, try_number, &report, at));
            return Ok(());
        };
        let graph = run.graph.clone();
        let Some(task) = graph.task(&key.task_id) else { return Ok(()) };
        let dag_id = run.row.dag_id.clone();
        let current = run
            .ti(&key.task_id, key.map_index)
            .is_some_and(|m| m.state() == TaskState::Running && m.try_number == try_number);
        if !current {
            // Cleared or marked while it ran: the try is recorded, the instance is left alone.
            changes.push(try_only(&key, try_number, &report, at));
            return Ok(());
        }

        let decision = match &report.outcome {
            Outcome::Success { result } => self.judge(run, task, result, at),
            Outcome::Killed => Decision::Fail { message: "killed".into(), retry: false, outcome: None },
            failed => Decision::Fail { message: failed.to_string(), retry: true, outcome: None },
        };
        let mut decision = decision;
        let mut triggered = Vec::new();
        if let (Decision::Success { .. }, Outcome::Success { result }) = (&decision, &report.outcome) {
            match self.runs_triggered_by(&key, &dag_id, &result.trigger, at).await {
                Ok(runs) => triggered = runs,
                Err(e) => {
                    decision = Decision::Fail {
                        message: format!("trigger: {e}"),
                        retry: true,
                        outcome: Some("trigger_failed"),
                    }
                }
            }
        }

        let run = self.runs.get_mut(&key.run_id).expect("looked up above");
        let mut unchosen = Vec::new();
        let mut chosen = None;
        let (state, next_try_at, message, outcome_name, output, metrics) = match decision {
            Decision::Success { output, metrics, branch } => {
                chosen = branch;
                let metrics = match serde_json::to_value(&metrics) {
                    Ok(Value::Object(metrics)) => metrics,
                    _ => Map::new(),
                };
                (TaskState::Success, None, "success".to_string(), "success".to_string(), Some(output), Some(metrics))
            }
            Decision::Reschedule { next } => (
                TaskState::UpForReschedule,
                Some(next),
                "not yet: poking again".to_string(),
                "rescheduled".to_string(),
                None,
                None,
            ),
            Decision::Fail { message, retry, outcome } => {
                let Some(mem) = run.ti_mut(&key.task_id, key.map_index) else { return Ok(()) };
                mem.failed_tries += 1;
                let (state, next) = if retry {
                    after_failure(task_policy(task), mem.failed_tries, at)
                } else {
                    (TaskState::Failed, None)
                };
                let name = outcome.unwrap_or(report.outcome.name()).to_string();
                (state, next, format!("{message} (plugin {})", report.plugin), name, None, None)
            }
        };
        let end = TryEnd {
            run_id: key.run_id.clone(),
            task_id: key.task_id.clone(),
            map_index: key.map_index,
            try_number: i64::from(try_number),
            outcome: outcome_name,
            message: message.clone(),
            log: report.log.clone(),
            fuel_used: i64::try_from(report.fuel_used).unwrap_or(i64::MAX),
            peak_memory: i64::try_from(report.peak_memory_bytes).unwrap_or(i64::MAX),
            wall: report.wall_time,
            at,
            state: Some(state),
            output: output.clone(),
            metrics,
            next_try_at,
        };
        run.end_try(end, output, changes);
        if let Some(chosen) = chosen {
            unchosen = run.skip_unchosen(&key.task_id, &chosen, at, changes);
        }
        if let Some(at) = next_try_at {
            self.timers.push(at, key.clone());
        }
        // The runs the result triggered are created in the same transaction as the try's end: a
        // crash between the two can neither lose them nor, by retrying the try, trigger them twice.
        for change in triggered {
            if let Change::CreateRun { run, .. } = &change {
                self.created.push(run.run_id.clone());
            }
            changes.push(change);
        }
        self.dirty.insert(key.run_id.clone());
        debug!(run_id = %key.run_id, task_id = %key.task_id, map_index = key.map_index, try_number, %state, "{message}");
        self.unsent.push(Notice::TaskFinished {
            dag_id: dag_id.clone(),
            run_id: key.run_id.clone(),
            task_id: key.task_id.clone(),
            map_index: key.map_index,
            try_number,
            state,
            message,
            wall: report.wall_time,
        });
        // The branch's own end first, then what it skipped.
        for task_id in unchosen {
            self.unsent.push(Notice::TaskSettled {
                dag_id: dag_id.clone(),
                run_id: key.run_id.clone(),
                task_id,
                state: TaskState::Skipped,
                reason: Some(format!("not chosen by branch {}", key.task_id)),
            });
        }
        Ok(())
    }

    /// Reads a successful try's result by the task's kind.
    fn judge(&self, run: &RunMem, task: &Task, result: &TaskResult, at: DateTime<Utc>) -> Decision {
        let fail = |message: String| Decision::Fail { message, retry: true, outcome: Some("invalid_result") };
        let success =
            |branch| Decision::Success { output: result.output.clone(), metrics: result.metrics.clone(), branch };
        match task.kind {
            TaskKind::Task => {
                if result.branch.is_some() {
                    fail("the result has `branch`, but this task is not a branch task (kind = \"branch\")".into())
                } else if result.sensor.is_some() {
                    fail("the result has `sensor`, but this task is not a sensor task (kind = \"sensor\")".into())
                } else {
                    success(None)
                }
            }
            TaskKind::Branch => match &result.branch {
                None => fail("a branch task must return `branch`: the downstream task ids to follow".into()),
                Some(chosen) => {
                    let downstream = run.graph.downstream_ids(&task.id);
                    match chosen.iter().find(|id| !downstream.contains(&id.as_str())) {
                        Some(stray) => fail(format!(
                            "branch names `{stray}`, which is not directly downstream of `{}` (downstream: {})",
                            task.id,
                            if downstream.is_empty() { "none".to_string() } else { downstream.join(", ") }
                        )),
                        None => success(Some(chosen.clone())),
                    }
                }
            },
            TaskKind::Sensor => match &result.sensor {
                None => fail("a sensor task must return `sensor: {\"done\": true|false}`".into()),
                Some(s) if s.done => success(None),
                Some(_) => {
                    let first = run.ti(&task.id, -1).and_then(|m| m.first_try_at).unwrap_or(at);
                    let waited = (at - first).to_std().unwrap_or(Duration::ZERO);
                    let limit = task.timeout.unwrap_or(Task::DEFAULT_SENSOR_TIMEOUT);
                    if waited >= limit {
                        Decision::Fail {
                            message: format!("sensor timed out after {}", sandflow_sandbox::human_duration(limit)),
                            retry: false,
                            outcome: Some("sensor_timeout"),
                        }
                    } else {
                        let next = at
                            + chrono::Duration::from_std(task.poke_interval).unwrap_or(chrono::Duration::seconds(60));
                        Decision::Reschedule { next }
                    }
                }
            },
        }
    }

    /// The runs a try's result asks for, as changes to commit with the try's end; an unknown DAG
    /// or version is an error, and then nothing is created.
    async fn runs_triggered_by(
        &mut self,
        key: &TaskKey,
        dag_id: &str,
        requests: &[sandflow_sdk::TriggerRequest],
        at: DateTime<Utc>,
    ) -> Result<Vec<Change>, SchedulerError> {
        let by = format!("task:{dag_id}/{}/{}", key.run_id, key.task_id);
        let mut changes = Vec::new();
        for request in requests {
            let options = crate::TriggerOptions {
                conf: request.conf.clone(),
                note: None,
                triggered_by: by.clone(),
                version: None,
            };
            let planned = crate::plan_manual_run(&self.store, &request.dag_id, options).await?;
            // Created when the try ended, or a microsecond after the last run this process
            // created, so that two runs triggered in one batch never share an id.
            let at = at.max(self.last_created_at + chrono::Duration::microseconds(1));
            self.last_created_at = at;
            changes.push(Change::CreateRun { run: Box::new(planned.at(at)), task_ids: planned.task_ids });
        }
        Ok(changes)
    }
}

/// How a try is judged.
enum Decision {
    Success {
        output: Value,
        metrics: std::collections::BTreeMap<String, f64>,
        branch: Option<Vec<String>>,
    },
    Reschedule {
        next: DateTime<Utc>,
    },
    /// `outcome` names the failure when the try itself succeeded (a bad result, a sensor's
    /// timeout, a failed trigger); otherwise the try's own outcome names it.
    Fail {
        message: String,
        retry: bool,
        outcome: Option<&'static str>,
    },
}

/// A try's end recorded alone, leaving its instance as it is.
fn try_only(key: &TaskKey, try_number: u32, report: &TryReport, at: DateTime<Utc>) -> Change {
    Change::TryEnded(Box::new(TryEnd {
        run_id: key.run_id.clone(),
        task_id: key.task_id.clone(),
        map_index: key.map_index,
        try_number: i64::from(try_number),
        outcome: report.outcome.name().to_string(),
        message: format!("{} (the instance was cleared or marked while it ran)", report.outcome),
        log: report.log.clone(),
        fuel_used: i64::try_from(report.fuel_used).unwrap_or(i64::MAX),
        peak_memory: i64::try_from(report.peak_memory_bytes).unwrap_or(i64::MAX),
        wall: report.wall_time,
        at,
        state: None,
        output: None,
        metrics: None,
        next_try_at: None,
    }))
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn task_policy(task: &sandflow_core::dag::Task) -> RetryPolicy {
    RetryPolicy {
        retries: task.retries,
        delay: task.retry_delay,
        exponential_backoff: task.retry_exponential_backoff,
        max_delay: task.max_retry_delay,
    }
}

/// After the `failures`-th failed try since the last clear: up_for_retry with its time, or failed.
fn after_failure(policy: RetryPolicy, failures: u32, at: DateTime<Utc>) -> (TaskState, Option<DateTime<Utc>>) {
    match policy.after_failure(failures) {
        Some(delay) => {
            let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
            (TaskState::UpForRetry, Some(at.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC)))
        }
        None => (TaskState::Failed, None),
    }
}

/// A task's try limits: its DAG file's fuel, memory and timeout over the sandbox defaults.
pub fn task_limits(task: &sandflow_core::dag::Task) -> Limits {
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

/// The task context as the plugin reads it (ABI v1, the shape of `sandflow_sdk::TaskContext`),
/// serialised from borrowed parts: a mapped task's thousands of instances share one run's conf.
#[derive(serde::Serialize)]
struct ContextRef<'a> {
    abi: u32,
    dag_id: &'a str,
    dag_version: &'a str,
    run_id: &'a str,
    task_id: &'a str,
    map_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_item: Option<&'a Value>,
    try_number: u32,
    logical_date: String,
    data_interval: Option<DataInterval>,
    conf: &'a Map<String, Value>,
    params: &'a Map<String, Value>,
    inputs: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dag_runs: Option<&'a Value>,
}

#[allow(clippy::too_many_arguments)]
fn build_context(
    run: &RunMem,
    task: &Task,
    map_index: i64,
    map_item: Option<Value>,
    inputs: Map<String, Value>,
    conf: Option<&Map<String, Value>>,
    try_number: u32,
    dag_runs: Option<Value>,
) -> Vec<u8> {
    let context = ContextRef {
        abi: sandflow_sdk::ABI_VERSION,
        dag_id: &run.row.dag_id,
        dag_version: &run.row.version,
        run_id: &run.row.run_id,
        task_id: &task.id,
        map_index: u64::try_from(map_index).ok(),
        map_item: map_item.as_ref(),
        try_number,
        logical_date: rfc3339(run.row.logical_date),
        data_interval: match (run.row.interval_start, run.row.interval_end) {
            (Some(start), Some(end)) => Some(DataInterval { start: rfc3339(start), end: rfc3339(end) }),
            _ => None,
        },
        conf: conf.unwrap_or(&run.conf),
        params: &task.params,
        inputs: &inputs,
        dag_runs: dag_runs.as_ref(),
    };
    serde_json::to_vec(&context).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_borrowed_context_reads_back_as_the_abi_context() {
        let context = ContextRef {
            abi: 1,
            dag_id: "d",
            dag_version: "v1",
            run_id: "r",
            task_id: "t",
            map_index: Some(3),
            map_item: Some(&json!({"customer": "acme"})),
            try_number: 2,
            logical_date: "2026-11-01T00:00:00Z".into(),
            data_interval: Some(DataInterval { start: "a".into(), end: "b".into() }),
            conf: &Map::new(),
            params: &Map::new(),
            inputs: &Map::new(),
            dag_runs: None,
        };
        let back: TaskContext = serde_json::from_slice(&serde_json::to_vec(&context).unwrap()).unwrap();
        assert_eq!(back.map_index, Some(3));
        assert_eq!(back.map_item, Some(json!({"customer": "acme"})));
        assert_eq!(back.try_number, 2);
        assert_eq!(back.logical_date.as_deref(), Some("2026-11-01T00:00:00Z"));
    }
}
