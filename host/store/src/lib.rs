//! Sandflow's store: every SQL statement lives in this crate, behind [`Store`].
//!
//! Why it is shaped this way:
//! - **One type, one place for SQL.** The scheduler speaks in [`Change`]s and rows; it never sees SQL.
//!   The PostgreSQL backend (a later issue) is a second implementation of the same methods with its
//!   own migrations, not a rewrite of the callers.
//! - **Writes come in batches.** [`Store::apply`] commits a slice of changes in one transaction, so
//!   the scheduler commits every state change before acting on it without paying a commit per row.
//! - **SQLite in WAL mode with `synchronous = NORMAL`** by default: a killed process loses nothing
//!   that was committed; a power cut may lose the last few commits. `synchronous = FULL` (about 14×
//!   slower per commit here) is [`Durability::Full`], for those who need it.
//! - **Migrations are embedded** and run at open; a database written by a newer Sandflow is refused
//!   with a clear message instead of being half-understood, and so is an empty file where a database
//!   was (SQLite would take it for a new database and all history would silently be gone).
//! - **One scheduler per SQLite home**, held by an OS file lock ([`Store::own_scheduling`]).

mod ownership;
mod rows;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

pub use ownership::{lock_path, SchedulingGuard, SchedulingOwner};
pub use rows::{
    ActionRow, DagRow, ImportErrorRow, NewRun, PluginRow, PoolRow, RunRow, RunType, SchedulerRow, TaskInstanceRow,
    TryRow,
};
use sandflow_core::state::{RunState, TaskState};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// What can go wrong in the store. Callers tell these apart: a newer schema or a file that is not a
/// database are the user's to fix; the rest are failures of the store itself.
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
        "{path} was written by a newer Sandflow (schema version {found}; this build knows up to {known}): upgrade Sandflow"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
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
    /// Another process runs a scheduler on this SQLite store.
    #[error("{}", scheduler_running(owner.as_ref(), lock))]
    SchedulerRunning {
        /// The owner, as it wrote itself into the lock file (`None` if it had not yet).
        owner: Option<SchedulingOwner>,
        /// The lock file.
        lock: PathBuf,
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
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("could not migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn scheduler_running(owner: Option<&SchedulingOwner>, lock: &Path) -> String {
    let who = match owner {
        Some(o) => format!(
            "pid {} ({}, since {})",
            o.pid,
            o.role,
            o.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        None => format!("a process that has not yet written its pid into {}", lock.display()),
    };
    format!(
        "a scheduler already runs on this home: {who}. Only one may run on the embedded SQLite store \
         at a time: stop it first, or leave the work to it"
    )
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard a commit tries to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` in WAL mode: safe against a killed process (the default).
    #[default]
    Normal,
    /// `synchronous = FULL`: also safe against a power cut, at several times the cost per commit.
    Full,
}

/// A state change the scheduler has decided on, to be committed before it takes effect.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A run changes state (`started_at` is set on running, `ended_at` on success or failure).
    RunState { run_id: String, state: RunState, at: DateTime<Utc> },
    /// A task instance changes state without a try starting or ending (scheduled, skipped,
    /// upstream_failed, up_for_retry becoming scheduled, a mapped task's aggregate...). `output`,
    /// when given, replaces the instance's output (a mapped task's list of outputs).
    TaskState {
        run_id: String,
        task_id: String,
        map_index: i64,
        state: TaskState,
        reason: Option<String>,
        output: Option<String>,
        at: DateTime<Utc>,
    },
    /// A mapped task expands: one instance per item (JSON), map_index 0..n-1, state scheduled.
    Expand { run_id: String, task_id: String, items: Vec<String>, at: DateTime<Utc> },
    /// A clear: the instance goes back to none, forgets its output, and gets its retries back.
    Reset { run_id: String, task_id: String, map_index: i64, at: DateTime<Utc> },
    /// A try starts: the task instance becomes running with this try number.
    TryStarted {
        run_id: String,
        task_id: String,
        map_index: i64,
        try_number: i64,
        plugin_id: String,
        at: DateTime<Utc>,
    },
    /// A try ends, and the task instance moves to `state`.
    TryEnded(Box<TryEnd>),
    /// A run is created, queued, with its task instances (state none); committed with the rest of
    /// the batch (a run a task's result triggers, with that try's end). A run of that id already
    /// there fails the whole batch with [`StoreError::RunExists`].
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
    /// The task instance's new state (success, failed, up_for_retry...); `None` records the try
    /// alone (a try that ended after its instance was cleared or marked).
    pub state: Option<TaskState>,
    /// On success: the result's output (JSON) and metrics (JSON object).
    pub output: Option<String>,
    pub metrics: Option<String>,
    /// For up_for_retry: when the next try may start.
    pub next_try_at: Option<DateTime<Utc>>,
}

/// The store. Cheap to clone (a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
}

/// How many times opening retries a database that is locked for a moment (50 ms apart).
const OPEN_RETRIES: u32 = 60;

/// SQLITE_BUSY: another connection holds a lock SQLite would not wait for.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("5") || db.message().contains("database is locked"))
}

/// A plugin's id: `sha256:` and the hex SHA-256 of its bytes (as the sandbox computes it).
fn plugin_id_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn is_not_a_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.message().contains("file is not a database"))
}

/// A database file of 0 bytes, with no write-ahead log holding its pages, is refused: SQLite would
/// take it for a new database, and every run, log and plugin would be silently gone. A file that
/// does not exist is a new database.
fn refuse_an_empty_file(path: &Path) -> Result<()> {
    let empty = |p: &Path| std::fs::metadata(p).map(|m| m.is_file() && m.len() == 0);
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    match (empty(path), empty(&wal)) {
        (Ok(true), Ok(true) | Err(_)) => Err(StoreError::EmptyFile { path: path.to_path_buf() }),
        _ => Ok(()),
    }
}

impl Store {
    /// Opens (creating if absent) the database at `path`, migrating it to this build's schema.
    pub async fn open(path: &Path, durability: Durability) -> Result<Store> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // Two processes opening a new database at once (a standalone and a `sandflow tasks list`,
        // say) would race to switch it to WAL (SQLite answers the loser "database is locked"
        // without waiting) and to apply the first migration. An exclusive lock on a file beside
        // the database, held from the first connection to the end of the migrations, makes the
        // second wait, then find nothing left to do.
        let lock_path = path.with_extension("migrate-lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
            .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        // Under the lock, a file that exists is one another opener has finished with: a new
        // database is never seen half-created, so an empty one is a lost one.
        refuse_an_empty_file(path)?;
        // Opening can still meet a short lock held outside it: the last connection of another
        // process checkpoints the WAL as it closes, and SQLite answers a journal-mode pragma
        // arriving then with "database is locked" at once, without its busy timeout. That is
        // transient: try again for a few seconds before giving up.
        let mut attempt = 0;
        let opened = loop {
            match Store::connect_and_migrate(path, options.clone()).await {
                Err(StoreError::Database(e)) if is_busy(&e) && attempt < OPEN_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        };
        drop(lock);
        opened
    }

    async fn connect_and_migrate(path: &Path, options: SqliteConnectOptions) -> Result<Store> {
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|e| {
            if is_not_a_database(&e) {
                StoreError::NotADatabase { path: path.to_path_buf() }
            } else {
                StoreError::Database(e)
            }
        })?;
        let store = Store { pool, path: Some(path.to_path_buf()) };
        store.migrate(path).await?;
        Ok(store)
    }

    /// A private in-memory database (for `dags test` and tests): same schema, nothing on disk.
    pub async fn in_memory() -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: each in-memory connection would be a database of its own.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let store = Store { pool, path: None };
        store.migrate(Path::new(":memory:")).await?;
        Ok(store)
    }

    async fn migrate(&self, path: &Path) -> Result<()> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = match sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
        {
            Ok(found) => found,
            Err(e) if is_not_a_database(&e) => return Err(StoreError::NotADatabase { path: path.to_path_buf() }),
            Err(sqlx::Error::Database(e)) if e.message().contains("no such table") => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(found) = applied.filter(|found| *found > known) {
            return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, known });
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(ref inner) if is_not_a_database(inner) => {
                StoreError::NotADatabase { path: path.to_path_buf() }
            }
            other => other.into(),
        })?;
        Ok(())
    }

    /// Takes scheduling on this store for this process, as `role` (shown to a process refused
    /// meanwhile): on SQLite only one process may run a scheduler at a time. Hold the guard for as
    /// long as the scheduler runs. Refused with [`StoreError::SchedulerRunning`].
    pub async fn own_scheduling(&self, role: &str) -> Result<SchedulingGuard> {
        let Some(path) = self.path.clone() else { return Ok(SchedulingGuard::private()) };
        let role = role.to_string();
        tokio::task::spawn_blocking(move || SchedulingGuard::acquire(&path, &role))
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- plugins ----

    /// Stores plugin bytes under their id (no-op when present).
    pub async fn put_plugin(&self, id: &str, bytes: &[u8], kind: &str) -> Result<()> {
        sqlx::query("INSERT INTO plugins (id, bytes, size, kind, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(kind)
            .bind(Utc::now())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The bytes stored under `id`, if any, checked against it: bytes that hash to anything else are
    /// [`StoreError::PluginMismatch`]. The one way plugin bytes are read.
    pub async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let bytes: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT bytes FROM plugins WHERE id = ?").bind(id).fetch_optional(&self.pool).await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let actual = plugin_id_of(&bytes);
        if actual != id {
            return Err(StoreError::PluginMismatch { id: id.to_string(), actual });
        }
        Ok(Some(bytes))
    }

    /// Every stored plugin (without its bytes), oldest first.
    pub async fn plugins(&self) -> Result<Vec<PluginRow>> {
        Ok(sqlx::query_as("SELECT id, kind, size, created_at FROM plugins ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Whether `id` is stored.
    pub async fn has_plugin(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM plugins WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            > 0)
    }

    // ---- DAGs ----

    /// Records a DAG version loaded from `file_path` and makes it the DAG's active version. A new
    /// DAG starts paused when `paused_if_new`. Clears the file's import error. Returns whether the
    /// version is new to the store.
    pub async fn record_dag_version(
        &self,
        dag_id: &str,
        version: &str,
        spec: &str,
        file_path: &str,
        paused_if_new: bool,
    ) -> Result<bool> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO dags (dag_id, active_version, file_path, is_paused, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (dag_id) DO UPDATE SET active_version = excluded.active_version, file_path = excluded.file_path,
             stale_since = NULL,
             updated_at = CASE WHEN dags.active_version = excluded.active_version THEN dags.updated_at ELSE excluded.updated_at END",
        )
        .bind(dag_id)
        .bind(version)
        .bind(file_path)
        .bind(paused_if_new)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let inserted = sqlx::query(
            "INSERT INTO dag_versions (dag_id, version, spec, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(dag_id)
        .bind(version)
        .bind(spec)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        sqlx::query("DELETE FROM import_errors WHERE file_path = ?").bind(file_path).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Records that `file_path` failed to load: `dag_id` is the DAG it declares when that is known,
    /// else the DAG last loaded from that file, if any (it keeps its active version).
    pub async fn record_import_error(&self, file_path: &str, dag_id: Option<&str>, message: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO import_errors (file_path, dag_id, message, at)
             VALUES (?, COALESCE(?, (SELECT dag_id FROM dags WHERE file_path = ?)), ?, ?)
             ON CONFLICT (file_path) DO UPDATE SET message = excluded.message, at = excluded.at, dag_id = excluded.dag_id",
        )
        .bind(file_path)
        .bind(dag_id)
        .bind(file_path)
        .bind(message)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `file_path`'s import error (the file is gone).
    pub async fn clear_import_error(&self, file_path: &str) -> Result<()> {
        sqlx::query("DELETE FROM import_errors WHERE file_path = ?").bind(file_path).execute(&self.pool).await?;
        Ok(())
    }

    /// Marks a DAG stale: no file declares it any more. Returns whether it was not stale before.
    pub async fn mark_stale(&self, dag_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE dags SET stale_since = ? WHERE dag_id = ? AND stale_since IS NULL")
            .bind(Utc::now())
            .bind(dag_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every file that failed to load, with its message.
    pub async fn import_errors(&self) -> Result<Vec<ImportErrorRow>> {
        Ok(sqlx::query_as("SELECT file_path, dag_id, message, at FROM import_errors ORDER BY file_path")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Every DAG, by id.
    pub async fn dags(&self) -> Result<Vec<DagRow>> {
        Ok(sqlx::query_as(&format!("{} ORDER BY dag_id", rows::DAG_SELECT)).fetch_all(&self.pool).await?)
    }

    /// One DAG.
    pub async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        Ok(sqlx::query_as(&format!("{} WHERE dag_id = ?", rows::DAG_SELECT))
            .bind(dag_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// The stored spec (JSON) of a DAG version.
    pub async fn dag_spec(&self, dag_id: &str, version: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT spec FROM dag_versions WHERE dag_id = ? AND version = ?")
            .bind(dag_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Every version of a DAG, oldest first.
    pub async fn dag_versions(&self, dag_id: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows =
            sqlx::query("SELECT version, created_at FROM dag_versions WHERE dag_id = ? ORDER BY created_at, version")
                .bind(dag_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("version")?, r.try_get("created_at")?))).collect()
    }

    /// Pauses or unpauses a DAG; `false` when there is no such DAG.
    pub async fn set_paused(&self, dag_id: &str, paused: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE dags SET is_paused = ? WHERE dag_id = ?")
            .bind(paused)
            .bind(dag_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    // ---- runs and task instances ----

    /// Creates a queued run and its task instances (state none), in one transaction. For a
    /// scheduled run whose interval already has a run, returns `false` and creates nothing.
    pub async fn create_run(&self, run: &NewRun, task_ids: &[String]) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        if !insert_run(&mut tx, run, task_ids).await? {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// One run.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        Ok(sqlx::query_as(&format!("{} WHERE run_id = ?", rows::RUN_SELECT))
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Runs of a DAG (or of every DAG), newest first.
    pub async fn runs(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{} WHERE (?1 IS NULL OR dag_id = ?1) ORDER BY created_at DESC, run_id DESC LIMIT ?2",
            rows::RUN_SELECT
        ))
        .bind(dag_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Runs that are queued or running, oldest first: the scheduler's working set.
    pub async fn active_runs(&self) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{} WHERE state IN ('queued', 'running') ORDER BY created_at, run_id",
            rows::RUN_SELECT
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The end of the latest scheduled interval of a DAG, if it has any scheduled run.
    pub async fn last_scheduled_interval_end(&self, dag_id: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT interval_end FROM dag_runs WHERE dag_id = ? AND run_type = 'scheduled' ORDER BY interval_end DESC LIMIT 1",
        )
        .bind(dag_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The task instances of a run, in task id order.
    pub async fn task_instances(&self, run_id: &str) -> Result<Vec<TaskInstanceRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, state, try_number, next_try_at, output, metrics, reason, started_at, ended_at,
                    map_item, tries_before_clear
             FROM task_instances WHERE run_id = ? ORDER BY task_id, map_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The tries of one task instance, first try first.
    pub async fn tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, try_number, plugin_id, outcome, message, fuel_used, peak_memory, wall_us, log,
                    started_at, ended_at
             FROM task_tries WHERE run_id = ? AND task_id = ? AND map_index = ? ORDER BY try_number",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(map_index)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every try of a run, in start order (for benchmarks and timelines).
    pub async fn run_tries(&self, run_id: &str) -> Result<Vec<TryRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, try_number, plugin_id, outcome, message, fuel_used, peak_memory, wall_us, NULL AS log,
                    started_at, ended_at
             FROM task_tries WHERE run_id = ? ORDER BY started_at",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Per task instance of a run: its failed tries since its last clear (sensor pokes that asked
    /// to wait are not failures).
    pub async fn failed_tries(&self, run_id: &str) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT t.task_id, t.map_index, COUNT(*) AS failed FROM task_tries t
             JOIN task_instances i ON i.run_id = t.run_id AND i.task_id = t.task_id AND i.map_index = t.map_index
             WHERE t.run_id = ? AND t.try_number > i.tries_before_clear AND t.outcome IS NOT NULL
               AND t.outcome NOT IN ('success', 'rescheduled')
             GROUP BY t.task_id, t.map_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("task_id")?, r.try_get("map_index")?, r.try_get("failed")?))).collect()
    }

    /// Runs of a DAG whose logical date is in `[from, to]`, oldest first.
    pub async fn runs_between(&self, dag_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{} WHERE dag_id = ? AND logical_date >= ? AND logical_date <= ? ORDER BY logical_date, run_id",
            rows::RUN_SELECT
        ))
        .bind(dag_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- pools ----

    /// Creates or resizes a pool.
    pub async fn set_pool(&self, name: &str, slots: i64, description: Option<&str>) -> Result<()> {
        sqlx::query(
            "INSERT INTO pools (name, slots, description, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
                 description = COALESCE(excluded.description, pools.description), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(slots)
        .bind(description)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every pool, by name.
    pub async fn pools(&self) -> Result<Vec<PoolRow>> {
        Ok(sqlx::query_as("SELECT name, slots, description, updated_at FROM pools ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Deletes a pool; `false` when there was none.
    pub async fn delete_pool(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM pools WHERE name = ?").bind(name).execute(&self.pool).await?.rows_affected() > 0)
    }

    // ---- actions and schedulers ----

    /// Records a user's action for a scheduler to carry out; returns its id.
    pub async fn enqueue_action(&self, kind: &str, payload: &str, requested_by: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO actions (kind, payload, requested_by, requested_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(kind)
        .bind(payload)
        .bind(requested_by)
        .bind(Utc::now())
        .fetch_one(&self.pool)
        .await?)
    }

    /// Takes a pending action for this process; `false` when another took it first.
    pub async fn claim_action(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query("UPDATE actions SET state = 'running' WHERE id = ? AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    /// Actions not yet carried out, oldest first.
    pub async fn pending_actions(&self) -> Result<Vec<ActionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, payload, requested_by, requested_at, state, result, done_at FROM actions
             WHERE state = 'pending' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// One action.
    pub async fn action(&self, id: i64) -> Result<Option<ActionRow>> {
        Ok(sqlx::query_as(
            "SELECT id, kind, payload, requested_by, requested_at, state, result, done_at FROM actions WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records how an action went (`done` or `failed`, with a message).
    pub async fn finish_action(&self, id: i64, state: &str, result: &str) -> Result<()> {
        sqlx::query("UPDATE actions SET state = ?, result = ?, done_at = ? WHERE id = ?")
            .bind(state)
            .bind(result)
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A scheduler says it is alive.
    pub async fn heartbeat(&self, id: &str, pid: u32, started_at: DateTime<Utc>) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedulers (id, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(id)
        .bind(i64::from(pid))
        .bind(started_at)
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A scheduler stops.
    pub async fn remove_scheduler(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM schedulers WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    /// Whether a scheduler has said it is alive within `max_age`.
    pub async fn live_scheduler(&self, max_age: Duration) -> Result<bool> {
        Ok(!self.live_schedulers(max_age).await?.is_empty())
    }

    /// The schedulers that have said they are alive within `max_age`, latest heartbeat first.
    pub async fn live_schedulers(&self, max_age: Duration) -> Result<Vec<SchedulerRow>> {
        let since = Utc::now() - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::zero());
        Ok(sqlx::query_as(
            "SELECT id, pid, started_at, heartbeat_at FROM schedulers WHERE heartbeat_at >= ? ORDER BY heartbeat_at DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Commits `changes` in one transaction, in order.
    pub async fn apply(&self, changes: &[Change]) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for change in changes {
            match change {
                Change::RunState { run_id, state, at } => {
                    sqlx::query(
                        "UPDATE dag_runs SET state = ?,
                             started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END,
                             ended_at = CASE WHEN ? IN ('success', 'failed') THEN ? ELSE NULL END
                         WHERE run_id = ?",
                    )
                    .bind(state.as_str())
                    .bind(state.as_str())
                    .bind(at)
                    .bind(state.as_str())
                    .bind(at)
                    .bind(run_id)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::TaskState { run_id, task_id, map_index, state, reason, output, at } => {
                    sqlx::query(
                        "UPDATE task_instances SET state = ?, reason = COALESCE(?, reason), output = COALESCE(?, output),
                             updated_at = ?,
                             ended_at = CASE WHEN ? IN ('skipped', 'upstream_failed', 'removed', 'failed', 'success') THEN ? ELSE ended_at END
                         WHERE run_id = ? AND task_id = ? AND map_index = ?",
                    )
                    .bind(state.as_str())
                    .bind(reason)
                    .bind(output)
                    .bind(at)
                    .bind(state.as_str())
                    .bind(at)
                    .bind(run_id)
                    .bind(task_id)
                    .bind(map_index)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::Expand { run_id, task_id, items, at } => {
                    for (index, item) in items.iter().enumerate() {
                        sqlx::query(
                            "INSERT INTO task_instances (run_id, task_id, map_index, state, map_item, updated_at)
                             VALUES (?, ?, ?, 'scheduled', ?, ?)
                             ON CONFLICT (run_id, task_id, map_index) DO UPDATE SET state = 'scheduled',
                                 map_item = excluded.map_item, updated_at = excluded.updated_at",
                        )
                        .bind(run_id)
                        .bind(task_id)
                        .bind(index as i64)
                        .bind(item)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                Change::Reset { run_id, task_id, map_index, at } => {
                    sqlx::query(
                        "UPDATE task_instances SET state = 'none', output = NULL, metrics = NULL, reason = NULL,
                             next_try_at = NULL, started_at = NULL, ended_at = NULL, tries_before_clear = try_number,
                             updated_at = ?
                         WHERE run_id = ? AND task_id = ? AND map_index = ?",
                    )
                    .bind(at)
                    .bind(run_id)
                    .bind(task_id)
                    .bind(map_index)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::TryStarted { run_id, task_id, map_index, try_number, plugin_id, at } => {
                    sqlx::query(
                        "UPDATE task_instances SET state = 'running', try_number = ?, next_try_at = NULL, updated_at = ?,
                             started_at = COALESCE(started_at, ?), ended_at = NULL
                         WHERE run_id = ? AND task_id = ? AND map_index = ?",
                    )
                    .bind(try_number)
                    .bind(at)
                    .bind(at)
                    .bind(run_id)
                    .bind(task_id)
                    .bind(map_index)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO task_tries (run_id, task_id, map_index, try_number, plugin_id, started_at) VALUES (?, ?, ?, ?, ?, ?)",
                    )
                    .bind(run_id)
                    .bind(task_id)
                    .bind(map_index)
                    .bind(try_number)
                    .bind(plugin_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::TryEnded(end) => {
                    sqlx::query(
                        "UPDATE task_tries SET outcome = ?, message = ?, fuel_used = ?, peak_memory = ?, wall_us = ?, log = ?, ended_at = ?
                         WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?",
                    )
                    .bind(&end.outcome)
                    .bind(&end.message)
                    .bind(end.fuel_used)
                    .bind(end.peak_memory)
                    .bind(i64::try_from(end.wall.as_micros()).unwrap_or(i64::MAX))
                    .bind(&end.log)
                    .bind(end.at)
                    .bind(&end.run_id)
                    .bind(&end.task_id)
                    .bind(end.map_index)
                    .bind(end.try_number)
                    .execute(&mut *tx)
                    .await?;
                    let Some(state) = end.state else { continue };
                    sqlx::query(
                        "UPDATE task_instances SET state = ?, output = COALESCE(?, output), metrics = COALESCE(?, metrics),
                             reason = ?, next_try_at = ?, updated_at = ?,
                             ended_at = CASE WHEN ? IN ('success', 'failed') THEN ? ELSE NULL END
                         WHERE run_id = ? AND task_id = ? AND map_index = ?",
                    )
                    .bind(state.as_str())
                    .bind(&end.output)
                    .bind(&end.metrics)
                    .bind(if state == TaskState::Success { None } else { Some(&end.message) })
                    .bind(end.next_try_at)
                    .bind(end.at)
                    .bind(state.as_str())
                    .bind(end.at)
                    .bind(&end.run_id)
                    .bind(&end.task_id)
                    .bind(end.map_index)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::CreateRun { run, task_ids } => {
                    if !insert_run(&mut tx, run, task_ids).await? {
                        return Err(StoreError::RunExists { run_id: run.run_id.clone() });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts a queued run and its task instances (state none) in `tx`; `false` when the run (or its
/// interval, for a scheduled run) is already there, and nothing is inserted.
async fn insert_run(tx: &mut sqlx::SqliteConnection, run: &NewRun, task_ids: &[String]) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO dag_runs (run_id, dag_id, version, run_type, state, logical_date, interval_start, interval_end,
                               conf, note, triggered_by, created_at)
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&run.run_id)
    .bind(&run.dag_id)
    .bind(&run.version)
    .bind(run.run_type.as_str())
    .bind(run.logical_date)
    .bind(run.interval.map(|i| i.0))
    .bind(run.interval.map(|i| i.1))
    .bind(&run.conf)
    .bind(&run.note)
    .bind(&run.triggered_by)
    .bind(run.created_at)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if !inserted {
        return Ok(false);
    }
    for task_id in task_ids {
        sqlx::query(
            "INSERT INTO task_instances (run_id, task_id, map_index, state, updated_at) VALUES (?, ?, -1, 'none', ?)",
        )
        .bind(&run.run_id)
        .bind(task_id)
        .bind(run.created_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
