//! What can go wrong in the store, as variants callers tell apart.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ownership::SchedulingOwner;

/// What can go wrong in the store. Callers tell these apart: a newer schema or a file that is not a
/// database are the user's to fix; a lost race is the caller's to handle (reload, decide again);
/// the rest are failures of the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file exists but is not a SQLite database.
    #[error("{path} is not a Sandflow database (not even SQLite): move it away or choose another --home")]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// Written by a newer Sandflow whose schema this build does not know.
    #[error(
        "{database} was written by a newer Sandflow (schema version {found}; this build knows up to {known}): upgrade Sandflow"
    )]
    NewerSchema {
        /// The database: a file's path, or a URL with its password redacted.
        database: String,
        /// The newest migration in the database.
        found: i64,
        /// The newest migration this build has.
        known: i64,
    },
    /// The database file is empty (0 bytes): it held a database once, or something else made it.
    #[error(
        "{path} is empty (0 bytes), so it holds no Sandflow history: restore it from a backup, or delete it (`sandflow db reset --yes`) to start with a new database"
    )]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// Another process runs a scheduler on this store.
    #[error("{}", scheduler_running(owner.as_ref(), lock.as_deref()))]
    SchedulerRunning {
        /// The owner, as it recorded itself (`None` if it had not yet).
        owner: Option<SchedulingOwner>,
        /// The lock file of a SQLite store; `None` for PostgreSQL (an advisory lock).
        lock: Option<PathBuf>,
    },
    /// The lock file beside the database could not be opened, read or written.
    #[error("could not use the lock file {}", path.display())]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A run to create in a batch already exists: nothing of the batch is committed.
    #[error("a run `{run_id}` already exists")]
    RunExists {
        /// The run.
        run_id: String,
    },
    /// A guarded write found its row in another state than expected (another process changed it
    /// first): nothing of the batch is committed.
    #[error("{0}")]
    LostRace(Box<LostRace>),
    /// A change whose move the task-state machine does not have (`sandflow_core::transition`):
    /// a bug in the caller, refused before anything of the batch is written.
    #[error("refusing an illegal change of {run_id}/{task_id}[{map_index}]: {from} → {to}")]
    IllegalTransition {
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
        /// The instance (-1 unmapped).
        map_index: i64,
        /// The state it was expected in.
        from: sandflow_core::state::TaskState,
        /// The state it was to move to.
        to: sandflow_core::state::TaskState,
    },
    /// A stored value this build cannot read.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// Plugin bytes that do not hash to the id they are stored under (corruption or tampering).
    #[error("plugin bytes stored as {id} hash to {actual}: refusing to use them")]
    PluginMismatch {
        /// The id they are stored under.
        id: String,
        /// What they hash to.
        actual: String,
    },
    /// The database server could not be reached or refused the connection.
    #[error("could not connect to {database}: {source}")]
    Connect {
        /// The database, its password redacted.
        database: String,
        /// Why.
        source: sqlx::Error,
    },
    /// A DAG the store does not have (an experiment of it, say).
    #[error("there is no DAG `{0}`")]
    NoSuchDag(String),
    /// A value a caller passed that the store cannot take (an action finished as `pending`...).
    #[error("{0}")]
    Invalid(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn scheduler_running(owner: Option<&SchedulingOwner>, lock: Option<&Path>) -> String {
    let who = match (owner, lock) {
        (Some(o), _) => format!(
            "pid {} ({}, since {})",
            o.pid,
            o.role,
            o.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        (None, Some(lock)) => format!("a process that has not yet written its pid into {}", lock.display()),
        (None, None) => "a process that has not yet recorded its pid".to_string(),
    };
    match lock {
        Some(_) => format!(
            "a scheduler already runs on this home: {who}. Only one may run on the embedded SQLite store \
             at a time: stop it first, or leave the work to it"
        ),
        None => format!(
            "a scheduler already runs on this database: {who}. Only one may run on a PostgreSQL database \
             at a time for now: stop it first, or leave the work to it"
        ),
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A guarded write that lost: the row was not in the state the change expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostRace {
    /// The run the row belongs to.
    pub run_id: String,
    /// The task, for a task instance or a try; `None` for the run itself.
    pub task_id: Option<String>,
    /// The map index, for a task instance or a try.
    pub map_index: Option<i64>,
    /// What the change expected (`scheduled`, `running (try 2)`...).
    pub expected: String,
    /// What the transaction found instead; `None` when the row does not exist.
    pub found: Option<String>,
}

impl LostRace {
    pub(crate) fn run(run_id: &str, expected: impl Into<String>, found: Option<String>) -> StoreError {
        StoreError::LostRace(Box::new(LostRace {
            run_id: run_id.to_string(),
            task_id: None,
            map_index: None,
            expected: expected.into(),
            found,
        }))
    }

    pub(crate) fn task(
        run_id: &str,
        task_id: &str,
        map_index: i64,
        expected: impl Into<String>,
        found: Option<String>,
    ) -> StoreError {
        StoreError::LostRace(Box::new(LostRace {
            run_id: run_id.to_string(),
            task_id: Some(task_id.to_string()),
            map_index: Some(map_index),
            expected: expected.into(),
            found,
        }))
    }
}

impl fmt::Display for LostRace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("lost a race on ")?;
        match (&self.task_id, self.map_index) {
            (Some(task), Some(index)) if index >= 0 => write!(f, "task instance {}/{task}[{index}]", self.run_id)?,
            (Some(task), _) => write!(f, "task instance {}/{task}", self.run_id)?,
            (None, _) => write!(f, "run {}", self.run_id)?,
        }
        write!(f, ": expected {}, found {}", self.expected, self.found.as_deref().unwrap_or("no such row"))?;
        f.write_str(" (another process changed it first; nothing of the batch was committed)")
    }
}

/// A stored name this build does not know (a run type, a plugin kind, an action state).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{name}`")]
pub struct UnknownName {
    /// What it should have named.
    pub what: &'static str,
    /// The name found.
    pub name: String,
}
