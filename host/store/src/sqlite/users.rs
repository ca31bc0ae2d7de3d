//! SQLite's users, tokens, budgets and audit log. Every change writes its audit entry in its own
//! transaction (`BEGIN IMMEDIATE`, behind the process's writer lock taken by the caller).

use chrono::{DateTime, Utc};
use sqlx::{SqliteConnection, SqlitePool};

use crate::{AuditQuery, AuditRow, BudgetRow, NewAudit, NewToken, Result, Role, TokenOwner, TokenRow, UserChange};
use crate::{UserCredentials, UserRow};

const USER_COLUMNS: &str = "name, role, disabled, password_hash IS NOT NULL AS has_password, created_at";
const TOKEN_COLUMNS: &str = "t.id, t.user_name, t.created_at, t.expires_at, t.revoked_at, t.purpose";

pub(super) async fn insert_audit(tx: &mut SqliteConnection, audit: &NewAudit) -> Result<()> {
    sqlx::query("INSERT INTO audit (at, actor, action, target, outcome, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
        .bind(Utc::now())
        .bind(&audit.actor)
        .bind(&audit.action)
        .bind(&audit.target)
        .bind(&audit.outcome)
        .bind(&audit.address)
        .bind(audit.detail.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// Commits a change with its audit entry when it touched a row; else writes nothing (the
/// transaction rolls back as it is dropped). Returns whether it did.
async fn commit_audited(mut tx: sqlx::Transaction<'_, sqlx::Sqlite>, changed: bool, audit: &NewAudit) -> Result<bool> {
    if changed {
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
    }
    Ok(changed)
}

pub(super) async fn count_users(pool: &SqlitePool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await?)
}

pub(super) async fn create_user(
    pool: &SqlitePool,
    name: &str,
    role: Role,
    password_hash: Option<&str>,
    audit: &NewAudit,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let added = sqlx::query(
        "INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(password_hash)
    .bind(Utc::now())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    commit_audited(tx, added, audit).await
}

pub(super) async fn users(pool: &SqlitePool) -> Result<Vec<UserRow>> {
    Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")).fetch_all(pool).await?)
}

pub(super) async fn user_credentials(pool: &SqlitePool, name: &str) -> Result<Option<UserCredentials>> {
    Ok(sqlx::query_as(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = ?"))
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

pub(super) async fn change_user(
    pool: &SqlitePool,
    name: &str,
    change: &UserChange<'_>,
    audit: &NewAudit,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let changed = sqlx::query(
        "UPDATE users SET role = COALESCE(?, role), disabled = COALESCE(?, disabled),
             password_hash = COALESCE(?, password_hash) WHERE name = ?",
    )
    .bind(change.role.map(Role::as_str))
    .bind(change.disabled)
    .bind(change.password_hash)
    .bind(name)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    commit_audited(tx, changed, audit).await
}

pub(super) async fn create_token(pool: &SqlitePool, token: &NewToken<'_>, audit: &NewAudit) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let added = sqlx::query(
        "INSERT INTO tokens (id, user_name, hash, purpose, created_at, expires_at)
         SELECT ?, name, ?, ?, ?, ? FROM users WHERE name = ?",
    )
    .bind(token.id)
    .bind(token.hash)
    .bind(token.purpose)
    .bind(Utc::now())
    .bind(token.expires_at)
    .bind(token.user_name)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        > 0;
    commit_audited(tx, added, audit).await
}

pub(super) async fn token_by_hash(pool: &SqlitePool, hash: &str) -> Result<Option<TokenOwner>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS}, t.hash, u.role, u.disabled FROM tokens t JOIN users u ON u.name = t.user_name
         WHERE t.hash = ?"
    ))
    .bind(hash)
    .fetch_optional(pool)
    .await?)
}

pub(super) async fn tokens(pool: &SqlitePool, user_name: Option<&str>) -> Result<Vec<TokenRow>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {TOKEN_COLUMNS} FROM tokens t WHERE ? IS NULL OR t.user_name = ? ORDER BY t.created_at DESC, t.id"
    ))
    .bind(user_name)
    .bind(user_name)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn revoke_token(pool: &SqlitePool, id: &str, audit: &NewAudit) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let revoked = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(Utc::now())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    commit_audited(tx, revoked, audit).await
}

pub(super) async fn record_audit(pool: &SqlitePool, audit: &NewAudit) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    insert_audit(&mut tx, audit).await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn audit(pool: &SqlitePool, query: &AuditQuery) -> Result<Vec<AuditRow>> {
    let (action_exact, action_prefix) = crate::users::split_action(query.action.as_deref());
    Ok(sqlx::query_as(
        "SELECT id, at, actor, action, target, outcome, address, detail FROM audit
         WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2) AND (?3 IS NULL OR substr(action, 1, length(?3)) = ?3)
           AND (?4 IS NULL OR target = ?4) AND (?5 IS NULL OR outcome = ?5) AND (?6 IS NULL OR id < ?6)
         ORDER BY id DESC LIMIT ?7",
    )
    .bind(query.actor.as_deref())
    .bind(action_exact)
    .bind(action_prefix)
    .bind(query.target.as_deref())
    .bind(query.outcome.as_deref())
    .bind(query.before_id)
    .bind(query.limit)
    .fetch_all(pool)
    .await?)
}

pub(super) async fn set_budget(
    pool: &SqlitePool,
    subject_kind: &str,
    subject: &str,
    fuel_per_day: Option<i64>,
    audit: &NewAudit,
) -> Result<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let changed = match fuel_per_day {
        Some(fuel) => sqlx::query(
            "INSERT INTO budgets (subject_kind, subject, fuel_per_day, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (subject_kind, subject) DO UPDATE SET fuel_per_day = excluded.fuel_per_day,
                 updated_at = excluded.updated_at",
        )
        .bind(subject_kind)
        .bind(subject)
        .bind(fuel)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?
        .rows_affected(),
        None => sqlx::query("DELETE FROM budgets WHERE subject_kind = ? AND subject = ?")
            .bind(subject_kind)
            .bind(subject)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
    } > 0;
    commit_audited(tx, changed, audit).await
}

pub(super) async fn budgets(pool: &SqlitePool) -> Result<Vec<BudgetRow>> {
    Ok(sqlx::query_as(
        "SELECT subject_kind, subject, fuel_per_day, updated_at FROM budgets ORDER BY subject_kind, subject",
    )
    .fetch_all(pool)
    .await?)
}

pub(super) async fn fuel_used_by(pool: &SqlitePool, user: &str, since: DateTime<Utc>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(SUM(t.fuel_used), 0) FROM task_tries t JOIN dag_runs r ON r.run_id = t.run_id
         WHERE r.triggered_by = ? AND t.ended_at >= ?",
    )
    .bind(user)
    .bind(since)
    .fetch_one(pool)
    .await?)
}
