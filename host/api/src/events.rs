//! The event stream: run and task state changes, from whichever process made them.
//!
//! One poller per server reads the store (active runs and their task instances) every
//! [`POLL`] while anyone listens, and broadcasts what changed since the last read; every
//! subscriber filters the broadcast. Reading the store rather than the scheduler's in-process
//! notices makes the stream the same in `standalone` and in a `server` whose scheduler and
//! workers run elsewhere, and costs the same whatever the number of subscribers. A change made
//! and undone within one poll is not seen; a run's end always is (its final state is read once
//! it leaves the active set), and a subscriber to one run first gets that run as it stands.

use std::collections::HashMap;
use std::time::Duration;

use sandflow_store::Store;
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the store is read while someone listens.
pub const POLL: Duration = Duration::from_millis(250);

/// A state change.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateEvent {
    /// A run's state.
    Run {
        dag_id: String,
        run_id: String,
        #[schema(value_type = String)]
        state: sandflow_core::state::RunState,
    },
    /// A task instance's state.
    Task {
        dag_id: String,
        run_id: String,
        task_id: String,
        map_index: i64,
        #[schema(value_type = String)]
        state: sandflow_core::state::TaskState,
        try_number: i64,
    },
}

impl StateEvent {
    /// The run it is about.
    pub fn run_id(&self) -> &str {
        match self {
            StateEvent::Run { run_id, .. } | StateEvent::Task { run_id, .. } => run_id,
        }
    }

    /// The DAG it is about.
    pub fn dag_id(&self) -> &str {
        match self {
            StateEvent::Run { dag_id, .. } | StateEvent::Task { dag_id, .. } => dag_id,
        }
    }
}

/// The poller and its broadcast.
pub struct EventHub {
    store: Store,
    tx: broadcast::Sender<StateEvent>,
}

type TaskKey = (String, i64);

/// How many of the newest runs each poll reads to find runs that began and ended between two
/// polls (never active when one looked). Of more new runs than this in one poll, the oldest
/// ones' ends are not reported (their tasks' are, if they were seen running).
const NEWEST: i64 = 200;
/// How far back (before the previous poll) an end still counts as new: clocks of the processes
/// that write ends may differ a little.
const END_MARGIN: chrono::Duration = chrono::Duration::seconds(2);

#[derive(Default)]
struct Seen {
    runs: HashMap<String, (String, sandflow_core::state::RunState)>,
    tasks: HashMap<String, HashMap<TaskKey, (sandflow_core::state::TaskState, i64)>>,
    /// Runs whose end was reported, and when: not reported again.
    ended: HashMap<String, chrono::DateTime<chrono::Utc>>,
    /// When the previous poll began.
    since: Option<chrono::DateTime<chrono::Utc>>,
}

impl EventHub {
    pub(crate) fn new(store: Store) -> EventHub {
        let (tx, _) = broadcast::channel(16_384);
        EventHub { store, tx }
    }

    /// A new subscription to every change.
    pub fn subscribe(&self) -> broadcast::Receiver<StateEvent> {
        self.tx.subscribe()
    }

    /// Polls until `stop`, while anyone listens.
    pub(crate) async fn run(&self, stop: CancellationToken) {
        let mut seen: Option<Seen> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL) => {}
            }
            if self.tx.receiver_count() == 0 {
                // Nobody listens: start afresh when someone does (no flood of old changes).
                seen = None;
                continue;
            }
            let emit = seen.is_some();
            let current = seen.get_or_insert_with(Seen::default);
            if let Err(e) = self.poll(current, emit).await {
                tracing::warn!("reading the store for the event stream: {e}");
            }
        }
    }

    async fn poll(&self, seen: &mut Seen, emit: bool) -> Result<(), sandflow_store::StoreError> {
        let now = chrono::Utc::now();
        let since = seen.since.replace(now).unwrap_or(now) - END_MARGIN;
        let active = self.store.active_runs().await?;
        let mut rows: Vec<sandflow_store::RunRow> = active;
        let active_ids: std::collections::HashSet<String> = rows.iter().map(|r| r.run_id.clone()).collect();
        // Runs that left the active set since the last poll: their final state.
        for run_id in seen.runs.keys().filter(|id| !active_ids.contains(*id)).cloned().collect::<Vec<_>>() {
            if let Some(row) = self.store.run(&run_id).await? {
                rows.push(row);
            }
        }
        // Runs that began and ended between two polls.
        let newest = self.store.runs(None, NEWEST).await?;
        for run in newest {
            let known = active_ids.contains(&run.run_id)
                || seen.runs.contains_key(&run.run_id)
                || seen.ended.contains_key(&run.run_id);
            if !known && run.ended_at.is_some_and(|end| end >= since) {
                rows.push(run);
            }
        }
        let send = |event: StateEvent| {
            if emit {
                let _ = self.tx.send(event);
            }
        };
        for run in &rows {
            let tasks = self.store.task_instances(&run.run_id).await?;
            let known = seen.tasks.entry(run.run_id.clone()).or_default();
            for ti in tasks {
                let key = (ti.task_id.clone(), ti.map_index);
                if known.get(&key) != Some(&(ti.state, ti.try_number)) {
                    known.insert(key, (ti.state, ti.try_number));
                    send(StateEvent::Task {
                        dag_id: run.dag_id.clone(),
                        run_id: run.run_id.clone(),
                        task_id: ti.task_id,
                        map_index: ti.map_index,
                        state: ti.state,
                        try_number: ti.try_number,
                    });
                }
            }
            if seen.runs.get(&run.run_id).map(|(_, s)| *s) != Some(run.state) {
                send(StateEvent::Run { dag_id: run.dag_id.clone(), run_id: run.run_id.clone(), state: run.state });
            }
            seen.runs.insert(run.run_id.clone(), (run.dag_id.clone(), run.state));
        }
        // Ended runs are reported once, then forgotten.
        for run in rows.iter().filter(|r| !active_ids.contains(&r.run_id)) {
            seen.ended.insert(run.run_id.clone(), now);
        }
        seen.ended.retain(|_, at| *at >= since - END_MARGIN);
        seen.runs.retain(|id, _| active_ids.contains(id));
        seen.tasks.retain(|id, _| active_ids.contains(id));
        Ok(())
    }
}
