//! `sandflow scheduler` and `sandflow worker`: the two halves of `standalone`, each its own
//! process, for many machines on one PostgreSQL database (or several processes on one SQLite
//! home). They meet only in the database.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sandflow_sandbox::human_duration;
use sandflow_scheduler::{Scheduler, SchedulerConfig, Shutdown, Stopping, Worker, WorkerConfig};
use sandflow_store::StoreError;
use tokio::signal::unix::{signal, Signal, SignalKind};
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
    #[command(flatten)]
    pub grants: GrantArgs,
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
    #[command(flatten)]
    pub stop: StopArgs,
    #[command(flatten)]
    pub grants: GrantArgs,
}

/// What tasks may be granted on this server (DAGs asking for more are refused at load and
/// upload), and what workers give them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GrantArgs {
    /// An origin DAGs may list in `allow_http` (repeatable; `*` for any public origin), e.g.
    /// https://api.example.com. Without one, no task may make HTTP requests.
    #[arg(long = "allow-http", value_name = "ORIGIN", env = "SANDFLOW_ALLOW_HTTP", value_delimiter = ',')]
    pub allow_http: Vec<String>,
    /// An origin that may resolve to a private, loopback or link-local address (repeatable):
    /// requests to any other origin that does are refused (SSRF).
    #[arg(
        long = "allow-private-http",
        value_name = "ORIGIN",
        env = "SANDFLOW_ALLOW_PRIVATE_HTTP",
        value_delimiter = ','
    )]
    pub allow_private_http: Vec<String>,
    /// The largest /out quota a task may ask for, in MiB (the default quota is 1024).
    #[arg(long, value_name = "MIB", default_value_t = sandflow_core::dag::GrantPolicy::DEFAULT_MAX_OUT_QUOTA_MB)]
    pub max_out_quota_mb: u64,
}

impl GrantArgs {
    /// The grant settings of `home` with these flags.
    pub fn config(&self, home: &Home) -> anyhow::Result<sandflow_scheduler::GrantConfig> {
        let mut config = home.grants()?;
        for origin in self.allow_http.iter().chain(&self.allow_private_http) {
            if origin != "*" {
                sandflow_core::dag::Origin::parse(origin).map_err(|e| anyhow::anyhow!("--allow-http: {e}"))?;
            }
        }
        config.allow_http = self.allow_http.clone();
        config.private_http = self.allow_private_http.clone();
        config.max_out_quota_mb = self.max_out_quota_mb;
        Ok(config)
    }
}

/// How a worker stops: `sandflow worker`'s, and `standalone`'s in-process one.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct StopArgs {
    /// Once stopped (Ctrl-C, SIGTERM), how long running tries may take to finish before they are
    /// killed and recorded as interrupted, to be retried per their policy; a second Ctrl-C or
    /// SIGTERM kills them at once (e.g. 30s, 2m, 0s).
    #[arg(long, value_name = "DURATION", default_value = "30s", env = "SANDFLOW_SHUTDOWN_GRACE", value_parser = grace)]
    pub shutdown_grace: Duration,
}

fn grace(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration (30s, 2m, 0s): {e}"))
}

fn lease(text: &str) -> Result<Duration, String> {
    let lease = humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration (10s, 1m): {e}"))?;
    if lease < Duration::from_secs(1) {
        return Err("must be at least 1s: leases are renewed every 500 ms".into());
    }
    Ok(lease)
}

/// Ctrl-C (SIGINT) and SIGTERM (what systemd and docker send) as one stream. Installed at once:
/// from then on neither signal ends the process by itself.
struct Signals {
    interrupt: Option<Signal>,
    terminate: Option<Signal>,
}

impl Signals {
    fn install() -> Signals {
        // Fails only without a signal driver; the other signal still works then.
        Signals { interrupt: signal(SignalKind::interrupt()).ok(), terminate: signal(SignalKind::terminate()).ok() }
    }

    async fn next(&mut self) {
        async fn recv(signal: &mut Option<Signal>) {
            match signal {
                Some(signal) => {
                    if signal.recv().await.is_none() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = recv(&mut self.interrupt) => {}
            () = recv(&mut self.terminate) => {}
        }
    }
}

/// Cancelled on Ctrl-C or SIGTERM.
pub fn stop_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let stop = token.clone();
    let mut signals = Signals::install();
    tokio::spawn(async move {
        signals.next().await;
        sayln!("stopping");
        stop.cancel();
    });
    token
}

/// A worker's stop (`sandflow worker`, `standalone`): stopped on Ctrl-C or SIGTERM, killed on the
/// second; what the worker does meanwhile is printed.
pub(crate) fn shutdown_on_signal() -> Shutdown {
    let signalled = Arc::new(AtomicBool::new(false));
    let said = signalled.clone();
    let shutdown = Shutdown::new().telling(move |what| say_stopping(what, said.load(Ordering::Relaxed)));
    let stop = shutdown.clone();
    let mut signals = Signals::install();
    tokio::spawn(async move {
        signals.next().await;
        signalled.store(true, Ordering::Relaxed);
        stop.stop();
        signals.next().await;
        stop.kill();
    });
    shutdown
}

/// Prints what a stopping worker does; a stop that is no news (a command that ends when its runs
/// have, with nothing running) prints nothing.
fn say_stopping(what: Stopping, signalled: bool) {
    let tries = |n: usize, adjective: &str| format!("{n} {adjective}{}", if n == 1 { "try" } else { "tries" });
    match what {
        Stopping::Draining { running: 0, .. } if signalled => sayln!("stopping"),
        Stopping::Draining { running: 0, .. } => {}
        Stopping::Draining { running, grace } => sayln!(
            "stopping: waiting up to {} for {} (Ctrl-C again to kill them now)",
            human_duration(grace),
            tries(running, "running ")
        ),
        Stopping::Killing { running, asked: true } => sayln!("killing {} now", tries(running, "")),
        Stopping::Killing { running, asked: false } => {
            sayln!("the shutdown grace has passed: killing {} still running", tries(running, ""))
        }
        Stopping::Stopped { finished: 0, interrupted: 0 } => {}
        Stopping::Stopped { finished, interrupted } => sayln!(
            "stopped: {} finished, {} recorded as interrupted (retried if their tasks have retries left)",
            tries(finished, ""),
            tries(interrupted, "")
        ),
    }
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
        grants: args.grants.config(home)?,
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
    let shutdown = shutdown_on_signal();
    let store = open_store(home).await?;
    let sandbox = crate::plugin_cmd::sandbox_with(home, args.concurrency)?;
    let config = WorkerConfig {
        id: args.name,
        concurrency: args.concurrency,
        pools: args.pools,
        lease: args.lease,
        shutdown_grace: args.stop.shutdown_grace,
        grants: args.grants.config(home)?,
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), sandbox, config);
    sayln!(
        "sandflow worker {}: {} slots, lease {}, shutdown grace {}, on {}",
        worker.id(),
        args.concurrency,
        humantime::format_duration(args.lease),
        human_duration(args.stop.shutdown_grace),
        store.describe()
    );
    let result = worker.run(shutdown).await.map_err(|e| CliError::Failed(format!("the worker stopped: {e}")));
    store.close().await;
    result
}
