//! PostgreSQL's claims. A claim counts what runs in each pool and DAG and then starts tries: two
//! claims interleaving under READ COMMITTED could both see a pool's last slot free, so claims take
//! a transaction advisory lock and run one at a time across the cluster (a claim is a few
//! milliseconds; workers take up to their free slots at once). Queued rows are read `FOR UPDATE
//! SKIP LOCKED`, so a claim never waits on a row a scheduler is changing (a clear, say).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::types::Json;
use sqlx::PgPool;
use tracing::{debug, warn};

use super::{json, text};
use crate::claims::{candidates_for, choose, split_counts, Candidate, Wakeups};
use crate::{
    Claim, ClaimRequest, Claimed, ExpiredLease, HeldTry, Report, ReportFate, ReportedTry, Result, Topic, WorkerInfo,
};

/// The advisory lock claims take turns on ("SFCL"; scheduling's is "SFLW").
const CLAIM_LOCK: i64 = 0x5346_434C;

pub(super) async fn claim(pool: &PgPool, request: &ClaimRequest<'_>, asked_at: DateTime<Utc>) -> Result<Claim> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut *tx).await?;
    // The claim's time is taken once it holds the lock, not when it was asked for: a report that
    // freed an instance while this claim waited must not end after the new try "started".
    let at = asked_at.max(Utc::now());
    let candidates: Vec<Candidate> = sqlx::query_as(
        "SELECT ti.run_id, ti.task_id, ti.map_index, r.dag_id, ti.pool, ti.pool_slots, ti.max_active_tasks
         FROM task_instances ti JOIN dag_runs r ON r.run_id = ti.run_id
         WHERE ti.state = 'queued' AND (ti.lease_owner IS NULL OR ti.lease_expires_at < $2)
         ORDER BY ti.priority DESC, ti.queued_at LIMIT $1
         FOR UPDATE OF ti SKIP LOCKED",
    )
    .bind(candidates_for(request.limit))
    .bind(at)
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
         SELECT 'used', pool, SUM(COALESCE(pool_slots, 1))::BIGINT FROM task_instances
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
        let row: Option<(i64, String, Json<serde_json::Value>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "UPDATE task_instances SET state = 'running', try_number = try_number + 1, lease_owner = $1,
                 lease_expires_at = $2, reported_at = NULL, next_try_at = NULL, updated_at = $3,
                 started_at = COALESCE(started_at, $3), ended_at = NULL
             WHERE run_id = $4 AND task_id = $5 AND map_index = $6 AND state = 'queued'
             RETURNING try_number, plugin_id, job, queued_at",
        )
        .bind(request.worker)
        .bind(lease_until)
        .bind(at)
        .bind(&c.run_id)
        .bind(&c.task_id)
        .bind(c.map_index)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((try_number, plugin_id, Json(job), queued_at)) = row else { continue };
        sqlx::query(
            "INSERT INTO task_tries (run_id, task_id, map_index, try_number, plugin_id, worker, started_at, queued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
            job,
            queued_at,
        });
    }
    tx.commit().await?;
    Ok(Claim { claimed, more_waiting })
}

pub(super) async fn renew_leases(
    pool: &PgPool,
    worker: &WorkerInfo,
    at: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<HeldTry>> {
    let mut tx = pool.begin().await?;
    let held = sqlx::query_as(
        "UPDATE task_instances SET lease_expires_at = $1
         WHERE lease_owner = $2 AND state = 'running' AND reported_at IS NULL
         RETURNING run_id, task_id, map_index, try_number",
    )
    .bind(until)
    .bind(&worker.id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO workers (id, hostname, pid, concurrency, pools, started_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
    )
    .bind(&worker.id)
    .bind(&worker.hostname)
    .bind(i64::from(worker.pid))
    .bind(i64::try_from(worker.concurrency).unwrap_or(i64::MAX))
    .bind(Json(&worker.pools))
    .bind(worker.started_at)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(held)
}

pub(super) async fn remove_worker(pool: &PgPool, id: &str) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE id = $1").bind(id).execute(pool).await?;
    Ok(())
}

/// A `workers` row: id, hostname, pid, concurrency, pools, started_at.
type WorkerRow = (String, String, i64, i64, Json<Vec<String>>, DateTime<Utc>);

pub(super) async fn live_workers(pool: &PgPool, since: DateTime<Utc>) -> Result<Vec<WorkerInfo>> {
    let rows: Vec<WorkerRow> = sqlx::query_as(
        "SELECT id, hostname, pid, concurrency, pools, started_at FROM workers WHERE heartbeat_at >= $1
         ORDER BY id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, hostname, pid, concurrency, Json(pools), started_at)| WorkerInfo {
            id,
            hostname,
            pid: u32::try_from(pid).unwrap_or(0),
            concurrency: usize::try_from(concurrency).unwrap_or(0),
            pools,
            started_at,
        })
        .collect())
}

