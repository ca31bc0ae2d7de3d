//! A worker: claims queued task instances from the store, runs their tries in the sandbox, keeps
//! its leases alive while they run, and reports how each ended. It knows nothing of DAGs: a claim
//! brings the plugin id, the try's context and its limits; the plugin's bytes come from the store
//! by hash. `standalone` runs one in its own process; `sandflow worker` runs one anywhere.
//!
//! - **Leases.** Every claimed try is under this worker's lease, renewed every
//!   [`WorkerConfig::renew_every`]. A try missing from a renewal's answer was cleared, marked or
//!   taken over by a scheduler (its lease expired): the worker kills it. A worker that cannot
//!   reach the store for a whole lease kills its tries itself: they are being taken over.
//! - **Wake-ups.** A commit of queued instances wakes the worker at once (in this process, or by
//!   `LISTEN/NOTIFY` on PostgreSQL); it also polls, as the safety net.
//! - **Stopping** ([`Shutdown`]). A stopped worker claims nothing more, but keeps renewing its
//!   leases and reporting the tries that end, for up to [`WorkerConfig::shutdown_grace`]: a try
//!   that finishes in that time is reported as any other, so no result is lost to a restart. What
//!   still runs at the end of the grace (or at a second stop, [`Shutdown::kill`]) is killed and
//!   reported `interrupted` at once, as are claims that had not started: the scheduler retries
//!   them per their policy, as it does a try whose lease expired, without waiting for the lease.
//!   Only a worker that cannot reach the store leaves its tries to their leases.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sandflow_core::transition::outcome::INTERRUPTED;
use sandflow_sandbox::{human_duration, KillSwitch, Limits, LiveLog, Outcome, Sandbox, TryReport};
use sandflow_store::{ClaimRequest, Claimed, Report, ReportFate, Store, StoreError, Topic, WorkerInfo};
use serde_json::Value;
use tokio::task::JoinSet;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::executor::{Executor, Job};
use crate::grants::{record_json, GrantConfig, TryEnv};
use crate::shutdown::{Shutdown, Stopping};

/// How long a stopped worker gives its running tries to end by themselves: long enough for most
/// tries of a batch pipeline to finish, and short of systemd's 90 s before it kills a unit anyway
/// (a supervisor's stop timeout must be longer than the grace, or it kills the worker first).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long killed tries get to end before a stopping worker reports them interrupted itself: a
/// kill reaches a plugin within one epoch tick, so this is for a try stuck in the host.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Its id, unique in the cluster; `None` for `<hostname>-<pid>-<start>`.
    pub id: Option<String>,
    /// Tries running at once in this worker.
    pub concurrency: usize,
    /// The pools it serves; empty for all.
    pub pools: Vec<String>,
    /// How long a lease lasts unless renewed: how long a killed worker's tries wait before they
    /// are retried elsewhere.
    pub lease: Duration,
    /// How often leases are renewed (and kills noticed).
    pub renew_every: Duration,
    /// How often the store is polled for queued work without a wake-up.
    pub poll_interval: Duration,
    /// Once stopped, how long running tries may take to end by themselves before they are killed
    /// and reported interrupted.
    pub shutdown_grace: Duration,
    /// Where tries' directories and artifacts go, the secrets' key, the HTTP limits.
    pub grants: GrantConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            id: None,
            concurrency: 32,
            pools: Vec::new(),
            lease: Duration::from_secs(10),
            renew_every: Duration::from_millis(500),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            grants: GrantConfig::default(),
        }
    }
}

/// A job as the scheduler queues it (the JSON of [`sandflow_store::QueuedJob::job`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobSpec {
    /// The task context the plugin reads.
    pub context: Value,
    /// The try's limits.
    pub limits: Limits,
    /// What the try may touch (jobs queued before grants existed get the defaults).
    #[serde(default)]
    pub grants: crate::grants::JobGrants,
}

type Key = (String, String, i64);

struct Running {
    try_number: i64,
    kill: KillSwitch,
    /// Set when the worker's stop killed it: the message it is reported interrupted with.
    interrupted: Option<String>,
}

/// Claims and runs tries until stopped.
pub struct Worker {
    store: Store,
    /// The artifacts' blob store, or why it could not be opened (the worker then does not start).
    blobs: Result<sandflow_blobs::Blobs, String>,
    executor: Arc<Executor>,
    config: WorkerConfig,
    info: WorkerInfo,
}

