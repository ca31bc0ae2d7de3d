//! States of DAG runs and task instances (names as in Airflow), trigger rules, and the pure
//! decisions the scheduler takes from them.
//!
//! Everything here is a function of its arguments, so every rule is tested exhaustively without a
//! database or a runtime. The scheduler commits each decision before acting on it. The moves
//! between task states, and the judge of a try's end, are [`crate::transition`]'s.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dag::TriggerRule;

/// A DAG run's state: `queued → running → success | failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Created, waiting for a slot under `max_active_runs` (or for its DAG to be unpaused).
    Queued,
    /// Its tasks are being scheduled.
    Running,
    /// Every leaf task ended in success or skipped.
    Success,
    /// A leaf task failed or could not run because its upstream failed.
    Failed,
}

/// A task instance's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Not yet considered (also the state a clear resets to).
    None,
    /// Its dependencies are met; it waits for an executor slot.
    Scheduled,
    /// Handed to the executor.
    Queued,
    /// A try is running.
    Running,
    /// Ended well.
    Success,
    /// Ended badly, with no tries left.
    Failed,
    /// Ended badly; it runs again after its retry delay.
    UpForRetry,
    /// A sensor that will poke again.
    UpForReschedule,
    /// Not run, by a branch or its trigger rule.
    Skipped,
    /// Not run, because an upstream task failed.
    UpstreamFailed,
    /// No longer in the DAG version the run uses.
    Removed,
}

impl TaskState {
    /// Every state, for tables and exhaustive tests.
    pub const ALL: [TaskState; 11] = [
        TaskState::None,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::UpForRetry,
        TaskState::UpForReschedule,
        TaskState::Skipped,
        TaskState::UpstreamFailed,
        TaskState::Removed,
    ];

    /// A state the task will not leave by itself.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::Skipped
                | TaskState::UpstreamFailed
                | TaskState::Removed
        )
    }

    /// The name as stored and shown: `up_for_retry`...
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::None => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::UpForReschedule => "up_for_reschedule",
            TaskState::Skipped => "skipped",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::Removed => "removed",
        }
    }
}

impl RunState {
    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    /// Whether the run has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

/// A state name that is not one of ours (a database written by something else).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`")]
pub struct UnknownState(pub String);

impl FromStr for TaskState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        TaskState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl FromStr for RunState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        [RunState::Queued, RunState::Running, RunState::Success, RunState::Failed]
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl TryFrom<String> for TaskState {
    type Error = UnknownState;
    fn try_from(s: String) -> Result<Self, UnknownState> {
        s.parse()
    }
}

impl TryFrom<String> for RunState {
    type Error = UnknownState;
    fn try_from(s: String) -> Result<Self, UnknownState> {
        s.parse()
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a task whose upstream tasks are in the given states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Some upstream task has not finished, and the rule cannot be decided yet.
    Wait,
    /// Run it.
    Run,
    /// Skip it (the rule can no longer be met, and no upstream failure is the cause).
    Skip,
    /// Do not run it: an upstream failure makes the rule unmeetable.
    UpstreamFailed,
}

/// Counts of a task's direct upstream states: the only thing trigger rules look at. Kept up to
/// date as upstream tasks change state ([`UpstreamCounts::add`], [`UpstreamCounts::remove`]), so
/// deciding a task costs the same whatever its number of upstream tasks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    total: usize,
    success: usize,
    failed: usize,
    upstream_failed: usize,
    skipped: usize,
    done: usize,
}

impl UpstreamCounts {
    /// Counts for `total` upstream tasks, none of them counted yet (as if all were `none`).
    pub fn new(total: usize) -> UpstreamCounts {
        UpstreamCounts { total, ..UpstreamCounts::default() }
    }

    /// Counts of these upstream states.
    pub fn of(upstream: &[TaskState]) -> UpstreamCounts {
        let mut c = UpstreamCounts::new(upstream.len());
        for state in upstream {
            c.add(*state);
        }
        c
    }

    /// An upstream task entered `state`.
    pub fn add(&mut self, state: TaskState) {
        self.step(state, true);
    }

    /// An upstream task left `state`.
    pub fn remove(&mut self, state: TaskState) {
        self.step(state, false);
    }

    fn step(&mut self, state: TaskState, add: bool) {
        let bump = |n: &mut usize| *n = if add { *n + 1 } else { n.saturating_sub(1) };
        match state {
            TaskState::Success => bump(&mut self.success),
            TaskState::Failed => bump(&mut self.failed),
            TaskState::UpstreamFailed => bump(&mut self.upstream_failed),
            TaskState::Skipped => bump(&mut self.skipped),
            // A removed upstream task counts as done and as nothing else.
            _ => {}
        }
        if state.is_finished() {
            bump(&mut self.done);
        }
    }

