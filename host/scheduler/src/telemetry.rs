//! What the scheduler and the worker count, through the `metrics` facade: a process that installs
//! a recorder (the API's `/metrics`, in `standalone` and `server`) exports them; elsewhere they
//! cost an atomic load. The names are here, in one place, with their help text.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sandflow_core::state::RunState;

/// Runs that ended, by final state.
pub const RUNS_ENDED: &str = "sandflow_runs_ended_total";
/// Tries reported by this process's worker, by outcome.
pub const TRIES: &str = "sandflow_tries_total";
/// How long tries ran, by outcome.
pub const TRY_DURATION: &str = "sandflow_try_duration_seconds";
/// Fuel the tries used.
pub const FUEL_USED: &str = "sandflow_fuel_used_total";
/// From an instance being queued to its try starting.
pub const SCHEDULING_DELAY: &str = "sandflow_scheduling_delay_seconds";

/// Every metric above with its kind and help, for an exporter to describe.
pub const DESCRIBED: &[(&str, Kind, &str)] = &[
    (RUNS_ENDED, Kind::Counter, "DAG runs that ended, by final state"),
    (TRIES, Kind::Counter, "Task tries reported by this process's worker, by outcome"),
    (TRY_DURATION, Kind::Histogram, "Wall time of task tries in seconds, by outcome"),
    (FUEL_USED, Kind::Counter, "Fuel (wasm instructions, roughly) used by task tries"),
    (SCHEDULING_DELAY, Kind::Histogram, "Seconds from a task instance being queued to its try starting"),
];

/// A metric's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
}

pub(crate) fn run_ended(state: RunState) {
    metrics::counter!(RUNS_ENDED, "state" => state.as_str()).increment(1);
}

pub(crate) fn try_reported(outcome: &str, wall: Duration, fuel_used: i64) {
    let outcome = outcome.to_string();
    metrics::counter!(TRIES, "outcome" => outcome.clone()).increment(1);
    metrics::histogram!(TRY_DURATION, "outcome" => outcome).record(wall.as_secs_f64());
    metrics::counter!(FUEL_USED).increment(u64::try_from(fuel_used).unwrap_or(0));
}

pub(crate) fn try_started(queued_at: Option<DateTime<Utc>>, at: DateTime<Utc>) {
    if let Some(queued_at) = queued_at {
        let delay = (at - queued_at).to_std().unwrap_or_default();
        metrics::histogram!(SCHEDULING_DELAY).record(delay.as_secs_f64());
    }
}
