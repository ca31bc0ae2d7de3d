//! The PostgreSQL backend: every statement the store runs on a server, how it connects and
//! migrates, and how one process owns scheduling.
//!
//! Columns are native (`TIMESTAMPTZ`, `JSONB`, `BYTEA`, `BIGINT`, `BOOLEAN`: see
//! `migrations/postgres`). Two things PostgreSQL cannot store are mended on the way in, never on
//! the way out: U+0000 in text (a plugin's log may hold it) and `\u0000` in JSONB strings (a
//! plugin's output may) become U+FFFD, where a write refused would stop the scheduler.
//!
//! Migrations run under sqlx's advisory lock (`pg_advisory_lock`), so processes migrating a fresh
//! database at the same moment take turns and the later ones find nothing to do. Scheduling is
//! owned by a session-level advisory lock held on a dedicated connection (the guard's
//! [`Lease`]): the server frees it when that connection ends, however its process ends. This
//! needs a direct connection (or a session-pooling proxy): a transaction-pooling proxy cannot hold
//! session locks.

mod apply;
mod claims;
mod grants;
mod users;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::backend::Backend;
use crate::ownership::OWNER_READ_ATTEMPTS;
use crate::{
    ActionRow, ActionState, Change, DagRow, DatabaseUrl, ImportErrorRow, NewRun, PauseChange, PluginKind, PluginRow,
    PoolRow, Result, RunRow, SchedulerRow, SchedulingGuard, SchedulingOwner, StoreError, TaskInstanceRow, TryRow,
};
use crate::{ActivateChange, ExperimentRow, NewVersion, Placement, Recorded, RunQuery, VersionOrigin, VersionRow};
use crate::{
    AuditQuery, AuditRow, BudgetRow, NewAudit, NewToken, Role, TokenOwner, TokenRow, UserChange, UserCredentials,
    UserRow,
};
use crate::{Claim, ClaimRequest, ExpiredLease, HeldTry, Report, ReportFate, ReportedTry, Topic, WorkerInfo};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The advisory lock whose holder owns scheduling on a database ("SFLW"). sqlx's migration lock
/// is another key (derived from the database's name), so the two never meet.
const SCHEDULING_LOCK: i64 = 0x5346_4C57;

/// Connections per process: the scheduler's loop, the folder's loader and a command's queries,
/// with room to spare; a cluster of processes stays far under a server's default 100.
const POOL_SIZE: u32 = 8;

const DAG_SELECT: &str =
    "SELECT dag_id, active_version, file_path, is_paused, created_at, updated_at, stale_since FROM dags";

const RUN_SELECT: &str = "SELECT run_id, dag_id, version, run_type, state, logical_date, interval_start,
    interval_end, conf, note, triggered_by, created_at, started_at, ended_at, experiment FROM dag_runs";

const VERSION_SELECT: &str = "SELECT dag_id, version, created_at, origin, uploaded_by FROM dag_versions";

const ACTION_SELECT: &str = "SELECT id, kind, payload, requested_by, requested_at, state, result, done_at FROM actions";

/// The PostgreSQL store: a pool on one database.
pub(crate) struct Postgres {
    pool: PgPool,
    /// For the dedicated connection of a scheduling lease.
    options: PgConnectOptions,
    url: DatabaseUrl,
}

/// Text as PostgreSQL can store it: U+0000 becomes U+FFFD.
pub(crate) fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// JSON as JSONB can store it: U+0000 in strings and keys becomes U+FFFD.
pub(crate) fn json(value: &Value) -> Json<Cow<'_, Value>> {
    fn has_nul(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
    fn scrub(value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(text(s).into_owned()),
            Value::Array(items) => Value::Array(items.iter().map(scrub).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (text(k).into_owned(), scrub(v))).collect()),
            other => other.clone(),
        }
    }
    Json(if has_nul(value) { Cow::Owned(scrub(value)) } else { Cow::Borrowed(value) })
}

