//! Claims: how work moves from the scheduler to workers on any machine, through the database only.
//!
//! 1. The scheduler commits an instance `queued` with its [`QueuedJob`] ([`Change::Queued`]): the
//!    plugin id, the try's context and limits, its pool and priority.
//! 2. A worker [`Store::claim`]s queued instances: in one serialized transaction it counts what
//!    runs in each pool and each DAG across the whole database, and moves the instances that fit
//!    `queued → running` under a lease it owns (PostgreSQL: `FOR UPDATE SKIP LOCKED` under a
//!    transaction advisory lock; SQLite: `BEGIN IMMEDIATE`, the single writer).
//! 3. While the try runs, the worker [`Store::renew_leases`]; an instance missing from the answer
//!    was cleared, marked or taken over, and the worker kills its try.
//! 4. The worker [`Store::report_tries`] the end: the try row gets its outcome; the instance stays
//!    `running`, marked reported, until the scheduler judges it ([`Store::reported_tries`], then
//!    [`Change::Judged`]). A report after the lease was taken over is refused.
//! 5. The scheduler records a try whose lease expired ([`Store::expired_leases`]) as interrupted.
//!
//! A clear or mark of a running instance leaves its lease in place: the rerun of a cleared
//! instance is claimable only once the old try's end is reported (or its lease expires), so two
//! tries of one instance never run at once, on any machines.
//!
//! Wake-ups ([`Store::notify`], [`Store::wakeups`]) make each step start the next at once: in one
//! process by a watch channel, across processes by PostgreSQL's `LISTEN/NOTIFY`; polling is only
//! the safety net.
//!
//! [`Change::Queued`]: crate::Change::Queued
//! [`Change::Judged`]: crate::Change::Judged

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::{Result, Store};

/// What a worker needs to run an instance's next try, committed with its move to `queued`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub plugin_id: String,
    pub pool: String,
    pub pool_slots: i64,
    pub priority: i64,
    /// The DAG's `max_active_tasks`, counted across the cluster at claim time.
    pub max_active_tasks: i64,
    /// The try's context and limits, as the executor reads them.
    pub job: Value,
}

/// What a worker asks for.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// The worker's id (the lease owner).
    pub worker: &'a str,
    /// The pools it serves; empty for all.
    pub pools: &'a [String],
    /// How many instances at most.
    pub limit: usize,
    /// How long its lease lasts unless renewed.
    pub lease: Duration,
}

/// What a claim took, and whether queued instances were left that did not fit then (a pool or a
/// DAG was full): worth claiming again as soon as a slot frees.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claim {
    pub claimed: Vec<Claimed>,
    pub more_waiting: bool,
}

/// An instance a worker has claimed: its try has started.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub plugin_id: String,
    pub job: Value,
    /// When the scheduler queued it (the claim's time minus this is the scheduling delay).
    pub queued_at: Option<DateTime<Utc>>,
}

/// A queued instance as a claim sees it (internal: the backends read them, [`choose`] picks).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Candidate {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub dag_id: String,
    pub pool: Option<String>,
    pub pool_slots: Option<i64>,
    pub max_active_tasks: Option<i64>,
}

/// How many queued instances a claim looks at for each one it may take: enough to look past the
/// head of the queue when its pool is full.
pub(crate) fn candidates_for(limit: usize) -> i64 {
    i64::try_from(limit.saturating_mul(8).max(64)).unwrap_or(i64::MAX)
}

/// The claim's counts read as (kind, name, number) rows: pool sizes (`size`), slots running in
/// each pool (`used`), tries running in each DAG (`dag`).
pub(crate) type Counts = (HashMap<String, i64>, HashMap<String, i64>, HashMap<String, i64>);