impl Worker {
    /// A worker over `store`, running tries in `sandbox`.
    pub fn new(store: Store, sandbox: Sandbox, config: WorkerConfig) -> Worker {
        let started_at = Utc::now();
        let hostname = hostname();
        let id = config
            .id
            .clone()
            .unwrap_or_else(|| format!("{hostname}-{}-{}", std::process::id(), started_at.timestamp_micros()));
        let info = WorkerInfo {
            id,
            hostname,
            pid: std::process::id(),
            concurrency: config.concurrency.max(1),
            pools: config.pools.clone(),
            started_at,
        };
        let blobs = sandflow_blobs::Blobs::open(&config.grants.blobs).map_err(|e| e.to_string());
        Worker { executor: Arc::new(Executor::new(store.clone(), sandbox)), store, blobs, config, info }
    }

    /// This worker's id (its leases' owner).
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Runs until `shutdown` is stopped and its tries have ended (see [`Shutdown`]); fails only
    /// when the store cannot be reached for a whole lease (its tries are killed first).
    pub async fn run(self, shutdown: impl Into<Shutdown>) -> Result<(), StoreError> {
        let shutdown = shutdown.into();
        if let Err(e) = &self.blobs {
            return Err(StoreError::Invalid(format!("the artifact store {}: {e}", self.config.grants.blobs)));
        }
        let mut queued = self.store.wakeups(Topic::Queued);
        let mut kills = self.store.wakeups(Topic::Kill);
        let mut running: HashMap<Key, Running> = HashMap::new();
        // Claims of an instance whose previous try still runs here (cleared, being killed): they
        // start once it has ended and been reported, so tries of one instance never overlap here.
        let mut waiting: HashMap<Key, Claimed> = HashMap::new();
        let mut tries: JoinSet<(Key, i64, TryReport, Kept)> = JoinSet::new();
        let mut next_renew = Instant::now();
        let mut next_poll = Instant::now();
        let mut last_renewed = Instant::now();
        let mut want_claim = true;
        let mut more_waiting = false;
        // Once stopped: when the grace ends, then when the tries killed at its end must have ended.
        let mut grace_ends: Option<Instant> = None;
        let mut kill_ends: Option<Instant> = None;
        let (mut finished, mut interrupted) = (0, 0);
        info!(worker = %self.info.id, concurrency = self.info.concurrency, pools = ?self.info.pools, "worker started");
        let result = loop {
            if Instant::now() >= next_renew {
                match self.store.renew_leases(&self.info, self.config.lease).await {
                    Ok(held) => {
                        last_renewed = Instant::now();
                        let held: std::collections::HashSet<(Key, i64)> =
                            held.into_iter().map(|h| ((h.run_id, h.task_id, h.map_index), h.try_number)).collect();
                        for (key, try_) in &running {
                            if !held.contains(&(key.clone(), try_.try_number)) && !try_.kill.is_killed() {
                                info!(run_id = %key.0, task_id = %key.1, map_index = key.2, try_number = try_.try_number,
                                    "killing a try whose instance was cleared, marked or taken over");
                                try_.kill.kill();
                            }
                        }
                    }
                    Err(e) if last_renewed.elapsed() < self.config.lease => {
                        warn!("renewing leases: {e} (trying again)");
                    }
                    Err(e) => {
                        warn!("could not renew leases for a whole lease: killing this worker's tries");
                        break Err(e);
                    }
                }
                next_renew = Instant::now() + self.config.renew_every;
            }
            if grace_ends.is_none() && shutdown.is_stopped() {
                let grace = self.config.shutdown_grace;
                grace_ends = Some(Instant::now() + grace);
                // A claim that has not started is a try that never ran: the state machine has no
                // way back from `running` to `queued`, so it ends as interrupted, and the scheduler
                // queues the instance again per its policy.
                interrupted += waiting.len();
                let released: Vec<Report> = waiting.drain().map(|(_, claim)| not_started(&claim, Utc::now())).collect();
                self.report(released).await;
                info!(running = running.len(), grace = %human_duration(grace), "stopping: no more claims");
                shutdown.tell(Stopping::Draining { running: running.len(), grace });
            }
            if let Some(ends) = grace_ends {
                let now = Instant::now();
                if kill_ends.is_none() && !running.is_empty() && (now >= ends || shutdown.is_killed()) {
                    let asked = now < ends;
                    let grace = human_duration(self.config.shutdown_grace);
                    let message = if asked {
                        "interrupted: the worker was stopped and asked to kill its tries at once".to_string()
                    } else {
                        format!("interrupted: the worker was stopped (graceful shutdown deadline {grace} passed)")
                    };
                    for try_ in running.values_mut() {
                        if !try_.kill.is_killed() {
                            try_.interrupted = Some(message.clone());
                            try_.kill.kill();
                        }
                    }
                    info!(running = running.len(), asked, "stopping: killing the tries still running");
                    shutdown.tell(Stopping::Killing { running: running.len(), asked });
                    kill_ends = Some(now + KILL_WAIT);
                }
                if running.is_empty() {
                    break Ok(());
                }
                if kill_ends.is_some_and(|at| now >= at) {
                    // Tries that did not end when killed: reported from what is known of them.
                    let stuck: Vec<Report> = running
                        .drain()
                        .map(|(key, try_)| {
                            let message = try_.interrupted.unwrap_or_else(|| "interrupted".to_string());
                            let message =
                                format!("{message}; it had not stopped {} after its kill", human_duration(KILL_WAIT));
                            interrupted_report(key, try_.try_number, message, Utc::now())
                        })
                        .collect();
                    warn!(tries = stuck.len(), "stopping: tries did not end when killed; reported interrupted");
                    interrupted += stuck.len();
                    self.report(stuck).await;
                    break Ok(());
                }
            }
            let free = self.info.concurrency.saturating_sub(running.len() + waiting.len());
            if want_claim && free > 0 && grace_ends.is_none() {
                want_claim = false;
                next_poll = Instant::now() + self.config.poll_interval;
                let request = ClaimRequest {
                    worker: &self.info.id,
                    pools: &self.info.pools,
                    limit: free,
                    lease: self.config.lease,
                };
                match self.store.claim(&request).await {
                    Ok(claim) => {
                        // A full claim may have left more behind; queued work that did not fit
                        // (a full pool or DAG) is claimed again when a slot frees.
                        want_claim = claim.claimed.len() == free;
                        more_waiting = claim.more_waiting;
                        for claim in claim.claimed {
                            let key = (claim.run_id.clone(), claim.task_id.clone(), claim.map_index);
                            if running.contains_key(&key) {
                                waiting.insert(key, claim);
                            } else {
                                self.start(claim, &mut running, &mut tries);
                            }
                        }
                    }
                    Err(e) => warn!("claiming work: {e} (trying again at the next poll)"),
                }
            }
            let mut wake_at = next_renew.min(next_poll);
            if let Some(at) = kill_ends.or(grace_ends) {
                wake_at = wake_at.min(at);
            }
            tokio::select! {
                () = shutdown.stopped(), if grace_ends.is_none() => {}
                () = shutdown.killed(), if grace_ends.is_some() && kill_ends.is_none() => {}
                changed = queued.changed() => {
                    if changed.is_ok() {
                        want_claim = true;
                    }
                }
                changed = kills.changed() => {
                    if changed.is_ok() {
                        next_renew = Instant::now();
                    }
                }
                Some(joined) = tries.join_next(), if !tries.is_empty() => {
                    // Every try that has ended by now is reported in one transaction.
                    let mut ended = Vec::new();
                    let mut next = Some(joined);
                    while let Some(joined) = next {
                        match joined {
                            Ok(done) => ended.push(done),
                            Err(e) => warn!("a try's task failed: {e}"),
                        }
                        next = tries.try_join_next();
                    }
                    let at = Utc::now();
                    let mut reports = Vec::with_capacity(ended.len());
                    for (key, try_number, report, kept) in ended {
                        let killed_by_stop = running.remove(&key).and_then(|r| r.interrupted);
                        // A try that ended by itself as its kill came is reported as it ended.
                        let report = match killed_by_stop {
                            Some(message) if report.outcome == Outcome::Killed => {
                                interrupted += 1;
                                Report { outcome: INTERRUPTED.to_string(), message, ..report_of(key, try_number, report, at, kept) }
                            }
                            _ => {
                                if grace_ends.is_some() {
                                    finished += 1;
                                }
                                report_of(key, try_number, report, at, kept)
                            }
                        };
                        reports.push(report);
                    }
                    self.report(reports).await;
                    if !shutdown.is_stopped() {
                        let restart: Vec<Key> = waiting.keys().filter(|k| !running.contains_key(*k)).cloned().collect();
                        for key in restart {
                            if let Some(claim) = waiting.remove(&key) {
                                self.start(claim, &mut running, &mut tries);
                            }
                        }
                    }
                    // A freed slot is worth a claim only if work was left waiting; new work
                    // wakes the worker by itself.
                    want_claim |= more_waiting;
                }
                () = tokio::time::sleep_until(wake_at.into()) => {
                    if Instant::now() >= next_poll {
                        want_claim = true;
                    }
                }
            }
        };
        for try_ in running.values() {
            try_.kill.kill();
        }
        tries.shutdown().await;
        if !running.is_empty() || !waiting.is_empty() {
            info!(
                tries = running.len() + waiting.len(),
                "stopped with tries claimed: they are retried once their leases expire"
            );
        }
        if let Err(e) = self.store.remove_worker(&self.info.id).await {
            debug!("removing the worker's row: {e}");
        }
        if result.is_ok() {
            info!(finished, interrupted, "worker stopped");
            shutdown.tell(Stopping::Stopped { finished, interrupted });
        }
        result
    }

