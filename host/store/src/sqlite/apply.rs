//! SQLite's guarded writes: each change's `UPDATE` carries the state it expects, and one that
//! matches no row reads what is there (in the same transaction) and loses the race.

use sandflow_core::state::{RunState, TaskState};
use serde_json::Value;
use sqlx::SqliteConnection;

use super::insert_run;
use crate::changes::ends;
use crate::{Change, LostRace, Result, StoreError, TryEnd};

/// Applies one change inside the batch's transaction.
pub(super) async fn one(tx: &mut SqliteConnection, change: &Change) -> Result<()> {
    match change {
        Change::RunState { run_id, from, to, at } => {
            let done = sqlx::query(
                "UPDATE dag_runs SET state = ?1, started_at = COALESCE(started_at, ?2), ended_at = ?3
                 WHERE run_id = ?4 AND state = ?5",
            )
            .bind(to.as_str())
            .bind((*to == RunState::Running).then_some(*at))
            .bind(to.is_finished().then_some(*at))
            .bind(run_id)
            .bind(from.as_str())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                let found: Option<String> = sqlx::query_scalar("SELECT state FROM dag_runs WHERE run_id = ?")
                    .bind(run_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                return Err(LostRace::run(run_id, from.as_str(), found));
            }
        }
        Change::TaskState { run_id, task_id, map_index, from, to, reason, output, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = ?1, reason = COALESCE(?2, reason), output = COALESCE(?3, output),
                     updated_at = ?4, ended_at = COALESCE(?5, ended_at)
                 WHERE run_id = ?6 AND task_id = ?7 AND map_index = ?8 AND state = ?9",
            )
            .bind(to.as_str())
            .bind(reason)
            .bind(output.as_ref().map(Value::to_string))
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
            for (index, item) in items.iter().enumerate() {
                let index = index as i64;
                let done = sqlx::query(
                    "INSERT INTO task_instances (run_id, task_id, map_index, state, map_item, updated_at)
                     VALUES (?, ?, ?, 'scheduled', ?, ?)
                     ON CONFLICT (run_id, task_id, map_index) DO UPDATE SET state = 'scheduled',
                         map_item = excluded.map_item, updated_at = excluded.updated_at
                     WHERE task_instances.state NOT IN ('queued', 'running')",
                )
                .bind(run_id)
                .bind(task_id)
                .bind(index)
                .bind(item.to_string())
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(lost_task(tx, run_id, task_id, index, "any state but queued or running").await);
                }
            }
        }
        Change::Reset { run_id, task_id, map_index, from, at } => {
            let done = sqlx::query(
                "UPDATE task_instances SET state = 'none', output = NULL, metrics = NULL, reason = NULL,
                     next_try_at = NULL, started_at = NULL, ended_at = NULL, tries_before_clear = try_number,
                     reported_at = NULL, updated_at = ?
                 WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = ?",
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
                "UPDATE task_instances SET state = 'running', try_number = ?, next_try_at = NULL, updated_at = ?,
                     started_at = COALESCE(started_at, ?), ended_at = NULL
                 WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = ?",
            )
            .bind(try_number)
            .bind(at)
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
                 SELECT ?1, ?2, ?3, ?4, ?5, ?6, queued_at FROM task_instances
                 WHERE run_id = ?1 AND task_id = ?2 AND map_index = ?3",
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
                "UPDATE task_instances SET state = 'queued', queued_at = ?, plugin_id = ?, pool = ?, pool_slots = ?,
                     priority = ?, max_active_tasks = ?, job = ?, reported_at = NULL, updated_at = ?
                 WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = ?",
            )
            .bind(at)
            .bind(&job.plugin_id)
            .bind(&job.pool)
            .bind(job.pool_slots)
            .bind(job.priority)
            .bind(job.max_active_tasks)
            .bind(job.job.to_string())
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
        Change::Judged(end) => {
            let state = end.state.unwrap_or(TaskState::Failed);
            end_instance(tx, end, state, true).await?;
            sqlx::query(
                "UPDATE task_tries SET outcome = ?, message = ?, result = NULL
                 WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?",
            )
            .bind(&end.outcome)
            .bind(&end.message)
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

/// The instance of a try that ended moves to `state`, if it is still running that try (and, for
/// a judgment, its end was reported; otherwise, it was not).
async fn end_instance(tx: &mut SqliteConnection, end: &TryEnd, state: TaskState, reported: bool) -> Result<()> {
    let done = sqlx::query(if reported {
        "UPDATE task_instances SET state = ?, output = COALESCE(?, output), metrics = COALESCE(?, metrics),
             reason = ?, next_try_at = ?, updated_at = ?, ended_at = ?, lease_owner = NULL, reported_at = NULL
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = 'running' AND try_number = ?
             AND reported_at IS NOT NULL"
    } else {
        "UPDATE task_instances SET state = ?, output = COALESCE(?, output), metrics = COALESCE(?, metrics),
             reason = ?, next_try_at = ?, updated_at = ?, ended_at = ?, lease_owner = NULL, reported_at = NULL
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND state = 'running' AND try_number = ?
             AND reported_at IS NULL"
    })
    .bind(state.as_str())
    .bind(end.output.as_ref().map(Value::to_string))
    .bind(end.metrics.as_ref().map(|m| Value::Object(m.clone()).to_string()))
    .bind(if state == TaskState::Success { None } else { Some(&end.message) })
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
        "SELECT state, try_number FROM task_instances WHERE run_id = ? AND task_id = ? AND map_index = ?",
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
async fn end_try(tx: &mut SqliteConnection, end: &TryEnd) -> Result<()> {
    let done = sqlx::query(
        "UPDATE task_tries SET outcome = ?, message = ?, fuel_used = ?, peak_memory = ?, wall_us = ?, log = ?, ended_at = ?
         WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ? AND outcome IS NULL",
    )
    .bind(&end.outcome)
    .bind(&end.message)
    .bind(end.fuel_used)
    .bind(end.peak_memory)
    .bind(end.wall_us())
    .bind(&end.log)
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
        "SELECT outcome FROM task_tries WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?",
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
async fn lost_task(
    tx: &mut SqliteConnection,
    run_id: &str,
    task_id: &str,
    map_index: i64,
    expected: &str,
) -> StoreError {
    let found = sqlx::query_scalar::<_, String>(
        "SELECT state FROM task_instances WHERE run_id = ? AND task_id = ? AND map_index = ?",
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