pub(crate) fn split_counts(rows: Vec<(String, String, i64)>) -> Counts {
    let (mut sizes, mut used, mut dags) = (HashMap::new(), HashMap::new(), HashMap::new());
    for (kind, name, n) in rows {
        match kind.as_str() {
            "size" => sizes.insert(name, n),
            "used" => used.insert(name, n),
            _ => dags.insert(name, n),
        };
    }
    (sizes, used, dags)
}

/// Which candidates fit (by index), in queue order (a try counts as running until it is
/// reported: its slot is free once its plugin has stopped): a pool's running slots plus the candidate's
/// stay within its size, a DAG's running tries within its `max_active_tasks`, the worker serves
/// the pool. A pool that does not exist takes nothing (the scheduler fails such instances before
/// queueing them; one deleted since waits for it to come back).
pub(crate) fn choose(
    candidates: &[Candidate],
    pool_sizes: &HashMap<String, i64>,
    mut pool_used: HashMap<String, i64>,
    mut dag_running: HashMap<String, i64>,
    request: &ClaimRequest<'_>,
) -> Vec<usize> {
    let mut chosen = Vec::new();
    for (index, c) in candidates.iter().enumerate() {
        if chosen.len() >= request.limit {
            break;
        }
        let pool = c.pool.as_deref().unwrap_or("default_pool");
        if !request.pools.is_empty() && !request.pools.iter().any(|p| p == pool) {
            continue;
        }
        let slots = c.pool_slots.unwrap_or(1);
        let used = pool_used.get(pool).copied().unwrap_or(0);
        if pool_sizes.get(pool).is_none_or(|size| used + slots > *size) {
            continue;
        }
        let running = dag_running.get(&c.dag_id).copied().unwrap_or(0);
        if c.max_active_tasks.is_some_and(|max| running >= max) {
            continue;
        }
        *pool_used.entry(pool.to_string()).or_default() += slots;
        *dag_running.entry(c.dag_id.clone()).or_default() += 1;
        chosen.push(index);
    }
    chosen
}

/// How a try ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    /// The sandbox's outcome name (`success`, `trap`, `killed`...).
    pub outcome: String,
    pub message: String,
    pub log: String,
    pub fuel_used: i64,
    pub peak_memory: i64,
    pub wall: Duration,
    /// On success: the plugin's result, for the scheduler to judge.
    pub result: Option<Value>,
    pub at: DateTime<Utc>,
    /// On success: the files the try left in `/out`, stored as blobs (recorded with the try).
    pub artifacts: Vec<crate::NewArtifact>,
    /// What the try was given, for replay (context, plugin, limits, seed, clock, inputs, HTTP).
    pub record: Option<Value>,
}

/// What became of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportFate {
    /// Recorded; the scheduler judges it next.
    Accepted,
    /// The try is recorded, but its instance had moved on (cleared or marked while it ran).
    Orphaned,
    /// Refused: the try had already ended (its lease expired and it was recorded interrupted).
    Refused,
}

/// A reported try, for the scheduler to judge.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReportedTry {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub plugin_id: String,
    pub outcome: String,
    pub message: String,
    pub wall_us: i64,
    #[sqlx(json(nullable))]
    pub result: Option<Value>,
}

/// A running try whose lease has expired.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExpiredLease {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub lease_owner: Option<String>,
}

/// A try a worker still holds after renewing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, sqlx::FromRow)]
pub struct HeldTry {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
}

/// A worker as it says it is alive.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub concurrency: usize,
    pub pools: Vec<String>,
    pub started_at: DateTime<Utc>,
}

/// What a wake-up is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// Instances were queued: workers claim.
    Queued,
    /// Tries were reported: the scheduler judges.
    Reported,
    /// Running instances were cleared or marked: workers renew their leases now, and kill the
    /// tries they no longer hold.
    Kill,
}

