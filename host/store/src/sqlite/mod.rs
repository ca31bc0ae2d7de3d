//! The SQLite backend: every statement the embedded store runs, and how it opens a file.
//!
//! Timestamps are RFC 3339 text in UTC and JSON is text (as `migrations/sqlite` has always had
//! them: homes made by earlier builds open as they are); rows decode them into their types.

mod apply;
mod claims;
mod grants;
mod users;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::backend::Backend;
use crate::{
    ActionRow, ActionState, Change, DagRow, Durability, ImportErrorRow, NewRun, PauseChange, PluginKind, PluginRow,
    PoolRow, Result, RunRow, SchedulerRow, SchedulingGuard, StoreError, TaskInstanceRow, TryRow,
};
use crate::{ActivateChange, ExperimentRow, NewVersion, Placement, Recorded, RunQuery, VersionOrigin, VersionRow};
use crate::{
    AuditQuery, AuditRow, BudgetRow, NewAudit, NewToken, Role, TokenOwner, TokenRow, UserChange, UserCredentials,
    UserRow,
};
use crate::{Claim, ClaimRequest, ExpiredLease, HeldTry, Report, ReportFate, ReportedTry, Topic, WorkerInfo};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const DAG_SELECT: &str =
    "SELECT dag_id, active_version, file_path, is_paused, created_at, updated_at, stale_since FROM dags";

const RUN_SELECT: &str = "SELECT run_id, dag_id, version, run_type, state, logical_date, interval_start,
    interval_end, conf, note, triggered_by, created_at, started_at, ended_at, experiment FROM dag_runs";

const VERSION_SELECT: &str = "SELECT dag_id, version, created_at, origin, uploaded_by FROM dag_versions";

const ACTION_SELECT: &str = "SELECT id, kind, payload, requested_by, requested_at, state, result, done_at FROM actions";

/// How many times opening retries a database that is locked for a moment (50 ms apart).
const OPEN_RETRIES: u32 = 60;

/// The SQLite store: a pool on one file (or one private in-memory database).
pub(crate) struct Sqlite {
    pool: SqlitePool,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// Taken by every write transaction of this process, so that they queue here, in order and
    /// without waiting, instead of in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms
    /// between attempts: with a scheduler and a worker writing in turns, those sleeps were most
    /// of a hop. Writers in other processes still meet the busy timeout.
    writer: tokio::sync::Mutex<()>,
}

/// SQLITE_BUSY: another connection holds a lock SQLite would not wait for.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("5") || db.message().contains("database is locked"))
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

/// JSON read back from a text column: anything that does not parse is a corrupt row, not a default.
fn json_text(text: &str, table: &'static str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt { table, detail: format!("not JSON: {e}") })
}

impl Sqlite {
    /// Opens (creating if absent) the database at `path`, migrating it to this build's schema.
    pub(crate) async fn open(path: &Path, durability: Durability) -> Result<Sqlite> {
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
            .map_err(|e| StoreError::LockFile { path: lock_path.clone(), source: e })?;
        let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
            .map_err(|e| StoreError::LockFile { path: lock_path.clone(), source: e })?;
        // Under the lock, a file that exists is one another opener has finished with: a new
        // database is never seen half-created, so an empty one is a lost one.
        refuse_an_empty_file(path)?;
        // Opening can still meet a short lock held outside it: the last connection of another
        // process checkpoints the WAL as it closes, and SQLite answers a journal-mode pragma
        // arriving then with "database is locked" at once, without its busy timeout. That is
        // transient: try again for a few seconds before giving up.
        let mut attempt = 0;
        let opened = loop {
            match Sqlite::connect_and_migrate(path, options.clone()).await {
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

    async fn connect_and_migrate(path: &Path, options: SqliteConnectOptions) -> Result<Sqlite> {
        let pool = SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(|e| {
            if is_not_a_database(&e) {
                StoreError::NotADatabase { path: path.to_path_buf() }
            } else {
                StoreError::Database(e)
            }
        })?;
        let store = Sqlite { pool, path: Some(path.to_path_buf()), writer: tokio::sync::Mutex::new(()) };
        store.migrate(path).await?;
        Ok(store)
    }

    /// A private in-memory database: same schema, nothing on disk.
    pub(crate) async fn in_memory() -> Result<Sqlite> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
        // One connection: each in-memory connection would be a database of its own.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(options).await?;
        let store = Sqlite { pool, path: None, writer: tokio::sync::Mutex::new(()) };
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
            return Err(StoreError::NewerSchema { database: path.display().to_string(), found, known });
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(ref inner) if is_not_a_database(inner) => {
                StoreError::NotADatabase { path: path.to_path_buf() }
            }
            other => other.into(),
        })?;
        Ok(())
    }
}

