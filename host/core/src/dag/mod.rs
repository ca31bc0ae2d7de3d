//! DAG files: parsing, validation, versions.
//!
//! A DAG file is TOML written by people, so this module is shaped around their mistakes. It
//! does not deserialize with serde derive, because serde stops at the first error and loses
//! positions for semantic ones (a cycle, a cap, an unknown upstream id). Instead the text is parsed
//! once into `toml`'s spanned tree ([`toml::de::DeTable`]) and walked by hand: every field is read
//! with its span, every problem becomes a [`Diagnostic`] with file, line, column and a dotted field
//! path, and the walk carries on, so one run reports *all* the errors of a file. Unknown fields are
//! refused, naming the accepted ones.
//!
//! The result, a [`Dag`], is fully validated: tasks are in a topological order, every plugin is
//! pinned to a `sha256:` id by the caller's resolver, limits are under the server's [`Caps`]. Its
//! [`Dag::version`] is a hash of that validated content, so the same DAG written differently has
//! the same version, and a changed plugin (new `sha256:`) is a new version.
//!
//! The module is pure: it parses text and never touches the filesystem, the clock or the database.
//! Reading files and plugins is the caller's job (through the `resolve` callback of [`parse_dag`]).
//! All times are UTC.

mod diagnostic;
mod flow;
mod grants;
mod graph;
mod parse;
mod reader;
mod schedule;
mod version;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use diagnostic::Diagnostic;
pub use grants::{grant_name_problem, GrantPolicy, Grants, Origin};
pub use parse::parse_dag;
pub use schedule::{Schedule, ScheduleError};

/// A validated DAG: its settings and its tasks, with every plugin pinned to a `sha256:` id.
///
/// Built by [`parse_dag`]; every field here has passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    /// The DAG's id (`id` in the file): `[A-Za-z0-9_.-]+`.
    pub id: String,
    /// Free text for people (`description`).
    pub description: Option<String>,
    /// Labels to filter DAGs by in the UI (`tags`).
    pub tags: Vec<String>,
    /// Who to ask about this DAG (`owner`).
    pub owner: Option<String>,
    /// When runs are created (`schedule`); [`Schedule::Manual`] when absent.
    pub schedule: Schedule,
    /// No scheduled run before this instant (`start_date`), UTC.
    pub start_date: Option<DateTime<Utc>>,
    /// No scheduled run after this instant (`end_date`), UTC.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether the scheduler creates the runs missed since `start_date` (`catchup`); default false.
    pub catchup: bool,
    /// At most this many runs of this DAG at once (`max_active_runs`); default 16, at least 1.
    pub max_active_runs: u32,
    /// At most this many task instances of this DAG run at once (`max_active_tasks`); default 16.
    pub max_active_tasks: u32,
    /// Whether the DAG starts paused when first registered (`is_paused_upon_creation`);
    /// `None` leaves it to the server's default.
    pub paused: Option<bool>,
    /// The tasks in a topological order (upstream before downstream); ties keep file order.
    pub tasks: Vec<Task>,
}

impl Dag {
    /// The default of `max_active_runs`: Airflow's default, enough for a backfill to make progress
    /// without one DAG taking the whole worker pool.
    pub const DEFAULT_MAX_ACTIVE_RUNS: u32 = 16;

    /// The default of `max_active_tasks`, Airflow's: one DAG cannot take every executor slot.
    pub const DEFAULT_MAX_ACTIVE_TASKS: u32 = 16;

    /// The DAG's version: `"v"` + the first 16 hex digits of a SHA-256 over a canonical JSON of the
    /// spec.
    ///
    /// The canonical spec holds every field that affects behaviour: `id`, `schedule`, `start_date`,
    /// `end_date`, `catchup`, `max_active_runs`, and every task (sorted by id) with its `plugin_id`
    /// (never its path), params, upstream ids, trigger rule, retry settings and limits. Object keys
    /// are sorted, so the same content gives the same version whatever the key order, formatting or
    /// comments of the file. Metadata that changes no run (`description`, `tags`, `owner`,
    /// `is_paused_upon_creation`) is left out.
    pub fn version(&self) -> String {
        version::version(self)
    }