pub(super) async fn report_tries(pool: &PgPool, worker: &str, reports: &[Report]) -> Result<Vec<ReportFate>> {
    let mut tx = pool.begin().await?;
    let mut fates = Vec::with_capacity(reports.len());
    for report in reports {
        fates.push(report_one(&mut tx, worker, report).await?);
    }
    if fates.contains(&ReportFate::Accepted) {
        sqlx::query("SELECT pg_notify($1, '')").bind(Topic::Reported.channel()).execute(&mut *tx).await?;
    }
    if fates.contains(&ReportFate::Orphaned) {
        sqlx::query("SELECT pg_notify($1, '')").bind(Topic::Queued.channel()).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(fates)
}

async fn report_one(tx: &mut sqlx::PgConnection, worker: &str, report: &Report) -> Result<ReportFate> {
    let recorded = sqlx::query(
        "UPDATE task_tries SET outcome = $1, message = $2, fuel_used = $3, peak_memory = $4, wall_us = $5, log = $6,
             ended_at = $7, result = $8, record = $13
         WHERE run_id = $9 AND task_id = $10 AND map_index = $11 AND try_number = $12 AND outcome IS NULL",
    )
    .bind(&report.outcome)
    .bind(text(&report.message))
    .bind(report.fuel_used)
    .bind(report.peak_memory)
    .bind(i64::try_from(report.wall.as_micros()).unwrap_or(i64::MAX))
    .bind(text(&report.log))
    .bind(report.at)
    .bind(report.result.as_ref().map(json))
    .bind(&report.run_id)
    .bind(&report.task_id)
    .bind(report.map_index)
    .bind(report.try_number)
    .bind(report.record.as_ref().map(json))
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() == 0 {
        return Ok(ReportFate::Refused);
    }
    for artifact in &report.artifacts {
        sqlx::query(
            "INSERT INTO artifacts (run_id, task_id, map_index, try_number, name, size, hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(&report.run_id)
        .bind(&report.task_id)
        .bind(report.map_index)
        .bind(report.try_number)
        .bind(text(&artifact.name))
        .bind(artifact.size)
        .bind(&artifact.hash)
        .bind(report.at)
        .execute(&mut *tx)
        .await?;
    }
    let current = sqlx::query(
        "UPDATE task_instances SET reported_at = $1, lease_owner = NULL, updated_at = $1
         WHERE run_id = $2 AND task_id = $3 AND map_index = $4 AND state = 'running' AND try_number = $5
             AND lease_owner = $6",
    )
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
         WHERE run_id = $1 AND task_id = $2 AND map_index = $3 AND try_number = $4 AND lease_owner = $5",
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

pub(super) async fn reported_tries(pool: &PgPool) -> Result<Vec<ReportedTry>> {
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

pub(super) async fn expired_leases(pool: &PgPool, at: DateTime<Utc>) -> Result<Vec<ExpiredLease>> {
    Ok(sqlx::query_as(
        "SELECT run_id, task_id, map_index, try_number, lease_owner FROM task_instances
         WHERE state = 'running' AND reported_at IS NULL AND lease_expires_at < $1",
    )
    .bind(at)
    .fetch_all(pool)
    .await?)
}

/// Listens on the wake-up channels for as long as the process lives, forwarding each
/// notification to this process's subscribers. A lost connection is retried every second; what
/// is notified meanwhile is found by the subscribers' polling.
pub(super) fn listen(pool: PgPool, wakeups: Arc<Wakeups>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    runtime.spawn(async move {
        loop {
            match listen_once(&pool, &wakeups).await {
                Ok(()) | Err(sqlx::Error::PoolClosed) => return,
                Err(e) => {
                    warn!("listening for wake-ups: {e}; trying again in 1 s (polling meanwhile)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
}

async fn listen_once(pool: &PgPool, wakeups: &Wakeups) -> std::result::Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([Topic::Queued.channel(), Topic::Reported.channel(), Topic::Kill.channel()]).await?;
    loop {
        // `try_recv` reconnects by itself; `None` says notifications may have been lost then.
        match listener.try_recv().await? {
            Some(notification) => {
                if let Some(topic) = Topic::of_channel(notification.channel()) {
                    wakeups.bump(topic);
                }
            }
            None => {
                debug!("the wake-up connection was lost and is back");
                wakeups.bump(Topic::Queued);
                wakeups.bump(Topic::Reported);
                wakeups.bump(Topic::Kill);
            }
        }
    }
}
