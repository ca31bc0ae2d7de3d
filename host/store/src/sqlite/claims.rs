//! SQLite's claims: one writer at a time (`BEGIN IMMEDIATE`), so a claim's counts of what runs
//! in each pool and DAG cannot change between reading them and starting the tries.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use crate::claims::{candidates_for, choose, split_counts, Candidate};
use crate::{Claim, ClaimRequest, Claimed, ExpiredLease, HeldTry, Report, ReportFate, ReportedTry, Result, WorkerInfo};

pub(super) async fn claim(pool: &SqlitePool, request: &ClaimRequest<'_>, asked_at: DateTime<Utc>) -> Result<Claim> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    // The claim's time is taken once it holds the write lock, not when it was asked for: a report
    // that freed an instance while this claim waited must not end after the new try "started".
    let at = asked_at.max(Utc::now());
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT ti.run_id, ti.task_id, ti.map_index, r.dag_id, ti.pool, ti.pool_slots, ti.max_active_tasks
         FROM task_instances ti JOIN dag_runs r ON r.run_id = ti.run_id
         WHERE ti.state = 'queued' AND (ti.lease_owner IS NULL OR ti.lease_expires_at < ?)
         ORDER BY ti.priority DESC, ti.queued_at LIMIT ?",
    )
    .bind(at)
    .bind(candidates_for(request.limit))
    .fetch_all(&mut *tx)
    .await?;
    if candidates.is_empty() {
        return Ok(Claim::default());
    }
    // What the counts are now, in one statement: pool sizes, the slots running in each pool, and
    // the tries running in each DAG (a reported try has stopped: its slot is free).
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT 'size', name, slots FROM pools
         UNION ALL
         SELECT 'used', pool, SUM(COALESCE(pool_slots, 1)) FROM task_instances
         WHERE state = 'running' AND pool IS NOT NULL AND reported_at IS NULL GROUP BY pool
         UNION ALL
         SELECT 'dag', r.dag_id, COUNT(*) FROM task_instances ti JOIN dag_runs r ON r.run_id = ti.run_id
         WHERE ti.state = 'running' AND ti.pool IS NOT NULL AND ti.reported_at IS NULL GROUP BY r.dag_id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let (pool_sizes, pool_used, dag_running) = split_counts(counts);
    let lease_until = at + chrono::Duration::from_std(request.lease).unwrap_or(chrono::Duration::seconds(10));
    let mut claimed = Vec::new();
    let chosen = choose(&candidates, &pool_sizes, pool_used, dag_running, request);
    let more_waiting = chosen.len() < candidates.len();
    for index in chosen {
        let c = &candidates[index];
        let row: Option<(i64, String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "UPDATE task_instances SET state = 'running', try_number = try_number + 1, lease_owner = ?,
                 lease_expires_at = ?, reported_at = NULL, next_try_at = NULL, updated_at = ?,
                 started_at = COALESCE(started_at, ?), ended_at = NULL
             WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = 'queued'
             RETURNING try_number, plugin_id, job, queued_at",
        )
        .bind(request.worker)
        .bind(lease_until)
        .bind(at)
        .bind(at)
        .bind(&c.run_id)
        .bind(&c.task_id)
        .bind(c.map_index)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((try_number, plugin_id, job, queued_at)) = row else { continue };
        sqlx::query(
            "INSERT INTO task_tries (run_id, task_id, map_index, try_number, plugin_id, worker, started_at, queued_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.run_id)
        .bind(&c.task_id)
        .bind(c.map_index)
        .bind(try_number)
        .bind(&plugin_id)
        .bind(request.worker)
        .bind(at)
        .bind(queued_at)
        .execute(&mut *tx)
        .await?;
        claimed.push(Claimed {
            run_id: c.run_id.clone(),
            task_id: c.task_id.clone(),
            map_index: c.map_index,
            try_number,
            plugin_id,
            job: super::json_text(&job, "task_instances")?,
            queued_at,
        });
    }
    tx.commit().await?;
    Ok(Claim { claimed, more_waiting })
}

