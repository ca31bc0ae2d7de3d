//! `sandflow standalone`: the embedded store, the scheduler and the in-process executor, in one
//! process, loading and watching a DAG folder.

use std::path::PathBuf;

use sandflow_scheduler::{trigger, Notice, Scheduler, SchedulerConfig, TriggerOptions};

use crate::app::{dags_dir, open_store, user};
use crate::out::sayln;
use crate::{CliError, Home};
use sandflow_core::text::clean;

#[derive(Debug, clap::Args)]
pub struct StandaloneArgs {
    /// The folder of DAG files (watched: new and changed files are loaded once written).
    #[arg(long, default_value = "dags")]
    pub dags: PathBuf,
    /// Tries running at once (at least 1).
    #[arg(long, default_value_t = 32, env = "SANDFLOW_PARALLELISM", value_parser = crate::app::at_least_one)]
    pub parallelism: usize,
    /// New DAGs start paused (a DAG file's is_paused_upon_creation overrides it).
    #[arg(long, env = "SANDFLOW_DAGS_PAUSED_AT_CREATION")]
    pub dags_paused_at_creation: bool,
    /// Trigger a run of this DAG once the folder is loaded (repeatable).
    #[arg(long)]
    pub trigger: Vec<String>,
    #[command(flatten)]
    pub bind: crate::server::BindArgs,
    /// Exit once every run queued or running at start, or triggered with --trigger, has ended
    /// (exit 1 if one failed): for batch jobs and scripts.
    #[arg(long)]
    pub exit_when_done: bool,
    #[command(flatten)]
    pub stop: crate::processes::StopArgs,
}

pub async fn run(args: StandaloneArgs, home: &Home) -> Result<(), CliError> {
    let dir = dags_dir(&args.dags)?;
    let store = open_store(home).await?;
    // Held until this process ends: a second standalone on this home is refused, naming this one.
    let _scheduling = store.own_scheduling("standalone").await.map_err(anyhow::Error::from)?;
    let sandbox = crate::plugin_cmd::sandbox_with(home, args.parallelism)?;
    let config = SchedulerConfig {
        parallelism: args.parallelism,
        paused_at_creation: args.dags_paused_at_creation,
        dags_dir: Some(dir.clone()),
        shutdown_grace: args.stop.shutdown_grace,
        grants: args.bind.grants.config(home)?,
        ..SchedulerConfig::default()
    };
    let database = if home.has_database_url() { format!(", database {}", store.describe()) } else { String::new() };
    sayln!(
        "sandflow standalone: home {}{database}, DAGs from {}, parallelism {}",
        home.root().display(),
        dir.display(),
        args.parallelism
    );
    let mut scheduler = Scheduler::new(store.clone(), sandbox, config);
    let report = scheduler.load_dags().await.map_err(anyhow::Error::from)?;
    for loaded in &report.loaded {
        sayln!("loaded DAG {} version {} ({} tasks)", loaded.dag.id, loaded.version, loaded.dag.tasks.len());
    }
    for (path, message) in &report.errors {
        sayln!("could not load {}:\n{}", shown(&path.display().to_string()), crate::app::indent(&clean(message, true)));
    }
    for dag_id in &report.stale {
        sayln!("DAG {dag_id} is stale: no file declares it any more (no scheduled runs until one does)");
    }
    let handle = scheduler.handle();
    let mut notices = handle.subscribe();
    let api_stop = tokio_util::sync::CancellationToken::new();
    let _stop_api = api_stop.clone().drop_guard();
    let service = crate::server::service(store.clone(), home, args.dags_paused_at_creation, &args.bind)?;
    crate::server::first_start(&service, home).await?;
    let (addr, _api) = crate::server::start(service, args.bind.bind, api_stop).await?;
    sayln!("API on http://{addr}/api/v1 (health: http://{addr}/healthz)");
    let mut waiting: std::collections::BTreeSet<String> =
        store.active_runs().await.map_err(anyhow::Error::from)?.into_iter().map(|r| r.run_id).collect();
    for dag_id in &args.trigger {
        let run = trigger(&store, dag_id, TriggerOptions { triggered_by: user(), ..TriggerOptions::default() })
            .await
            .map_err(anyhow::Error::from)?;
        sayln!("triggered {} run {}", run.dag_id, run.run_id);
        waiting.insert(run.run_id);
    }
    // Ctrl-C or SIGTERM stops the worker, which stops the scheduler once its tries have ended.
    let shutdown = crate::processes::shutdown_on_signal();
    let mut scheduler_task = tokio::spawn(scheduler.run_with_worker(shutdown.clone()));
    handle.wake();
    let mut failed = false;
    if args.exit_when_done && waiting.is_empty() {
        sayln!("no runs to wait for");
        shutdown.stop();
    }
    loop {
        tokio::select! {
            // A stop (Ctrl-C, SIGTERM) ends here too, once the worker's grace is over.
            ended = &mut scheduler_task => {
                store.close().await;
                return match ended {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(CliError::Failed(format!("the scheduler stopped: {e}"))),
                    Err(e) => Err(CliError::Failed(format!("the scheduler crashed: {e}"))),
                };
            }
            notice = notices.recv() => match notice {
                Ok(Notice::RunStarted { dag_id, run_id }) => sayln!("{dag_id} {run_id}: started"),
                Ok(Notice::TaskFinished { dag_id, run_id, task_id, map_index, try_number, state, message, wall }) => {
                    let detail = if message == "success" { String::new() } else { format!(": {}", shown(&message)) };
                    let task = if map_index < 0 { task_id } else { format!("{task_id}[{map_index}]") };
                    sayln!("{dag_id} {run_id} {task}: {state} (try {try_number}, {}){detail}", sandflow_sandbox::human_duration(wall));
                }
                Ok(Notice::TaskSettled { dag_id, run_id, task_id, state, reason }) => {
                    let detail = reason.map(|r| format!(" ({})", shown(&r))).unwrap_or_default();
                    sayln!("{dag_id} {run_id} {task_id}: {state}{detail}");
                }
                Ok(Notice::RunFinished { dag_id, run_id, state }) => {
                    sayln!("{dag_id} {run_id}: {state}");
                    if waiting.remove(&run_id) {
                        failed |= state != sandflow_core::state::RunState::Success;
                        if args.exit_when_done && waiting.is_empty() {
                            break;
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => sayln!("({n} notices skipped)"),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
        }
    }
    shutdown.stop();
    match scheduler_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(CliError::Failed(format!("the scheduler stopped: {e}"))),
        Err(e) => return Err(CliError::Failed(format!("the scheduler crashed: {e}"))),
    }
    store.close().await;
    if failed {
        return Err(CliError::Failed("a triggered run failed".into()));
    }
    Ok(())
}

/// A plugin's or a file's text on one line of the server's output: cleaned and cut.
fn shown(text: &str) -> String {
    sandflow_core::text::shorten(&sandflow_core::text::clean(text, false), 500).into_owned()
}
