//! `sandflow dags backfill`: runs for past intervals, with a progress bar and a summary.

use std::time::{Duration, Instant};

use chrono::Utc;
use sandflow_core::state::RunState;
use sandflow_scheduler::actions::Action;
use sandflow_scheduler::{Scheduler, SchedulerConfig, SchedulerError, StoredSpec};
use sandflow_store::{NewRun, RunType, SchedulingGuard, Store, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{date, open_store, perform, user};
use crate::out::outln;
use crate::{CliError, Home};

/// At most this many intervals in one backfill: a typo in a date should not create a million runs.
const MAX_INTERVALS: usize = 10_000;

pub async fn run(dag_id: &str, from: &str, to: &str, rerun_failed: bool, home: &Home) -> Result<(), CliError> {
    let (from, to) = (date(from, "--from")?, date(to, "--to")?);
    if to < from {
        return Err(CliError::Usage(anyhow::anyhow!("--to {to} is before --from {from}")));
    }
    let store = open_store(home).await?;
    let Some(row) = store.dag(dag_id).await.map_err(anyhow::Error::from)? else {
        return Err(CliError::Usage(crate::app::unknown_dag(&store, dag_id).await));
    };
    if row.is_paused {
        // A paused DAG's runs start no tasks: the backfill would wait for ever.
        return Err(CliError::Usage(anyhow::anyhow!(
            "DAG `{dag_id}` is paused, so its runs start no tasks: unpause it first (sandflow dags unpause {dag_id})"
        )));
    }
    let spec = store.dag_spec(dag_id, &row.active_version).await.map_err(anyhow::Error::from)?.unwrap_or_default();
    let spec: StoredSpec = serde_json::from_value(spec).map_err(anyhow::Error::from)?;
    let dag = spec.to_dag(&Default::default()).map_err(anyhow::Error::from)?;
    if dag.schedule.expr().is_none() {
        return Err(CliError::Usage(anyhow::anyhow!(
            "DAG `{dag_id}` has no schedule: a backfill needs one to cut intervals"
        )));
    }

    let mut intervals = Vec::new();
    let mut start = dag.schedule.at_or_after(from);
    while let Some(s) = start.filter(|s| *s <= to) {
        let Some(end) = dag.schedule.next_after(s) else { break };
        intervals.push((s, end));
        if intervals.len() > MAX_INTERVALS {
            return Err(CliError::Usage(anyhow::anyhow!(
                "more than {MAX_INTERVALS} intervals from {from} to {to}: backfill a shorter range"
            )));
        }
        start = Some(end);
    }
    if intervals.is_empty() {
        return Err(CliError::Usage(anyhow::anyhow!(
            "no interval of {dag_id}'s schedule starts between {from} and {to}"
        )));
    }

    let existing = store.runs_between(dag_id, from, to).await.map_err(anyhow::Error::from)?;
    let task_ids: Vec<String> = dag.tasks.iter().map(|t| t.id.clone()).collect();
    let (mut created, mut rerun, mut skipped) = (0, 0, 0);
    let mut watched = Vec::new();
    for (start, end) in &intervals {
        match existing.iter().find(|r| r.interval_start == Some(*start) || r.logical_date == *start) {
            Some(run) if rerun_failed && run.state == RunState::Failed => {
                let action = Action::Clear {
                    dag_id: dag_id.to_string(),
                    run_ids: vec![run.run_id.clone()],
                    task_ids: vec![],
                    map_index: None,
                    downstream: false,
                    upstream: false,
                    only_failed: true,
                };
                perform(&store, home, &action).await?;
                rerun += 1;
                watched.push(run.run_id.clone());
            }
            Some(_) => skipped += 1,
            None => {
                let run = NewRun {
                    run_id: RunType::Backfill.run_id(dag_id, *start),
                    dag_id: dag_id.to_string(),
                    version: row.active_version.clone(),
                    run_type: RunType::Backfill,
                    logical_date: *start,
                    interval: Some((*start, *end)),
                    conf: serde_json::Map::new(),
                    note: Some("backfill".into()),
                    triggered_by: user(),
                    created_at: Utc::now(),
                    experiment: None,
                };
                if store.create_run(&run, &task_ids).await.map_err(anyhow::Error::from)? {
                    created += 1;
                    watched.push(run.run_id);
                } else {
                    skipped += 1;
                }
            }
        }
    }
    outln!(
        "backfill of {dag_id}: {} intervals from {} to {}: {created} runs created, {rerun} failed runs cleared to rerun, {skipped} already ran",
        intervals.len(),
        intervals[0].0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        intervals[intervals.len() - 1].0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if watched.is_empty() {
        return Ok(());
    }

    // When no scheduler owns the home (now, or later if the owner stops), this process runs one
    // until the backfill's runs end.
    let shutdown = CancellationToken::new();
    let mut own = own_scheduler(&store, home, &shutdown).await?;
    let mut asked_at = Instant::now();
    let started = Instant::now();
    // Drawn only for a person at a terminal; in a pipe or a file, the summary lines alone.
    let bar = indicatif::ProgressBar::new(watched.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("[{bar:30}] {pos}/{len} runs ended ({msg}) {elapsed}")
            .expect("a valid template")
            .progress_chars("#>-"),
    );
    let (success, failed) = loop {
        let mut success = 0;
        let mut failed = 0;
        for run_id in &watched {
            match store.run(run_id).await.map_err(anyhow::Error::from)?.map(|r| r.state) {
                Some(RunState::Success) => success += 1,
                Some(RunState::Failed) => failed += 1,
                _ => {}
            }
        }
        bar.set_position((success + failed) as u64);
        bar.set_message(format!("{success} success, {failed} failed"));
        if success + failed == watched.len() {
            break (success, failed);
        }
        match &own {
            Some((_, task)) if task.is_finished() => {
                bar.abandon();
                return Err(CliError::Failed("the backfill's scheduler stopped".into()));
            }
            Some(_) => {}
            None if asked_at.elapsed() >= OWNER_CHECK => {
                own = own_scheduler(&store, home, &shutdown).await?;
                asked_at = Instant::now();
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    shutdown.cancel();
    if let Some((_scheduling, task)) = own {
        task.await.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)?;
    }
    let elapsed = sandflow_sandbox::human_duration(started.elapsed());
    outln!("backfill of {dag_id} done in {elapsed}: {success} runs succeeded, {failed} failed");
    if failed > 0 {
        return Err(CliError::Failed(format!("{failed} backfill runs failed (see: sandflow dags show {dag_id})")));
    }
    Ok(())
}

/// How often a backfill that leaves its runs to another scheduler checks that one still owns the home.
const OWNER_CHECK: Duration = Duration::from_secs(1);

/// A scheduler for the backfill's runs in this process, owning the home while it runs; `None` when
/// another process owns it (and runs them).
async fn own_scheduler(
    store: &Store,
    home: &Home,
    shutdown: &CancellationToken,
) -> Result<Option<(SchedulingGuard, JoinHandle<Result<(), SchedulerError>>)>, CliError> {
    let scheduling = match store.own_scheduling("dags backfill").await {
        Ok(guard) => guard,
        Err(StoreError::SchedulerRunning { .. }) => return Ok(None),
        Err(e) => return Err(anyhow::Error::from(e).into()),
    };
    let sandbox = crate::plugin_cmd::sandbox_with(home, 32)?;
    let config = SchedulerConfig { create_scheduled_runs: false, ..SchedulerConfig::default() };
    let task = tokio::spawn(Scheduler::new(store.clone(), sandbox, config).run_with_worker(shutdown.clone()));
    Ok(Some((scheduling, task)))
}