impl Postgres {
    /// Connects to `url` and migrates the database to this build's schema.
    pub(crate) async fn connect(url: &DatabaseUrl) -> Result<Postgres> {
        let connect_error = |e| StoreError::Connect { database: url.redacted(), source: e };
        let options = PgConnectOptions::from_str(url.secret()).map_err(connect_error)?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(connect_error)?;
        let store = Postgres { pool, options, url: url.clone() };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let known = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&self.pool).await?;
        if has_table {
            let found: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await?;
            if let Some(found) = found.filter(|found| *found > known) {
                return Err(StoreError::NewerSchema { database: self.url.redacted(), found, known });
            }
        }
        // Under sqlx's advisory lock: a second process migrating at the same moment waits, then
        // finds every migration applied.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// The owner of scheduling on this database, as its row says, once the row is there: the
    /// row of the backend that holds the lock (rows of owners gone are ignored).
    async fn read_owner(&self, conn: &mut PgConnection) -> Result<Option<SchedulingOwner>> {
        for _ in 0..OWNER_READ_ATTEMPTS {
            let row: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT o.pid, o.role, o.started_at FROM scheduling_owner o
                 JOIN pg_locks l ON l.pid = o.backend_pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid::bigint = $1
                   AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .bind(SCHEDULING_LOCK)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some((pid, role, started_at)) = row {
                return Ok(Some(SchedulingOwner { pid: u32::try_from(pid).unwrap_or(0), started_at, role }));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(None)
    }
}

/// Scheduling owned on a PostgreSQL database: the connection that holds the advisory lock.
/// Dropping it closes the connection, and the server frees the lock.
pub(crate) struct Lease {
    conn: PgConnection,
}

impl Lease {
    /// Whether the lock's connection still answers.
    pub(crate) async fn check(&mut self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(5), self.conn.ping())
            .await
            .map_err(|_| {
                StoreError::Invalid("the connection holding the scheduling lock did not answer in 5 s".into())
            })?
            .map_err(StoreError::from)
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease(advisory lock on a PostgreSQL connection)")
    }
}

impl Lease {
    /// Forgets the owner's row and frees the lock before closing the connection, so the next
    /// owner may take over the moment this returns.
    pub(crate) async fn release(mut self) -> Result<()> {
        sqlx::query("DELETE FROM scheduling_owner WHERE backend_pid = pg_backend_pid()")
            .execute(&mut self.conn)
            .await?;
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(SCHEDULING_LOCK).execute(&mut self.conn).await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// Inserts a queued run and its task instances (state none) in `tx`; `false` when the run (or its
/// interval, for a scheduled run) is already there, and nothing is inserted. A second scheduler
/// inserting the same interval at the same moment waits on the unique index, then inserts nothing.
async fn insert_run(tx: &mut PgConnection, run: &NewRun, task_ids: &[String]) -> Result<bool> {
    let conf = Value::Object(run.conf.clone());
    let inserted = sqlx::query(
        "INSERT INTO dag_runs (run_id, dag_id, version, run_type, state, logical_date, interval_start, interval_end,
                               conf, note, triggered_by, created_at, experiment)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
    )
    .bind(&run.run_id)
    .bind(&run.dag_id)
    .bind(&run.version)
    .bind(run.run_type.as_str())
    .bind(run.logical_date)
    .bind(run.interval.map(|i| i.0))
    .bind(run.interval.map(|i| i.1))
    .bind(json(&conf))
    .bind(run.note.as_deref().map(text))
    .bind(&run.triggered_by)
    .bind(run.created_at)
    .bind(run.experiment.as_deref().map(text))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    if !inserted {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO task_instances (run_id, task_id, map_index, state, updated_at)
         SELECT $1, task_id, -1, 'none', $2 FROM UNNEST($3::text[]) AS t (task_id)",
    )
    .bind(&run.run_id)
    .bind(run.created_at)
    .bind(task_ids)
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// `WHERE` and the filters of a run query (none of its paging).
fn run_filters(sql: &mut sqlx::QueryBuilder<'_, sqlx::Postgres>, query: &RunQuery) {
    sql.push(" WHERE TRUE");
    if let Some(dag_id) = &query.dag_id {
        sql.push(" AND dag_id = ").push_bind(text(dag_id).into_owned());
    }
    if !query.states.is_empty() {
        let states: Vec<&str> = query.states.iter().map(|s| s.as_str()).collect();
        sql.push(" AND state = ANY(").push_bind(states).push(")");
    }
    if let Some(run_type) = query.run_type {
        sql.push(" AND run_type = ").push_bind(run_type.as_str());
    }
    if let Some(experiment) = &query.experiment {
        sql.push(" AND experiment = ").push_bind(text(experiment).into_owned());
    }
    if let Some(by) = &query.triggered_by {
        sql.push(" AND triggered_by = ").push_bind(text(by).into_owned());
    }
}

/// Records one version in `tx` (see [`Store::record_versions`](crate::Store::record_versions)).
async fn record_version(tx: &mut PgConnection, v: &NewVersion<'_>, now: DateTime<Utc>) -> Result<Recorded> {
    // Locks the DAG's row: a concurrent activation or push of the same DAG waits its turn.
    let active: Option<String> = sqlx::query_scalar("SELECT active_version FROM dags WHERE dag_id = $1 FOR UPDATE")
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
            "INSERT INTO dags (dag_id, active_version, file_path, is_paused, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (dag_id) DO UPDATE SET active_version = excluded.active_version, file_path = excluded.file_path,
             stale_since = NULL,
             updated_at = CASE WHEN dags.active_version = excluded.active_version THEN dags.updated_at ELSE excluded.updated_at END",
        )
        .bind(v.dag_id)
        .bind(v.version)
        .bind(text(v.file_path))
        .bind(v.paused_if_new)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO dag_versions (dag_id, version, spec, created_at, origin, uploaded_by) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(v.dag_id)
    .bind(v.version)
    .bind(json(v.spec))
    .bind(now)
    .bind(v.origin.as_str())
    .bind(v.uploaded_by.map(text))
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    sqlx::query(
        "INSERT INTO dag_version_plugins (dag_id, version, plugin_id)
         SELECT $1, $2, p FROM UNNEST($3::text[]) AS p ON CONFLICT DO NOTHING",
    )
    .bind(v.dag_id)
    .bind(v.version)
    .bind(v.plugin_ids)
    .execute(&mut *tx)
    .await?;
    if let Placement::Experiment { name, note } = v.placement {
        sqlx::query(
            "INSERT INTO experiments (dag_id, name, version, author, note, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT DO NOTHING",
        )
        .bind(v.dag_id)
        .bind(text(name))
        .bind(v.version)
        .bind(text(v.uploaded_by.unwrap_or("unknown")))
        .bind(note.map(text))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if v.origin == VersionOrigin::Folder {
        sqlx::query("DELETE FROM import_errors WHERE file_path = $1").bind(v.file_path).execute(&mut *tx).await?;
    }
    let activated = activate && active.as_deref() != Some(v.version);
    Ok(Recorded { new_version: inserted, activated, new_dag: active.is_none() })
}

#[async_trait::async_trait]
impl Backend for Postgres {
    fn describe(&self) -> String {
        self.url.redacted()
    }

    fn is_postgres(&self) -> bool {
        true
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    async fn own_scheduling(&self, role: &str) -> Result<SchedulingGuard> {
        let mut conn = PgConnection::connect_with(&self.options)
            .await
            .map_err(|e| StoreError::Connect { database: self.url.redacted(), source: e })?;
        let taken: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(SCHEDULING_LOCK).fetch_one(&mut conn).await?;
        if !taken {
            let owner = self.read_owner(&mut conn).await?;
            let _ = conn.close().await;
            return Err(StoreError::SchedulerRunning { owner, lock: None });
        }
        // Holding the lock, every other row is an owner gone: replace them with this one.
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM scheduling_owner").execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO scheduling_owner (backend_pid, pid, role, started_at) VALUES (pg_backend_pid(), $1, $2, $3)",
        )
        .bind(i64::from(std::process::id()))
        .bind(role)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SchedulingGuard::postgres(Lease { conn }))
    }

    // ---- plugins ----

    async fn put_plugin(&self, id: &str, bytes: &[u8], kind: PluginKind) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO plugins (id, bytes, size, kind, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
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
        Ok(sqlx::query_as("SELECT id, kind, size, created_at FROM plugins WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn plugin_bytes(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT bytes FROM plugins WHERE id = $1").bind(id).fetch_optional(&self.pool).await?)
    }

    async fn plugins(&self) -> Result<Vec<PluginRow>> {
        Ok(sqlx::query_as("SELECT id, kind, size, created_at FROM plugins ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn has_plugin(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plugins WHERE id = $1)")
            .bind(id)
            .fetch_one(&self.pool)
            .await?)
    }

    // ---- DAGs ----

    async fn record_versions(&self, versions: &[NewVersion<'_>], audit: Option<&NewAudit>) -> Result<Vec<Recorded>> {
        let now = Utc::now();
        let mut tx = self.pool.begin().await?;
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
        let mut tx = self.pool.begin().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dag_versions WHERE dag_id = $1 AND version = $2)")
                .bind(dag_id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
        if !exists {
            return Ok(ActivateChange::NoSuchVersion);
        }
        let done = sqlx::query(
            "UPDATE dags SET active_version = $1, updated_at = $2 WHERE dag_id = $3 AND active_version <> $1",
        )
        .bind(version)
        .bind(Utc::now())
        .bind(dag_id)
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
        Ok(sqlx::query_as(&format!("{VERSION_SELECT} WHERE dag_id = $1 ORDER BY created_at DESC, version DESC"))
            .bind(dag_id)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn experiments(&self, dag_id: &str) -> Result<Vec<ExperimentRow>> {
        Ok(sqlx::query_as(
            "SELECT dag_id, name, version, author, note, created_at FROM experiments WHERE dag_id = $1
             ORDER BY created_at DESC, name, version",
        )
        .bind(dag_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn versions_using(&self, plugin_id: &str) -> Result<Vec<VersionRow>> {
        Ok(sqlx::query_as(&format!(
            "{VERSION_SELECT} WHERE (dag_id, version) IN (SELECT dag_id, version FROM dag_version_plugins WHERE plugin_id = $1)
             ORDER BY created_at DESC, dag_id, version"
        ))
        .bind(plugin_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn record_import_error(&self, file_path: &str, dag_id: Option<&str>, message: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO import_errors (file_path, dag_id, message, at)
             VALUES ($1, COALESCE($2, (SELECT dag_id FROM dags WHERE file_path = $1)), $3, $4)
             ON CONFLICT (file_path) DO UPDATE SET message = excluded.message, at = excluded.at, dag_id = excluded.dag_id",
        )
        .bind(file_path)
        .bind(dag_id)
        .bind(text(message))
        .bind(Utc::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_import_error(&self, file_path: &str) -> Result<()> {
        sqlx::query("DELETE FROM import_errors WHERE file_path = $1").bind(file_path).execute(&self.pool).await?;
        Ok(())
    }

    async fn mark_stale(&self, dag_id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE dags SET stale_since = $1 WHERE dag_id = $2 AND stale_since IS NULL")
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
        Ok(sqlx::query_as(&format!("{DAG_SELECT} WHERE dag_id = $1")).bind(dag_id).fetch_optional(&self.pool).await?)
    }

    async fn dag_spec(&self, dag_id: &str, version: &str) -> Result<Option<Value>> {
        let spec: Option<Json<Value>> =
            sqlx::query_scalar("SELECT spec FROM dag_versions WHERE dag_id = $1 AND version = $2")
                .bind(dag_id)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
        Ok(spec.map(|Json(spec)| spec))
    }

    async fn dag_versions(&self, dag_id: &str) -> Result<Vec<(String, DateTime<Utc>)>> {
        let rows =
            sqlx::query("SELECT version, created_at FROM dag_versions WHERE dag_id = $1 ORDER BY created_at, version")
                .bind(dag_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok((r.try_get("version")?, r.try_get("created_at")?))).collect()
    }

    async fn set_paused(&self, dag_id: &str, paused: bool, audit: Option<&NewAudit>) -> Result<PauseChange> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE dags SET is_paused = $1 WHERE dag_id = $2 AND is_paused = NOT $1")
            .bind(paused)
            .bind(dag_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            if let Some(audit) = audit {
                users::insert_audit(&mut tx, audit).await?;
            }
            tx.commit().await?;
            return Ok(PauseChange::Changed);
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM dags WHERE dag_id = $1)")
            .bind(dag_id)
            .fetch_one(&mut *tx)
            .await?;
        Ok(if exists { PauseChange::Already } else { PauseChange::NoSuchDag })
    }

    // ---- runs ----

    async fn create_run(&self, run: &NewRun, task_ids: &[String], audit: Option<&NewAudit>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
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
        Ok(sqlx::query_as(&format!("{RUN_SELECT} WHERE run_id = $1")).bind(run_id).fetch_optional(&self.pool).await?)
    }

    async fn runs(&self, dag_id: Option<&str>, limit: i64) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{RUN_SELECT} WHERE ($1::text IS NULL OR dag_id = $1) ORDER BY created_at DESC, run_id DESC LIMIT $2"
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
            "SELECT interval_end FROM dag_runs WHERE dag_id = $1 AND run_type = 'scheduled'
             ORDER BY interval_end DESC NULLS LAST LIMIT 1",
        )
        .bind(dag_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    async fn runs_between(&self, dag_id: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<RunRow>> {
        Ok(sqlx::query_as(&format!(
            "{RUN_SELECT} WHERE dag_id = $1 AND logical_date >= $2 AND logical_date <= $3 ORDER BY logical_date, run_id"
        ))
        .bind(dag_id)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn recent_runs(&self, per_dag: i64, of: Option<&[String]>) -> Result<Vec<crate::RunBrief>> {
        // For each DAG (of `of`, when given), its newest runs by the (dag_id, created_at DESC) index.
        Ok(sqlx::query_as(
            "SELECT r.* FROM dags d CROSS JOIN LATERAL (
                 SELECT x.run_id, x.dag_id, x.run_type, x.state, x.logical_date, x.created_at, x.started_at,
                        x.ended_at, x.triggered_by, x.experiment
                 FROM dag_runs x WHERE x.dag_id = d.dag_id ORDER BY x.created_at DESC, x.run_id DESC LIMIT $1) r
             WHERE $2::text[] IS NULL OR d.dag_id = ANY($2)
             ORDER BY r.dag_id, r.created_at DESC, r.run_id DESC",
        )
        .bind(per_dag)
        .bind(of)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn last_scheduled_interval_ends(&self) -> Result<Vec<(String, DateTime<Utc>)>> {
        Ok(sqlx::query_as(
            "SELECT d.dag_id, x.interval_end FROM dags d CROSS JOIN LATERAL (
                 SELECT interval_end FROM dag_runs
                 WHERE dag_id = d.dag_id AND run_type = 'scheduled' ORDER BY interval_start DESC LIMIT 1) x",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn state_counts(&self, run_ids: &[String]) -> Result<Vec<crate::StateCount>> {
        Ok(sqlx::query_as(
            "SELECT run_id, task_id, map_index >= 0 AS mapped, state, COUNT(*) AS instances, MAX(try_number) AS try_number,
                    MIN(started_at) AS started_at, MAX(ended_at) AS ended_at
             FROM task_instances WHERE run_id = ANY($1) GROUP BY run_id, task_id, state, map_index >= 0",
        )
        .bind(run_ids)
        .fetch_all(&self.pool)
        .await?)
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
             FROM task_instances WHERE run_id = $1 ORDER BY task_id, map_index",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn failed_tries(&self, run_id: &str) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT t.task_id, t.map_index, COUNT(*) AS failed FROM task_tries t
             JOIN task_instances i ON i.run_id = t.run_id AND i.task_id = t.task_id AND i.map_index = t.map_index
             WHERE t.run_id = $1 AND t.try_number > i.tries_before_clear AND t.outcome IS NOT NULL
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
             FROM task_tries WHERE run_id = $1 AND task_id = $2 AND map_index = $3 ORDER BY try_number",
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
            "UPDATE task_tries SET log = $1, progress = $2, progress_message = $3
             WHERE run_id = $4 AND task_id = $5 AND map_index = $6 AND try_number = $7 AND outcome IS NULL",
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
            "SELECT run_id, task_id, map_index, try_number, plugin_id, outcome, message, fuel_used, peak_memory, wall_us,
                    NULL::text AS log, progress, progress_message, queued_at, started_at, ended_at
             FROM task_tries WHERE run_id = $1 ORDER BY started_at",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?)
    }

    // ---- guarded writes ----

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for change in changes {
            apply::one(&mut tx, change).await?;
        }
        // Workers on every machine wake at the commit (a notification is sent only if it commits).
        if changes.iter().any(|c| matches!(c, Change::Queued { .. })) {
            sqlx::query("SELECT pg_notify($1, '')").bind(Topic::Queued.channel()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- claims ----

    async fn claim(&self, request: &ClaimRequest<'_>, at: DateTime<Utc>) -> Result<Claim> {
        claims::claim(&self.pool, request, at).await
    }

    async fn renew_leases(&self, worker: &WorkerInfo, at: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<HeldTry>> {
        claims::renew_leases(&self.pool, worker, at, until).await
    }

    async fn remove_worker(&self, id: &str) -> Result<()> {
        claims::remove_worker(&self.pool, id).await
    }

    async fn live_workers(&self, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
        claims::live_workers(&self.pool, since).await
    }

    async fn report_tries(&self, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>> {
        claims::report_tries(&self.pool, worker, reports).await
    }

    async fn reported_tries(&self) -> Result<Vec<ReportedTry>> {
        claims::reported_tries(&self.pool).await
    }

    async fn expired_leases(&self, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>> {
        claims::expired_leases(&self.pool, at).await
    }

    async fn notify(&self, topic: Topic) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')").bind(topic.channel()).execute(&self.pool).await?;
        Ok(())
    }

    fn listen(&self, wakeups: std::sync::Arc<crate::claims::Wakeups>) {
        claims::listen(self.pool.clone(), wakeups);
    }

    // ---- users, tokens, budgets, audit ----

    async fn count_users(&self) -> Result<i64> {
        users::count_users(&self.pool).await
    }

    async fn create_user(&self, name: &str, role: Role, password_hash: Option<&str>, audit: &NewAudit) -> Result<bool> {
        users::create_user(&self.pool, name, role, password_hash, audit).await
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        users::users(&self.pool).await
    }

    async fn user_credentials(&self, name: &str) -> Result<Option<UserCredentials>> {
        users::user_credentials(&self.pool, name).await
    }

    async fn change_user(&self, name: &str, change: &UserChange<'_>, audit: &NewAudit) -> Result<bool> {
        users::change_user(&self.pool, name, change, audit).await
    }

    async fn create_token(&self, token: &NewToken<'_>, audit: &NewAudit) -> Result<bool> {
        users::create_token(&self.pool, token, audit).await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenOwner>> {
        users::token_by_hash(&self.pool, hash).await
    }

    async fn tokens(&self, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
        users::tokens(&self.pool, user_name).await
    }

    async fn revoke_token(&self, id: &str, audit: &NewAudit) -> Result<bool> {
        users::revoke_token(&self.pool, id, audit).await
    }

    async fn record_audit(&self, audit: &NewAudit) -> Result<()> {
        users::record_audit(&self.pool, audit).await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRow>> {
        users::audit(&self.pool, query).await
    }

    async fn set_budget(&self, kind: &str, subject: &str, fuel: Option<i64>, audit: &NewAudit) -> Result<bool> {
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
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO pools (name, slots, description, updated_at) VALUES ($1, $2, $3, $4)
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
        grants::set_mount(&self.pool, name, path, audit).await
    }

    async fn mounts(&self) -> Result<Vec<crate::MountRow>> {
        grants::mounts(&self.pool).await
    }

    async fn delete_mount(&self, name: &str, audit: &NewAudit) -> Result<bool> {
        grants::delete_mount(&self.pool, name, audit).await
    }

    async fn set_secret(&self, name: &str, sealed: &[u8], audit: &NewAudit) -> Result<()> {
        grants::set_secret(&self.pool, name, sealed, audit).await
    }

    async fn secrets(&self) -> Result<Vec<crate::SecretRow>> {
        grants::secrets(&self.pool).await
    }

    async fn sealed_secrets(&self, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
        grants::sealed_secrets(&self.pool, names).await
    }

    async fn delete_secret(&self, name: &str, audit: &NewAudit) -> Result<bool> {
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
        grants::delete_artifacts(&self.pool, before, keep_runs).await
    }

    async fn pools(&self) -> Result<Vec<PoolRow>> {
        Ok(sqlx::query_as("SELECT name, slots, description, updated_at FROM pools ORDER BY name")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn delete_pool(&self, name: &str, audit: Option<&NewAudit>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM pools WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected() > 0;
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
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query_scalar(
            "INSERT INTO actions (kind, payload, requested_by, requested_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(kind)
        .bind(json(payload))
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
        Ok(sqlx::query("UPDATE actions SET state = 'running' WHERE id = $1 AND state = 'pending'")
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
        Ok(sqlx::query_as(&format!("{ACTION_SELECT} WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn finish_action(&self, id: i64, state: ActionState, result: &str) -> Result<bool> {
        Ok(sqlx::query("UPDATE actions SET state = $1, result = $2, done_at = $3 WHERE id = $4 AND state = 'running'")
            .bind(state.as_str())
            .bind(text(result))
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
            "INSERT INTO schedulers (id, pid, started_at, heartbeat_at) VALUES ($1, $2, $3, $4)
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
        sqlx::query("DELETE FROM schedulers WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }

    async fn live_schedulers(&self, since: DateTime<Utc>) -> Result<Vec<SchedulerRow>> {
        Ok(sqlx::query_as(
            "SELECT id, pid, started_at, heartbeat_at FROM schedulers WHERE heartbeat_at >= $1 ORDER BY heartbeat_at DESC",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }
}
