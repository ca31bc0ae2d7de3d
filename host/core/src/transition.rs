//! The task instance's state machine: [`transition`] decides every move of a task instance, and
//! the judge beside it ([`judge_success`], [`judge_failure`], [`lease_expired`], [`after_failure`])
//! decides what the end of a try means.
//!
//! Why one function. The scheduler used to write each move twice, once in its memory and once as a
//! store change, in some eighteen places, and nothing said which moves exist: a try's end could
//! overwrite an instance a user had just cleared, and a restart could reset a try another process
//! was running. Now a caller names what happened (a [`TaskEvent`]), asks `transition(from, &event)`,
//! commits the returned state with a guarded write (`... WHERE state = $from`), and only then
//! carries out the returned [`Effect`]s. A move the machine does not have is an
//! [`IllegalTransition`] naming the state and the event, never a silent write; the store checks
//! each guarded write against [`is_legal`], the same machine seen as pairs of states.
//!
//! Events name why an instance moves, not where it goes. `RuleSkipped`, `BranchSkipped` and
//! `EmptyExpansion` all lead from `none` to `skipped`, and `Marked` leads there from anywhere:
//! keeping them apart keeps the table readable and lets a log say why. Events that carry data carry
//! only what the state machine needs (a [`Verdict`], a [`Mark`], a [`MappedOutcome`]); reasons,
//! outputs and map items stay with the caller, which has them anyway.
//!
//! Effects are what must happen once the new state is committed, as a small fixed array
//! ([`Effects`], `Copy`, no allocation): every task instance moves through here several times, and
//! the scheduler's cost per event must not grow with anything. Three effects follow from the states
//! alone and are added the same way for every event: [`Effect::KillTry`] when a user or the
//! scheduler moves an instance away from `running` under a try, [`Effect::Unsettled`] when an
//! instance leaves a finished state, [`Effect::Settled`] when it enters one. Tallies of finished
//! upstream tasks (and of a mapped task's finished instances) stay right by following those two.
//!
//! What the machine cannot see. A mapped task's parent instance is `running` while its instances
//! run, but has no try of its own; the function cannot tell it from an instance whose try runs, so
//! callers send `TryEnded`, `LeaseExpired` and `Claimed` only to real tries and `MappedSettled`
//! only to parents. A try's end that arrives for an instance that is `running` again under a newer
//! try is refused by the store's guard on the try number, not here. `queued` needs no kill: an
//! executor's claim is itself a guarded write from `queued`, so once a clear or mark has moved the
//! instance no executor can claim it; an executor that won the race made it `running`, and then the
//! caller's guarded write loses, reads `running`, and gets [`Effect::KillTry`].
//!
//! The judge is here too, so that what a result means is decided by the same pure code everywhere
//! (the in-process executor, a worker on another machine, `dags test`). It takes a view of the
//! result ([`ResultView`]) rather than the SDK's type: the core depends on no plugin crate.

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::dag::{Task, TaskKind};
use crate::state::{RetryPolicy, TaskState};

// ---- events ----

/// Why a task instance moves: everything the scheduler, an executor or a user can do to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// Its trigger rule is met (or it is a mapped instance of a list, or one left in `none` by a
    /// clear of that instance): `none → scheduled`, waiting for a slot.
    Ready,
    /// A mapped task's parent expanded over a non-empty list, creating its instances:
    /// `none → running` until they have all ended (see [`TaskEvent::MappedSettled`]).
    Expanded,
    /// A mapped task's parent found an empty list: `none → skipped`.
    EmptyExpansion,
    /// A mapped task's parent could not resolve its list (`map_over` points at nothing, or at
    /// something that is not a list): `none → failed`.
    ExpansionFailed,
    /// Its trigger rule can no longer be met, and no upstream failure is the cause:
    /// `none → skipped`.
    RuleSkipped,
    /// A branch task upstream of it chose other tasks: `none → skipped`.
    BranchSkipped,
    /// An upstream failure makes its trigger rule unmeetable: `none → upstream_failed`.
    UpstreamFailed,
    /// The scheduler found it a slot (parallelism, pool, `max_active_tasks`) and hands it to the
    /// executors: `scheduled → queued`.
    Queued,
    /// The scheduler takes back an instance no executor has started (after a restart, the
    /// scheduled and queued instances of the old process are considered afresh):
    /// `scheduled | queued → none`. Its tries and failures are kept, unlike a clear's.
    Withdrawn,
    /// It can never run as configured: its pool does not exist, or has fewer slots than it takes:
    /// `scheduled | queued → failed`.
    CannotRun,
    /// An executor claims it and starts its next try under a lease: `queued → running`.
    Claimed,
    /// Its try ended and was judged: `running → success | up_for_retry | up_for_reschedule |
    /// failed`, as the verdict says.
    TryEnded(Verdict),
    /// Its try's lease expired (the worker stopped, its machine vanished): the try is recorded as
    /// `interrupted` and the instance goes `running → up_for_retry | failed` per its retry policy.
    /// The verdict is [`lease_expired`]'s; one that is not a failure is refused.
    LeaseExpired(Verdict),
    /// The wait of a retry or of a sensor's next poke is over:
    /// `up_for_retry | up_for_reschedule → scheduled`.
    RetryDue,
    /// Every instance of a mapped task has ended: its parent goes `running → success | failed |
    /// skipped` (see [`MappedTally::outcome`]).
    MappedSettled(MappedOutcome),
    /// One instance of a mapped task was cleared: its parent goes back to `running` (from
    /// `running`, `success`, `failed` or `skipped`) so that it settles again, its other instances as
    /// they were.
    Reopened,
    /// A user cleared it: any state but `removed` → `none`, killing a running try first; its
    /// output, retry wait and failure count are forgotten.
    Cleared,
    /// A user marked it: any state but `removed` → the mark's state, killing a running try first.
    Marked(Mark),
    /// It is no longer part of its run: a mapped instance whose index is past the end of its
    /// parent's new list. Any state but `removed` → `removed`, killing a running try first.
    Removed,
    /// A removed mapped instance whose index is in its parent's list again at a new expansion:
    /// `removed → scheduled`.
    Remapped,
}

/// A [`TaskEvent`] without its data: for errors, logs and tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// [`TaskEvent::Ready`].
    Ready,
    /// [`TaskEvent::Expanded`].
    Expanded,
    /// [`TaskEvent::EmptyExpansion`].
    EmptyExpansion,
    /// [`TaskEvent::ExpansionFailed`].
    ExpansionFailed,
    /// [`TaskEvent::RuleSkipped`].
    RuleSkipped,
    /// [`TaskEvent::BranchSkipped`].
    BranchSkipped,
    /// [`TaskEvent::UpstreamFailed`].
    UpstreamFailed,
    /// [`TaskEvent::Queued`].
    Queued,
    /// [`TaskEvent::Withdrawn`].
    Withdrawn,
    /// [`TaskEvent::CannotRun`].
    CannotRun,
    /// [`TaskEvent::Claimed`].
    Claimed,
    /// [`TaskEvent::TryEnded`].
    TryEnded,
    /// [`TaskEvent::LeaseExpired`].
    LeaseExpired,
    /// [`TaskEvent::RetryDue`].
    RetryDue,
    /// [`TaskEvent::MappedSettled`].
    MappedSettled,
    /// [`TaskEvent::Reopened`].
    Reopened,
    /// [`TaskEvent::Cleared`].
    Cleared,
    /// [`TaskEvent::Marked`].
    Marked,
    /// [`TaskEvent::Removed`].
    Removed,
    /// [`TaskEvent::Remapped`].
    Remapped,
}

