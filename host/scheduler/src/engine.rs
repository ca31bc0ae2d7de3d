//! The scheduler loop: one task owns the working set of active runs, decides every transition with
//! the pure rules of `sandflow_core::state`, commits the decisions in batches, and only then acts.
//!
//! A loop turn: judge the tries workers have reported, commit what they change; advance the
//! touched runs (tasks become scheduled, skipped or upstream_failed; runs start and end), commit;
//! queue what is ready, with its job, for workers to claim (the claim applies pools and
//! `max_active_tasks` across every worker). A report wakes the loop at once (a watch channel in
//! this process, `LISTEN/NOTIFY` across processes), so a finished task's successors are queued
//! within the same turn; polling is the safety net, and finds tries whose leases expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sandflow_core::dag::{Caps, Task, TaskKind};
use sandflow_core::state::{RetryPolicy, RunState, TaskState};
use sandflow_sandbox::Limits;
#[cfg(test)]
use sandflow_sdk::TaskContext;
use sandflow_sdk::{DataInterval, TaskResult};
use sandflow_store::{
    ActionState, Change, DagRow, NewRun, QueuedJob, ReportedTry, RunRow, RunType, Store, StoreError, Topic, TryEnd,
};
use serde_json::{json, Map, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::folder::DagFolder;
use crate::loader::{LoadContext, StoredSpec};
use crate::timetable::due_intervals;
use crate::working::{Graph, ReadyQueue, RunMem, StateChange, TaskKey, Timers};
use crate::{Notice, SchedulerError, Shutdown};

mod carry_out;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Tries running at once in `standalone`'s in-process worker (workers elsewhere have their
    /// own `--concurrency`).
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
    /// The in-process worker's [`WorkerConfig::shutdown_grace`](crate::WorkerConfig::shutdown_grace).
    pub shutdown_grace: Duration,
    /// What DAGs may be granted, and what the in-process worker needs to grant it.
    pub grants: crate::GrantConfig,
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
            shutdown_grace: crate::DEFAULT_SHUTDOWN_GRACE,
            grants: crate::GrantConfig::default(),
        }
    }
}

