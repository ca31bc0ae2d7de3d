//! `sandflow dags list|show|trigger|pause|unpause|test`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use sandflow_core::state::RunState;
use sandflow_scheduler::{trigger, Notice, Scheduler, SchedulerConfig, TriggerOptions};
use sandflow_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::{conf, open_store, sync_dags, user};
use crate::{table, CliError, Home};

/// Where DAG files are read from.
#[derive(Debug, clap::Args)]
pub struct DagsArg {
    /// The folder of DAG files.
    #[arg(long, default_value = "dags")]
    pub dags: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DagsCmd {
    /// List DAGs (after loading the DAG folder), with their version, schedule and last run.
    List {
        #[command(flatten)]
        dags: DagsArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one DAG: its tasks, versions and recent runs.
    Show {
        dag_id: String,
        #[command(flatten)]
        dags: DagsArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a manual run (a running `sandflow standalone` picks it up).
    Trigger {
        dag_id: String,
        /// The run's configuration, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        /// A note shown with the run.
        #[arg(long)]
        note: Option<String>,
        /// Run this DAG version instead of the active one (see `dags show`).
        #[arg(long)]
        dag_version: Option<String>,
        #[command(flatten)]
        dags: DagsArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop scheduling a DAG: no new runs, no new tasks of its runs.
    Pause { dag_id: String },
    /// Resume a paused DAG.
    Unpause { dag_id: String },
    /// Create the runs of the intervals from --from to --to (by start), as max_active_runs allows,
    /// and wait for them with a progress bar.
    Backfill {
        dag_id: String,
        /// First interval start (a date or an RFC 3339 time).
        #[arg(long)]
        from: String,
        /// Last interval start.
        #[arg(long)]
        to: String,
        /// Clear and rerun the failed tasks of intervals whose run failed (others that already ran
        /// are left alone).
        #[arg(long)]
        rerun_failed: bool,
        #[command(flatten)]
        dags: DagsArg,
    },
    /// Clear every run whose logical date is in a range, so they run again.
    Clear {
        dag_id: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Only the failed task instances.
        #[arg(long)]
        only_failed: bool,
    },
    /// Mark a whole run success or failed (its unfinished tasks too).
    Mark {
        dag_id: String,
        run: String,
        #[arg(value_enum)]
        state: crate::tasks_cmd::MarkArg,
    },
    /// Run one DAG run in this process, printing each task as it ends; the home's store is not
    /// touched.
    Test {
        dag_id: String,
        /// The run's configuration, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        #[command(flatten)]
        dags: DagsArg,
    },
}

pub async fn run(cmd: DagsCmd, home: &Home) -> Result<(), CliError> {
    match cmd {
        DagsCmd::List { dags, json } => list(&dags, json, home).await.map_err(CliError::Usage),
        DagsCmd::Show { dag_id, dags, json } => show(&dag_id, &dags, json, home).await.map_err(CliError::Usage),
        DagsCmd::Trigger { dag_id, conf: text, note, dag_version: version, dags, json } => {
            let store = open_store(home).await?;
            sync_dags(&dags.dags, &store, home).await?;
            let options = TriggerOptions { conf: conf(text.as_deref())?, note, triggered_by: user(), version };
            let run = trigger(&store, &dag_id, options).await.map_err(anyhow::Error::from)?;
            if json {
                table::json(&run)?;
            } else {
                println!("created run {} of {} (version {}, queued)", run.run_id, run.dag_id, run.version);
            }
            Ok(())
        }
        DagsCmd::Pause { dag_id } => set_paused(&dag_id, true, home).await.map_err(CliError::Usage),
        DagsCmd::Unpause { dag_id } => set_paused(&dag_id, false, home).await.map_err(CliError::Usage),
        DagsCmd::Test { dag_id, conf: text, dags } => test(&dag_id, text.as_deref(), &dags, home).await,
        DagsCmd::Backfill { dag_id, from, to, rerun_failed, dags } => {
            crate::backfill::run(&dag_id, &from, &to, rerun_failed, &dags, home).await
        }
        DagsCmd::Clear { dag_id, from, to, only_failed } => {
            let store = open_store(home).await?;
            let (from, to) = (crate::app::date(&from, "--from")?, crate::app::date(&to, "--to")?);
            if store.dag(&dag_id).await.map_err(anyhow::Error::from)?.is_none() {
                return Err(CliError::Usage(crate::app::unknown_dag(&store, &dag_id).await));
            }
            let runs = store.runs_between(&dag_id, from, to).await.map_err(anyhow::Error::from)?;
            if runs.is_empty() {
                return Err(CliError::Usage(anyhow::anyhow!(
                    "DAG `{dag_id}` has no runs with a logical date from {from} to {to}"
                )));
            }
            let action = sandflow_scheduler::actions::Action::Clear {
                dag_id,
                run_ids: runs.into_iter().map(|r| r.run_id).collect(),
                task_ids: vec![],
                map_index: None,
                downstream: false,
                upstream: false,
                only_failed,
            };
            println!("{}", crate::app::perform(&store, home, &action).await?);
            Ok(())
        }
        DagsCmd::Mark { dag_id, run, state } => {
            let store = open_store(home).await?;
            let run = crate::app::find_run(&store, &dag_id, &run).await?;
            let action = sandflow_scheduler::actions::Action::Mark {
                dag_id,
                run_id: run.run_id,
                task_id: None,
                map_index: None,
                state: state.into(),
            };
            println!("{}", crate::app::perform(&store, home, &action).await?);
            Ok(())
        }
    }
}

async fn list(dags: &DagsArg, json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    sync_dags(&dags.dags, &store, home).await?;
    let mut rows = Vec::new();
    let mut out = Vec::new();
    let mut stale = Vec::new();
    for dag in store.dags().await? {
        let last = store.runs(Some(&dag.dag_id), 1).await?.into_iter().next();
        let schedule = schedule_of(&store, &dag.dag_id, &dag.active_version).await;
        if let Some(since) = dag.stale_since {
            stale.push(format!(
                "{} (since {}; last file {})",
                dag.dag_id,
                table::time(&since),
                dag.file_path.as_deref().unwrap_or("-")
            ));
        }
        rows.push(vec![
            dag.dag_id.clone(),
            dag.active_version.clone(),
            schedule.clone(),
            if dag.is_paused { "yes" } else { "no" }.to_string(),
            last.as_ref().map_or("-".to_string(), |r| format!("{} {}", r.state, r.run_id)),
        ]);
        out.push(
            json!({"dag_id": dag.dag_id, "version": dag.active_version, "schedule": schedule, "paused": dag.is_paused,
            "stale": dag.is_stale(), "file": dag.file_path, "last_run": last}),
        );
    }
    let errors = store.import_errors().await?;
    if json {
        return table::json(&json!({"dags": out, "import_errors": errors}));
    }
    table::print(&["dag_id", "version", "schedule", "paused", "last run"], &rows);
    for line in stale {
        println!("\nstale: {line}: no file declares it any more, so it gets no scheduled runs");
    }
    for error in errors {
        println!("\nimport error in {}:\n{}", error.file_path, crate::app::indent(&error.message));
    }
    Ok(())
}

async fn schedule_of(store: &Store, dag_id: &str, version: &str) -> String {
    let dag = async {
        let spec: sandflow_scheduler::StoredSpec =
            serde_json::from_str(&store.dag_spec(dag_id, version).await.ok()??).ok()?;
        spec.to_dag(&Default::default()).ok()
    }
    .await;
    dag.and_then(|d| d.schedule.expr().map(String::from)).unwrap_or_else(|| "manual".into())
}

async fn show(dag_id: &str, dags: &DagsArg, json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    sync_dags(&dags.dags, &store, home).await?;
    let Some(row) = store.dag(dag_id).await? else {
        return Err(crate::app::unknown_dag(&store, dag_id).await);
    };
    let spec: sandflow_scheduler::StoredSpec =
        serde_json::from_str(&store.dag_spec(dag_id, &row.active_version).await?.context("active version missing")?)?;
    let dag = spec.to_dag(&Default::default())?;
    let runs = store.runs(Some(dag_id), 10).await?;
    let versions = store.dag_versions(dag_id).await?;
    if json {
        let tasks: Vec<_> = dag
            .tasks
            .iter()
            .map(|t| json!({"task_id": t.id, "plugin_id": t.plugin_id, "upstream": t.upstream, "trigger_rule": t.trigger_rule,
                "retries": t.retries}))
            .collect();
        return table::json(
            &json!({"dag": row, "stale": row.is_stale(), "schedule": dag.schedule.expr(), "tasks": tasks,
            "versions": versions.iter().map(|(v, at)| json!({"version": v, "created_at": at})).collect::<Vec<_>>(), "runs": runs}),
        );
    }
    println!("dag:      {}", row.dag_id);
    println!("version:  {} ({} in all)", row.active_version, versions.len());
    println!("file:     {}", row.file_path.as_deref().unwrap_or("-"));
    println!("schedule: {}", dag.schedule.expr().unwrap_or("manual"));
    println!("paused:   {}", if row.is_paused { "yes" } else { "no" });
    if let Some(since) = row.stale_since {
        println!(
            "stale:    since {}: its file is gone or declares another DAG; no scheduled runs",
            table::time(&since)
        );
    }
    if let Some(description) = &dag.description {
        println!("about:    {description}");
    }
    println!();
    let tasks: Vec<Vec<String>> = dag
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.upstream.join(","),
                t.trigger_rule.as_str().to_string(),
                t.retries.to_string(),
                t.plugin_id[..19].to_string(),
            ]
        })
        .collect();
    table::print(&["task", "upstream", "trigger_rule", "retries", "plugin"], &tasks);
    println!();
    let runs: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.run_id.clone(),
                r.state.to_string(),
                r.version.clone(),
                table::opt_time(&r.started_at),
                table::opt_time(&r.ended_at),
                r.triggered_by.clone(),
            ]
        })
        .collect();
    table::print(&["run", "state", "version", "started", "ended", "by"], &runs);
    Ok(())
}