    fn start(
        &self,
        claim: Claimed,
        running: &mut HashMap<Key, Running>,
        tries: &mut JoinSet<(Key, i64, TryReport, Kept)>,
    ) {
        let key = (claim.run_id.clone(), claim.task_id.clone(), claim.map_index);
        let kill = KillSwitch::new();
        crate::telemetry::try_started(claim.queued_at, Utc::now());
        running.insert(key.clone(), Running { try_number: claim.try_number, kill: kill.clone(), interrupted: None });
        let executor = self.executor.clone();
        let store = self.store.clone();
        let blobs = self.blobs.clone().expect("checked when the worker started");
        let config = self.config.grants.clone();
        let span = info_span!("task_try", run_id = %claim.run_id, task_id = %claim.task_id,
            map_index = claim.map_index, try_number = claim.try_number, worker = %self.info.id);
        tries.spawn(
            async move {
                let (report, kept) = match job_of(&claim, kill) {
                    Ok((mut job, grants)) => {
                        let try_key =
                            (claim.run_id.as_str(), claim.task_id.as_str(), claim.map_index, claim.try_number);
                        match TryEnv::prepare(&config, &blobs, &store, try_key, &grants).await {
                            Ok(env) => {
                                job.grants = env.grants.clone();
                                let flusher = tokio::spawn(flush_log(
                                    store,
                                    key.clone(),
                                    claim.try_number,
                                    job.live.clone(),
                                    env.redactor.clone(),
                                ));
                                let mut report = executor.run(&job).await;
                                flusher.abort();
                                let mut record = env.record(&job.context, &job.limits, &report);
                                let redactor = env.redactor.clone();
                                let artifacts = env.finish(&blobs, &mut report).await;
                                redact(&mut report, &redactor);
                                record.ended(&report.outcome);
                                let record = record_json(&record, &redactor);
                                (report, Kept { artifacts, record })
                            }
                            Err(message) => (executor.host_error(&claim.plugin_id, message), Kept::default()),
                        }
                    }
                    Err(message) => (executor.host_error(&claim.plugin_id, message), Kept::default()),
                };
                (key, claim.try_number, report, kept)
            }
            .instrument(span),
        );
    }