    /// The task with this id, if any.
    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.id == id)
    }

    /// The ids of the tasks directly downstream of `id` (those that list it as upstream), in the
    /// DAG's topological order. Empty for an unknown id.
    pub fn downstream(&self, id: &str) -> Vec<&str> {
        self.tasks.iter().filter(|task| task.upstream.iter().any(|up| up == id)).map(|task| task.id.as_str()).collect()
    }
}

/// One task of a DAG: a plugin, its params, its dependencies and its retry policy and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The task's id, its key under `[tasks]`: `[A-Za-z0-9_.-]+`.
    pub id: String,
    /// The plugin as written in the file.
    pub plugin: PluginRef,
    /// The plugin pinned to `"sha256:<64 hex>"`, as resolved by the caller.
    pub plugin_id: String,
    /// The task's `params` table, as JSON; empty when absent.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Direct upstream task ids, from `upstream` and from `flow`: deduplicated, sorted.
    pub upstream: Vec<String>,
    /// When the task may run, given its upstream tasks' states; default `all_success`.
    pub trigger_rule: TriggerRule,
    /// How many times a failed try is retried; default 0.
    pub retries: u32,
    /// The wait before a retry; default 30 s.
    pub retry_delay: Duration,
    /// Whether the wait doubles at each retry: `retry_delay × 2^(retry-1)`; default false.
    /// The arithmetic lives with the retry policy of the state machine.
    pub retry_exponential_backoff: bool,
    /// The longest wait before a retry.
    pub max_retry_delay: Option<Duration>,
    /// The wall-clock limit of one try; `None` leaves it to the server (at most [`Caps::timeout`]).
    pub timeout: Option<Duration>,
    /// The fuel (wasm instructions, roughly) of one try; `None` leaves it to the server.
    pub fuel: Option<u64>,
    /// The memory limit of one try, in MiB; `None` leaves it to the server.
    pub memory_mb: Option<u64>,
    /// What the scheduler does with the task's result (`kind`): run it, follow its branch, or
    /// poke it until it is done.
    pub kind: TaskKind,
    /// One instance per element of this list (`map_over`): `conf.<path>` or
    /// `inputs.<upstream task>[.<path>]`.
    pub map_over: Option<String>,
    /// For sensors: the wait between pokes (`poke_interval`); default 60 s.
    pub poke_interval: Duration,
    /// For sensors: DAGs whose latest runs the sensor's context lists (`watch_dags`).
    pub watch_dags: Vec<String>,
    /// The pool whose slots the task takes (`pool`); default `default_pool`.
    pub pool: String,
    /// How many of the pool's slots one instance takes (`pool_slots`); default 1.
    pub pool_slots: u32,
    /// Who runs first when slots are short: higher first (`priority_weight`); default 1.
    pub priority_weight: i64,
    /// What a try may touch beyond its input: `/out` quota, mounts, secrets, HTTP origins.
    pub grants: Grants,
}

/// How the scheduler reads a task's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// An ordinary task.
    #[default]
    Task,
    /// Returns `branch`: the direct downstream tasks to follow; the others are skipped.
    Branch,
    /// Returns `sensor: {done}`: not done puts it in `up_for_reschedule` until its next poke.
    Sensor,
}

impl TaskKind {
    /// The name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Branch => "branch",
            TaskKind::Sensor => "sensor",
        }
    }
}