/// Inserts a queued run and its task instances (state none) in `tx`; `false` when the run (or its
/// interval, for a scheduled run) is already there, and nothing is inserted.
async fn insert_run(tx: &mut sqlx::SqliteConnection, run: &NewRun, task_ids: &[String]) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO dag_runs (run_id, dag_id, version, run_type, state, logical_date, interval_start, interval_end,
                               conf, note, triggered_by, created_at, experiment)
         VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    )
    .bind(&run.run_id)
    .bind(&run.dag_id)
    .bind(&run.version)
    .bind(run.run_type.as_str())
    .bind(run.logical_date)
    .bind(run.interval.map(|i| i.0))
    .bind(run.interval.map(|i| i.1))
    .bind(Value::Object(run.conf.clone()).to_string())
    .bind(&run.note)
    .bind(&run.triggered_by)
    .bind(run.created_at)
    .bind(&run.experiment)
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

/// `WHERE` and the filters of a run query (none of its paging).
fn run_filters(sql: &mut sqlx::QueryBuilder<'_, sqlx::Sqlite>, query: &RunQuery) {
    sql.push(" WHERE 1 = 1");
    if let Some(dag_id) = &query.dag_id {
        sql.push(" AND dag_id = ").push_bind(dag_id.clone());
    }
    if !query.states.is_empty() {
        sql.push(" AND state IN (");
        let mut states = sql.separated(", ");
        for state in &query.states {
            states.push_bind(state.as_str());
        }
        sql.push(")");
    }
    if let Some(run_type) = query.run_type {
        sql.push(" AND run_type = ").push_bind(run_type.as_str());
    }
    if let Some(experiment) = &query.experiment {
        sql.push(" AND experiment = ").push_bind(experiment.clone());
    }
    if let Some(by) = &query.triggered_by {
        sql.push(" AND triggered_by = ").push_bind(by.clone());
    }
}