impl EventKind {
    /// Every kind, for tables and exhaustive tests.
    pub const ALL: [EventKind; 20] = [
        EventKind::Ready,
        EventKind::Expanded,
        EventKind::EmptyExpansion,
        EventKind::ExpansionFailed,
        EventKind::RuleSkipped,
        EventKind::BranchSkipped,
        EventKind::UpstreamFailed,
        EventKind::Queued,
        EventKind::Withdrawn,
        EventKind::CannotRun,
        EventKind::Claimed,
        EventKind::TryEnded,
        EventKind::LeaseExpired,
        EventKind::RetryDue,
        EventKind::MappedSettled,
        EventKind::Reopened,
        EventKind::Cleared,
        EventKind::Marked,
        EventKind::Removed,
        EventKind::Remapped,
    ];

    /// The name in logs and errors: `try_ended`, `lease_expired`...
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Ready => "ready",
            EventKind::Expanded => "expanded",
            EventKind::EmptyExpansion => "empty_expansion",
            EventKind::ExpansionFailed => "expansion_failed",
            EventKind::RuleSkipped => "rule_skipped",
            EventKind::BranchSkipped => "branch_skipped",
            EventKind::UpstreamFailed => "upstream_failed",
            EventKind::Queued => "queued",
            EventKind::Withdrawn => "withdrawn",
            EventKind::CannotRun => "cannot_run",
            EventKind::Claimed => "claimed",
            EventKind::TryEnded => "try_ended",
            EventKind::LeaseExpired => "lease_expired",
            EventKind::RetryDue => "retry_due",
            EventKind::MappedSettled => "mapped_settled",
            EventKind::Reopened => "reopened",
            EventKind::Cleared => "cleared",
            EventKind::Marked => "marked",
            EventKind::Removed => "removed",
            EventKind::Remapped => "remapped",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TaskEvent {
    /// The event without its data.
    pub fn kind(&self) -> EventKind {
        match self {
            TaskEvent::Ready => EventKind::Ready,
            TaskEvent::Expanded => EventKind::Expanded,
            TaskEvent::EmptyExpansion => EventKind::EmptyExpansion,
            TaskEvent::ExpansionFailed => EventKind::ExpansionFailed,
            TaskEvent::RuleSkipped => EventKind::RuleSkipped,
            TaskEvent::BranchSkipped => EventKind::BranchSkipped,
            TaskEvent::UpstreamFailed => EventKind::UpstreamFailed,
            TaskEvent::Queued => EventKind::Queued,
            TaskEvent::Withdrawn => EventKind::Withdrawn,
            TaskEvent::CannotRun => EventKind::CannotRun,
            TaskEvent::Claimed => EventKind::Claimed,
            TaskEvent::TryEnded(_) => EventKind::TryEnded,
            TaskEvent::LeaseExpired(_) => EventKind::LeaseExpired,
            TaskEvent::RetryDue => EventKind::RetryDue,
            TaskEvent::MappedSettled(_) => EventKind::MappedSettled,
            TaskEvent::Reopened => EventKind::Reopened,
            TaskEvent::Cleared => EventKind::Cleared,
            TaskEvent::Marked(_) => EventKind::Marked,
            TaskEvent::Removed => EventKind::Removed,
            TaskEvent::Remapped => EventKind::Remapped,
        }
    }
}

/// The state a user marks an instance with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mark {
    /// Marked `success`.
    Success,
    /// Marked `failed`.
    Failed,
}

impl Mark {
    /// The state the mark sets.
    pub fn state(self) -> TaskState {
        match self {
            Mark::Success => TaskState::Success,
            Mark::Failed => TaskState::Failed,
        }
    }
}

// ---- effects ----

/// What the caller must do once a transition is committed, in the order [`Effects`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// A try may be running: ask its executor to kill it (a kill request in the database, which
    /// reaches a worker on any machine). The killed try's end is recorded alone, leaving the
    /// instance as the event set it. A mapped parent has no try: the request finds nothing.
    KillTry,
    /// The instance left a finished state: take it out of the tallies that counted it (its
    /// downstream tasks' finished upstreams, its mapped parent's finished instances), and a run
    /// that had ended is running again.
    Unsettled,
    /// It waits for a slot: put it in the ready queue, where parallelism, its pool and its DAG's
    /// `max_active_tasks` decide when it is queued.
    AwaitSlot,
    /// It can be claimed: wake the executors (a channel in process, `NOTIFY` across processes).
    WakeExecutors,
    /// Its next try starts: the try number goes up by one, the try's start is recorded, the
    /// instance's first-try time is set if unset, and the plugin runs under the claim's lease.
    StartTry,
    /// Its try ended: record the end with the verdict's outcome name and message.
    EndTry,
    /// The try counts as failed: one more failure since the last clear (the input of the retry
    /// policy's next decision).
    CountFailure,
    /// It waits until this time (a retry's delay, a sensor's next poke): keep it as the instance's
    /// `next_try_at` and wake the scheduler then, to send [`TaskEvent::RetryDue`]. An instance out
    /// of `up_for_retry` and `up_for_reschedule` has no `next_try_at`.
    RetryAt(DateTime<Utc>),
    /// A clear: forget the output, the retry wait, the first-try time and the failure count; tries
    /// before this point are counted as before the clear (`tries_before_clear = try_number`).
    Forget,
    /// The instance entered a finished state (or changed from one finished state to another):
    /// count it in the tallies of what waits on it, then look at its downstream tasks (or its
    /// mapped parent) and at its run's outcome.
    Settled,
}

/// The effects of one transition: a few [`Effect`]s in a fixed array, `Copy` and never
/// allocated. Read it as a slice (it derefs to `[Effect]`) or iterate over it.
#[derive(Clone, Copy)]
pub struct Effects {
    list: [Effect; Effects::MAX],
    len: u8,
}

impl Effects {
    /// The most effects one transition has: a try's end that retries has three (end, failure,
    /// wait); one slot to spare.
    pub const MAX: usize = 4;

    /// No effects.
    pub const NONE: Effects = Effects { list: [Effect::Settled; Effects::MAX], len: 0 };

    /// These effects and then `effect`. Pushing a fifth is a bug in this module, caught by the
    /// table test that walks every transition.
    fn with(mut self, effect: Effect) -> Effects {
        self.list[usize::from(self.len)] = effect;
        self.len += 1;
        self
    }

    fn with_if(self, condition: bool, effect: Effect) -> Effects {
        if condition {
            self.with(effect)
        } else {
            self
        }
    }

    /// The effects, in the order they are carried out.
    pub fn as_slice(&self) -> &[Effect] {
        &self.list[..usize::from(self.len)]
    }
}