async fn set_paused(dag_id: &str, paused: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    if !store.set_paused(dag_id, paused).await? {
        return Err(crate::app::unknown_dag(&store, dag_id).await);
    }
    println!("{dag_id} is {}", if paused { "paused" } else { "unpaused" });
    Ok(())
}

/// One run in this process on an in-memory store.
async fn test(dag_id: &str, conf_text: Option<&str>, dags: &DagsArg, home: &Home) -> Result<(), CliError> {
    let conf = conf(conf_text)?;
    let store = Store::in_memory().await.map_err(anyhow::Error::from)?;
    let loaded = crate::app::load_one(&dags.dags, dag_id, &store, home).await?;
    let total = loaded.dag.tasks.len();
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let scheduler = Scheduler::new(store.clone(), sandbox, SchedulerConfig::default());
    let handle = scheduler.handle();
    let mut notices = handle.subscribe();
    let run = trigger(
        &store,
        dag_id,
        TriggerOptions { conf, note: Some("dags test".into()), triggered_by: user(), version: None },
    )
    .await
    .map_err(anyhow::Error::from)?;
    println!("testing {dag_id} (version {}, {total} tasks), run {}", loaded.version, run.run_id);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    let started = Instant::now();
    let mut done = 0;
    let state = loop {
        match notices.recv().await {
            Ok(Notice::TaskSettled { task_id, state, reason, .. }) => {
                done += 1;
                let detail = reason.map(|r| format!(" ({r})")).unwrap_or_default();
                println!("[{done}/{total}] {task_id} {state}{detail}");
            }
            Ok(Notice::TaskFinished { task_id, map_index, try_number, state, message, wall, .. }) => {
                if map_index < 0 && state.is_finished() {
                    done += 1;
                }
                let task_id = if map_index < 0 { task_id } else { format!("{task_id}[{map_index}]") };
                let detail = if message == "success" { String::new() } else { format!(": {message}") };
                println!(
                    "[{done}/{total}] {task_id} {state} (try {try_number}, {}){detail}",
                    sandflow_sandbox::human_duration(wall)
                );
            }
            Ok(Notice::RunFinished { run_id, state, .. }) if run_id == run.run_id => break state,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break RunState::Failed,
        }
    };
    shutdown.cancel();
    task.await.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)?;
    let elapsed = sandflow_sandbox::human_duration(started.elapsed());
    match state {
        RunState::Success => {
            println!("run {} success in {elapsed}", run.run_id);
            Ok(())
        }
        other => Err(CliError::Failed(format!("run {} {other} after {elapsed}", run.run_id))),
    }
}