/// Records one version in `tx` (see [`Store::record_versions`](crate::Store::record_versions)).
async fn record_version(tx: &mut sqlx::SqliteConnection, v: &NewVersion<'_>, now: DateTime<Utc>) -> Result<Recorded> {
    let active: Option<String> = sqlx::query_scalar("SELECT active_version FROM dags WHERE dag_id = ?")
        .bind(v.dag_id)
        .fetch_optional(&mut *tx)
        .await?;
    let activate = match (&v.placement, &active) {
        (Placement::Experiment { .. }, None) => return Err(StoreError::NoSuchDag(v.dag_id.to_string())),
        (Placement::Experiment { .. }, Some(_)) => false,
        (Placement::Keep, Some(_)) => false,
        (Placement::Activate, _) | (Placement::Keep, None) => true,
    };
    if activate {
        // First: the version's row references the DAG's.
        sqlx::query(
            "INSERT INTO dags (dag_id, active_version, file_path, is_paused, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (dag_id) DO UPDATE SET active_version = excluded.active_version, file_path = excluded.file_path,
             stale_since = NULL,
             updated_at = CASE WHEN dags.active_version = excluded.active_version THEN dags.updated_at ELSE excluded.updated_at END",
        )
        .bind(v.dag_id)
        .bind(v.version)
        .bind(v.file_path)
        .bind(v.paused_if_new)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO dag_versions (dag_id, version, spec, created_at, origin, uploaded_by) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT DO NOTHING",
    )
    .bind(v.dag_id)
    .bind(v.version)
    .bind(v.spec.to_string())
    .bind(now)
    .bind(v.origin.as_str())
    .bind(v.uploaded_by)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    for plugin_id in v.plugin_ids {
        sqlx::query("INSERT OR IGNORE INTO dag_version_plugins (dag_id, version, plugin_id) VALUES (?, ?, ?)")
            .bind(v.dag_id)
            .bind(v.version)
            .bind(plugin_id)
            .execute(&mut *tx)
            .await?;
    }
    if let Placement::Experiment { name, note } = v.placement {
        sqlx::query(
            "INSERT INTO experiments (dag_id, name, version, author, note, created_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(v.dag_id)
        .bind(name)
        .bind(v.version)
        .bind(v.uploaded_by.unwrap_or("unknown"))
        .bind(note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if v.origin == VersionOrigin::Folder {
        sqlx::query("DELETE FROM import_errors WHERE file_path = ?").bind(v.file_path).execute(&mut *tx).await?;
    }
    let activated = activate && active.as_deref() != Some(v.version);
    Ok(Recorded { new_version: inserted, activated, new_dag: active.is_none() })
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    fn describe(&self) -> String {
        match &self.path {
            Some(path) => path.display().to_string(),
            None => ":memory:".to_string(),
        }
    }

    fn is_postgres(&self) -> bool {
        false
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn own_scheduling(&self, role: &str) -> Result<SchedulingGuard> {
        let Some(path) = self.path.clone() else { return Ok(SchedulingGuard::private()) };
        let role = role.to_string();
        tokio::task::spawn_blocking(move || SchedulingGuard::acquire(&path, &role))
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Io(std::io::Error::other(e))))?
    }

    // ---- plugins ----

    async fn put_plugin(&self, id: &str, bytes: &[u8], kind: PluginKind) -> Result<bool> {
        let done = sqlx::query("INSERT INTO plugins (id, bytes, size, kind, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(bytes)
            .bind(bytes.len() as i64)
            .bind(kind.as_str())
            .bind(Utc::now())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn plugin(&self, id: &str) -> Result<Option<PluginRow>> {
        Ok(sqlx::query_as("SELECT id, kind, size, created_at FROM plugins WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT bytes FROM plugins WHERE id = ?").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn plugins(&self) -> Result<Vec<PluginRow>> {
        Ok(sqlx::query_as("SELECT id, kind, size, created_at FROM plugins ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn has_plugin(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM plugins WHERE id = ?")
            .bind(id)
            .fetch_one(&self.pool)
            .await?
            > 0)
    }

    // ---- DAGs ----

    async fn record_versions(&self, versions: &[NewVersion<'_>], audit: Option<&NewAudit>) -> Result<Vec<Recorded>> {
        let now = Utc::now();
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut recorded = Vec::with_capacity(versions.len());
        for v in versions {
            recorded.push(record_version(&mut tx, v, now).await?);
        }
        if let Some(audit) = audit {
            users::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    async fn activate_version(&self, dag_id: &str, version: &str, audit: Option<&NewAudit>) -> Result<ActivateChange> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let exists = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM dag_versions WHERE dag_id = ? AND version = ?")
            .bind(dag_id)
            .bind(version)
            .fetch_one(&mut *tx)
            .await?
            > 0;
        if !exists {
            return Ok(ActivateChange::NoSuchVersion);
        }
        let done =
            sqlx::query("UPDATE dags SET active_version = ?, updated_at = ? WHERE dag_id = ? AND active_version <> ?")
                .bind(version)
                .bind(Utc::now())
                .bind(dag_id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() > 0 {
            if let Some(audit) = audit {
                users::insert_audit(&mut tx, audit).await?;
            }
        }
        tx.commit().await?;
        Ok(if done.rows_affected() > 0 { ActivateChange::Changed } else { ActivateChange::Already })
    }

    async fn versions(&self, dag_id: &str) -> Result<Vec<VersionRow>> {
        Ok(sqlx::query_as(&format!("{VERSION_SELECT} WHERE dag_id = ? ORDER BY created_at DESC, version DESC"))
            .bind(dag_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn experiments(&self, dag_id: &str) -> Result<Vec<ExperimentRow>> {
        Ok(sqlx::query_as(
            "SELECT dag_id, name, version, author, note, created_at FROM experiments WHERE dag_id = ?
             ORDER BY created_at DESC, name, version",
        )
        .bind(dag_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn versions_using(&self, plugin_id: &str) -> Result<Vec<VersionRow>> {
        Ok(sqlx::query_as(&format!(
            "{VERSION_SELECT} WHERE (dag_id, version) IN (SELECT dag_id, version FROM dag_version_plugins WHERE plugin_id = ?)
             ORDER BY created_at DESC, dag_id, version"
        ))
        .bind(plugin_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_import_error(&self, file_path: &str, dag_id: Option<&str>, message: &str) -> Result<()> {
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

    async fn clear_import_error(&self, file_path: &str) -> Result<()> {
        sqlx::query("DELETE FROM import_errors WHERE file_path = ?").bind(file_path).execute(&self.pool).await?;
        Ok(())
    }

    async fn mark_stale(&self, dag_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE dags SET stale_since = ? WHERE dag_id = ? AND stale_since IS NULL")
            .bind(Utc::now())
            .bind(dag_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn import_errors(&self) -> Result<Vec<ImportErrorRow>> {
        Ok(sqlx::query_as("SELECT file_path, dag_id, message, at FROM import_errors ORDER BY file_path")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn dags(&self) -> Result<Vec<DagRow>> {
        Ok(sqlx::query_as(&format!("{DAG_SELECT} ORDER BY dag_id")).fetch_all(&self.pool).await?)
    }

    async fn dag(&self, dag_id: &str) -> Result<Option<DagRow>> {
        Ok(sqlx::query_as(&format!("{DAG_SELECT} WHERE dag_id = ?")).bind(dag_id).fetch_optional(&self.pool).await?)
    }

    async fn dag_spec(&self, dag_id: &str, version: &str) -> Result<Option<Value>> {
        let text: Option<String> = sqlx::query_scalar("SELECT spec FROM dag_versions WHERE dag_id = ? AND version = ?")
            .bind(dag_id)
            .bind(version)
            .fetch_optional(&self.pool)
            .await?;
        text.map(|text| json_text(&text, "dag_versions")).transpose()
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows =
            sqlx::query("SELECT version, created_at FROM dag_versions WHERE dag_id = ? ORDER BY created_at, version")
                .bind(dag_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("version")?, r.try_get("created_at")?))).collect()
    }

    async fn set_paused(&self, dag_id: &str, paused: bool, audit: Option<&NewAudit>) -> Result<PauseChange> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let done = sqlx::query("UPDATE dags SET is_paused = ? WHERE dag_id = ? AND is_paused = ?")
            .bind(paused)
            .bind(dag_id)
            .bind(!paused)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            if let Some(audit) = audit {
                users::insert_audit(&mut tx, audit).await?;
            }
            tx.commit().await?;
            return Ok(PauseChange::Changed);
        }
        let exists = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM dags WHERE dag_id = ?")
            .bind(dag_id)
            .fetch_one(&mut *tx)
            .await?
            > 0;
        Ok(if exists { PauseChange::Already } else { PauseChange::NoSuchDag })
    }

    // ---- runs ----

    async fn create_run(&self, run: &NewRun, task_ids: &[String], audit: Option<&NewAudit>) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if !insert_run(&mut tx, run, task_ids).await? {
            return Ok(false);
        }
        if let Some(audit) = audit {
            users::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunRow>> {
        Ok(sqlx::query_as(&format!("{RUN_SELECT} WHERE run_id = ?")).bind(run_id).fetch_optional(&self.pool).await?)
    }

    async fn runs(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{RUN_SELECT} WHERE (?1 IS NULL OR dag_id = ?1) ORDER BY created_at DESC, run_id DESC LIMIT ?2"
        ))
        .bind(dag_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Vec<RunRow>> {
        let mut sql = sqlx::QueryBuilder::new(RUN_SELECT);
        run_filters(&mut sql, query);
        let (cmp, dir) = if query.oldest_first { (">", "ASC") } else { ("<", "DESC") };
        if let Some(after) = &query.after {
            sql.push(format!(" AND (created_at, run_id) {cmp} ("));
            sql.push_bind(after.created_at).push(", ").push_bind(after.run_id.clone()).push(")");
        }
        sql.push(format!(" ORDER BY created_at {dir}, run_id {dir} LIMIT "));
        sql.push_bind(query.limit).push(" OFFSET ").push_bind(query.offset);
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn count_runs(&self, query: &RunQuery) -> Result<i64> {
        let mut sql = sqlx::QueryBuilder::new("SELECT COUNT(*) FROM dag_runs");
        run_filters(&mut sql, query);
        Ok(sql.build_query_scalar().fetch_one(&self.pool).await?)
    }

    async fn active_runs(&self) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!("{RUN_SELECT} WHERE state IN ('queued', 'running') ORDER BY created_at, run_id"))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn last_scheduled_interval_end(&self, dag_id: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(sqlx::query_scalar(
            "SELECT interval_end FROM dag_runs WHERE dag_id = ? AND run_type = 'scheduled' ORDER BY interval_end DESC LIMIT 1",
        )
        .bind(dag_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn runs_between(&self, dag_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{RUN_SELECT} WHERE dag_id = ? AND logical_date >= ? AND logical_date <= ? ORDER BY logical_date, run_id"
        ))
        .bind(dag_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recent_runs(&self, per_dag: i64, of: Option<&[String]>) -> Result<Vec<crate::RunBrief>> {
        // Driven from `dags`: for each DAG, the newest runs by the (dag_id, created_at DESC)
        // index, so the cost is DAGs × per_dag lookups, not a scan of every run.
        let mut sql = sqlx::QueryBuilder::new(
            "SELECT r.run_id, r.dag_id, r.run_type, r.state, r.logical_date, r.created_at, r.started_at, r.ended_at,
                    r.triggered_by, r.experiment
             FROM dags d JOIN dag_runs r ON r.run_id IN (
                 SELECT x.run_id FROM dag_runs x WHERE x.dag_id = d.dag_id
                 ORDER BY x.created_at DESC, x.run_id DESC LIMIT ",
        );
        sql.push_bind(per_dag).push(")");
        if let Some(dag_ids) = of {
            sql.push(" WHERE d.dag_id IN (");
            let mut list = sql.separated(", ");
            for id in dag_ids {
                list.push_bind(id.clone());
            }
            sql.push(")");
        }
        sql.push(" ORDER BY r.dag_id, r.created_at DESC, r.run_id DESC");
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn last_scheduled_interval_ends(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT d.dag_id, (SELECT x.interval_end FROM dag_runs x
                               WHERE x.dag_id = d.dag_id AND x.run_type = 'scheduled'
                               ORDER BY x.interval_start DESC LIMIT 1) AS last_end
             FROM dags d",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().filter_map(|(dag, end)| Some((dag, end?))).collect())
    }

    async fn state_counts(&self, run_ids: &[String]) -> Result<Vec<crate::StateCount>> {
        let mut sql = sqlx::QueryBuilder::new(
            "SELECT run_id, task_id, map_index >= 0 AS mapped, state, COUNT(*) AS instances, MAX(try_number) AS try_number,
                    MIN(started_at) AS started_at, MAX(ended_at) AS ended_at
             FROM task_instances WHERE run_id IN (",
        );
        let mut list = sql.separated(", ");
        for id in run_ids {
            list.push_bind(id.clone());
        }
        sql.push(") GROUP BY run_id, task_id, state, map_index >= 0");
        Ok(sql.build_query_as().fetch_all(&self.pool).await?)
    }

    async fn plugin_uses(&self) -> Result<Vec<crate::PluginUse>> {
        Ok(sqlx::query_as(
            "SELECT plugin_id, dag_id, version FROM dag_version_plugins ORDER BY plugin_id, dag_id, version",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- task instances and tries ----

    async fn unfinished_instance_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT state, COUNT(*) FROM task_instances
             WHERE state IN ('scheduled', 'queued', 'running', 'up_for_retry', 'up_for_reschedule')
             GROUP BY state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn task_instances(&self, run_id: &str) -> Result<Vec<TaskInstanceRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, state, try_number, next_try_at, output, metrics, reason, started_at, ended_at,
                    map_item, tries_before_clear
             FROM task_instances WHERE run_id = ? ORDER BY task_id, map_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn failed_tries(&self, run_id: &str) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT t.task_id, t.map_index, COUNT(*) AS failed FROM task_tries t
             JOIN task_instances i ON i.run_id = t.run_id AND i.task_id = t.task_id AND i.map_index = t.map_index
             WHERE t.run_id = ? AND t.try_number > i.tries_before_clear AND t.outcome IS NOT NULL
               AND t.outcome NOT IN ('success', 'rescheduled')
               AND NOT (i.state = 'running' AND t.try_number = i.try_number)
             GROUP BY t.task_id, t.map_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("task_id")?, r.try_get("map_index")?, r.try_get("failed")?))).collect()
    }

    async fn tries(&self, run_id: &str, task_id: &str, map_index: i64) -> Result<Vec<TryRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, try_number, plugin_id, outcome, message, fuel_used, peak_memory, wall_us, log,
                    progress, progress_message, queued_at, started_at, ended_at
             FROM task_tries WHERE run_id = ? AND task_id = ? AND map_index = ? ORDER BY try_number",
        )
        .bind(run_id)
        .bind(task_id)
        .bind(map_index)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn write_running(
        &self,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        try_number: i64,
        running: &crate::Running<'_>,
    ) -> Result<()> {
        // Only while it runs: its report writes the whole log, and wins over a late write.
        sqlx::query(
            "UPDATE task_tries SET log = ?, progress = ?, progress_message = ?
             WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ? AND outcome IS NULL",
        )
        .bind(running.log)
        .bind(running.progress.map(|(fraction, _)| fraction))
        .bind(running.progress.map(|(_, message)| message))
        .bind(run_id)
        .bind(task_id)
        .bind(map_index)
        .bind(try_number)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn run_tries(&self, run_id: &str) -> Result<Vec<TryRow>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index, try_number, plugin_id, outcome, message, fuel_used, peak_memory, wall_us, NULL AS log,
                    progress, progress_message, queued_at, started_at, ended_at
             FROM task_tries WHERE run_id = ? ORDER BY started_at",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- guarded writes ----

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for change in changes {
            apply::one(&mut tx, change).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- claims ----

    async fn claim(&self, request: &ClaimRequest<'_>, at: DateTime<Utc>) -> Result<Claim> {
        let _writer = self.writer.lock().await;
        claims::claim(&self.pool, request, at).await
    }

    async fn renew_leases(&self, worker: &WorkerInfo, at: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HeldTry>> {
        let _writer = self.writer.lock().await;
        claims::renew_leases(&self.pool, worker, at, until).await
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        claims::remove_worker(&self.pool, id).await
    }

    async fn live_workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        claims::live_workers(&self.pool, since).await
    }

    async fn report_tries(&self, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>> {
        let _writer = self.writer.lock().await;
        claims::report_tries(&self.pool, worker, reports).await
    }

    async fn reported_tries(&self) -> Result<Vec<ReportedTry>> {
        claims::reported_tries(&self.pool).await
    }

    async fn expired_leases(&self, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>> {
        claims::expired_leases(&self.pool, at).await
    }

    /// One machine: every process with this file is woken by polling; this process's own
    /// subscribers were woken by the store handle already.
    async fn notify(&self, _topic: Topic) -> Result<()> {
        Ok(())
    }

    fn listen(&self, _wakeups: std::sync::Arc<crate::claims::Wakeups>) {}

    // ---- users, tokens, budgets, audit ----

    async fn count_users(&self) -> Result<i64> {
        users::count_users(&self.pool).await
    }

    async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        users::create_user(&self.pool, name, role, password_hash, audit).await
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        users::users(&self.pool).await
    }

    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        users::user_credentials(&self.pool, name).await
    }

    async fn change_user(&self, name: &str, change: &UserChange<'_>, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        users::change_user(&self.pool, name, change, audit).await
    }

    async fn create_token(&self, token: &NewToken<'_>, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        users::create_token(&self.pool, token, audit).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenOwner>> {
        users::token_by_hash(&self.pool, hash).await
    }

    async fn tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        users::tokens(&self.pool, user_name).await
    }

    async fn revoke_token(&self, id: &str, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        users::revoke_token(&self.pool, id, audit).await
    }

    async fn record_audit(&self, audit: &NewAudit) -> Result<()> {
        let _writer = self.writer.lock().await;
        users::record_audit(&self.pool, audit).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        users::audit(&self.pool, query).await
    }

    async fn set_budget(&self, kind: &str, subject: &str, fuel: Option<i64>, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        users::set_budget(&self.pool, kind, subject, fuel, audit).await
    }

    async fn budgets(&self) -> Result<Vec<BudgetRow>> {
        users::budgets(&self.pool).await
    }

    async fn fuel_used_by(&self, user: &str, since: DateTime<Utc>) -> Result<i64> {
        users::fuel_used_by(&self.pool, user, since).await
    }

    // ---- pools ----

    async fn set_pool(
        &self,
        name: &str,
        slots: i64,
        description: Option<&str>,
        audit: Option<&NewAudit>,
    ) -> Result<()> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO pools (name, slots, description, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET slots = excluded.slots,
                 description = COALESCE(excluded.description, pools.description), updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(slots)
        .bind(description)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        if let Some(audit) = audit {
            users::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn set_mount(&self, name: &str, path: &str, audit: &NewAudit) -> Result<()> {
        let _writer = self.writer.lock().await;
        grants::set_mount(&self.pool, name, path, audit).await
    }

    async fn mounts(&self) -> Result<Vec<crate::MountRow>> {
        grants::mounts(&self.pool).await
    }

    async fn delete_mount(&self, name: &str, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        grants::delete_mount(&self.pool, name, audit).await
    }

    async fn set_secret(&self, name: &str, sealed: &[u8], audit: &NewAudit) -> Result<()> {
        let _writer = self.writer.lock().await;
        grants::set_secret(&self.pool, name, sealed, audit).await
    }

    async fn secrets(&self) -> Result<Vec<crate::SecretRow>> {
        grants::secrets(&self.pool).await
    }

    async fn sealed_secrets(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        grants::sealed_secrets(&self.pool, names).await
    }

    async fn delete_secret(&self, name: &str, audit: &NewAudit) -> Result<bool> {
        let _writer = self.writer.lock().await;
        grants::delete_secret(&self.pool, name, audit).await
    }

    async fn artifacts(&self, run_id: &str, task_id: Option<&str>) -> Result<Vec<crate::ArtifactRow>> {
        grants::artifacts(&self.pool, run_id, task_id).await
    }

    async fn upstream_artifacts(&self, run_id: &str, task_ids: &[String]) -> Result<Vec<crate::ArtifactRow>> {
        grants::upstream_artifacts(&self.pool, run_id, task_ids).await
    }

    async fn try_record(&self, run_id: &str, task_id: &str, map_index: i64, try_number: i64) -> Result<Option<Value>> {
        grants::try_record(&self.pool, run_id, task_id, map_index, try_number).await
    }

    async fn artifact_hashes(&self) -> Result<Vec<String>> {
        grants::artifact_hashes(&self.pool).await
    }

    async fn delete_artifacts(&self, before: DateTime<Utc>, keep_runs: i64) -> Result<u64> {
        let _writer = self.writer.lock().await;
        grants::delete_artifacts(&self.pool, before, keep_runs).await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        Ok(sqlx::query_as("SELECT name, slots, description, updated_at FROM pools ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn delete_pool(&self, name: &str, audit: Option<&NewAudit>) -> Result<bool> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let deleted =
            sqlx::query("DELETE FROM pools WHERE name = ?").bind(name).execute(&mut *tx).await?.rows_affected() > 0;
        if deleted {
            if let Some(audit) = audit {
                users::insert_audit(&mut tx, audit).await?;
            }
            tx.commit().await?;
        }
        Ok(deleted)
    }

    // ---- actions ----

    async fn enqueue_action(
        &self,
        kind: &str,
        payload: &Value,
        requested_by: &str,
        audit: Option<&NewAudit>,
    ) -> Result<i64> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let id = sqlx::query_scalar(
            "INSERT INTO actions (kind, payload, requested_by, requested_at) VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(kind)
        .bind(payload.to_string())
        .bind(requested_by)
        .bind(Utc::now())
        .fetch_one(&mut *tx)
        .await?;
        if let Some(audit) = audit {
            users::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    async fn claim_action(&self, id: i64) -> Result<bool> {
        Ok(sqlx::query("UPDATE actions SET state = 'running' WHERE id = ? AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn pending_actions(&self) -> Result<Vec<ActionRow>> {
        Ok(sqlx::query_as(&format!("{ACTION_SELECT} WHERE state = 'pending' ORDER BY id"))
            .fetch_all(&self.pool)
            .await?)
    }

    async fn action(&self, id: i64) -> Result<Option<ActionRow>> {
        Ok(sqlx::query_as(&format!("{ACTION_SELECT} WHERE id = ?")).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn finish_action(&self, id: i64, state: ActionState, result: &str) -> Result<bool> {
        Ok(sqlx::query("UPDATE actions SET state = ?, result = ?, done_at = ? WHERE id = ? AND state = 'running'")
            .bind(state.as_str())
            .bind(result)
            .bind(Utc::now())
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    // ---- schedulers ----

    async fn heartbeat(&self, id: &str, pid: u32, started_at: DateTime<Utc>) -> Result<()> {
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

    async fn remove_scheduler(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM schedulers WHERE id = ?").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn live_schedulers(&self, since: DateTime<Utc>) -> Result<Vec<SchedulerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, pid, started_at, heartbeat_at FROM schedulers WHERE heartbeat_at >= ? ORDER BY heartbeat_at DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}