impl Deref for Effects {
    type Target = [Effect];
    fn deref(&self) -> &[Effect] {
        self.as_slice()
    }
}

impl PartialEq for Effects {
    fn eq(&self, other: &Effects) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Effects {}

impl fmt::Debug for Effects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl IntoIterator for Effects {
    type Item = Effect;
    type IntoIter = std::iter::Take<std::array::IntoIter<Effect, { Effects::MAX }>>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.into_iter().take(usize::from(self.len))
    }
}

impl<'a> IntoIterator for &'a Effects {
    type Item = &'a Effect;
    type IntoIter = std::slice::Iter<'a, Effect>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// A legal move: the state to commit, and what to do once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The new state (possibly the same one: marking a `success` instance `success`).
    pub to: TaskState,
    /// What to do once `to` is committed.
    pub effects: Effects,
}

/// An event the state machine does not have for the instance's state: a try's end for an instance
/// that is not running, a claim of one that is not queued...
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a task instance in state `{from}` cannot take the event `{event}`")]
pub struct IllegalTransition {
    /// The state the instance was in.
    pub from: TaskState,
    /// What happened to it.
    pub event: EventKind,
}

// ---- the machine ----

/// Where `event` takes an instance in state `from`, and what to do once that is committed; an
/// [`IllegalTransition`] if the machine has no such move. Pure and allocation-free.
pub fn transition(from: TaskState, event: &TaskEvent) -> Result<Step, IllegalTransition> {
    use TaskState as S;
    let illegal = IllegalTransition { from, event: event.kind() };
    // The event's own move and effects; those that follow from the states are added below.
    let (to, own) = match (event, from) {
        (TaskEvent::Ready, S::None) => (S::Scheduled, Effects::NONE.with(Effect::AwaitSlot)),
        (TaskEvent::Expanded, S::None) => (S::Running, Effects::NONE),
        (TaskEvent::EmptyExpansion | TaskEvent::RuleSkipped | TaskEvent::BranchSkipped, S::None) => {
            (S::Skipped, Effects::NONE)
        }
        (TaskEvent::ExpansionFailed, S::None) => (S::Failed, Effects::NONE),
        (TaskEvent::UpstreamFailed, S::None) => (S::UpstreamFailed, Effects::NONE),
        (TaskEvent::Queued, S::Scheduled) => (S::Queued, Effects::NONE.with(Effect::WakeExecutors)),
        (TaskEvent::Withdrawn, S::Scheduled | S::Queued) => (S::None, Effects::NONE),
        (TaskEvent::CannotRun, S::Scheduled | S::Queued) => (S::Failed, Effects::NONE),
        (TaskEvent::Claimed, S::Queued) => (S::Running, Effects::NONE.with(Effect::StartTry)),
        (TaskEvent::TryEnded(verdict), S::Running) => (verdict.state(), try_end(verdict)),
        (TaskEvent::LeaseExpired(verdict), S::Running) if verdict.is_failure() => (verdict.state(), try_end(verdict)),
        (TaskEvent::RetryDue, S::UpForRetry | S::UpForReschedule) => {
            (S::Scheduled, Effects::NONE.with(Effect::AwaitSlot))
        }
        (TaskEvent::MappedSettled(outcome), S::Running) => (outcome.state(), Effects::NONE),
        (TaskEvent::Reopened, S::Running | S::Success | S::Failed | S::Skipped) => (S::Running, Effects::NONE),
        (TaskEvent::Cleared, _) if from != S::Removed => (S::None, Effects::NONE.with(Effect::Forget)),
        (TaskEvent::Marked(mark), _) if from != S::Removed => (mark.state(), Effects::NONE),
        (TaskEvent::Removed, _) if from != S::Removed => (S::Removed, Effects::NONE),
        (TaskEvent::Remapped, S::Removed) => (S::Scheduled, Effects::NONE.with(Effect::AwaitSlot)),
        _ => return Err(illegal),
    };
    // A user's or the scheduler's decision that takes an instance away from under its try.
    let overrides = matches!(event, TaskEvent::Cleared | TaskEvent::Marked(_) | TaskEvent::Removed);
    let mut effects = Effects::NONE
        .with_if(overrides && from == S::Running, Effect::KillTry)
        .with_if(from.is_finished() && to != from, Effect::Unsettled);
    for effect in own {
        effects = effects.with(effect);
    }
    let effects = effects.with_if(to.is_finished() && to != from, Effect::Settled);
    Ok(Step { to, effects })
}

/// The effects of a try's end, before the settling the states imply.
fn try_end(verdict: &Verdict) -> Effects {
    let effects = Effects::NONE.with(Effect::EndTry).with_if(verdict.is_failure(), Effect::CountFailure);
    match verdict.next_try_at() {
        Some(at) => effects.with(Effect::RetryAt(at)),
        None => effects,
    }
}

/// Whether some event moves an instance from `from` to `to` (the same state included): what the
/// store checks each guarded write against. It agrees with [`transition`] exactly (a test walks
/// both), but is written as the machine's shape, pair by pair.
pub fn is_legal(from: TaskState, to: TaskState) -> bool {
    use TaskState::*;
    match (from, to) {
        // Nothing leaves `removed` but a new expansion that maps its index again.
        (Removed, to) => to == Scheduled,
        // Clears, marks and removals reach these from every other state.
        (_, None | Success | Failed | Removed) => true,
        // Trigger rules, and waits that are over.
        (None | UpForRetry | UpForReschedule, Scheduled) => true,
        (None, Skipped | UpstreamFailed) => true,
        (Scheduled, Queued) => true,
        // Expanded (none), claimed (queued), reopened (a mapped parent, running or ended).
        (None | Queued | Running | Success | Failed | Skipped, Running) => true,
        // A try's end, or a mapped parent's.
        (Running, UpForRetry | UpForReschedule | Skipped) => true,
        _ => false,
    }
}

// ---- the judge ----

/// The names a try's end is recorded with when core, not the plugin's exit, decides it. A plugin
/// that failed by itself is recorded with the sandbox's name for how it ended (`exit_code`,
/// `trap`, `fuel_exhausted`, `timeout`...).
pub mod outcome {
    /// The try succeeded.
    pub const SUCCESS: &str = "success";
    /// A sensor poked and was not done: it pokes again later (not a failure).
    pub const RESCHEDULED: &str = "rescheduled";
    /// The try's lease expired before it ended: its worker stopped or vanished.
    pub const INTERRUPTED: &str = "interrupted";
    /// The plugin exited well, but its result does not fit its task's kind.
    pub const INVALID_RESULT: &str = "invalid_result";
    /// A sensor was still not done when its timeout was reached.
    pub const SENSOR_TIMEOUT: &str = "sensor_timeout";
    /// The runs the result asked to trigger could not be created.
    pub const TRIGGER_FAILED: &str = "trigger_failed";
    /// The try was killed while its instance was still its own (at shutdown): not retried.
    pub const KILLED: &str = "killed";
}

/// Where a judged try leaves its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// `success`.
    Success,
    /// `up_for_retry` until `at`.
    Retry {
        /// When the next try may start.
        at: DateTime<Utc>,
    },
    /// `up_for_reschedule` until `at` (a sensor's next poke).
    Reschedule {
        /// When the next poke may start.
        at: DateTime<Utc>,
    },
    /// `failed`: no tries left, or a failure that is not retried.
    Failed,
}