impl Topic {
    /// The PostgreSQL channel.
    pub(crate) fn channel(self) -> &'static str {
        match self {
            Topic::Queued => "sandflow_queued",
            Topic::Reported => "sandflow_reported",
            Topic::Kill => "sandflow_kill",
        }
    }

    pub(crate) fn of_channel(channel: &str) -> Option<Topic> {
        match channel {
            "sandflow_queued" => Some(Topic::Queued),
            "sandflow_reported" => Some(Topic::Reported),
            "sandflow_kill" => Some(Topic::Kill),
            _ => None,
        }
    }
}

/// The wake-ups of one store handle's process: a counter per topic that only grows, so a
/// subscriber that was busy when it moved sees it moved (no lost wake-up).
pub(crate) struct Wakeups {
    queued: watch::Sender<u64>,
    reported: watch::Sender<u64>,
    kill: watch::Sender<u64>,
    listening: std::sync::Once,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups {
            queued: watch::channel(0).0,
            reported: watch::channel(0).0,
            kill: watch::channel(0).0,
            listening: std::sync::Once::new(),
        }
    }
}

impl Wakeups {
    pub(crate) fn bump(&self, topic: Topic) {
        let sender = match topic {
            Topic::Queued => &self.queued,
            Topic::Reported => &self.reported,
            Topic::Kill => &self.kill,
        };
        sender.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Store {
    /// Claims up to `request.limit` queued instances that fit their pools and DAGs' limits across
    /// the whole database, starting their tries under `request.worker`'s lease.
    pub async fn claim(&self, request: &ClaimRequest<'_>) -> Result<Claim> {
        if request.limit == 0 {
            return Ok(Claim::default());
        }
        self.backend.claim(request, Utc::now()).await
    }

    /// Renews the worker's leases for `lease` more, and says it is alive; returns the tries it
    /// still holds (a try missing was cleared, marked, or taken over: kill it).
    pub async fn renew_leases(&self, worker: &WorkerInfo, lease: Duration) -> Result<Vec<HeldTry>> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::seconds(10));
        self.backend.renew_leases(worker, now, until).await
    }

    /// A worker stops: its row goes (its leases expire on their own if it still held any).
    pub async fn remove_worker(&self, id: &str) -> Result<()> {
        self.backend.remove_worker(id).await
    }

    /// The workers that renewed within `max_age`.
    pub async fn live_workers(&self, max_age: Duration) -> Result<Vec<WorkerInfo>> {
        let since = Utc::now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::zero());
        self.backend.live_workers(since).await
    }

    /// Records how `worker`'s tries ended, in one transaction, and wakes the scheduler; returns
    /// what became of each.
    pub async fn report_tries(&self, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>> {
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let fates = self.backend.report_tries(worker, reports).await?;
        if fates.contains(&ReportFate::Accepted) {
            self.wakeups.bump(Topic::Reported);
        }
        if fates.contains(&ReportFate::Orphaned) {
            // A cleared instance's rerun waited for this try to end: claimable now.
            self.wakeups.bump(Topic::Queued);
        }
        Ok(fates)
    }

    /// The reported tries waiting to be judged.
    pub async fn reported_tries(&self) -> Result<Vec<ReportedTry>> {
        self.backend.reported_tries().await
    }

    /// Running tries whose lease expired before `at`.
    pub async fn expired_leases(&self, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>> {
        self.backend.expired_leases(at).await
    }

    /// Wakes whoever waits on `topic`, in this process and (on PostgreSQL) in every other.
    pub async fn notify(&self, topic: Topic) -> Result<()> {
        self.wakeups.bump(topic);
        self.backend.notify(topic).await
    }

    /// A receiver that changes whenever `topic` is notified (here or, on PostgreSQL, anywhere).
    pub fn wakeups(&self, topic: Topic) -> watch::Receiver<u64> {
        self.wakeups.listening.call_once(|| self.backend.listen(self.wakeups.clone()));
        match topic {
            Topic::Queued => self.wakeups.queued.subscribe(),
            Topic::Reported => self.wakeups.reported.subscribe(),
            Topic::Kill => self.wakeups.kill.subscribe(),
        }
    }
}