/// The list a mapped task maps over, from the run's `conf` or its upstream outputs.
///
/// `expr` is `conf.<path>` or `inputs.<task>[.<path>]`, a path of object keys or list indexes
/// separated by dots. Errors say what was found instead of a list.
pub fn resolve_map_over(
    expr: &str,
    conf: &serde_json::Map<String, serde_json::Value>,
    inputs: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<serde_json::Value>, String> {
    let mut parts = expr.split('.');
    let root = match parts.next() {
        Some("conf") => serde_json::Value::Object(conf.clone()),
        Some("inputs") => serde_json::Value::Object(inputs.clone()),
        _ => return Err(format!("map_over {expr}: must start with conf. or inputs.")),
    };
    let mut at = &root;
    for part in parts {
        let next = match at {
            serde_json::Value::Object(map) => map.get(part),
            serde_json::Value::Array(list) => part.parse::<usize>().ok().and_then(|i| list.get(i)),
            _ => None,
        };
        at = next.ok_or_else(|| format!("map_over {expr}: nothing at `{part}`"))?;
    }
    match at {
        serde_json::Value::Array(items) => Ok(items.clone()),
        other => Err(format!("map_over {expr} is not a list: it is {}", crate::text::json_kind(other))),
    }
}

impl Task {
    /// The default `poke_interval` of sensors, Airflow's.
    pub const DEFAULT_POKE_INTERVAL: Duration = Duration::from_secs(60);

    /// How long a sensor waits in all when it sets no `timeout`: Airflow's seven days.
    pub const DEFAULT_SENSOR_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

    /// The pool of tasks that name none.
    pub const DEFAULT_POOL: &'static str = "default_pool";

    /// The default `retry_delay`: Airflow's default five minutes is long for small tasks; 30 s
    /// rides out a brief outage without hammering the thing that failed.
    pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(30);
}

/// A task's plugin as written in the DAG file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginRef {
    /// A path to a `.wasm` file, relative to the DAG file's folder, as written.
    Path(String),
    /// A pinned plugin id, `"sha256:<64 lowercase hex>"`, as written.
    Id(String),
}

impl PluginRef {
    /// The reference as written in the file.
    pub fn as_str(&self) -> &str {
        match self {
            PluginRef::Path(text) | PluginRef::Id(text) => text,
        }
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `text` is a pinned plugin id: `sha256:` followed by 64 lowercase hex digits.
pub fn is_plugin_id(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// When a task may run, given the states of its direct upstream tasks (Airflow's semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    /// Every upstream task succeeded.
    #[default]
    AllSuccess,
    /// Every upstream task failed or was upstream_failed.
    AllFailed,
    /// Every upstream task finished, whatever its state.
    AllDone,
    /// At least one upstream task succeeded (runs as soon as one does).
    OneSuccess,
    /// At least one upstream task failed (runs as soon as one does).
    OneFailed,
    /// No upstream task failed or was upstream_failed: all succeeded or were skipped.
    NoneFailed,
    /// No upstream task failed or was upstream_failed, and at least one succeeded.
    NoneFailedMinOneSuccess,
    /// Runs whatever the upstream states, as soon as the run starts.
    Always,
}

impl TriggerRule {
    /// Every rule, in the order the docs list them.
    pub const ALL: [TriggerRule; 8] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::Always,
    ];

    /// The rule's name in DAG files, e.g. `"all_success"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::Always => "always",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`TriggerRule::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trigger rule {0:?}, expected one of {names}", names = rule_names())]
pub struct UnknownTriggerRule(pub String);

fn rule_names() -> String {
    quoted_list(TriggerRule::ALL.map(TriggerRule::as_str))
}

impl FromStr for TriggerRule {
    type Err = UnknownTriggerRule;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == name)
            .ok_or_else(|| UnknownTriggerRule(name.to_owned()))
    }
}

/// The server's limits on what a DAG may ask for; a task over a cap is refused at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The most fuel one try may ask for.
    pub fuel: u64,
    /// The most memory one try may ask for, in MiB.
    pub memory_mb: u64,
    /// The longest `timeout` one try may ask for.
    pub timeout: Duration,
    /// The most `retries` a task may ask for.
    pub max_retries: u32,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            // About 10–20 minutes of busy wasm on one core: far above any sane task, still finite.
            fuel: 1_000_000_000_000,
            // 4 GiB is the whole 32-bit wasm address space: more cannot be used anyway.
            memory_mb: 4096,
            // A day: a try that runs longer is stuck, or should be split.
            timeout: Duration::from_secs(24 * 60 * 60),
            // Beyond 100 retries a task is not flaky but broken.
            max_retries: 100,
        }
    }
}

/// `"a", "b", "c"`: names quoted and comma-separated, for messages.
fn quoted_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names.into_iter().map(|name| format!("{name:?}")).collect::<Vec<_>>().join(", ")
}