impl Fate {
    /// The instance's state.
    pub fn state(self) -> TaskState {
        match self {
            Fate::Success => TaskState::Success,
            Fate::Retry { .. } => TaskState::UpForRetry,
            Fate::Reschedule { .. } => TaskState::UpForReschedule,
            Fate::Failed => TaskState::Failed,
        }
    }

    /// When the next try may start, while it waits.
    pub fn next_try_at(self) -> Option<DateTime<Utc>> {
        match self {
            Fate::Retry { at } | Fate::Reschedule { at } => Some(at),
            Fate::Success | Fate::Failed => None,
        }
    }
}

/// What a try's end means: where it leaves its instance, and what its record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Where it leaves the instance.
    pub fate: Fate,
    /// The try's outcome name as recorded: one of [`outcome`]'s, or the sandbox's name for how the
    /// plugin ended.
    pub outcome: &'static str,
    /// The message recorded with the try and shown as the instance's reason.
    pub message: String,
}

impl Verdict {
    /// The instance's new state.
    pub fn state(&self) -> TaskState {
        self.fate.state()
    }

    /// When the next try may start, while it waits.
    pub fn next_try_at(&self) -> Option<DateTime<Utc>> {
        self.fate.next_try_at()
    }

    /// Whether the try counts as failed for the retry policy: everything but a success and a
    /// sensor's "not yet".
    pub fn is_failure(&self) -> bool {
        matches!(self.fate, Fate::Retry { .. } | Fate::Failed)
    }
}

/// What the judge reads of a result the plugin returned with a good exit: only the fields that
/// depend on the task's kind, borrowed, so that core needs no SDK type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResultView<'a> {
    /// `branch`: the downstream task ids a branch task follows.
    pub branch: Option<&'a [String]>,
    /// `sensor.done`: whether a sensor's condition is met.
    pub sensor_done: Option<bool>,
}

/// What the judge needs of an instance's past, since its last clear.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TryHistory {
    /// Failed tries since the last clear, the one being judged not counted.
    pub failed_tries: u32,
    /// When its first try since the last clear started: a sensor's timeout counts from there.
    /// `None` counts from the judged try's end.
    pub first_try_at: Option<DateTime<Utc>>,
}

/// A try that failed, before the retry policy decides what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The outcome name to record (the sandbox's, or one of [`outcome`]'s).
    pub outcome: &'static str,
    /// What went wrong, for the try's record (the plugin's id is added by the judge).
    pub message: String,
    /// Whether the retry policy may give it another try.
    pub retry: bool,
}

impl Failure {
    /// A failure the retry policy may retry: the plugin exited badly, trapped, ran out of fuel...
    pub fn retryable(outcome: &'static str, message: impl Into<String>) -> Failure {
        Failure { outcome, message: message.into(), retry: true }
    }

    /// A failure that is final whatever the retry policy says: a kill, a sensor's timeout.
    pub fn final_failure(outcome: &'static str, message: impl Into<String>) -> Failure {
        Failure { outcome, message: message.into(), retry: false }
    }

    /// The runs a successful try's result asks for could not be created (`trigger: <why>`),
    /// retried as a failed try is.
    pub fn trigger(error: impl fmt::Display) -> Failure {
        Failure::retryable(outcome::TRIGGER_FAILED, format!("trigger: {error}"))
    }
}

impl RetryPolicy {
    /// A task's retry policy, from its DAG file.
    pub fn of(task: &Task) -> RetryPolicy {
        RetryPolicy {
            retries: task.retries,
            delay: task.retry_delay,
            exponential_backoff: task.retry_exponential_backoff,
            max_delay: task.max_retry_delay,
        }
    }
}

/// After the `failures`-th failed try since the last clear (this one included): a retry at its
/// time, or failed when no tries are left.
pub fn after_failure(policy: RetryPolicy, failures: u32, at: DateTime<Utc>) -> Fate {
    match policy.after_failure(failures) {
        Some(delay) => Fate::Retry { at: later(at, delay) },
        None => Fate::Failed,
    }
}

/// `at + wait`, or the end of time when that is past it.
fn later(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Judges a try whose plugin exited well with a valid result, ended at `at`, by its task's kind:
///
/// - a task (`kind = "task"`) succeeds; a result with `branch` or `sensor` is an `invalid_result`;
/// - a branch must return `branch` naming only tasks in `downstream` (its direct downstream task
///   ids), else `invalid_result`; it then succeeds, and the caller skips the others;
/// - a sensor must return `sensor`; done succeeds, not done pokes again after its
///   `poke_interval`, until its `timeout` (seven days by default) since its first try is reached:
///   then it fails with `sensor_timeout`, without retries.
///
/// An `invalid_result` is retried per the task's policy, as any failed try.
pub fn judge_success<S: AsRef<str>>(
    task: &Task,
    downstream: &[S],
    result: ResultView<'_>,
    history: TryHistory,
    at: DateTime<Utc>,
) -> Verdict {
    let invalid =
        |message: String| judge_failure(task, Failure::retryable(outcome::INVALID_RESULT, message), history, at);
    let success = || Verdict { fate: Fate::Success, outcome: outcome::SUCCESS, message: outcome::SUCCESS.to_string() };
    match task.kind {
        TaskKind::Task => {
            if result.branch.is_some() {
                invalid("the result has `branch`, but this task is not a branch task (kind = \"branch\")".into())
            } else if result.sensor_done.is_some() {
                invalid("the result has `sensor`, but this task is not a sensor task (kind = \"sensor\")".into())
            } else {
                success()
            }
        }
        TaskKind::Branch => match result.branch {
            None => invalid("a branch task must return `branch`: the downstream task ids to follow".into()),
            Some(chosen) => {
                let is_downstream = |id: &str| downstream.iter().any(|d| d.as_ref() == id);
                match chosen.iter().find(|id| !is_downstream(id.as_str())) {
                    Some(stray) => {
                        let ids: Vec<&str> = downstream.iter().map(|d| d.as_ref()).collect();
                        invalid(format!(
                            "branch names `{stray}`, which is not directly downstream of `{}` (downstream: {})",
                            task.id,
                            if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                        ))
                    }
                    None => success(),
                }
            }
        },
        TaskKind::Sensor => match result.sensor_done {
            None => invalid("a sensor task must return `sensor: {\"done\": true|false}`".into()),
            Some(true) => success(),
            Some(false) => {
                let first = history.first_try_at.unwrap_or(at);
                let waited = (at - first).to_std().unwrap_or(Duration::ZERO);
                let limit = task.timeout.unwrap_or(Task::DEFAULT_SENSOR_TIMEOUT);
                if waited >= limit {
                    let message = format!("sensor timed out after {}", humantime::format_duration(limit));
                    judge_failure(task, Failure::final_failure(outcome::SENSOR_TIMEOUT, message), history, at)
                } else {
                    Verdict {
                        fate: Fate::Reschedule { at: later(at, task.poke_interval) },
                        outcome: outcome::RESCHEDULED,
                        message: "not yet: poking again".to_string(),
                    }
                }
            }
        },
    }
}

/// Judges a try that failed (ended at `at`): retried per the task's policy when the failure
/// allows it, else failed. The message names the plugin.
pub fn judge_failure(task: &Task, failure: Failure, history: TryHistory, at: DateTime<Utc>) -> Verdict {
    let fate = if failure.retry {
        after_failure(RetryPolicy::of(task), history.failed_tries.saturating_add(1), at)
    } else {
        Fate::Failed
    };
    Verdict { fate, outcome: failure.outcome, message: format!("{} (plugin {})", failure.message, task.plugin_id) }
}

/// The verdict on a try whose lease expired at `at` (its worker stopped before the try ended):
/// recorded as `interrupted`, and retried per the task's policy as any failed try.
pub fn lease_expired(task: &Task, history: TryHistory, at: DateTime<Utc>) -> Verdict {
    Verdict {
        fate: after_failure(RetryPolicy::of(task), history.failed_tries.saturating_add(1), at),
        outcome: outcome::INTERRUPTED,
        message: "interrupted: the process running this try stopped before it ended".to_string(),
    }
}

// ---- mapped tasks ----

/// How a mapped task's instances stand: counts a parent keeps up to date from its instances'
/// [`Effect::Settled`] and [`Effect::Unsettled`], so settling it never rescans them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MappedTally {
    /// Instances of the parent.
    pub total: usize,
    /// Those in a finished state.
    pub finished: usize,
    /// Those `failed` or `upstream_failed`.
    pub failed: usize,
    /// Those `skipped` or `removed` (a removed instance counts as done and as nothing else, so the
    /// outcome is the same whether it is counted or left out).
    pub skipped: usize,
}