enum Event {
    Wake,
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

/// The scheduler: decides, queues, judges; never runs a plugin (workers do).
pub struct Scheduler {
    store: Store,
    /// For the folder's loader, and for an in-process worker ([`Scheduler::run_with_worker`]).
    sandbox: sandflow_sandbox::Sandbox,
    config: SchedulerConfig,
    folder: Option<DagFolder>,
    dags: HashMap<String, DagMem>,
    specs: HashMap<(String, String), Arc<Graph>>,
    runs: BTreeMap<String, RunMem>,
    ready: ReadyQueue,
    /// Retries and sensor pokes waiting for their time.
    timers: Timers,
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
                LoadContext::new(store.clone(), sandbox.clone(), config.caps, config.paused_at_creation)
                    .with_grants(config.grants.clone()),
            )
        });
        Scheduler {
            sandbox,
            store,
            config,
            folder,
            dags: HashMap::new(),
            specs: HashMap::new(),
            runs: BTreeMap::new(),
            ready: ReadyQueue::default(),
            timers: Timers::default(),
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

    /// Runs the scheduler and a worker of `parallelism` slots in this process until `shutdown`
    /// is stopped (standalone, backfill, `dags test`, bench): the same claims as any worker.
    ///
    /// The worker stops first and the scheduler goes on meanwhile, judging what the worker
    /// reports during its grace; the scheduler stops once the worker has. A report it has not
    /// judged by then stays in the store, reported and not judged, and the next scheduler to start
    /// judges it first. Either half ending by itself (a store error) stops the other.
    pub async fn run_with_worker(self, shutdown: impl Into<Shutdown>) -> Result<(), SchedulerError> {
        let shutdown = shutdown.into();
        let config = crate::WorkerConfig {
            concurrency: self.config.parallelism,
            shutdown_grace: self.config.shutdown_grace,
            grants: self.config.grants.clone(),
            ..crate::WorkerConfig::default()
        };
        let worker = crate::Worker::new(self.store.clone(), self.sandbox.clone(), config);
        let mut worker = tokio::spawn(worker.run(shutdown.clone()));
        let stop_scheduler = CancellationToken::new();
        let scheduler = self.run(stop_scheduler.clone());
        tokio::pin!(scheduler);
        let (result, worker_ended) = tokio::select! {
            worker_ended = &mut worker => {
                stop_scheduler.cancel();
                (scheduler.await, worker_ended)
            }
            result = &mut scheduler => {
                shutdown.stop();
                (result, worker.await)
            }
        };
        match worker_ended {
            Ok(Ok(())) => result,
            Ok(Err(e)) => result.and(Err(e.into())),
            Err(e) => result.and(Err(SchedulerError::Store(StoreError::Invalid(format!("the worker crashed: {e}"))))),
        }
    }

    /// Runs until `shutdown` is cancelled. Tries running on workers go on; their reports are
    /// judged by the next scheduler.
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
        let mut reported = self.store.wakeups(Topic::Reported);
        self.recover().await?;
        let mut next_poll = Instant::now();
        let mut judge = true;
        loop {
            match self.turn(&mut next_poll, &mut judge).await {
                Ok(()) => {}
                // Another process moved a row this scheduler was about to move (a worker's claim
                // or report between a read and a write): nothing of that batch was committed, so
                // memory is read again from the store and decided afresh.
                Err(SchedulerError::Store(StoreError::LostRace(race))) => {
                    warn!("{}; reloading the active runs", StoreError::LostRace(race));
                    self.reload().await?;
                    judge = true;
                }
                Err(e) => return Err(e),
            }
            let wake_at = self.next_wake(next_poll);
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = self.events_rx.recv() => {
                    if let Some(Event::Wake) = event {
                        next_poll = Instant::now();
                    }
                    while self.events_rx.try_recv().is_ok() {}
                }
                changed = reported.changed() => {
                    if changed.is_ok() {
                        judge = true;
                    }
                }
                () = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
        self.store.remove_scheduler(&self.id).await?;
        Ok(())
    }

    /// One turn of the loop: look at the store if it is time, judge reported tries, advance,
    /// queue.
    async fn turn(&mut self, next_poll: &mut Instant, judge: &mut bool) -> Result<(), SchedulerError> {
        if Instant::now() >= *next_poll {
            self.poll().await?;
            *next_poll = Instant::now() + self.config.poll_interval;
            *judge = true;
        }
        // Judgments, what they unblock, and the queueing of it: one transaction a turn.
        let mut changes = Vec::new();
        if std::mem::take(judge) {
            for report in self.store.reported_tries().await? {
                self.finished(report, &mut changes).await?;
            }
        }
        let finished = self.decide(&mut changes);
        self.dispatch(&mut changes).await?;
        self.store.apply(&changes).await?;
        self.ended(finished);
        self.load_created_runs().await?;
        self.send_notices();
        Ok(())
    }

    /// Reads every active run again from the store (after a lost race).
    async fn reload(&mut self) -> Result<(), SchedulerError> {
        self.runs.clear();
        self.ready = ReadyQueue::default();
        self.timers = Timers::default();
        self.unsent.clear();
        self.created.clear();
        self.recover().await
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
            // A worker's claim between reading a run and writing the action's changes loses the
            // race: read the runs again and carry the action out afresh.
            let mut attempts = 0;
            let result = loop {
                match self.carry_out(&row.payload, &row.requested_by).await {
                    Err(SchedulerError::Store(StoreError::LostRace(race))) if attempts < 5 => {
                        debug!("{}; carrying the action out again", StoreError::LostRace(race));
                        attempts += 1;
                        self.reload().await?;
                    }
                    other => break other?,
                }
            };
            let (state, text) = match &result {
                Ok(summary) => (ActionState::Done, summary.as_str()),
                Err(message) => (ActionState::Failed, message.as_str()),
            };
            self.store.finish_action(row.id, state, text).await?;
            results.push((row.id, result));
        }
        if !results.is_empty() {
            // A clear or mark of a running instance reaches its worker now, not at its next renewal.
            self.store.notify(Topic::Kill).await?;
        }
        Ok(results)
    }

    fn next_wake(&self, next_poll: Instant) -> Instant {
        if !self.dirty.is_empty() {
            // Runs to advance (created by this turn's commit, say): at once.
            return Instant::now();
        }
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
        // Instances another process decided (a command line that carried out a clear while
        // this scheduler ran) are already scheduled: deciding them again will not queue them,
        // so they go to the ready queue here. (At recovery they are reset and decided anew; the
        // queue then skips these entries, as it skips any whose instance is no longer scheduled.)
        for (task_id, map_index, state) in run.instances() {
            if state == TaskState::Scheduled {
                let priority = run.graph.task(&task_id).map_or(1, |t| t.priority_weight);
                self.ready.push(priority, TaskKey { run_id: run.row.run_id.clone(), task_id, map_index });
            }
        }
        self.dirty.insert(run.row.run_id.clone());
        self.runs.insert(run.row.run_id.clone(), run);
        Ok(())
    }

    /// At start (or after a lost race): loads the active runs as the store has them. Tries
    /// running on workers are left alone (recovery is by lease: [`Scheduler::expire_leases`]);
    /// queued instances stay queued for workers; scheduled ones are decided again.
    async fn recover(&mut self) -> Result<(), SchedulerError> {
        for row in self.store.active_runs().await? {
            self.load_run(row).await?;
        }
        let at = now();
        let mut changes = Vec::new();
        for run in self.runs.values_mut() {
            for (task_id, map_index, state) in run.instances() {
                if state == TaskState::Scheduled {
                    run.set_state(&task_id, map_index, StateChange::to(TaskState::None), at, &mut changes);
                }
            }
        }
        self.store.apply(&changes).await?;
        Ok(())
    }

    /// Tries whose worker stopped renewing their lease (killed, its machine gone) are recorded as
    /// interrupted, and go to retry or fail per their policy. Each is committed alone: a report
    /// that arrives first wins, and that try is judged instead.
    async fn expire_leases(&mut self) -> Result<(), SchedulerError> {
        let at = now();
        for expired in self.store.expired_leases(at).await? {
            let key = TaskKey {
                run_id: expired.run_id.clone(),
                task_id: expired.task_id.clone(),
                map_index: expired.map_index,
            };
            let Some(run) = self.runs.get_mut(&key.run_id) else { continue };
            let graph = run.graph.clone();
            let Some(task) = graph.task(&key.task_id) else { continue };
            let try_number = u32::try_from(expired.try_number).unwrap_or(0);
            run.claimed(&key.task_id, key.map_index, try_number, at);
            let Some(mem) = run.ti_mut(&key.task_id, key.map_index) else { continue };
            if mem.state() != TaskState::Running || mem.try_number != try_number {
                continue;
            }
            mem.failed_tries += 1;
            let (next, next_try_at) = after_failure(task, mem.failed_tries, at);
            let owner = expired.lease_owner.as_deref().unwrap_or("no worker");
            warn!(run_id = %key.run_id, task_id = %key.task_id, map_index = key.map_index, try_number, owner,
                "the lease of a running try expired: recorded as interrupted, now {next}");
            let end = TryEnd {
                run_id: key.run_id.clone(),
                task_id: key.task_id.clone(),
                map_index: key.map_index,
                try_number: expired.try_number,
                outcome: "interrupted".into(),
                message: format!("interrupted: its worker ({owner}) stopped renewing its lease before it ended"),
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
            let mut changes = Vec::new();
            run.end_try(end, None, &mut changes);
            match self.store.apply(&changes).await {
                Ok(()) => {}
                Err(StoreError::LostRace(_)) => {
                    // Reported in the meantime: memory is read again and the report judged.
                    self.reload().await?;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(at) = next_try_at {
                self.timers.push(at, key.clone());
            }
            self.dirty.insert(key.run_id.clone());
            self.unsent.push(Notice::TaskFinished {
                dag_id: graph.dag.id.clone(),
                run_id: key.run_id,
                task_id: key.task_id,
                map_index: key.map_index,
                try_number,
                state: next,
                message: "interrupted".into(),
                wall: Duration::ZERO,
            });
        }
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
        self.expire_leases().await?;
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
                    experiment: None,
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
        let mut changes = Vec::new();
        let finished = self.decide(&mut changes);
        self.store.apply(&changes).await?;
        self.ended(finished);
        self.send_notices();
        Ok(())
    }

    /// The decisions of [`Scheduler::advance`], to commit with the rest of a turn: returns the
    /// runs that end, for [`Scheduler::ended`] once committed.
    fn decide(&mut self, changes: &mut Vec<Change>) -> Vec<(String, RunState)> {
        let at = now();
        self.start_queued_runs(at, changes);
        self.due_retries(at, changes);
        let dirty = std::mem::take(&mut self.dirty);
        let mut finished = Vec::new();
        for run_id in dirty {
            let paused = self.runs.get(&run_id).is_some_and(|run| self.paused(&run.row.dag_id));
            let Some(run) = self.runs.get_mut(&run_id) else { continue };
            if run.row.state != RunState::Running || paused {
                continue;
            }
            let before = changes.len();
            run.advance(at, changes, &mut self.ready);
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
                run.set_run_state(state, at, changes);
                finished.push((run_id, state));
            }
        }
        finished
    }

    /// Runs whose end is committed leave the working set.
    fn ended(&mut self, finished: Vec<(String, RunState)>) {
        for (run_id, state) in finished {
            if let Some(run) = self.runs.remove(&run_id) {
                info!(dag_id = %run.row.dag_id, run_id, %state, "run ended");
                crate::telemetry::run_ended(state);
                self.unsent.push(Notice::RunFinished { dag_id: run.row.dag_id, run_id, state });
            }
        }
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

    /// Queues every ready instance, highest priority first, each with its job (plugin, context,
    /// limits): workers claim them as pools and `max_active_tasks` allow across the cluster. An
    /// instance whose pool does not exist, or is smaller than it needs, fails here.
    async fn dispatch(&mut self, changes: &mut Vec<Change>) -> Result<(), SchedulerError> {
        let at = now();
        let mut deferred = Vec::new();
        while let Some((priority, key)) = self.ready.pop() {
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
            let unfit = match self.pools.get(&task.pool).copied() {
                None => {
                    Some(format!("no pool `{}` (create it with: sandflow pools set {} SLOTS)", task.pool, task.pool))
                }
                Some(size) if task.pool_slots > size => {
                    Some(format!("needs {} slots of pool `{}`, which has {size}", task.pool_slots, task.pool))
                }
                Some(_) => None,
            };
            if let Some(reason) = unfit {
                if let Some(run) = self.runs.get_mut(&key.run_id) {
                    let failed = StateChange::because(TaskState::Failed, reason);
                    run.set_state(&key.task_id, key.map_index, failed, at, changes);
                }
                self.dirty.insert(key.run_id.clone());
                continue;
            }
            let dag_runs = self.watched_runs(task).await?;
            let run = self.runs.get_mut(&key.run_id).expect("checked above");
            let inputs = run.instance_inputs(task, key.map_index);
            let conf = run.instance_conf(task, key.map_index);
            let try_number = run.ti(&key.task_id, key.map_index).map_or(1, |m| m.try_number + 1);
            let map_item = run.ti(&key.task_id, key.map_index).and_then(|m| m.map_item.clone());
            let context =
                build_context(run, task, key.map_index, map_item, inputs, conf.as_ref(), try_number, dag_runs);
            let job = QueuedJob {
                plugin_id: task.plugin_id.clone(),
                pool: task.pool.clone(),
                pool_slots: i64::from(task.pool_slots),
                priority: task.priority_weight,
                max_active_tasks: i64::from(max_active_tasks),
                job: serde_json::to_value(crate::worker::JobSpec {
                    context,
                    limits: task_limits(task),
                    grants: self.config.grants.job_grants(task),
                })
                .unwrap_or(Value::Null),
            };
            run.queue(&key, job, at, changes);
        }
        for (priority, key) in deferred {
            self.ready.push(priority, key);
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

    /// A reported try: decide the task instance's new state, and queue the changes.
    async fn finished(&mut self, report: ReportedTry, changes: &mut Vec<Change>) -> Result<(), SchedulerError> {
        let at = now();
        let key =
            TaskKey { run_id: report.run_id.clone(), task_id: report.task_id.clone(), map_index: report.map_index };
        let try_number = u32::try_from(report.try_number).unwrap_or(0);
        let wall = Duration::from_micros(u64::try_from(report.wall_us).unwrap_or(0));
        if !self.runs.contains_key(&key.run_id) {
            // A run this scheduler has not loaded (just created elsewhere): load it first.
            match self.store.run(&key.run_id).await? {
                Some(row) if !row.state.is_finished() => self.load_run(row).await?,
                _ => return Ok(()),
            }
        }
        let Some(run) = self.runs.get_mut(&key.run_id) else { return Ok(()) };
        run.claimed(&key.task_id, key.map_index, try_number, at - chrono::Duration::from_std(wall).unwrap_or_default());
        let run = &self.runs[&key.run_id];
        let graph = run.graph.clone();
        let Some(task) = graph.task(&key.task_id) else { return Ok(()) };
        let dag_id = run.row.dag_id.clone();
        let current = run
            .ti(&key.task_id, key.map_index)
            .is_some_and(|m| m.state() == TaskState::Running && m.try_number == try_number);
        if !current {
            // Memory is the store as loaded plus this scheduler's own committed moves, and a claim
            // is caught up above: a mismatch here is a bug. Judging it anyway could undo a move;
            // reloading could loop. It is left, named, for an operator (a restart reloads).
            let found = run.ti(&key.task_id, key.map_index).map(|m| (m.state(), m.try_number));
            tracing::error!(run_id = %key.run_id, task_id = %key.task_id, map_index = key.map_index, try_number,
                ?found, "a reported try that this scheduler does not know as running: not judged");
            return Ok(());
        }

        let ended = Ended::of(&report);
        let decision = match &ended {
            Ended::Success(result) => self.judge(run, task, result, at),
            Ended::Killed => Decision::Fail { message: "killed".into(), retry: false, outcome: None },
            Ended::Failed { message } => Decision::Fail { message: message.clone(), retry: true, outcome: None },
        };
        let mut decision = decision;
        let mut triggered = Vec::new();
        if let (Decision::Success { .. }, Ended::Success(result)) = (&decision, &ended) {
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
                let (state, next) =
                    if retry { after_failure(task, mem.failed_tries, at) } else { (TaskState::Failed, None) };
                let name = outcome.map_or_else(|| report.outcome.clone(), str::to_string);
                (state, next, format!("{message} (plugin {})", report.plugin_id), name, None, None)
            }
        };
        let end = TryEnd {
            run_id: key.run_id.clone(),
            task_id: key.task_id.clone(),
            map_index: key.map_index,
            try_number: i64::from(try_number),
            outcome: outcome_name,
            message: message.clone(),
            log: String::new(),
            fuel_used: 0,
            peak_memory: 0,
            wall,
            at,
            state: Some(state),
            output: output.clone(),
            metrics,
            next_try_at,
        };
        run.end_judged(end, output, changes);
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
            wall,
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
                experiment: None,
                audit: None,
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

/// How a reported try ended, as the judge reads it.
enum Ended {
    Success(TaskResult),
    Killed,
    Failed { message: String },
}

impl Ended {
    fn of(report: &ReportedTry) -> Ended {
        match report.outcome.as_str() {
            "success" => match report.result.clone().map(serde_json::from_value::<TaskResult>) {
                Some(Ok(result)) => Ended::Success(result),
                Some(Err(e)) => Ended::Failed { message: format!("the reported result does not parse: {e}") },
                None => Ended::Failed { message: "a success was reported without its result".into() },
            },
            "killed" => Ended::Killed,
            // A try its worker's stop cut short: retried per its policy, as one whose lease
            // expired (`expire_leases`), but judged from its report, with its log.
            sandflow_core::transition::outcome::INTERRUPTED => Ended::Failed { message: report.message.clone() },
            _ => Ended::Failed { message: report.message.clone() },
        }
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// After the `failures`-th failed try since the last clear: up_for_retry with its time, or failed
/// (core's rule, as the states and retry time the working set records).
fn after_failure(task: &Task, failures: u32, at: DateTime<Utc>) -> (TaskState, Option<DateTime<Utc>>) {
    use sandflow_core::transition::Fate;
    match sandflow_core::transition::after_failure(RetryPolicy::of(task), failures, at) {
        Fate::Retry { at } => (TaskState::UpForRetry, Some(at)),
        _ => (TaskState::Failed, None),
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
) -> Value {
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
    serde_json::to_value(&context).unwrap_or(Value::Null)
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
