//! What users ask of runs: clear (kill and rerun) and mark (set a state by hand).
//!
//! Actions go through the store's `actions` table, which is also their audit log (who, when, what
//! happened). A running scheduler carries them out, because only it can kill the tries it runs;
//! with no scheduler alive, the command-line tool carries them out itself with the same code
//! ([`Scheduler::carry_out_pending`](crate::Scheduler::carry_out_pending)).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A user's action on runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Reset task instances to `none` so they run again, killing running tries first.
    Clear {
        /// The DAG.
        dag_id: String,
        /// The runs.
        run_ids: Vec<String>,
        /// The tasks; empty for every task of the runs.
        #[serde(default)]
        task_ids: Vec<String>,
        /// One instance of a mapped task.
        #[serde(default)]
        map_index: Option<i64>,
        /// Also every task downstream, transitively.
        #[serde(default)]
        downstream: bool,
        /// Also every task upstream, transitively.
        #[serde(default)]
        upstream: bool,
        /// Only instances that failed (failed or upstream_failed).
        #[serde(default)]
        only_failed: bool,
    },
    /// Set a task instance's (or a whole run's) state by hand.
    Mark {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The task; `None` marks the run and its unfinished tasks.
        #[serde(default)]
        task_id: Option<String>,
        /// One instance of a mapped task.
        #[serde(default)]
        map_index: Option<i64>,
        /// `success` or `failed`.
        state: MarkState,
    },
}

/// The states a user may mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkState {
    /// Success.
    Success,
    /// Failed.
    Failed,
}

impl Action {
    /// The kind as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Clear { .. } => "clear",
            Action::Mark { .. } => "mark",
        }
    }
}

/// How long a scheduler's heartbeat stays valid: it beats at every poll (0.5 s by default).
pub const HEARTBEAT_VALID_FOR: Duration = Duration::from_secs(3);