    fn failures(&self) -> usize {
        self.failed + self.upstream_failed
    }

    fn all_done(&self) -> bool {
        self.done == self.total
    }
}

/// Decides whether a task runs, from its trigger rule and its direct upstream tasks' states.
/// Semantics follow Airflow's (documented in `dags/README.md`); a task with no upstream runs.
pub fn readiness(rule: TriggerRule, upstream: &[TaskState]) -> Readiness {
    readiness_of(rule, &UpstreamCounts::of(upstream))
}

/// [`readiness`] from counts kept up to date by the caller.
pub fn readiness_of(rule: TriggerRule, c: &UpstreamCounts) -> Readiness {
    use Readiness::*;
    if c.total == 0 {
        return Run;
    }
    match rule {
        TriggerRule::Always => Run,
        TriggerRule::AllSuccess => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if !c.all_done() {
                // A skip is decided only when nothing can fail any more: the outcome does not
                // depend on which upstream task happens to end first.
                Wait
            } else if c.skipped > 0 {
                Skip
            } else {
                Run
            }
        }
        TriggerRule::AllFailed => {
            if c.success > 0 || c.skipped > 0 {
                Skip
            } else if c.all_done() {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::AllDone => {
            if c.all_done() {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::OneSuccess => {
            if c.success > 0 {
                Run
            } else if !c.all_done() {
                Wait
            } else if c.failures() > 0 {
                UpstreamFailed
            } else {
                Skip
            }
        }
        TriggerRule::OneFailed => {
            if c.failures() > 0 {
                Run
            } else if c.all_done() {
                Skip
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailed => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if c.all_done() {
                Run
            } else {
                Wait
            }
        }
        TriggerRule::NoneFailedMinOneSuccess => {
            if c.failures() > 0 {
                UpstreamFailed
            } else if !c.all_done() {
                Wait
            } else if c.success > 0 {
                Run
            } else {
                Skip
            }
        }
    }
}

/// A run's state once every task has finished, from its leaf tasks' states (as Airflow does): any
/// leaf failed or upstream_failed makes the run failed, otherwise it succeeded. `None` while some
/// task has not finished.
pub fn run_outcome(all: &[TaskState], leaves: &[TaskState]) -> Option<RunState> {
    if !all.iter().all(|s| s.is_finished()) {
        return None;
    }
    if leaves.iter().any(|s| matches!(s, TaskState::Failed | TaskState::UpstreamFailed)) {
        Some(RunState::Failed)
    } else {
        Some(RunState::Success)
    }
}

/// The retry policy of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    /// Delay before the first retry.
    pub delay: Duration,
    /// Double the delay at each further retry.
    pub exponential_backoff: bool,
    /// Cap on the delay.
    pub max_delay: Option<Duration>,
}

impl RetryPolicy {
    /// After try `try_number` (1-based) failed: `Some(delay)` before the next try, or `None` when no
    /// tries are left.
    pub fn after_failure(&self, try_number: u32) -> Option<Duration> {
        if try_number > self.retries {
            return None;
        }
        let delay = if self.exponential_backoff {
            let factor = 2u32.saturating_pow(try_number.saturating_sub(1));
            self.delay.checked_mul(factor).unwrap_or(Duration::MAX)
        } else {
            self.delay
        };
        Some(match self.max_delay {
            Some(max) => delay.min(max),
            None => delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::{Failed, Queued, Removed, Running, Skipped, Success, UpForReschedule, UpForRetry, UpstreamFailed};

    const RULES: [TriggerRule; 8] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::Always,
    ];

    /// The expected decision for each rule, by upstream mix, written out as a table (Airflow's
    /// semantics). Columns follow RULES.
    #[test]
    fn every_rule_against_every_mix_of_upstream_states() {
        use Readiness::{Run as R, Skip as S, UpstreamFailed as U, Wait as W};
        #[rustfmt::skip]
        let table: &[(&[TaskState], [Readiness; 8])] = &[
            //                                  all_success all_failed all_done one_success one_failed none_failed nf_min_one always
            (&[Success, Success],               [R, S, R, R, S, R, R, R]),
            (&[Success, Failed],                [U, S, R, R, R, U, U, R]),
            (&[Failed, Failed],                 [U, R, R, U, R, U, U, R]),
            (&[Failed, UpstreamFailed],         [U, R, R, U, R, U, U, R]),
            (&[Success, Skipped],               [S, S, R, R, S, R, R, R]),
            (&[Skipped, Skipped],               [S, S, R, S, S, R, S, R]),
            (&[Failed, Skipped],                [U, S, R, U, R, U, U, R]),
            (&[Success, Running],               [W, S, W, R, W, W, W, R]),
            (&[Failed, Running],                [U, W, W, W, R, U, U, R]),
            (&[Skipped, Queued],                [W, S, W, W, W, W, W, R]),
            (&[TaskState::None, TaskState::None], [W, W, W, W, W, W, W, R]),
            (&[UpForRetry],                     [W, W, W, W, W, W, W, R]),
            (&[UpForReschedule, Success],       [W, S, W, R, W, W, W, R]),
            (&[Removed, Success],               [R, S, R, R, S, R, R, R]),
            (&[Success],                        [R, S, R, R, S, R, R, R]),
            (&[Failed],                         [U, R, R, U, R, U, U, R]),
            (&[Skipped],                        [S, S, R, S, S, R, S, R]),
            (&[UpstreamFailed],                 [U, R, R, U, R, U, U, R]),
        ];
        for (upstream, expected) in table {
            for (rule, want) in RULES.iter().zip(expected) {
                assert_eq!(readiness(*rule, upstream), *want, "{rule:?} with upstream {upstream:?}");
            }
        }
    }

    #[test]
    fn counts_kept_up_to_date_decide_as_counts_taken_afresh() {
        // Two upstream tasks walk through every pair of states, one step at a time, as the
        // scheduler moves them: the counts it keeps must decide as counting the states afresh.
        for rule in RULES {
            for a in TaskState::ALL {
                let mut kept = UpstreamCounts::new(2);
                kept.add(a);
                kept.add(TaskState::None);
                let mut b_now = TaskState::None;
                for b in TaskState::ALL {
                    kept.remove(b_now);
                    kept.add(b);
                    b_now = b;
                    assert_eq!(kept, UpstreamCounts::of(&[a, b]), "{a:?} {b:?}");
                    assert_eq!(readiness_of(rule, &kept), readiness(rule, &[a, b]), "{rule:?} {a:?} {b:?}");
                }
            }
        }
    }

    #[test]
    fn a_task_without_upstream_runs_whatever_its_rule() {
        for rule in RULES {
            assert_eq!(readiness(rule, &[]), Readiness::Run, "{rule:?}");
        }
    }

    #[test]
    fn no_rule_decides_before_it_can() {
        // With any upstream unfinished, a rule may only decide if no later state could change it.
        for rule in RULES {
            for unfinished in TaskState::ALL.into_iter().filter(|s| !s.is_finished()) {
                for other in TaskState::ALL {
                    let now = readiness(rule, &[unfinished, other]);
                    if now == Readiness::Wait {
                        continue;
                    }
                    for later in TaskState::ALL.into_iter().filter(|s| s.is_finished()) {
                        assert_eq!(
                            readiness(rule, &[later, other]),
                            now,
                            "{rule:?}: decided {now:?} with {unfinished:?}, but {later:?} would change it"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_run_fails_when_a_leaf_fails() {
        assert_eq!(run_outcome(&[Success, Running], &[Running]), None);
        assert_eq!(run_outcome(&[Success, Skipped], &[Skipped]), Some(RunState::Success));
        assert_eq!(run_outcome(&[Failed, Success], &[Success]), Some(RunState::Success));
        assert_eq!(run_outcome(&[Failed, UpstreamFailed], &[UpstreamFailed]), Some(RunState::Failed));
    }

    #[test]
    fn retry_delays_back_off_and_cap() {
        let policy = RetryPolicy {
            retries: 3,
            delay: Duration::from_secs(10),
            exponential_backoff: true,
            max_delay: Some(Duration::from_secs(30)),
        };
        assert_eq!(policy.after_failure(1), Some(Duration::from_secs(10)));
        assert_eq!(policy.after_failure(2), Some(Duration::from_secs(20)));
        assert_eq!(policy.after_failure(3), Some(Duration::from_secs(30)));
        assert_eq!(policy.after_failure(4), None);
        let flat = RetryPolicy { exponential_backoff: false, max_delay: None, ..policy };
        assert_eq!(flat.after_failure(3), Some(Duration::from_secs(10)));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!("bogus".parse::<RunState>().unwrap_err().to_string(), "unknown state `bogus`");
    }
}
