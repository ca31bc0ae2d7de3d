//! `sandflow dags list|show|trigger|pause|unpause|test`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use sandflow_core::state::{RunState, TaskState};
use sandflow_scheduler::{trigger, Notice, Scheduler, SchedulerConfig, TriggerOptions};
use sandflow_store::{PauseChange, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::app::{conf, open_store, sync_dags, user};
use crate::out::{errln, outln};
use crate::{table, CliError, Home};
use sandflow_core::text::clean;

/// Where DAG files are read from.
#[derive(Debug, clap::Args)]
pub struct DagsArg {
    /// The folder of DAG files.
    #[arg(long, default_value = "dags")]
    pub dags: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DagsCmd {
    /// List the DAGs the store knows, with their version, schedule and last run, and the files
    /// that failed to load.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one DAG: its tasks, versions and recent runs.
    Show {
        dag_id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load a DAG folder into the store once, as `standalone` does at start and on every change;
    /// exit 2 if a file failed to load (its DAG keeps its last good version).
    Load {
        #[command(flatten)]
        dags: DagsArg,
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
        /// Run this experiment's newest version (or --dag-version, one of its versions).
        #[arg(long)]
        experiment: Option<String>,
        /// Follow the run until it ends; exit 1 if it failed (with --server).
        #[arg(long)]
        wait: bool,
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
    /// Run one DAG run in this process, printing each task as it ends (and the end of a failed
    /// try's log); the home's store is not touched.
    Test {
        dag_id: String,
        /// The run's configuration, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        /// After the run, print every task's output and the logs of its tries.
        #[arg(long)]
        show_output: bool,
        /// Print the run as JSON at the end: every task instance with its output and its tries
        /// (logs included). Progress lines go to stderr.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dags: DagsArg,
    },
}

pub async fn run(cmd: DagsCmd, home: &Home) -> Result<(), CliError> {
    match cmd {
        DagsCmd::List { json } => list(json, home).await.map_err(CliError::Usage),
        DagsCmd::Show { dag_id, json } => show(&dag_id, json, home).await.map_err(CliError::Usage),
        DagsCmd::Load { dags } => load(&dags, home).await,
        DagsCmd::Trigger { dag_id, conf: text, note, dag_version: version, experiment, wait, json } => {
            if wait {
                return Err(CliError::Usage(anyhow::anyhow!(
                    "--wait follows the run through a server's events: give --server URL (or SANDFLOW_SERVER)"
                )));
            }
            let store = open_store(home).await?;
            let service = crate::app::service(store, home)?;
            let request = sandflow_service::runs::TriggerRequest {
                conf: conf(text.as_deref())?,
                note,
                version,
                experiment,
                by: crate::app::local_principal(),
            };
            let run = service.trigger(&dag_id, request).await.map_err(crate::runs_cmd::service_error)?.run;
            if json {
                table::json(&run)?;
            } else {
                outln!("created run {} of {} (version {}, queued)", run.run_id, run.dag_id, run.version);
            }
            Ok(())
        }
        DagsCmd::Pause { dag_id } => set_paused(&dag_id, true, home).await.map_err(CliError::Usage),
        DagsCmd::Unpause { dag_id } => set_paused(&dag_id, false, home).await.map_err(CliError::Usage),
        DagsCmd::Test { dag_id, conf: text, show_output, json, dags } => {
            let show = TestShow { output: show_output, json };
            test(&dag_id, text.as_deref(), show, &dags, home).await
        }
        DagsCmd::Backfill { dag_id, from, to, rerun_failed } => {
            crate::backfill::run(&dag_id, &from, &to, rerun_failed, home).await
        }
        DagsCmd::Clear { dag_id, from, to, only_failed } => {
            let store = open_store(home).await?;
            let (from, to) = (crate::app::date(&from, "--from")?, crate::app::date(&to, "--to")?);
            let service = crate::app::service(store, home)?;
            let done = match service.clear_range(&dag_id, from, to, only_failed, &crate::app::local_principal()).await {
                Ok(done) => done,
                Err(sandflow_service::ServiceError::Timeout(message)) => return Err(CliError::Failed(message)),
                Err(e) => return Err(crate::runs_cmd::service_error(e)),
            };
            outln!("{}", done.result);
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
            outln!("{}", crate::app::perform(&store, home, &action).await?);
            Ok(())
        }
    }
}

/// `dags load`: the folder into the store, with what loaded and what did not.
async fn load(dags: &DagsArg, home: &Home) -> Result<(), CliError> {
    let store = open_store(home).await?;
    let report = sync_dags(&dags.dags, &store, home).await?;
    for loaded in &report.loaded {
        outln!("loaded DAG {} version {} ({} tasks)", loaded.dag.id, loaded.version, loaded.dag.tasks.len());
    }
    for dag_id in &report.stale {
        outln!("DAG {dag_id} is stale: no file declares it any more (no scheduled runs until one does)");
    }
    for path in &report.unsettled {
        errln!("could not load {}: it is still being written", clean(&path.display().to_string(), false));
    }
    for (path, message) in &report.errors {
        let path = path.display().to_string();
        errln!("could not load {}:\n{}", clean(&path, false), crate::app::indent(&clean(message, true)));
    }
    match report.errors.len() + report.unsettled.len() {
        0 => Ok(()),
        n => Err(CliError::Usage(anyhow::anyhow!("{n} of the DAG files did not load"))),
    }
}

async fn list(json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
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
        outln!("\nstale: {line}: no file declares it any more, so it gets no scheduled runs");
    }
    for error in errors {
        outln!(
            "\nimport error in {}:\n{}",
            clean(&error.file_path, false),
            crate::app::indent(&clean(&error.message, true))
        );
    }
    Ok(())
}

async fn schedule_of(store: &Store, dag_id: &str, version: &str) -> String {
    let dag = async {
        let spec: sandflow_scheduler::StoredSpec =
            serde_json::from_value(store.dag_spec(dag_id, version).await.ok()??).ok()?;
        spec.to_dag(&Default::default()).ok()
    }
    .await;
    dag.and_then(|d| d.schedule.expr().map(String::from)).unwrap_or_else(|| "manual".into())
}

async fn show(dag_id: &str, json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    let Some(row) = store.dag(dag_id).await? else {
        return Err(crate::app::unknown_dag(&store, dag_id).await);
    };
    let spec: sandflow_scheduler::StoredSpec =
        serde_json::from_value(store.dag_spec(dag_id, &row.active_version).await?.context("active version missing")?)?;
    let dag = spec.to_dag(&Default::default())?;
    let runs = store.runs(Some(dag_id), 10).await?;
    let versions = store.dag_versions(dag_id).await?;
    if json {
        let tasks: Vec<_> = dag
            .tasks
            .iter()
            .map(|t| json!({"task_id": t.id, "plugin_id": t.plugin_id, "upstream": t.upstream, "trigger_rule": t.trigger_rule,
                "retries": t.retries, "grants": t.grants}))
            .collect();
        return table::json(
            &json!({"dag": row, "stale": row.is_stale(), "schedule": dag.schedule.expr(), "tasks": tasks,
            "versions": versions.iter().map(|(v, at)| json!({"version": v, "created_at": at})).collect::<Vec<_>>(), "runs": runs}),
        );
    }
    outln!("dag:      {}", row.dag_id);
    outln!("version:  {} ({} in all)", row.active_version, versions.len());
    outln!("file:     {}", clean(row.file_path.as_deref().unwrap_or("-"), false));
    outln!("schedule: {}", dag.schedule.expr().unwrap_or("manual"));
    outln!("paused:   {}", if row.is_paused { "yes" } else { "no" });
    if let Some(since) = row.stale_since {
        outln!("stale:    since {}: its file is gone or declares another DAG; no scheduled runs", table::time(&since));
    }
    if let Some(description) = &dag.description {
        outln!("about:    {}", clean(description, false));
    }
    outln!();
    let tasks: Vec<Vec<String>> = dag
        .tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.upstream.join(","),
                t.trigger_rule.as_str().to_string(),
                t.retries.to_string(),
                t.plugin_id.chars().take(19).collect(),
                grants_text(&t.grants),
            ]
        })
        .collect();
    table::print(&["task", "upstream", "trigger_rule", "retries", "plugin", "grants"], &tasks);
    outln!();
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
    let state = if paused { "paused" } else { "unpaused" };
    let action = if paused { "dag.pause" } else { "dag.unpause" };
    let audit = crate::app::local_principal().audit(action, dag_id, serde_json::json!({}));
    match store.audited(&audit).set_paused(dag_id, paused).await? {
        PauseChange::NoSuchDag => return Err(crate::app::unknown_dag(&store, dag_id).await),
        PauseChange::Changed => outln!("{dag_id} is {state}"),
        PauseChange::Already => outln!("{dag_id} is {state} (it already was)"),
    }
    Ok(())
}

