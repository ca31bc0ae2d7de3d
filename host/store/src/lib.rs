//! Sandflow's store: every SQL statement lives in this crate, behind [`Store`], for two databases:
//! SQLite (the embedded default, one machine) and PostgreSQL (any number of processes on any
//! number of machines, coordinating only through the database).
//!
//! Why it is shaped this way:
//! - **One type for callers, one module of SQL per backend.** The scheduler and the command line
//!   speak in [`Change`]s and typed rows; they never see SQL and never know which database they
//!   talk to. [`Store`] is a cheap-clone handle on an `Arc<dyn Backend>`; `sqlite/` and
//!   `postgres/` each implement the internal `Backend` trait with all of their own SQL in one
//!   place, and each has its own migrations (`migrations/sqlite`, `migrations/postgres`). The
//!   public methods live in one module per concern (plugins, DAGs, runs, task instances, tries,
//!   actions, pools, schedulers, ownership) and hold what does not depend on the database (the
//!   plugin hash check, say), so it is written once.
//! - **A trait, not an enum of backends.** An enum would put a `match` in every one of the forty
//!   methods and both backends' statements side by side in each; a trait keeps each backend whole
//!   and readable on its own (Atuin's `Database` trait is the model), makes adding a method a
//!   compile error in both until both have it, and costs one boxed future per call, which is
//!   nothing beside a database round trip. The trait is internal: no caller can implement a fake
//!   store, so tests run against real databases (`tests/all`: every test on both).
//! - **Writes come in batches.** [`Store::apply`] commits a slice of changes in one transaction, so
//!   the scheduler commits every state change before acting on it without paying a commit per row.
//! - **Every state change is a guarded write.** A [`Change`] names the state it expects to find
//!   (`from`), and its `UPDATE` carries `WHERE state = $from`. With one scheduler per SQLite home
//!   that only catches bugs; with several processes on PostgreSQL it is what keeps two of them
//!   from both starting a task or both ending a run. An update that matches no row rolls the
//!   whole batch back and returns [`StoreError::LostRace`] with what was expected and what was
//!   found, read in the same transaction: the caller reloads and decides again. Nothing is ever
//!   half-committed and nothing silently overwrites another process's decision. Actions
//!   ([`Store::claim_action`], [`Store::finish_action`]) and pauses ([`Store::set_paused`]) are
//!   guarded the same way and say whether they won.
//! - **Typed rows.** States, run types, plugin kinds and action states are enums; JSON (outputs,
//!   metrics, confs, specs, action payloads) is `serde_json::Value` both ways, stored as text in
//!   SQLite and as `JSONB` in PostgreSQL. A stored value this build cannot read is an error, never
//!   a default.
//! - **SQLite in WAL mode with `synchronous = NORMAL`** by default: a killed process loses nothing
//!   that was committed; a power cut may lose the last few commits. `synchronous = FULL` (about 14×
//!   slower per commit here) is [`Durability::Full`], for those who need it.
//! - **Migrations are embedded** and run at open; a database written by a newer Sandflow is refused
//!   with a clear message instead of being half-understood (on both backends), and so is an empty
//!   file where a SQLite database was (SQLite would take it for a new database and all history
//!   would silently be gone). Two processes opening a fresh database at once end with one
//!   migration: a file lock on SQLite, sqlx's advisory lock on PostgreSQL.
//! - **One scheduler per store, for now** ([`Store::own_scheduling`]): an OS file lock on SQLite,
//!   a session-level advisory lock on a dedicated connection on PostgreSQL. Both are freed when
//!   their process dies, however it dies.
//! - **Secrets stay secret.** A [`DatabaseUrl`] shows its password as `***` in `Debug` and
//!   `Display`, and every error names the database by that form.

mod actions;
mod backend;
mod changes;
mod claims;
mod dags;
mod error;
mod grants;
mod open;
mod overview;
mod ownership;
mod plugins;
mod pools;
mod postgres;
mod runs;
mod schedulers;
mod sqlite;
mod task_instances;
mod tries;
mod url;
mod users;

use std::sync::Arc;

pub use actions::{ActionRow, ActionState};
pub use changes::{Change, TryEnd};
pub use claims::{
    Claim, ClaimRequest, Claimed, ExpiredLease, HeldTry, QueuedJob, Report, ReportFate, ReportedTry, Topic, WorkerInfo,
};
pub use dags::{
    ActivateChange, DagRow, ExperimentRow, ImportErrorRow, NewVersion, PauseChange, Placement, Recorded, VersionOrigin,
    VersionRow,
};
pub use error::{LostRace, Result, StoreError, UnknownName};
pub use grants::{ArtifactRow, MountRow, NewArtifact, SecretRow};
pub use open::Durability;
pub use overview::{PluginUse, RunBrief, StateCount};
pub use ownership::{lock_path, SchedulingGuard, SchedulingOwner};
pub use plugins::{PluginKind, PluginRow};
pub use pools::PoolRow;
pub use runs::{NewRun, RunCursor, RunQuery, RunRow, RunType, MAX_PAGE};
pub use schedulers::SchedulerRow;
pub use task_instances::TaskInstanceRow;
pub use tries::{Running, TryRow};
pub use url::{BadDatabaseUrl, DatabaseUrl};
pub use users::{
    AuditQuery, AuditRow, Audited, BudgetRow, NewAudit, NewToken, Role, TokenOwner, TokenRow, UserChange,
    UserCredentials, UserRow,
};

/// The store: a cheap-clone handle on one database (SQLite or PostgreSQL), its connection pool
/// inside. Open it with [`Store::open`], [`Store::in_memory`] or [`Store::connect`].
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn backend::Backend>,
    wakeups: Arc<claims::Wakeups>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("database", &self.backend.describe()).finish()
    }
}

impl Store {
    fn new(backend: impl backend::Backend + 'static) -> Store {
        Store { backend: Arc::new(backend), wakeups: Arc::default() }
    }

    /// The database, for messages: the SQLite file's path, `:memory:`, or the PostgreSQL URL
    /// with its password redacted.
    pub fn describe(&self) -> String {
        self.backend.describe()
    }

    /// Whether this store is PostgreSQL (several processes may share it).
    pub fn is_postgres(&self) -> bool {
        self.backend.is_postgres()
    }
}

/// A plugin's id: `sha256:` and the hex SHA-256 of its bytes (as the sandbox computes it).
pub(crate) fn plugin_id_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