impl MappedTally {
    /// The tally of instances in these states.
    pub fn of(states: impl IntoIterator<Item = TaskState>) -> MappedTally {
        let mut tally = MappedTally::default();
        for state in states {
            tally.total += 1;
            tally.settle(state);
        }
        tally
    }

    /// An instance entered the finished state `state` (other states are not counted).
    pub fn settle(&mut self, state: TaskState) {
        if let Some(count) = self.counter(state) {
            *count += 1;
        }
        if state.is_finished() {
            self.finished += 1;
        }
    }

    /// An instance left the finished state `state`.
    pub fn unsettle(&mut self, state: TaskState) {
        if let Some(count) = self.counter(state) {
            *count = count.saturating_sub(1);
        }
        if state.is_finished() {
            self.finished = self.finished.saturating_sub(1);
        }
    }

    fn counter(&mut self, state: TaskState) -> Option<&mut usize> {
        match state {
            TaskState::Failed | TaskState::UpstreamFailed => Some(&mut self.failed),
            TaskState::Skipped | TaskState::Removed => Some(&mut self.skipped),
            _ => None,
        }
    }

    /// The parent's outcome once every instance has finished: failed if any failed, skipped if
    /// all were skipped, else success. `None` while some instance has not finished.
    pub fn outcome(&self) -> Option<MappedOutcome> {
        if self.finished < self.total {
            None
        } else if self.failed > 0 {
            Some(MappedOutcome::Failed { failed: self.failed, total: self.total })
        } else if self.skipped == self.total {
            Some(MappedOutcome::Skipped)
        } else {
            Some(MappedOutcome::Success)
        }
    }
}

/// How a mapped task ended, once all its instances have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappedOutcome {
    /// None failed, and not all were skipped.
    Success,
    /// Some failed.
    Failed {
        /// How many failed.
        failed: usize,
        /// Of how many.
        total: usize,
    },
    /// Every instance was skipped.
    Skipped,
}

impl MappedOutcome {
    /// The parent's state.
    pub fn state(self) -> TaskState {
        match self {
            MappedOutcome::Success => TaskState::Success,
            MappedOutcome::Failed { .. } => TaskState::Failed,
            MappedOutcome::Skipped => TaskState::Skipped,
        }
    }