    /// Reports ended tries in one transaction, retried while the leases would still be ours:
    /// losing a report would leave its try to be recorded as interrupted and run again.
    async fn report(&self, reports: Vec<Report>) {
        if reports.is_empty() {
            return;
        }
        for r in &reports {
            crate::telemetry::try_reported(&r.outcome, r.wall, r.fuel_used);
        }
        let deadline = Instant::now() + self.config.lease;
        loop {
            match self.store.report_tries(&self.info.id, &reports).await {
                Ok(fates) => {
                    for (report, fate) in reports.iter().zip(fates) {
                        match fate {
                            ReportFate::Accepted => {}
                            ReportFate::Orphaned => info!(run_id = %report.run_id, task_id = %report.task_id,
                                map_index = report.map_index, try_number = report.try_number,
                                "recorded a try whose instance was cleared or marked while it ran"),
                            ReportFate::Refused => warn!(run_id = %report.run_id, task_id = %report.task_id,
                                map_index = report.map_index, try_number = report.try_number,
                                "refused: this try's lease was taken over and it was recorded as interrupted"),
                        }
                    }
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    warn!("reporting tries: {e} (trying again)");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => {
                    warn!(
                        "could not report {} tries: {e}; their leases will expire and they will be retried",
                        reports.len()
                    );
                    return;
                }
            }
        }
    }
}

/// What a try leaves beside its report: its artifacts and its record.
#[derive(Default)]
struct Kept {
    artifacts: Vec<sandflow_store::NewArtifact>,
    record: Option<Value>,
}

/// Hides the try's secrets in everything it left: log, result, error messages.
pub(crate) fn redact(report: &mut TryReport, redactor: &sandflow_core::secrets::Redactor) {
    if redactor.is_empty() {
        return;
    }
    report.log = redactor.text(&report.log);
    let outcome = serde_json::to_value(&report.outcome).map(|v| redactor.json(&v));
    if let Ok(outcome) = outcome.and_then(serde_json::from_value) {
        report.outcome = outcome;
    }
}

fn report_of(key: Key, try_number: i64, report: TryReport, at: DateTime<Utc>, kept: Kept) -> Report {
    let (outcome, result, message) = match &report.outcome {
        Outcome::Success { result } => ("success", serde_json::to_value(result).ok(), "success".to_string()),
        other => (other.name(), None, other.to_string()),
    };
    Report {
        run_id: key.0,
        task_id: key.1,
        map_index: key.2,
        try_number,
        outcome: outcome.to_string(),
        message,
        log: report.log,
        fuel_used: i64::try_from(report.fuel_used).unwrap_or(i64::MAX),
        peak_memory: i64::try_from(report.peak_memory_bytes).unwrap_or(i64::MAX),
        wall: report.wall_time,
        result,
        at,
        artifacts: kept.artifacts,
        record: kept.record,
    }
}

/// The report of a try the worker's stop ended without a report of its own.
fn interrupted_report(key: Key, try_number: i64, message: String, at: DateTime<Utc>) -> Report {
    Report {
        run_id: key.0,
        task_id: key.1,
        map_index: key.2,
        try_number,
        outcome: INTERRUPTED.to_string(),
        message,
        log: String::new(),
        fuel_used: 0,
        peak_memory: 0,
        wall: Duration::ZERO,
        result: None,
        at,
        artifacts: Vec::new(),
        record: None,
    }
}

/// The report of a claim released by the worker's stop before its try started.
fn not_started(claim: &Claimed, at: DateTime<Utc>) -> Report {
    let key = (claim.run_id.clone(), claim.task_id.clone(), claim.map_index);
    let message = "interrupted: the worker was stopped before this try started".to_string();
    interrupted_report(key, claim.try_number, message, at)
}

/// How often a running try's log is written to the store, for the API's live view.
const LOG_FLUSH: Duration = Duration::from_secs(1);

/// Writes a running try's log and progress to the store every [`LOG_FLUSH`] while they change,
/// until aborted (the try's report then writes the whole log; the store ignores a late write to an
/// ended try).
async fn flush_log(store: Store, key: Key, try_number: i64, live: LiveLog, redactor: sandflow_core::secrets::Redactor) {
    let mut written = (0, None);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + LOG_FLUSH, LOG_FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(log) = live.so_far() else { continue };
        let log = redactor.text(&log);
        let progress = live.progress();
        if (log.len(), progress.as_ref()) == (written.0, written.1.as_ref()) {
            continue;
        }
        let running = sandflow_store::Running {
            log: &log,
            progress: progress.as_ref().map(|p| (f64::from(p.fraction), p.message.as_str())),
        };
        match store.write_running(&key.0, &key.1, key.2, try_number, &running).await {
            Ok(()) => written = (log.len(), progress),
            Err(e) => debug!("writing the log of a running try: {e}"),
        }
    }
}

/// The executor's job for a claim: its context and limits, as the scheduler queued them.
fn job_of(claim: &Claimed, kill: KillSwitch) -> Result<(Job, crate::grants::JobGrants), String> {
    let spec: JobSpec = serde_json::from_value(claim.job.clone())
        .map_err(|e| format!("the queued job of this try does not parse: {e}"))?;
    let context = serde_json::to_vec(&spec.context).map_err(|e| e.to_string())?;
    let job = Job {
        plugin_id: claim.plugin_id.clone(),
        context,
        limits: spec.limits,
        kill,
        live: LiveLog::new(),
        grants: Default::default(),
    };
    Ok((job, spec.grants))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_string())
}