pub(super) async fn renew_leases(
    pool: &SqlitePool,
    worker: &WorkerInfo,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<HeldTry>> {
    let mut tx = pool.begin().await?;
    let held = sqlx::query_as(
        "UPDATE task_instances SET lease_expires_at = ?
         WHERE lease_owner = ? AND state = 'running' AND reported_at IS NULL
         RETURNING run_id, task_id, map_index, try_number",
    )
    .bind(until)
    .bind(&worker.id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workers (id, hostname, pid, concurrency, pools, started_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )
    .bind(&worker.id)
    .bind(&worker.hostname)
    .bind(i64::from(worker.pid))
    .bind(i64::try_from(worker.concurrency).unwrap_or(i64::MAX))
    .bind(serde_json::Value::from(worker.pools.clone()).to_string())
    .bind(worker.started_at)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held)
}

pub(super) async fn remove_worker(pool: &SqlitePool, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = ?").bind(id).execute(pool).await?;
    Ok(())
}

pub(super) async fn live_workers(pool: &SqlitePool, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
    let rows: Vec<(String, String, i64, i64, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, hostname, pid, concurrency, pools, started_at FROM workers WHERE heartbeat_at >= ?
         ORDER BY id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|(id, hostname, pid, concurrency, pools, started_at)| {
            Ok(WorkerInfo {
                id,
                hostname,
                pid: u32::try_from(pid).unwrap_or(0),
                concurrency: usize::try_from(concurrency).unwrap_or(0),
                pools: serde_json::from_value(super::json_text(&pools, "workers")?).unwrap_or_default(),
                started_at,
            })
        })
        .collect()
}

pub(super) async fn report_tries(pool: &SqlitePool, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut fates = Vec::with_capacity(reports.len());
    for report in reports {
        fates.push(report_one(&mut tx, worker, report).await?);
    }
    tx.commit().await?;
    Ok(fates)
}

async fn report_one(tx: &mut sqlx::SqliteConnection, worker: &str, report: &Report) -> Result<ReportFate> {
    let recorded = sqlx::query(
        "UPDATE task_tries SET outcome = ?, message = ?, fuel_used = ?, peak_memory = ?, wall_us = ?, log = ?,
             ended_at = ?, result = ?, record = ?
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ? AND outcome IS NULL",
    )
    .bind(&report.outcome)
    .bind(&report.message)
    .bind(report.fuel_used)
    .bind(report.peak_memory)
    .bind(i64::try_from(report.wall.as_micros()).unwrap_or(i64::MAX))
    .bind(&report.log)
    .bind(report.at)
    .bind(report.result.as_ref().map(serde_json::Value::to_string))
    .bind(report.record.as_ref().map(serde_json::Value::to_string))
    .bind(&report.run_id)
    .bind(&report.task_id)
    .bind(report.map_index)
    .bind(report.try_number)
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() == 0 {
        return Ok(ReportFate::Refused);
    }
    for artifact in &report.artifacts {
        sqlx::query(
            "INSERT INTO artifacts (run_id, task_id, map_index, try_number, name, size, hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&report.run_id)
        .bind(&report.task_id)
        .bind(report.map_index)
        .bind(report.try_number)
        .bind(&artifact.name)
        .bind(artifact.size)
        .bind(&artifact.hash)
        .bind(report.at)
        .execute(&mut *tx)
        .await?;
    }
    let current = sqlx::query(
        "UPDATE task_instances SET reported_at = ?, lease_owner = NULL, updated_at = ?
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = 'running' AND try_number = ?
             AND lease_owner = ?",
    )
    .bind(report.at)
    .bind(report.at)
    .bind(&report.run_id)
    .bind(&report.task_id)
    .bind(report.map_index)
    .bind(report.try_number)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    if current.rows_affected() > 0 {
        return Ok(ReportFate::Accepted);
    }
    // Cleared or marked while it ran: the instance's rerun may be claimed now.
    sqlx::query(
        "UPDATE task_instances SET lease_owner = NULL, lease_expires_at = NULL
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ? AND lease_owner = ?",
    )
    .bind(&report.run_id)
    .bind(&report.task_id)
    .bind(report.map_index)
    .bind(report.try_number)
    .bind(worker)
    .execute(&mut *tx)
    .await?;
    Ok(ReportFate::Orphaned)
}

pub(super) async fn reported_tries(pool: &SqlitePool) -> Result<Vec<ReportedTry>> {
    Ok(sqlx::query_as(
        "SELECT ti.run_id, ti.task_id, ti.map_index, ti.try_number, t.plugin_id, COALESCE(t.outcome, '') AS outcome,
             COALESCE(t.message, '') AS message, COALESCE(t.wall_us, 0) AS wall_us, t.result
         FROM task_instances ti JOIN task_tries t ON t.run_id = ti.run_id AND t.task_id = ti.task_id
             AND t.map_index = ti.map_index AND t.try_number = ti.try_number
         WHERE ti.reported_at IS NOT NULL AND ti.state = 'running'
         ORDER BY ti.reported_at",
    )
    .fetch_all(pool)
    .await?)
}

pub(super) async fn expired_leases(pool: &SqlitePool, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>> {
    Ok(sqlx::query_as(
        "SELECT run_id, task_id, map_index, try_number, lease_owner FROM task_instances
         WHERE state = 'running' AND reported_at IS NULL AND lease_expires_at < ?",
    )
    .bind(at)
    .fetch_all(pool)
    .await?)
}
