//! PostgreSQL's guarded writes: each change's `UPDATE` carries the state it expects. Under READ
//! COMMITTED, a second transaction updating the same row waits for the first, then re-reads the
//! row and matches nothing: it loses the race, reads what the winner wrote (in the same
//! transaction), and the whole batch rolls back.

use sandflow_core::state::{RunState, TaskState};
use serde_json::Value;
use sqlx::PgConnection;

use super::{insert_run, json, text};
use crate::changes::ends;
use crate::{Change, LostRace, Result, StoreError, TryEnd};

/// Applies one change inside the batch's transaction.
pub(super) async fn one(tx: &mut PgConnection, change: &Change) -> Result<()> {
    match change {
        Change::RunState { run_id, from, to, at } => {
            let done = sqlx::query(
                "UPDATE dag_runs SET state = $1, started_at = COALESCE(started_at, $2), ended_at = $3
                 WHERE run_id = $4 AND state = $5",
            )
            .bind(to.as_str())
            .bind((*to == RunState::Running).then_some(*at))
            .bind(to.is_finished().then_some(*at))
            .bind(run_id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let found: Option<String> = sqlx::query_scalar("SELECT state FROM dag_runs WHERE run_id = $1")
                    .bind(run_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(LostRace::run(run_id, from.as_str(), found));
            }
        }
        Change::TaskState { run_id, task_id, map_index, from, to, reason, output, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = $1, reason = COALESCE($2, reason), output = COALESCE($3, output),
                     updated_at = $4, ended_at = COALESCE($5, ended_at)
                 WHERE run_id = $6 AND task_id = $7 AND map_index = $8 AND state = $9",
            )
            .bind(to.as_str())
            .bind(reason.as_deref().map(text))
            .bind(output.as_ref().map(json))
            .bind(at)
            .bind(ends(*to, *at))
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(lost_task(tx, run_id, task_id, *map_index, from.as_str()).await);
            }
        }
        Change::Expand { run_id, task_id, items, at } => {
            // One statement for every item: a 5,000-way map is one round trip, not 5,000.
            let values: Vec<_> = items.iter().map(json).collect();
            let done = sqlx::query(
                "INSERT INTO task_instances (run_id, task_id, map_index, state, map_item, updated_at)
                 SELECT $1, $2, item.ordinality - 1, 'scheduled', item.value, $3
                 FROM UNNEST($4::jsonb[]) WITH ORDINALITY AS item (value, ordinality)
                 ON CONFLICT (run_id, task_id, map_index) DO UPDATE SET state = 'scheduled',
                     map_item = excluded.map_item, updated_at = excluded.updated_at
                 WHERE task_instances.state NOT IN ('queued', 'running')",
            )
            .bind(run_id)
            .bind(task_id)
            .bind(at)
            .bind(values)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() < items.len() as u64 {
                let taken: Option<(i64, String)> = sqlx::query_as(
                    "SELECT map_index, state FROM task_instances
                     WHERE run_id = $1 AND task_id = $2 AND map_index >= 0 AND map_index < $3
                       AND state IN ('queued', 'running')
                     ORDER BY map_index LIMIT 1",
                )
                .bind(run_id)
                .bind(task_id)
                .bind(items.len() as i64)
                .fetch_optional(&mut *tx)
                .await?;
                let (index, found) = taken.map_or((0, None), |(index, state)| (index, Some(state)));
                return Err(LostRace::task(run_id, task_id, index, "any state but queued or running", found));
            }
        }
        Change::Reset { run_id, task_id, map_index, from, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'none', output = NULL, metrics = NULL, reason = NULL,
                     next_try_at = NULL, started_at = NULL, ended_at = NULL, tries_before_clear = try_number,
                     reported_at = NULL,
                     updated_at = $1
                 WHERE run_id = $2 AND task_id = $3 AND map_index = $4 AND state = $5",
            )
            .bind(at)
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(lost_task(tx, run_id, task_id, *map_index, from.as_str()).await);
            }
        }
        Change::TryStarted { run_id, task_id, map_index, from, try_number, plugin_id, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'running', try_number = $1, next_try_at = NULL, updated_at = $2,
                     started_at = COALESCE(started_at, $2), ended_at = NULL
                 WHERE run_id = $3 AND task_id = $4 AND map_index = $5 AND state = $6",
            )
            .bind(try_number)
            .bind(at)
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(lost_task(tx, run_id, task_id, *map_index, from.as_str()).await);
            }
            sqlx::query(
                "INSERT INTO task_tries (run_id, task_id, map_index, try_number, plugin_id, started_at, queued_at)
                 SELECT $1, $2, $3, $4, $5, $6, queued_at FROM task_instances
                 WHERE run_id = $1 AND task_id = $2 AND map_index = $3",
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
        Change::Queued { run_id, task_id, map_index, from, job, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'queued', queued_at = $1, plugin_id = $2, pool = $3, pool_slots = $4,
                     priority = $5, max_active_tasks = $6, job = $7, reported_at = NULL,
                     updated_at = $1
                 WHERE run_id = $8 AND task_id = $9 AND map_index = $10 AND state = $11",
            )
            .bind(at)
            .bind(&job.plugin_id)
            .bind(&job.pool)
            .bind(job.pool_slots)
            .bind(job.priority)
            .bind(job.max_active_tasks)
            .bind(json(&job.job))
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(lost_task(tx, run_id, task_id, *map_index, from.as_str()).await);
            }
        }
        Change::Judged(end) => {
            let state = end.state.unwrap_or(TaskState::Failed);
            end_instance(tx, end, state, true).await?;
            sqlx::query(
                "UPDATE task_tries SET outcome = $1, message = $2, result = NULL
                 WHERE run_id = $3 AND task_id = $4 AND map_index = $5 AND try_number = $6",
            )
            .bind(&end.outcome)
            .bind(text(&end.message))
            .bind(&end.run_id)
            .bind(&end.task_id)
            .bind(end.map_index)
            .bind(end.try_number)
            .execute(&mut *tx)
            .await?;
        }
        Change::TryEnded(end) => {
            if let Some(state) = end.state {
                end_instance(tx, end, state, false).await?;
            }
            end_try(tx, end).await?;
        }
        Change::CreateRun { run, task_ids } => {
            if !insert_run(tx, run, task_ids).await? {
                return Err(StoreError::RunExists { run_id: run.run_id.clone() });
            }
        }
    }
    Ok(())
}

