//! `sandflow dags backfill`: runs for past intervals, with a progress bar and a summary.

use std::time::{Duration, Instant};

use sandflow_core::state::RunState;
use sandflow_scheduler::{Scheduler, SchedulerConfig, SchedulerError};
use sandflow_service::backfill::BackfillRequest;
use sandflow_store::{SchedulingGuard, Store, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::{date, open_store};
use crate::out::outln;
use crate::{CliError, Home};

pub async fn run(dag_id: &str, from: &str, to: &str, rerun_failed: bool, home: &Home) -> Result<(), CliError> {
    let (from, to) = (date(from, "--from")?, date(to, "--to")?);
    if to < from {
        return Err(CliError::Usage(anyhow::anyhow!("--to {to} is before --from {from}")));
    }
    let store = open_store(home).await?;
    let service = crate::app::service(store.clone(), home)?;
    let request = BackfillRequest { from, to, rerun_failed, by: crate::app::local_principal() };
    let report = match service.backfill(dag_id, &request).await {
        Ok(report) => report,
        Err(sandflow_service::ServiceError::NotFound { .. }) => {
            return Err(CliError::Usage(crate::app::unknown_dag(&store, dag_id).await))
        }
        Err(sandflow_service::ServiceError::Timeout(message)) => return Err(CliError::Failed(message)),
        Err(e) => return Err(crate::runs_cmd::service_error(e)),
    };
    outln!("{}", report.summary());
    let watched = report.run_ids;
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
    // The home's grant settings: the backfill's artifacts go where `tasks artifacts` and `tasks
    // replay` read them, and secrets open with the home's key.
    let config = SchedulerConfig { create_scheduled_runs: false, grants: home.grants()?, ..SchedulerConfig::default() };
    let task = tokio::spawn(Scheduler::new(store.clone(), sandbox, config).run_with_worker(shutdown.clone()));
    Ok(Some((scheduling, task)))
}
