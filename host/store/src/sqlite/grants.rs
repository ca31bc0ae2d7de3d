//! SQLite's statements for mounts, secrets, artifacts and try records.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::users;
use crate::{ArtifactRow, MountRow, NewAudit, Result, SecretRow};

const ARTIFACT_COLUMNS: &str = "a.run_id, a.task_id, a.map_index, a.try_number, a.name, a.size, a.hash, a.created_at";

pub(super) async fn set_mount(pool: &SqlitePool, name: &str, path: &str, audit: &NewAudit) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO mounts (name, path, created_by, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET path = excluded.path, created_by = excluded.created_by,
             updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(path)
    .bind(&audit.actor)
    .bind(Utc::now())
    .execute(&mut *tx)
    .await?;
    users::insert_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn mounts(pool: &SqlitePool) -> Result<Vec<MountRow>> {
    Ok(sqlx::query_as("SELECT name, path, created_by, updated_at FROM mounts ORDER BY name").fetch_all(pool).await?)
}

/// Deletes the row of `table` named `name`, with its audit entry when there was one.
async fn delete_named(pool: &SqlitePool, table: &str, name: &str, audit: &NewAudit) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let deleted =
        sqlx::query(&format!("DELETE FROM {table} WHERE name = ?")).bind(name).execute(&mut *tx).await?.rows_affected()
            > 0;
    if deleted {
        users::insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
    }
    Ok(deleted)
}

pub(super) async fn delete_mount(pool: &SqlitePool, name: &str, audit: &NewAudit) -> Result<bool> {
    delete_named(pool, "mounts", name, audit).await
}

pub(super) async fn set_secret(pool: &SqlitePool, name: &str, sealed: &[u8], audit: &NewAudit) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(
        "INSERT INTO secrets (name, sealed, created_by, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, created_by = excluded.created_by,
             updated_at = excluded.updated_at",
    )
    .bind(name)
    .bind(sealed)
    .bind(&audit.actor)
    .bind(Utc::now())
    .execute(&mut *tx)
    .await?;
    users::insert_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn secrets(pool: &SqlitePool) -> Result<Vec<SecretRow>> {
    Ok(sqlx::query_as("SELECT name, created_by, updated_at FROM secrets ORDER BY name").fetch_all(pool).await?)
}

pub(super) async fn sealed_secrets(pool: &SqlitePool, names: &[String]) -> Result<Vec<(String, Vec<u8>)>> {
    let mut query = QueryBuilder::<Sqlite>::new("SELECT name, sealed FROM secrets WHERE name IN (");
    let mut list = query.separated(", ");
    for name in names {
        list.push_bind(name);
    }
    query.push(") ORDER BY name");
    Ok(query.build_query_as().fetch_all(pool).await?)
}

pub(super) async fn delete_secret(pool: &SqlitePool, name: &str, audit: &NewAudit) -> Result<bool> {
    delete_named(pool, "secrets", name, audit).await
}

pub(super) async fn artifacts(pool: &SqlitePool, run_id: &str, task_id: Option<&str>) -> Result<Vec<ArtifactRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifacts a WHERE a.run_id = ? AND (? IS NULL OR a.task_id = ?)
         ORDER BY a.task_id, a.map_index, a.try_number, a.name"
    ))
    .bind(run_id)
    .bind(task_id)
    .bind(task_id)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn upstream_artifacts(
    pool: &SqlitePool,
    run_id: &str,
    task_ids: &[String],
) -> Result<Vec<ArtifactRow>> {
    let mut query = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifacts a JOIN task_instances ti ON ti.run_id = a.run_id
             AND ti.task_id = a.task_id AND ti.map_index = a.map_index AND ti.try_number = a.try_number
         WHERE ti.state = 'success' AND a.run_id = "
    ));
    query.push_bind(run_id).push(" AND a.task_id IN (");
    let mut list = query.separated(", ");
    for id in task_ids {
        list.push_bind(id);
    }
    query.push(") ORDER BY a.task_id, a.map_index, a.name");
    Ok(query.build_query_as().fetch_all(pool).await?)
}

pub(super) async fn try_record(
    pool: &SqlitePool,
    run_id: &str,
    task_id: &str,
    map_index: i64,
    try_number: i64,
) -> Result<Option<Value>> {
    let row = sqlx::query(
        "SELECT record FROM task_tries WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?",
    )
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .bind(try_number)
    .fetch_optional(pool)
    .await?;
    let Some(text) = row.and_then(|r| r.get::<Option<String>, _>(0)) else { return Ok(None) };
    Ok(Some(super::json_text(&text, "task_tries")?))
}

pub(super) async fn artifact_hashes(pool: &SqlitePool) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT DISTINCT hash FROM artifacts ORDER BY hash").fetch_all(pool).await?)
}

pub(super) async fn delete_artifacts(pool: &SqlitePool, before: DateTime<Utc>, keep_runs: i64) -> Result<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let deleted = sqlx::query(
        "DELETE FROM artifacts WHERE created_at < ? AND run_id NOT IN (
             SELECT run_id FROM (SELECT run_id,
                 ROW_NUMBER() OVER (PARTITION BY dag_id ORDER BY logical_date DESC, created_at DESC) AS n
                 FROM dag_runs) AS recent WHERE n <= ?)",
    )
    .bind(before)
    .bind(keep_runs)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