/// The instance of a try that ended moves to `state`, if it is still running that try.
/// The instance of a try that ended moves to `state`, if it is still running that try (and, for
/// a judgment, its end was reported; otherwise, it was not).
async fn end_instance(tx: &mut PgConnection, end: &TryEnd, state: TaskState, reported: bool) -> Result<()> {
    let metrics = end.metrics.as_ref().map(|m| Value::Object(m.clone()));
    let done = sqlx::query(if reported {
        "UPDATE task_instances SET state = $1, output = COALESCE($2, output), metrics = COALESCE($3, metrics),
             reason = $4, next_try_at = $5, updated_at = $6, ended_at = $7, lease_owner = NULL, reported_at = NULL
         WHERE run_id = $8 AND task_id = $9 AND map_index = $10 AND state = 'running' AND try_number = $11
             AND reported_at IS NOT NULL"
    } else {
        "UPDATE task_instances SET state = $1, output = COALESCE($2, output), metrics = COALESCE($3, metrics),
             reason = $4, next_try_at = $5, updated_at = $6, ended_at = $7, lease_owner = NULL, reported_at = NULL
         WHERE run_id = $8 AND task_id = $9 AND map_index = $10 AND state = 'running' AND try_number = $11
             AND reported_at IS NULL"
    })
    .bind(state.as_str())
    .bind(end.output.as_ref().map(json))
    .bind(metrics.as_ref().map(json))
    .bind(if state == TaskState::Success { None } else { Some(text(&end.message)) })
    .bind(end.next_try_at)
    .bind(end.at)
    .bind(matches!(state, TaskState::Success | TaskState::Failed).then_some(end.at))
    .bind(&end.run_id)
    .bind(&end.task_id)
    .bind(end.map_index)
    .bind(end.try_number)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() > 0 {
        return Ok(());
    }
    let found: Option<(String, i64)> = sqlx::query_as(
        "SELECT state, try_number FROM task_instances WHERE run_id = $1 AND task_id = $2 AND map_index = $3",
    )
    .bind(&end.run_id)
    .bind(&end.task_id)
    .bind(end.map_index)
    .fetch_optional(&mut *tx)
    .await?;
    Err(LostRace::task(
        &end.run_id,
        &end.task_id,
        end.map_index,
        format!("running (try {}{})", end.try_number, if reported { ", reported" } else { "" }),
        found.map(|(state, number)| format!("{state} (try {number})")),
    ))
}

/// Records how a try ended, if it has not ended already.
async fn end_try(tx: &mut PgConnection, end: &TryEnd) -> Result<()> {
    let done = sqlx::query(
        "UPDATE task_tries SET outcome = $1, message = $2, fuel_used = $3, peak_memory = $4, wall_us = $5, log = $6,
             ended_at = $7
         WHERE run_id = $8 AND task_id = $9 AND map_index = $10 AND try_number = $11 AND outcome IS NULL",
    )
    .bind(&end.outcome)
    .bind(text(&end.message))
    .bind(end.fuel_used)
    .bind(end.peak_memory)
    .bind(end.wall_us())
    .bind(text(&end.log))
    .bind(end.at)
    .bind(&end.run_id)
    .bind(&end.task_id)
    .bind(end.map_index)
    .bind(end.try_number)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() > 0 {
        return Ok(());
    }
    let found: Option<Option<String>> = sqlx::query_scalar(
        "SELECT outcome FROM task_tries WHERE run_id = $1 AND task_id = $2 AND map_index = $3 AND try_number = $4",
    )
    .bind(&end.run_id)
    .bind(&end.task_id)
    .bind(end.map_index)
    .bind(end.try_number)
    .fetch_optional(&mut *tx)
    .await?;
    Err(LostRace::task(
        &end.run_id,
        &end.task_id,
        end.map_index,
        format!("try {} not yet ended", end.try_number),
        found.map(|outcome| format!("try {} ended ({})", end.try_number, outcome.unwrap_or_default())),
    ))
}

/// The lost race of a task instance's guarded write: what the transaction finds there.
async fn lost_task(tx: &mut PgConnection, run_id: &str, task_id: &str, map_index: i64, expected: &str) -> StoreError {
    let found = sqlx::query_scalar::<_, String>(
        "SELECT state FROM task_instances WHERE run_id = $1 AND task_id = $2 AND map_index = $3",
    )
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(&mut *tx)
    .await;
    match found {
        Ok(found) => LostRace::task(run_id, task_id, map_index, expected, found),
        Err(e) => e.into(),
    }
}
