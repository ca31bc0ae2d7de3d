//! `sandflow scheduler` and `sandflow worker`: the two halves of `standalone`, each its own
//! process, for many machines on one PostgreSQL database (or several processes on one SQLite
//! home). They meet only in the database.

use std::path::PathBuf;
use std::time::Duration;

use sandflow_scheduler::{Scheduler, SchedulerConfig, Worker, WorkerConfig};
use sandflow_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::app::{dags_dir, open_store};
use crate::out::sayln;
use crate::{CliError, Home};

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// The folder of DAG files to load and watch; without it, the DAGs already in the database
    /// are scheduled (loaded by another scheduler, `sandflow dags load`, or a bundle upload).
    #[arg(long)]
    pub dags: Option<PathBuf>,
    /// New DAGs start paused (a DAG file's is_paused_upon_creation overrides it).
    #[arg(long, env = "SANDFLOW_DAGS_PAUSED_AT_CREATION")]
    pub dags_paused_at_creation: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Tries running at once in this worker (at least 1).
    #[arg(long, default_value_t = 16, env = "SANDFLOW_WORKER_CONCURRENCY", value_parser = crate::app::at_least_one)]
    pub concurrency: usize,
    /// Serve only this pool (repeatable); default: every pool.
    #[arg(long = "pool", value_name = "NAME")]
    pub pools: Vec<String>,
    /// How long a claimed try's lease lasts unless renewed: after a worker dies, its tries are
    /// retried elsewhere this long later (e.g. 10s, 1m).
    #[arg(long, default_value = "10s", value_parser = lease)]
    pub lease: Duration,
    /// This worker's name, unique in the cluster (default: HOST-PID-START).
    #[arg(long)]
    pub name: Option<String>,
}

fn lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration (10s, 1m): {e}"))?;
    if lease < Duration::from_secs(1) {
        return Err("must be at least 1s: leases are renewed every 500 ms".into());
    }
    Ok(lease)
}

/// Cancelled on Ctrl-C or SIGTERM (what systemd and docker send).
pub fn stop_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        sayln!("stopping");
        stop.cancel();
    });
    token
}

pub async fn scheduler(args: SchedulerArgs, home: &Home) -> Result<(), CliError> {
    let dir = args.dags.as_deref().map(dags_dir).transpose()?;
    let stop = stop_on_signal();
    let store = open_store(home).await?;
    // One scheduler schedules; the others stand by and take over when it stops (its lock is
    // freed when its process dies, however it dies).
    let mut said = false;
    let mut guard = loop {
        match store.own_scheduling("scheduler").await {
            Ok(guard) => break guard,
            Err(StoreError::SchedulerRunning { owner, lock }) => {
                if !said {
                    let who = match (owner, lock) {
                        (Some(o), _) => {
                            format!("pid {} ({}, since {})", o.pid, o.role, o.started_at.format("%Y-%m-%dT%H:%M:%SZ"))
                        }
                        (None, Some(lock)) => format!("the process holding {}", lock.display()),
                        (None, None) => "another process".to_string(),
                    };
                    sayln!("standing by: {who} schedules on {}; taking over when it stops", store.describe());
                    said = true;
                }
                tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            Err(e) => return Err(CliError::Failed(e.to_string())),
        }
    };
    sayln!("sandflow scheduler: scheduling on {}", store.describe());
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let config = SchedulerConfig {
        paused_at_creation: args.dags_paused_at_creation,
        dags_dir: dir.clone(),
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), sandbox, config);
    if dir.is_some() {
        let report = scheduler.load_dags().await.map_err(anyhow::Error::from)?;
        for loaded in &report.loaded {
            sayln!("loaded DAG {} version {} ({} tasks)", loaded.dag.id, loaded.version, loaded.dag.tasks.len());
        }
        for (path, message) in &report.errors {
            sayln!("could not load {}: {}", path.display(), sandflow_core::text::clean(message, false));
        }
    }
    let shutdown = stop.child_token();
    let mut task = tokio::spawn(scheduler.run(shutdown.clone()));
    let mut check = tokio::time::interval(Duration::from_secs(1));
    let ended = loop {
        tokio::select! {
            ended = &mut task => break ended,
            _ = check.tick() => {
                if let Err(e) = guard.check().await {
                    // The server freed the lock with its connection: a standby may schedule now.
                    shutdown.cancel();
                    let _ = task.await;
                    return Err(CliError::Failed(format!("lost the scheduling lock ({e}); stopping so that one scheduler decides")));
                }
            }
        }
    };
    let result = match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CliError::Failed(format!("the scheduler stopped: {e}"))),
        Err(e) => Err(CliError::Failed(format!("the scheduler crashed: {e}"))),
    };
    let _ = guard.release().await;
    store.close().await;
    result
}

pub async fn worker(args: WorkerArgs, home: &Home) -> Result<(), CliError> {
    let stop = stop_on_signal();
    let store = open_store(home).await?;
    let sandbox = crate::plugin_cmd::sandbox_with(home, args.concurrency)?;
    let config = WorkerConfig {
        id: args.name,
        concurrency: args.concurrency,
        pools: args.pools,
        lease: args.lease,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), sandbox, config);
    sayln!(
        "sandflow worker {}: {} slots, lease {}, on {}",
        worker.id(),
        args.concurrency,
        humantime::format_duration(args.lease),
        store.describe()
    );
    let result = worker.run(stop).await.map_err(|e| CliError::Failed(format!("the worker stopped: {e}")));
    store.close().await;
    result
}
