//! State changes, committed in batches: every one a guarded write that names the state it expects.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sandflow_core::state::{RunState, TaskState};
use serde_json::{Map, Value};

use crate::{NewRun, QueuedJob, Result, Store};

/// A state change the scheduler has decided on, to be committed before it takes effect. Each
/// names the state it expects the row to be in (`from`): a row found in any other state is a
/// lost race ([`StoreError::LostRace`](crate::StoreError::LostRace)), and nothing of its batch
/// is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A run goes `from → to` (`started_at` is set on running, `ended_at` on success or failure
    /// and cleared otherwise).
    RunState { run_id: String, from: RunState, to: RunState, at: DateTime<Utc> },
    /// A task instance goes `from → to` without a try starting or ending (scheduled, skipped,
    /// upstream_failed, up_for_retry becoming scheduled, a mapped task's aggregate...). `reason`,
    /// when given, replaces the instance's reason; `output`, when given, replaces its output (a
    /// mapped task's list of outputs).
    TaskState {
        run_id: String,
        task_id: String,
        map_index: i64,
        from: TaskState,
        to: TaskState,
        reason: Option<String>,
        output: Option<Value>,
        at: DateTime<Utc>,
    },
    /// A mapped task expands: one instance per item, map_index 0..n-1, state scheduled. An
    /// instance already there (from an earlier expansion) is taken over with its new item, unless
    /// it is queued or running: that is a lost race.
    Expand { run_id: String, task_id: String, items: Vec<Value>, at: DateTime<Utc> },
    /// A clear: the instance goes `from → none`, forgets its output, and gets its retries back.
    Reset { run_id: String, task_id: String, map_index: i64, from: TaskState, at: DateTime<Utc> },
    /// A try starts: the task instance goes `from → running` with this try number.
    TryStarted {
        run_id: String,
        task_id: String,
        map_index: i64,
        from: TaskState,
        try_number: i64,
        plugin_id: String,
        at: DateTime<Utc>,
    },
    /// An instance is queued for a worker to claim, with what the worker needs (`from` is
    /// `scheduled`).
    Queued { run_id: String, task_id: String, map_index: i64, from: TaskState, job: Box<QueuedJob>, at: DateTime<Utc> },
    /// The scheduler's judgment of a reported try: the instance (running that try, reported)
    /// moves to [`TryEnd::state`] with its output; the try row takes the judged outcome and
    /// message. Only `state`, `outcome`, `message`, `output`, `metrics`, `next_try_at` and `at`
    /// are read.
    Judged(Box<TryEnd>),
    /// A try ends (it must not have ended already), and, when [`TryEnd::state`] is given, its
    /// task instance moves there: guarded by the instance being `running` with that try number.
    TryEnded(Box<TryEnd>),
    /// A run is created, queued, with its task instances (state none); committed with the rest of
    /// the batch (a run a task's result triggers, with that try's end). A run of that id already
    /// there fails the whole batch with [`StoreError::RunExists`](crate::StoreError::RunExists).
    CreateRun { run: Box<NewRun>, task_ids: Vec<String> },
}

/// The end of a try (boxed in [`Change`]: it is the large variant).
#[derive(Debug, Clone, PartialEq)]
pub struct TryEnd {
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    /// The outcome's stable name (`success`, `fuel_exhausted`, `interrupted`...).
    pub outcome: String,
    /// The one-line message users see.
    pub message: String,
    pub log: String,
    pub fuel_used: i64,
    pub peak_memory: i64,
    pub wall: Duration,
    pub at: DateTime<Utc>,
    /// The task instance's new state (success, failed, up_for_retry...), from `running` with this
    /// try number; `None` records the try alone (a try that ended after its instance was cleared
    /// or marked), whatever the instance's state.
    pub state: Option<TaskState>,
    /// On success: the result's output and metrics.
    pub output: Option<Value>,
    pub metrics: Option<Map<String, Value>>,
    /// For up_for_retry: when the next try may start.
    pub next_try_at: Option<DateTime<Utc>>,
}

impl TryEnd {
    /// The wall time in microseconds, as stored.
    pub(crate) fn wall_us(&self) -> i64 {
        i64::try_from(self.wall.as_micros()).unwrap_or(i64::MAX)
    }
}

/// What a task instance's `ended_at` becomes when it moves to `state` without a try ending:
/// stamped when it has ended, kept otherwise.
pub(crate) fn ends(state: TaskState, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    state.is_finished().then_some(at)
}

impl Store {
    /// Commits `changes` in one transaction, in order: all of them, or none. A guarded write
    /// that finds its row in another state than it expects rolls the batch back and returns
    /// [`StoreError::LostRace`](crate::StoreError::LostRace) with what it found (read in the same
    /// transaction); the caller reloads and decides again.
    pub async fn apply(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        for change in changes {
            check_legal(change)?;
        }
        self.backend.apply(changes).await?;
        if changes.iter().any(|c| matches!(c, Change::Queued { .. })) {
            self.wakeups.bump(crate::Topic::Queued);
        }
        Ok(())
    }
}

/// Every task instance move in a batch must be one the state machine has: the store writes what
/// `sandflow_core::transition` allows, whoever the caller.
fn check_legal(change: &Change) -> Result<()> {
    use sandflow_core::transition::is_legal;
    let (run_id, task_id, map_index, from, to) = match change {
        Change::TaskState { run_id, task_id, map_index, from, to, .. } => (run_id, task_id, *map_index, *from, *to),
        Change::Reset { run_id, task_id, map_index, from, .. } => (run_id, task_id, *map_index, *from, TaskState::None),
        Change::TryStarted { run_id, task_id, map_index, from, .. } => {
            (run_id, task_id, *map_index, *from, TaskState::Running)
        }
        Change::Queued { run_id, task_id, map_index, from, .. } => {
            (run_id, task_id, *map_index, *from, TaskState::Queued)
        }
        Change::Judged(end) => match end.state {
            Some(to) => (&end.run_id, &end.task_id, end.map_index, TaskState::Running, to),
            None => return Ok(()),
        },
        Change::TryEnded(end) => match end.state {
            Some(to) => (&end.run_id, &end.task_id, end.map_index, TaskState::Running, to),
            None => return Ok(()),
        },
        Change::RunState { .. } | Change::Expand { .. } | Change::CreateRun { .. } => return Ok(()),
    };
    // A try starts only by an executor's claim of a queued instance (running → running is a
    // mapped parent reopened, never a try).
    let claim = matches!(change, Change::TryStarted { .. });
    if if claim { from == TaskState::Queued } else { is_legal(from, to) } {
        Ok(())
    } else {
        Err(crate::StoreError::IllegalTransition {
            run_id: run_id.clone(),
            task_id: task_id.clone(),
            map_index,
            from,
            to,
        })
    }
}
