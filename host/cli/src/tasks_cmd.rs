//! `sandflow tasks list|logs|test`.

use anyhow::bail;
use clap::Subcommand;
use std::collections::HashMap;
use std::time::Duration;

use sandflow_core::text::clean;
use sandflow_sandbox::{human_bytes, human_duration, KillSwitch, Outcome};
use sandflow_sdk::TaskContext;
use sandflow_store::{RunRow, Store, TryRow};
use serde_json::json;

use crate::app::{conf, find_run, open_store, perform, user};
use crate::dags_cmd::DagsArg;
use crate::out::{err, errln, out, outln};
use crate::{table, CliError, Home};
use sandflow_scheduler::actions::{Action, MarkState};

#[derive(Debug, Subcommand)]
pub enum TasksCmd {
    /// The task instances of a run (RUN is a run id or `latest`).
    List {
        dag_id: String,
        run: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every try of a task instance: outcome, message, plugin, fuel, peak memory, wall time.
    Tries {
        dag_id: String,
        run: String,
        task_id: String,
        /// One instance of a mapped task.
        #[arg(long, default_value_t = -1)]
        map_index: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The artifacts a task's tries left in /out: name, size, hash, try; `--get NAME` writes one
    /// to stdout (or `--output FILE`), from the latest try that has it.
    Artifacts {
        dag_id: String,
        run: String,
        task_id: String,
        /// One instance of a mapped task.
        #[arg(long, default_value_t = -1)]
        map_index: i64,
        /// The artifact to fetch.
        #[arg(long)]
        get: Option<String>,
        /// Where to write `--get`'s bytes (default: stdout).
        #[arg(long, requires = "get")]
        output: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a recorded try again on this machine (from the home, or with --server over the API),
    /// with the same plugin bytes, context bytes, limits, `/in` files, random seed and clock start
    /// (and recorded HTTP responses), and say whether its result and artifacts are identical
    /// (hashes compared). Exits 1 on a difference.
    Replay {
        dag_id: String,
        run: String,
        task_id: String,
        /// One instance of a mapped task.
        #[arg(long, default_value_t = -1)]
        map_index: i64,
        /// Which try (default: the latest).
        #[arg(long = "try")]
        try_number: Option<i64>,
        /// Run this plugin file instead of the recorded one (to see what a change does).
        #[arg(long, value_name = "FILE")]
        plugin: Option<std::path::PathBuf>,
        /// Run with this context (a JSON file) instead of the recorded bytes.
        #[arg(long, value_name = "FILE")]
        context: Option<std::path::PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A task's log, for its latest try or `--try N`.
    Logs {
        dag_id: String,
        run: String,
        task_id: String,
        /// Which try (1 is the first).
        #[arg(long = "try")]
        try_number: Option<i64>,
        /// One instance of a mapped task.
        #[arg(long, default_value_t = -1)]
        map_index: i64,
    },
    /// Clear task instances so they run again, killing running tries first. Without TASK, the
    /// whole run.
    Clear {
        dag_id: String,
        run: String,
        task_id: Option<String>,
        /// Also every task downstream.
        #[arg(long)]
        downstream: bool,
        /// Also every task upstream.
        #[arg(long)]
        upstream: bool,
        /// Only instances that failed or are upstream_failed.
        #[arg(long)]
        only_failed: bool,
        /// One instance of a mapped task.
        #[arg(long)]
        map_index: Option<i64>,
    },
    /// Set a task instance's state by hand (downstream tasks follow their trigger rules).
    Mark {
        dag_id: String,
        run: String,
        task_id: String,
        #[arg(value_enum)]
        state: MarkArg,
        /// One instance of a mapped task.
        #[arg(long)]
        map_index: Option<i64>,
    },
    /// Run one task now, alone, printing its result; nothing is stored. Its upstream outputs come
    /// from --inputs and --from-run (without them it has no inputs).
    Test {
        dag_id: String,
        task_id: String,
        /// The run configuration the task sees, a JSON object.
        #[arg(long)]
        conf: Option<String>,
        /// The upstream outputs the task sees: a JSON object of upstream task id -> its output, or
        /// @FILE to read it. Laid over those of --from-run.
        #[arg(long, value_name = "JSON|@FILE")]
        inputs: Option<String>,
        /// Take the upstream outputs that a run in the home's store recorded (a run id or `latest`).
        #[arg(long, value_name = "RUN")]
        from_run: Option<String>,
        #[command(flatten)]
        dags: DagsArg,
    },
}

/// The states a user may mark.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MarkArg {
    Success,
    Failed,
}

impl From<MarkArg> for MarkState {
    fn from(arg: MarkArg) -> MarkState {
        match arg {
            MarkArg::Success => MarkState::Success,
            MarkArg::Failed => MarkState::Failed,
        }
    }
}

pub async fn run(cmd: TasksCmd, home: &Home) -> Result<(), CliError> {
    match cmd {
        TasksCmd::Clear { dag_id, run, task_id, downstream, upstream, only_failed, map_index } => {
            let store = open_store(home).await?;
            let run = find_run(&store, &dag_id, &run).await?;
            let action = Action::Clear {
                dag_id,
                run_ids: vec![run.run_id],
                task_ids: task_id.into_iter().collect(),
                map_index,
                downstream,
                upstream,
                only_failed,
            };
            outln!("{}", perform(&store, home, &action).await?);
            Ok(())
        }
        TasksCmd::Mark { dag_id, run, task_id, state, map_index } => {
            let store = open_store(home).await?;
            let run = find_run(&store, &dag_id, &run).await?;
            let action =
                Action::Mark { dag_id, run_id: run.run_id, task_id: Some(task_id), map_index, state: state.into() };
            outln!("{}", perform(&store, home, &action).await?);
            Ok(())
        }
        TasksCmd::Artifacts { dag_id, run, task_id, map_index, get, output, json } => {
            artifacts(&dag_id, &run, &task_id, map_index, get.as_deref(), output.as_deref(), json, home).await
        }
        TasksCmd::Replay { dag_id, run, task_id, map_index, try_number, plugin, context, json } => {
            let args = crate::replay_cmd::ReplayArgs { map_index, try_number, plugin, context, json };
            crate::replay_cmd::replay(&dag_id, &run, &task_id, &args, home, None).await
        }
        TasksCmd::List { dag_id, run, json } => list(&dag_id, &run, json, home).await.map_err(CliError::Usage),
        TasksCmd::Tries { dag_id, run, task_id, map_index, json } => {
            tries(&dag_id, &run, &task_id, map_index, json, home).await.map_err(CliError::Usage)
        }
        TasksCmd::Logs { dag_id, run, task_id, try_number, map_index } => {
            logs(&dag_id, &run, &task_id, try_number, map_index, home).await.map_err(CliError::Usage)
        }
        TasksCmd::Test { dag_id, task_id, conf, inputs, from_run, dags } => {
            let upstream = UpstreamArgs { inputs, from_run };
            test(&dag_id, &task_id, conf.as_deref(), &upstream, &dags, home).await
        }
    }
}

async fn list(dag_id: &str, run: &str, json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await?;
    let tis = store.task_instances(&run.run_id).await?;
    let mut latest: HashMap<(String, i64), TryRow> = HashMap::new();
    for t in store.run_tries(&run.run_id).await? {
        let key = (t.task_id.clone(), t.map_index);
        if latest.get(&key).is_none_or(|seen| seen.try_number < t.try_number) {
            latest.insert(key, t);
        }
    }
    if json {
        let tis: Vec<_> = tis
            .iter()
            .map(|ti| {
                let last = latest.get(&(ti.task_id.clone(), ti.map_index));
                let mut value = serde_json::to_value(ti).unwrap_or_default();
                value["latest_try"] = json!(last.map(try_json));
                value
            })
            .collect();
        return table::json(&json!({"run": run, "task_instances": tis}));
    }
    outln!("run {} of {}: {}", run.run_id, run.dag_id, run.state);
    let rows: Vec<Vec<String>> = tis
        .iter()
        .map(|ti| {
            let last = latest.get(&(ti.task_id.clone(), ti.map_index));
            vec![
                if ti.map_index < 0 { ti.task_id.clone() } else { format!("{}[{}]", ti.task_id, ti.map_index) },
                ti.state.to_string(),
                ti.try_number.to_string(),
                table::opt_time(&ti.started_at),
                table::opt_time(&ti.ended_at),
                last.and_then(|t| t.fuel_used).map_or("-".into(), |f| f.to_string()),
                last.and_then(|t| t.peak_memory).map_or("-".into(), |m| human_bytes(m.max(0) as u64)),
                ti.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(&["task", "state", "tries", "started", "ended", "fuel", "memory", "reason"], &rows);
    Ok(())
}

/// A try for scripts: its row without the log, with its wall time in seconds.
fn try_json(t: &TryRow) -> serde_json::Value {
    json!({
        "try_number": t.try_number, "plugin_id": t.plugin_id, "outcome": t.outcome, "message": t.message,
        "fuel_used": t.fuel_used, "peak_memory_bytes": t.peak_memory,
        "wall_seconds": t.wall_us.map(|us| us as f64 / 1e6),
        "started_at": t.started_at, "ended_at": t.ended_at,
    })
}

/// `tasks tries`: what each try of one task instance did and used.
async fn tries(dag_id: &str, run: &str, task_id: &str, map_index: i64, json: bool, home: &Home) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await?;
    known_task(&store, &run, task_id).await?;
    let tries = store.tries(&run.run_id, task_id, map_index).await?;
    if json {
        return table::json(&json!({"run_id": run.run_id, "task_id": task_id, "map_index": map_index,
            "tries": tries.iter().map(try_json).collect::<Vec<_>>()}));
    }
    if tries.is_empty() {
        outln!("task `{task_id}` of run {} has not run yet", run.run_id);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tries
        .iter()
        .map(|t| {
            vec![
                t.try_number.to_string(),
                t.outcome.clone().unwrap_or_else(|| "running".into()),
                t.plugin_id.chars().take(19).collect(),
                t.fuel_used.map_or("-".into(), |f| f.to_string()),
                t.peak_memory.map_or("-".into(), |m| human_bytes(m.max(0) as u64)),
                t.wall_us.map_or("-".into(), |us| human_duration(Duration::from_micros(us.max(0) as u64))),
                table::time(&t.started_at),
                table::opt_time(&t.ended_at),
                t.message.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(&["try", "outcome", "plugin", "fuel", "memory", "wall", "started", "ended", "message"], &rows);
    Ok(())
}

/// Fails unless `task_id` is a task of `run`, naming the tasks it has.
async fn known_task(store: &Store, run: &RunRow, task_id: &str) -> anyhow::Result<()> {
    let tis = store.task_instances(&run.run_id).await?;
    if tis.iter().any(|ti| ti.task_id == task_id) {
        return Ok(());
    }
    let mut known: Vec<&str> = tis.iter().map(|ti| ti.task_id.as_str()).collect();
    known.dedup();
    bail!("run {} has no task `{task_id}` (tasks: {})", run.run_id, known.join(", "))
}

async fn logs(
    dag_id: &str,
    run: &str,
    task_id: &str,
    try_number: Option<i64>,
    map_index: i64,
    home: &Home,
) -> anyhow::Result<()> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await?;
    known_task(&store, &run, task_id).await?;
    let tries = store.tries(&run.run_id, task_id, map_index).await?;
    let chosen = match try_number {
        Some(n) => tries.iter().find(|t| t.try_number == n),
        None => tries.last(),
    };
    let Some(chosen) = chosen else {
        if tries.is_empty() {
            bail!("task `{task_id}` of run {} has not run yet", run.run_id);
        }
        bail!("task `{task_id}` of run {} has no try {} (it has {})", run.run_id, try_number.unwrap_or(0), tries.len());
    };
    errln!(
        "try {} of {task_id} ({}): {}",
        chosen.try_number,
        chosen.plugin_id,
        clean(chosen.message.as_deref().unwrap_or("running"), false)
    );
    // The plugin wrote this log: its escape sequences and carriage returns are shown, not obeyed.
    out!("{}", clean(chosen.log.as_deref().unwrap_or(""), true));
    Ok(())
}

/// Where `tasks test` takes the task's upstream outputs from.
struct UpstreamArgs {
    /// `--inputs`: a JSON object, or @FILE.
    inputs: Option<String>,
    /// `--from-run`: a run id or `latest`.
    from_run: Option<String>,
}

/// The task's `inputs`: the outputs `--from-run` recorded, with `--inputs` laid over them.
async fn upstream_inputs(
    dag_id: &str,
    task: &sandflow_core::dag::Task,
    args: &UpstreamArgs,
    home: &Home,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut inputs = serde_json::Map::new();
    if let Some(run) = &args.from_run {
        inputs = outputs_of_run(dag_id, task, run, home).await?;
    }
    if let Some(text) = &args.inputs {
        let given = crate::app::json_object_arg(text, "--inputs")?;
        if let Some(stranger) = given.keys().find(|id| !task.upstream.contains(id)) {
            let upstream = if task.upstream.is_empty() { "none".to_string() } else { task.upstream.join(", ") };
            bail!(
                "--inputs names `{stranger}`, which is not an upstream task of `{}` (its upstream tasks: {upstream})",
                task.id
            );
        }
        inputs.extend(given);
    }
    Ok(inputs)
}

/// The outputs the task's direct upstream tasks recorded in `run` of the home's store; an upstream
/// without one is named on stderr (the task then runs without it, as the scheduler would run it).
async fn outputs_of_run(
    dag_id: &str,
    task: &sandflow_core::dag::Task,
    run: &str,
    home: &Home,
) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await?;
    let instances = store.task_instances(&run.run_id).await?;
    let mut inputs = serde_json::Map::new();
    for up in &task.upstream {
        let instance = instances.iter().find(|ti| &ti.task_id == up && ti.map_index < 0);
        match instance.and_then(|ti| ti.output.clone()) {
            Some(output) => {
                inputs.insert(up.clone(), output);
            }
            None => {
                let why = match instance {
                    Some(ti) => format!("it is {}", ti.state),
                    None => "it is not in that run".to_string(),
                };
                errln!(
                    "warning: upstream task `{up}` has no output in run {} ({why}); `{}` runs without inputs.{up}",
                    run.run_id,
                    task.id
                );
            }
        }
    }
    Ok(inputs)
}

async fn test(
    dag_id: &str,
    task_id: &str,
    conf_text: Option<&str>,
    upstream: &UpstreamArgs,
    dags: &DagsArg,
    home: &Home,
) -> Result<(), CliError> {
    let conf = conf(conf_text)?;
    let store = Store::in_memory().await.map_err(anyhow::Error::from)?;
    let loaded = crate::app::load_one(&dags.dags, dag_id, &store, home).await?;
    let Some(task) = loaded.dag.task(task_id) else {
        let known: Vec<&str> = loaded.dag.tasks.iter().map(|t| t.id.as_str()).collect();
        return Err(CliError::Usage(anyhow::anyhow!(
            "DAG `{dag_id}` has no task `{task_id}` (tasks: {})",
            known.join(", ")
        )));
    };
    let inputs = upstream_inputs(dag_id, task, upstream, home).await?;
    let bytes = store
        .plugin_bytes(&task.plugin_id)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| anyhow::anyhow!("plugin missing"))?;
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let plugin = sandbox.load(&bytes).map_err(anyhow::Error::from)?;
    let mut context = TaskContext::empty();
    context.dag_id = dag_id.to_string();
    context.dag_version = loaded.version.clone();
    context.run_id = format!("test__{}", user());
    context.task_id = task_id.to_string();
    context.conf = conf;
    context.params = task.params.clone();
    context.inputs = inputs;
    context.logical_date = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let limits = sandflow_scheduler::task_limits(task);
    let input = serde_json::to_vec(&context).map_err(anyhow::Error::from)?;
    let report = sandbox.run(&plugin, &input, &limits, &KillSwitch::new()).await;
    err!("{}", clean(&report.log, true));
    let usage = format!(
        "fuel {}, peak memory {}, {}",
        report.fuel_used,
        human_bytes(report.peak_memory_bytes),
        sandflow_sandbox::human_duration(report.wall_time)
    );
    match report.outcome {
        Outcome::Success { result } => {
            outln!("{}", serde_json::to_string_pretty(&result).map_err(anyhow::Error::from)?);
            errln!("sandflow: {task_id} success ({usage})");
            Ok(())
        }
        failure => Err(CliError::Failed(format!("{task_id}: {failure} (plugin {}; {usage})", report.plugin))),
    }
}

#[allow(clippy::too_many_arguments)]
async fn artifacts(
    dag_id: &str,
    run: &str,
    task_id: &str,
    map_index: i64,
    get: Option<&str>,
    output: Option<&std::path::Path>,
    as_json: bool,
    home: &Home,
) -> Result<(), CliError> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await.map_err(CliError::Usage)?;
    let rows: Vec<_> = store
        .artifacts(&run.run_id, Some(task_id))
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|a| a.map_index == map_index)
        .collect();
    let Some(name) = get else {
        if as_json {
            return Ok(crate::table::json(&json!(rows))?);
        }
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|a| vec![a.name.clone(), a.size.to_string(), a.hash.clone(), a.try_number.to_string()])
            .collect();
        crate::table::print(&["artifact", "bytes", "hash", "try"], &table);
        return Ok(());
    };
    let Some(found) = rows.iter().rev().find(|a| a.name == name) else {
        let names: std::collections::BTreeSet<_> = rows.iter().map(|a| a.name.as_str()).collect();
        return Err(CliError::Usage(anyhow::anyhow!(
            "task {task_id} of run {} has no artifact {name:?} (it has: {})",
            run.run_id,
            names.into_iter().collect::<Vec<_>>().join(", ")
        )));
    };
    let blobs = sandflow_blobs::Blobs::open(&home.grants()?.blobs).map_err(anyhow::Error::from)?;
    let bytes = blobs.get_bytes(&found.hash).await.map_err(anyhow::Error::from)?;
    match output {
        Some(path) => std::fs::write(path, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => std::io::Write::write_all(&mut std::io::stdout(), &bytes).map_err(anyhow::Error::from)?,
    }
    Ok(())
}