/// What `dags test` prints besides its progress lines.
#[derive(Debug, Clone, Copy)]
struct TestShow {
    /// Every task's output and logs, after the run.
    output: bool,
    /// The run as JSON on stdout, progress on stderr.
    json: bool,
}

/// Lines of a failed try's log that `dags test` prints under it.
const LOG_TAIL_LINES: usize = 20;

/// One run in this process on an in-memory store.
async fn test(
    dag_id: &str,
    conf_text: Option<&str>,
    show: TestShow,
    dags: &DagsArg,
    home: &Home,
) -> Result<(), CliError> {
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
        TriggerOptions { conf, note: Some("dags test".into()), triggered_by: user(), ..Default::default() },
    )
    .await
    .map_err(anyhow::Error::from)?;
    // With --json, stdout is the JSON document alone.
    let say = |line: String| if show.json { errln!("{line}") } else { outln!("{line}") };
    say(format!("testing {dag_id} (version {}, {total} tasks), run {}", loaded.version, run.run_id));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_with_worker(shutdown.clone()));
    let started = Instant::now();
    let mut done = 0;
    let state = loop {
        match notices.recv().await {
            Ok(Notice::TaskSettled { task_id, state, reason, .. }) => {
                done += 1;
                let detail = reason.map(|r| format!(" ({r})")).unwrap_or_default();
                say(format!("[{done}/{total}] {task_id} {state}{detail}"));
            }
            Ok(Notice::TaskFinished { task_id, map_index, try_number, state, message, wall, .. }) => {
                if map_index < 0 && state.is_finished() {
                    done += 1;
                }
                let name = if map_index < 0 { task_id.clone() } else { format!("{task_id}[{map_index}]") };
                let detail = if message == "success" { String::new() } else { format!(": {message}") };
                say(format!(
                    "[{done}/{total}] {name} {state} (try {try_number}, {}){detail}",
                    sandflow_sandbox::human_duration(wall)
                ));
                if matches!(state, TaskState::Failed | TaskState::UpForRetry) {
                    let tries = store.tries(&run.run_id, &task_id, map_index).await.map_err(anyhow::Error::from)?;
                    if let Some(failed) = tries.iter().find(|t| t.try_number == i64::from(try_number)) {
                        say(log_tail(failed.log.as_deref().unwrap_or(""), try_number));
                    }
                }
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
    if show.json {
        outln!("{}", serde_json::to_string_pretty(&run_json(&store, &run.run_id).await?).map_err(anyhow::Error::from)?);
    } else if show.output {
        print_outputs(&store, &run.run_id).await?;
    }
    match state {
        RunState::Success => {
            say(format!("run {} success in {elapsed}", run.run_id));
            Ok(())
        }
        other => Err(CliError::Failed(format!("run {} {other} after {elapsed}", run.run_id))),
    }
}

/// The last lines of a failed try's log, indented under its progress line.
fn log_tail(log: &str, try_number: u32) -> String {
    let lines: Vec<&str> = log.lines().collect();
    if lines.is_empty() {
        return format!("    (try {try_number} wrote no log)");
    }
    let from = lines.len().saturating_sub(LOG_TAIL_LINES);
    let header = if from == 0 {
        format!("    log of try {try_number}:")
    } else {
        format!("    log of try {try_number} (last {} of {} lines):", lines.len() - from, lines.len())
    };
    let body: Vec<String> = lines[from..].iter().map(|l| format!("    | {}", clean(l, false))).collect();
    format!("{header}\n{}", body.join("\n"))
}

/// The run, every task instance with its output, and every try with its log, for `--json`.
async fn run_json(store: &Store, run_id: &str) -> anyhow::Result<serde_json::Value> {
    let run = store.run(run_id).await?;
    let mut tasks = Vec::new();
    for ti in store.task_instances(run_id).await? {
        let tries = store.tries(run_id, &ti.task_id, ti.map_index).await?;
        tasks.push(json!({
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "state": ti.state,
            "reason": ti.reason,
            "output": ti.output,
            "metrics": ti.metrics,
            "tries": tries,
        }));
    }
    Ok(json!({"run": run, "tasks": tasks}))
}

/// Every task instance's output and the logs of its tries, for `--show-output`.
async fn print_outputs(store: &Store, run_id: &str) -> anyhow::Result<()> {
    for ti in store.task_instances(run_id).await? {
        let name = if ti.map_index < 0 { ti.task_id.clone() } else { format!("{}[{}]", ti.task_id, ti.map_index) };
        outln!("\n== {name} ({})", ti.state);
        if let Some(output) = &ti.output {
            outln!("output: {output}");
        }
        for t in store.tries(run_id, &ti.task_id, ti.map_index).await? {
            let message = t.message.as_deref().unwrap_or("running");
            outln!("try {}: {}", t.try_number, clean(message, false));
            let log = t.log.as_deref().unwrap_or("");
            if log.is_empty() {
                outln!("  (no log)");
            }
            for line in log.lines() {
                outln!("  {}", clean(line, false));
            }
        }
    }
    outln!();
    Ok(())
}

/// A task's grants beyond the defaults, in one cell: `mounts=datasets secrets=warehouse http=https://x`.
fn grants_text(g: &sandflow_core::dag::Grants) -> String {
    let mut parts = Vec::new();
    if let Some(mb) = g.out_quota_mb {
        parts.push(format!("out={mb}MiB"));
    }
    for (name, list) in [("mounts", &g.mounts), ("secrets", &g.secrets), ("http", &g.allow_http)] {
        if !list.is_empty() {
            parts.push(format!("{name}={}", list.join(",")));
        }
    }
    if g.record_http {
        parts.push("record_http".into());
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}