    /// The parent's reason, when it did not succeed.
    pub fn reason(self) -> Option<String> {
        match self {
            MappedOutcome::Success => None,
            MappedOutcome::Failed { failed, total } => Some(format!("{failed} of {total} mapped instances failed")),
            MappedOutcome::Skipped => Some("every mapped instance was skipped".to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::{parse_dag, Caps, PluginRef};
    use Effect::{
        AwaitSlot, CountFailure, EndTry, Forget, KillTry, RetryAt, Settled, StartTry, Unsettled, WakeExecutors,
    };
    use TaskState as S;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").map(|t| t.to_utc()).expect("test timestamp")
    }

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    fn verdict(fate: Fate, outcome: &'static str) -> Verdict {
        Verdict { fate, outcome, message: outcome.to_string() }
    }

    /// One event of each kind, and of each kind's payloads that lead to different places.
    struct Events {
        all: Vec<(&'static str, TaskEvent)>,
    }

    impl Events {
        fn new() -> Events {
            let at = t0();
            let all = vec![
                ("ready", TaskEvent::Ready),
                ("expanded", TaskEvent::Expanded),
                ("empty_expansion", TaskEvent::EmptyExpansion),
                ("expansion_failed", TaskEvent::ExpansionFailed),
                ("rule_skipped", TaskEvent::RuleSkipped),
                ("branch_skipped", TaskEvent::BranchSkipped),
                ("upstream_failed", TaskEvent::UpstreamFailed),
                ("queued", TaskEvent::Queued),
                ("withdrawn", TaskEvent::Withdrawn),
                ("cannot_run", TaskEvent::CannotRun),
                ("claimed", TaskEvent::Claimed),
                ("ended:success", TaskEvent::TryEnded(verdict(Fate::Success, outcome::SUCCESS))),
                ("ended:retry", TaskEvent::TryEnded(verdict(Fate::Retry { at }, "exit_code"))),
                ("ended:reschedule", TaskEvent::TryEnded(verdict(Fate::Reschedule { at }, outcome::RESCHEDULED))),
                ("ended:failed", TaskEvent::TryEnded(verdict(Fate::Failed, "trap"))),
                ("lease:retry", TaskEvent::LeaseExpired(verdict(Fate::Retry { at }, outcome::INTERRUPTED))),
                ("lease:failed", TaskEvent::LeaseExpired(verdict(Fate::Failed, outcome::INTERRUPTED))),
                ("lease:success", TaskEvent::LeaseExpired(verdict(Fate::Success, outcome::SUCCESS))),
                ("lease:reschedule", TaskEvent::LeaseExpired(verdict(Fate::Reschedule { at }, outcome::RESCHEDULED))),
                ("retry_due", TaskEvent::RetryDue),
                ("mapped:success", TaskEvent::MappedSettled(MappedOutcome::Success)),
                ("mapped:failed", TaskEvent::MappedSettled(MappedOutcome::Failed { failed: 1, total: 2 })),
                ("mapped:skipped", TaskEvent::MappedSettled(MappedOutcome::Skipped)),
                ("reopened", TaskEvent::Reopened),
                ("cleared", TaskEvent::Cleared),
                ("marked:success", TaskEvent::Marked(Mark::Success)),
                ("marked:failed", TaskEvent::Marked(Mark::Failed)),
                ("removed", TaskEvent::Removed),
                ("remapped", TaskEvent::Remapped),
            ];
            Events { all }
        }
    }

    /// Every legal move, written out: (event, from, to, effects). Any (event, state) not listed
    /// here must be an illegal transition.
    #[rustfmt::skip]
    fn table() -> Vec<(&'static str, TaskState, TaskState, Vec<Effect>)> {
        let at = t0();
        vec![
            ("ready",            S::None,            S::Scheduled,       vec![AwaitSlot]),
            ("expanded",         S::None,            S::Running,         vec![]),
            ("empty_expansion",  S::None,            S::Skipped,         vec![Settled]),
            ("expansion_failed", S::None,            S::Failed,          vec![Settled]),
            ("rule_skipped",     S::None,            S::Skipped,         vec![Settled]),
            ("branch_skipped",   S::None,            S::Skipped,         vec![Settled]),
            ("upstream_failed",  S::None,            S::UpstreamFailed,  vec![Settled]),
            ("queued",           S::Scheduled,       S::Queued,          vec![WakeExecutors]),
            ("withdrawn",        S::Scheduled,       S::None,            vec![]),
            ("withdrawn",        S::Queued,          S::None,            vec![]),
            ("cannot_run",       S::Scheduled,       S::Failed,          vec![Settled]),
            ("cannot_run",       S::Queued,          S::Failed,          vec![Settled]),
            ("claimed",          S::Queued,          S::Running,         vec![StartTry]),
            ("ended:success",    S::Running,         S::Success,         vec![EndTry, Settled]),
            ("ended:retry",      S::Running,         S::UpForRetry,      vec![EndTry, CountFailure, RetryAt(at)]),
            ("ended:reschedule", S::Running,         S::UpForReschedule, vec![EndTry, RetryAt(at)]),
            ("ended:failed",     S::Running,         S::Failed,          vec![EndTry, CountFailure, Settled]),
            ("lease:retry",      S::Running,         S::UpForRetry,      vec![EndTry, CountFailure, RetryAt(at)]),
            ("lease:failed",     S::Running,         S::Failed,          vec![EndTry, CountFailure, Settled]),
            ("retry_due",        S::UpForRetry,      S::Scheduled,       vec![AwaitSlot]),
            ("retry_due",        S::UpForReschedule, S::Scheduled,       vec![AwaitSlot]),
            ("mapped:success",   S::Running,         S::Success,         vec![Settled]),
            ("mapped:failed",    S::Running,         S::Failed,          vec![Settled]),
            ("mapped:skipped",   S::Running,         S::Skipped,         vec![Settled]),
            ("reopened",         S::Running,         S::Running,         vec![]),
            ("reopened",         S::Success,         S::Running,         vec![Unsettled]),
            ("reopened",         S::Failed,          S::Running,         vec![Unsettled]),
            ("reopened",         S::Skipped,         S::Running,         vec![Unsettled]),

            ("cleared",          S::None,            S::None,            vec![Forget]),
            ("cleared",          S::Scheduled,       S::None,            vec![Forget]),
            ("cleared",          S::Queued,          S::None,            vec![Forget]),
            ("cleared",          S::Running,         S::None,            vec![KillTry, Forget]),
            ("cleared",          S::Success,         S::None,            vec![Unsettled, Forget]),
            ("cleared",          S::Failed,          S::None,            vec![Unsettled, Forget]),
            ("cleared",          S::UpForRetry,      S::None,            vec![Forget]),
            ("cleared",          S::UpForReschedule, S::None,            vec![Forget]),
            ("cleared",          S::Skipped,         S::None,            vec![Unsettled, Forget]),
            ("cleared",          S::UpstreamFailed,  S::None,            vec![Unsettled, Forget]),

            ("marked:success",   S::None,            S::Success,         vec![Settled]),
            ("marked:success",   S::Scheduled,       S::Success,         vec![Settled]),
            ("marked:success",   S::Queued,          S::Success,         vec![Settled]),
            ("marked:success",   S::Running,         S::Success,         vec![KillTry, Settled]),
            ("marked:success",   S::Success,         S::Success,         vec![]),
            ("marked:success",   S::Failed,          S::Success,         vec![Unsettled, Settled]),
            ("marked:success",   S::UpForRetry,      S::Success,         vec![Settled]),
            ("marked:success",   S::UpForReschedule, S::Success,         vec![Settled]),
            ("marked:success",   S::Skipped,         S::Success,         vec![Unsettled, Settled]),
            ("marked:success",   S::UpstreamFailed,  S::Success,         vec![Unsettled, Settled]),

            ("marked:failed",    S::None,            S::Failed,          vec![Settled]),
            ("marked:failed",    S::Scheduled,       S::Failed,          vec![Settled]),
            ("marked:failed",    S::Queued,          S::Failed,          vec![Settled]),
            ("marked:failed",    S::Running,         S::Failed,          vec![KillTry, Settled]),
            ("marked:failed",    S::Success,         S::Failed,          vec![Unsettled, Settled]),
            ("marked:failed",    S::Failed,          S::Failed,          vec![]),
            ("marked:failed",    S::UpForRetry,      S::Failed,          vec![Settled]),
            ("marked:failed",    S::UpForReschedule, S::Failed,          vec![Settled]),
            ("marked:failed",    S::Skipped,         S::Failed,          vec![Unsettled, Settled]),
            ("marked:failed",    S::UpstreamFailed,  S::Failed,          vec![Unsettled, Settled]),

            ("removed",          S::None,            S::Removed,         vec![Settled]),
            ("removed",          S::Scheduled,       S::Removed,         vec![Settled]),
            ("removed",          S::Queued,          S::Removed,         vec![Settled]),
            ("removed",          S::Running,         S::Removed,         vec![KillTry, Settled]),
            ("removed",          S::Success,         S::Removed,         vec![Unsettled, Settled]),
            ("removed",          S::Failed,          S::Removed,         vec![Unsettled, Settled]),
            ("removed",          S::UpForRetry,      S::Removed,         vec![Settled]),
            ("removed",          S::UpForReschedule, S::Removed,         vec![Settled]),
            ("removed",          S::Skipped,         S::Removed,         vec![Unsettled, Settled]),
            ("removed",          S::UpstreamFailed,  S::Removed,         vec![Unsettled, Settled]),

            ("remapped",         S::Removed,         S::Scheduled,       vec![Unsettled, AwaitSlot]),
        ]
    }

    #[test]
    fn every_event_against_every_state() {
        let events = Events::new();
        let table = table();
        for (label, _, _, _) in &table {
            assert!(events.all.iter().any(|(l, _)| l == label), "the table names an unknown event {label}");
        }
        let mut legal = 0;
        for (label, event) in &events.all {
            for from in TaskState::ALL {
                let rows: Vec<_> = table.iter().filter(|(l, f, _, _)| l == label && *f == from).collect();
                assert!(rows.len() <= 1, "{label} from {from} is in the table twice");
                let got = transition(from, event);
                match rows.first() {
                    Some((_, _, to, effects)) => {
                        let step = got.unwrap_or_else(|e| panic!("{label} from {from}: {e}"));
                        assert_eq!(step.to, *to, "{label} from {from}");
                        assert_eq!(step.effects.as_slice(), effects.as_slice(), "{label} from {from}");
                        legal += 1;
                    }
                    None => assert_eq!(
                        got,
                        Err(IllegalTransition { from, event: event.kind() }),
                        "{label} from {from} should be illegal"
                    ),
                }
            }
        }
        assert_eq!(legal, table.len(), "every row of the table was walked");
    }

    #[test]
    fn the_sample_events_cover_every_kind() {
        let events = Events::new();
        for kind in EventKind::ALL {
            assert!(events.all.iter().any(|(_, e)| e.kind() == kind), "no sample event of kind {kind}");
        }
        let mut names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::ALL.len(), "event names are distinct");
    }

    #[test]
    fn is_legal_agrees_with_transition() {
        let events = Events::new();
        let mut produced = Vec::new();
        for (label, event) in &events.all {
            for from in TaskState::ALL {
                if let Ok(step) = transition(from, event) {
                    assert!(is_legal(from, step.to), "{label} moves {from} to {} but is_legal says no", step.to);
                    produced.push((from, step.to));
                }
            }
        }
        for from in TaskState::ALL {
            for to in TaskState::ALL {
                assert_eq!(
                    is_legal(from, to),
                    produced.contains(&(from, to)),
                    "is_legal({from}, {to}) disagrees with the events"
                );
            }
        }
    }

    #[test]
    fn the_machine_reads_as_its_design() {
        // DESIGN.md §5's path of a task that runs: none → scheduled → queued → running → success.
        let path = [
            (TaskEvent::Ready, S::Scheduled),
            (TaskEvent::Queued, S::Queued),
            (TaskEvent::Claimed, S::Running),
            (TaskEvent::TryEnded(verdict(Fate::Success, outcome::SUCCESS)), S::Success),
        ];
        let mut state = S::None;
        for (event, want) in path {
            state = transition(state, &event).expect("the happy path is legal").to;
            assert_eq!(state, want);
        }
        // Nothing but a new expansion leaves `removed`; a clear does not bring it back.
        for to in TaskState::ALL {
            assert_eq!(is_legal(S::Removed, to), to == S::Scheduled, "removed → {to}");
        }
    }

    #[test]
    fn illegal_transitions_name_state_and_event() {
        let ended = TaskEvent::TryEnded(verdict(Fate::Success, outcome::SUCCESS));
        let error = transition(S::Success, &ended).unwrap_err();
        assert_eq!(error, IllegalTransition { from: S::Success, event: EventKind::TryEnded });
        assert_eq!(error.to_string(), "a task instance in state `success` cannot take the event `try_ended`");
        assert_eq!(
            transition(S::None, &TaskEvent::Claimed).unwrap_err().to_string(),
            "a task instance in state `none` cannot take the event `claimed`"
        );
    }

    #[test]
    fn effects_iterate_in_order_by_value_and_by_reference() {
        let step = transition(S::Running, &TaskEvent::Cleared).unwrap();
        let by_value: Vec<Effect> = step.effects.into_iter().collect();
        let by_ref: Vec<Effect> = (&step.effects).into_iter().copied().collect();
        assert_eq!(by_value, [KillTry, Forget]);
        assert_eq!(by_ref, by_value);
        assert!(step.effects.contains(&KillTry));
        assert_eq!(format!("{:?}", step.effects), "[KillTry, Forget]");
        assert!(Effects::NONE.is_empty());
    }

    // ---- the judge ----

    const PLUGIN: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    /// The tasks of a DAG file, as the scheduler has them.
    fn tasks(text: &str) -> Vec<Task> {
        let mut resolve = |plugin: &PluginRef| Ok::<_, String>(plugin.as_str().to_string());
        match parse_dag("t.toml", text, &Caps::default(), &mut resolve) {
            Ok(dag) => dag.tasks,
            Err(diagnostics) => {
                panic!("{}", diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
            }
        }
    }

    fn task(kind: &str, extra: &str) -> Task {
        let text = format!("id = \"d\"\n[tasks.t]\nplugin = \"{PLUGIN}\"\nkind = \"{kind}\"\n{extra}");
        tasks(&text).remove(0)
    }

    const FRESH: TryHistory = TryHistory { failed_tries: 0, first_try_at: None };

    #[test]
    fn a_task_succeeds_and_a_task_returning_branch_or_sensor_is_an_invalid_result() {
        let plain = task("task", "retries = 1\nretry_delay = \"10s\"\n");
        let ok = judge_success(&plain, &[] as &[&str], ResultView::default(), FRESH, t0());
        assert_eq!(ok, Verdict { fate: Fate::Success, outcome: "success", message: "success".into() });
        assert!(!ok.is_failure());

        let chosen = vec!["x".to_string()];
        let branch = ResultView { branch: Some(&chosen), sensor_done: None };
        let bad = judge_success(&plain, &["x"], branch, FRESH, t0());
        assert_eq!(bad.outcome, "invalid_result");
        assert_eq!(bad.fate, Fate::Retry { at: t0() + secs(10) }, "retried per policy");
        assert_eq!(
            bad.message,
            format!(
                "the result has `branch`, but this task is not a branch task (kind = \"branch\") (plugin {PLUGIN})"
            )
        );
        assert!(bad.is_failure());

        let sensor = ResultView { branch: None, sensor_done: Some(true) };
        let bad =
            judge_success(&plain, &[] as &[&str], sensor, TryHistory { failed_tries: 1, first_try_at: None }, t0());
        assert_eq!((bad.outcome, bad.fate), ("invalid_result", Fate::Failed), "no retries left");
        assert!(bad.message.starts_with("the result has `sensor`, but this task is not a sensor task"));
    }

    #[test]
    fn a_branch_must_name_only_its_direct_downstream_tasks() {
        let branch = task("branch", "");
        let downstream = vec!["left".to_string(), "right".to_string()];
        let chosen = vec!["right".to_string()];
        let view = ResultView { branch: Some(&chosen), sensor_done: None };
        assert_eq!(judge_success(&branch, &downstream, view, FRESH, t0()).fate, Fate::Success);

        let none: Vec<String> = Vec::new();
        let view = ResultView { branch: Some(&none), sensor_done: None };
        assert_eq!(judge_success(&branch, &downstream, view, FRESH, t0()).fate, Fate::Success, "may follow nothing");

        let stray = vec!["right".to_string(), "elsewhere".to_string()];
        let view = ResultView { branch: Some(&stray), sensor_done: None };
        let verdict = judge_success(&branch, &downstream, view, FRESH, t0());
        assert_eq!((verdict.outcome, verdict.fate), ("invalid_result", Fate::Failed));
        assert_eq!(
            verdict.message,
            format!(
                "branch names `elsewhere`, which is not directly downstream of `t` (downstream: left, right) (plugin {PLUGIN})"
            )
        );

        let verdict = judge_success(&branch, &[] as &[&str], view, FRESH, t0());
        assert!(verdict.message.contains("(downstream: none)"), "{}", verdict.message);

        let missing = judge_success(&branch, &downstream, ResultView::default(), FRESH, t0());
        assert_eq!(missing.outcome, "invalid_result");
        assert!(missing.message.starts_with("a branch task must return `branch`"), "{}", missing.message);
    }

    #[test]
    fn a_sensor_pokes_until_its_timeout_then_fails_without_retries() {
        let sensor = task("sensor", "poke_interval = \"100ms\"\ntimeout = \"400ms\"\nretries = 3\n");
        let first = t0();
        let not_done = ResultView { branch: None, sensor_done: Some(false) };
        let history = TryHistory { failed_tries: 0, first_try_at: Some(first) };
        let just_before = first + chrono::Duration::milliseconds(400) - chrono::Duration::microseconds(1);
        let poke = judge_success(&sensor, &[] as &[&str], not_done, history, just_before);
        assert_eq!(
            poke,
            Verdict {
                fate: Fate::Reschedule { at: just_before + chrono::Duration::milliseconds(100) },
                outcome: "rescheduled",
                message: "not yet: poking again".into(),
            }
        );
        assert!(!poke.is_failure(), "a poke that is not done is not a failure");

        let at_limit = first + chrono::Duration::milliseconds(400);
        let timeout = judge_success(&sensor, &[] as &[&str], not_done, history, at_limit);
        assert_eq!((timeout.outcome, timeout.fate), ("sensor_timeout", Fate::Failed), "retries do not apply");
        assert_eq!(timeout.message, format!("sensor timed out after 400ms (plugin {PLUGIN})"));

        let done = ResultView { branch: None, sensor_done: Some(true) };
        assert_eq!(judge_success(&sensor, &[] as &[&str], done, history, at_limit).fate, Fate::Success);
        let missing = judge_success(&sensor, &[] as &[&str], ResultView::default(), history, first);
        assert_eq!((missing.outcome, missing.fate), ("invalid_result", Fate::Retry { at: first + secs(30) }));
    }

    #[test]
    fn a_sensor_without_a_first_try_counts_from_now_and_defaults_to_seven_days() {
        let sensor = task("sensor", "");
        let not_done = ResultView { branch: None, sensor_done: Some(false) };
        let fresh = judge_success(&sensor, &[] as &[&str], not_done, FRESH, t0());
        assert_eq!(fresh.fate, Fate::Reschedule { at: t0() + secs(60) }, "default poke interval");
        let week = TryHistory { failed_tries: 0, first_try_at: Some(t0() - secs(7 * 24 * 3600)) };
        assert_eq!(judge_success(&sensor, &[] as &[&str], not_done, week, t0()).outcome, "sensor_timeout");
    }

    #[test]
    fn failures_retry_with_backoff_until_none_are_left() {
        let flaky = task(
            "task",
            "retries = 3\nretry_delay = \"10s\"\nretry_exponential_backoff = true\nmax_retry_delay = \"30s\"\n",
        );
        let judge = |failed_tries| {
            let history = TryHistory { failed_tries, first_try_at: None };
            judge_failure(&flaky, Failure::retryable("exit_code", "exit code 1"), history, t0())
        };
        assert_eq!(judge(0).fate, Fate::Retry { at: t0() + secs(10) });
        assert_eq!(judge(1).fate, Fate::Retry { at: t0() + secs(20) });
        assert_eq!(judge(2).fate, Fate::Retry { at: t0() + secs(30) }, "capped");
        assert_eq!(judge(3).fate, Fate::Failed);
        assert_eq!(judge(0).message, format!("exit code 1 (plugin {PLUGIN})"));
        assert_eq!(judge(0).outcome, "exit_code");

        let killed = judge_failure(&flaky, Failure::final_failure(outcome::KILLED, "killed"), FRESH, t0());
        assert_eq!((killed.outcome, killed.fate), ("killed", Fate::Failed), "a final failure is not retried");
        let trigger = judge_failure(&flaky, Failure::trigger("no DAG `nope`"), FRESH, t0());
        assert_eq!((trigger.outcome, trigger.fate), ("trigger_failed", Fate::Retry { at: t0() + secs(10) }));
        assert_eq!(trigger.message, format!("trigger: no DAG `nope` (plugin {PLUGIN})"));

        assert_eq!(RetryPolicy::of(&flaky).retries, 3);
        assert_eq!(after_failure(RetryPolicy::of(&flaky), 4, t0()), Fate::Failed);
    }

    #[test]
    fn a_retry_delay_past_the_end_of_time_waits_until_then() {
        let policy = RetryPolicy { retries: 1, delay: Duration::MAX, exponential_backoff: false, max_delay: None };
        assert_eq!(after_failure(policy, 1, t0()), Fate::Retry { at: DateTime::<Utc>::MAX_UTC });
    }

    #[test]
    fn an_expired_lease_is_an_interrupted_try_retried_per_policy() {
        let once = task("task", "retries = 1\nretry_delay = \"5s\"\n");
        let verdict = lease_expired(&once, FRESH, t0());
        assert_eq!(verdict.outcome, "interrupted");
        assert_eq!(verdict.fate, Fate::Retry { at: t0() + secs(5) });
        let step = transition(S::Running, &TaskEvent::LeaseExpired(verdict)).unwrap();
        assert_eq!(step.to, S::UpForRetry);
        let last = lease_expired(&once, TryHistory { failed_tries: 1, first_try_at: None }, t0());
        assert_eq!(last.fate, Fate::Failed);
        assert_eq!(transition(S::Running, &TaskEvent::LeaseExpired(last)).unwrap().to, S::Failed);
    }

    // ---- mapped tasks ----

    #[test]
    fn a_mapped_task_settles_once_every_instance_has() {
        use TaskState::{Failed, Removed, Running, Skipped, Success, UpstreamFailed};
        assert_eq!(MappedTally::of([Success, Running]).outcome(), None);
        assert_eq!(MappedTally::of([Success, Skipped]).outcome(), Some(MappedOutcome::Success));
        assert_eq!(MappedTally::of([Skipped, Removed]).outcome(), Some(MappedOutcome::Skipped));
        assert_eq!(MappedTally::of([Success, Removed]).outcome(), Some(MappedOutcome::Success));
        let failed = MappedTally::of([Success, Failed, UpstreamFailed]).outcome();
        assert_eq!(failed, Some(MappedOutcome::Failed { failed: 2, total: 3 }));
        assert_eq!(failed.and_then(MappedOutcome::reason).as_deref(), Some("2 of 3 mapped instances failed"));
        assert_eq!(MappedOutcome::Skipped.reason().as_deref(), Some("every mapped instance was skipped"));
        assert_eq!(MappedOutcome::Success.reason(), None);

        // Kept up to date by the instances' effects: one fails, is cleared, then succeeds.
        let mut tally = MappedTally { total: 2, ..MappedTally::default() };
        tally.settle(Success);
        tally.settle(Failed);
        assert_eq!(tally.outcome(), Some(MappedOutcome::Failed { failed: 1, total: 2 }));
        tally.unsettle(Failed);
        assert_eq!(tally.outcome(), None);
        tally.settle(Success);
        assert_eq!(tally.outcome(), Some(MappedOutcome::Success));
        assert_eq!(tally, MappedTally { total: 2, finished: 2, failed: 0, skipped: 0 });
    }
}
