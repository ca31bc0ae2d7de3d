//! `sandflow bench`: N DAGs of M `noop` tasks through the real loader, scheduler, store and
//! workers: a scratch SQLite database by default, or the database of `--database-url` (give it a
//! fresh one); an in-process worker by default, or `--workers N` worker processes. Prints
//! figures; asserts nothing.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use sandflow_scheduler::{trigger, Notice, Scheduler, SchedulerConfig, TriggerOptions};
use sandflow_store::{Durability, Store};
use tokio_util::sync::CancellationToken;

use crate::out::outln;
use crate::{CliError, Home};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// t0 >> t1 >> ... >> tM-1: every hop waits for the previous task.
    Chain,
    /// t0 >> [t1 ... tM-2] >> tM-1: one root, M-2 tasks at once, one join.
    Fan,
    /// One task mapped over a list of M elements from the run's conf: M instances.
    Mapped,
    /// Layers of `--width` tasks, each task downstream of two tasks of the layer before it (the
    /// one at its position and the next one, wrapping): a wide, deep DAG with two edges a task.
    Layered,
}

/// The ids of task `t`'s upstream tasks in a DAG of this shape.
fn upstream_of(shape: Shape, tasks: usize, width: usize, t: usize) -> Vec<usize> {
    match (shape, t) {
        (Shape::Mapped, _) | (_, 0) => vec![],
        (Shape::Chain, t) => vec![t - 1],
        (Shape::Fan, t) if t == tasks - 1 && tasks > 2 => (1..tasks - 1).collect(),
        (Shape::Fan, _) => vec![0],
        (Shape::Layered, t) if t < width => vec![],
        (Shape::Layered, t) => {
            let layer_start = t - t % width;
            let above = layer_start - width;
            let position = t % width;
            let mut up = vec![above + position];
            if width > 1 {
                up.push(above + (position + 1) % width);
            }
            up
        }
    }
}

fn task_name(t: usize) -> String {
    format!("t{t:03}")
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// How many DAGs (one run each, all triggered at once).
    #[arg(long = "dags", default_value_t = 1)]
    pub dag_count: usize,
    /// Tasks per DAG.
    #[arg(long, default_value_t = 30)]
    pub tasks: usize,
    /// The shape of each DAG.
    #[arg(long, value_enum, default_value_t = Shape::Chain)]
    pub shape: Shape,
    /// Tasks per layer, for `--shape layered` (at least 1).
    #[arg(long, default_value_t = 100, value_parser = crate::app::at_least_one)]
    pub width: usize,
    /// The noop plugin to run. Default: the first of dags/plugins/noop.wasm (where the README's
    /// `plugins/build.sh dags/plugins` puts it) and target/plugins/noop.wasm (`plugins/build.sh`).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// Tries at once (at least 1), in each worker.
    #[arg(long, default_value_t = 32, value_parser = crate::app::at_least_one)]
    pub parallelism: usize,
    /// Run tries in this many `sandflow worker` processes instead of one worker inside the
    /// scheduler's process.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Commit with synchronous=FULL instead of NORMAL.
    #[arg(long)]
    pub full_durability: bool,
}

fn dag_file(index: usize, tasks: usize, shape: Shape, width: usize, plugin: &str) -> String {
    let mut text = format!("id = \"bench_{index:04}\"\nmax_active_runs = 1\nmax_active_tasks = 1000\n");
    if shape == Shape::Mapped {
        text.push_str(&format!("[tasks.each]\nplugin = {plugin:?}\nmap_over = \"conf.items\"\n"));
        return text;
    }
    for t in 0..tasks {
        text.push_str(&format!("[tasks.{}]\nplugin = {plugin:?}\n", task_name(t)));
        let upstream = upstream_of(shape, tasks, width, t);
        if !upstream.is_empty() {
            let names: Vec<String> = upstream.into_iter().map(|u| format!("{:?}", task_name(u))).collect();
            text.push_str(&format!("upstream = [{}]\n", names.join(", ")));
        }
    }
    text
}

/// Where `plugins/build.sh` puts the noop plugin: the README's folder first, then its default.
const NOOP_PLACES: [&str; 2] = ["dags/plugins/noop.wasm", "target/plugins/noop.wasm"];

pub fn noop_plugin(given: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return path.canonicalize().with_context(|| format!("--plugin {}", path.display()));
    }
    NOOP_PLACES.iter().find_map(|place| std::path::Path::new(place).canonicalize().ok()).with_context(|| {
        format!(
            "no noop plugin at {} (build the example plugins first: plugins/build.sh dags/plugins, or give --plugin FILE)",
            NOOP_PLACES.join(" or ")
        )
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub async fn run(args: BenchArgs, home: &Home) -> Result<(), CliError> {
    if args.tasks == 0 || args.dag_count == 0 {
        return Err(CliError::Usage(anyhow::anyhow!("--dags and --tasks must be at least 1")));
    }
    let plugin = noop_plugin(args.plugin.as_deref())?;
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let dags = scratch.path().join("dags");
    std::fs::create_dir_all(&dags).context("creating the scratch DAG folder")?;
    std::fs::create_dir_all(dags.join("plugins")).context("creating the scratch plugin folder")?;
    std::fs::copy(&plugin, dags.join("plugins/noop.wasm")).context("copying the plugin")?;
    for i in 0..args.dag_count {
        let text = dag_file(i, args.tasks, args.shape, args.width, "plugins/noop.wasm");
        std::fs::write(dags.join(format!("bench_{i:04}.toml")), text).context("writing a DAG file")?;
    }
    let durability = if args.full_durability { Durability::Full } else { Durability::Normal };
    let scratch_db = scratch.path().join("sandflow.db");
    let store = if home.has_database_url() {
        Store::connect(&home.database_url()).await.map_err(anyhow::Error::from)?
    } else {
        Store::open(&scratch_db, durability).await.map_err(anyhow::Error::from)?
    };
    let database_url = if home.has_database_url() {
        home.database_url().expose_secret().to_string()
    } else {
        format!("sqlite://{}", scratch_db.display())
    };
    let sandbox = crate::plugin_cmd::sandbox_with(home, args.parallelism)?;
    let config =
        SchedulerConfig { parallelism: args.parallelism, dags_dir: Some(dags.clone()), ..SchedulerConfig::default() };
    let mut scheduler = Scheduler::new(store.clone(), sandbox, config);
    let load_started = Instant::now();
    let report = scheduler.load_dags().await.map_err(anyhow::Error::from)?;
    if let Some((path, message)) = report.errors.first() {
        return Err(CliError::Usage(anyhow::anyhow!("{}: {message}", path.display())));
    }
    let load_time = load_started.elapsed();
    let handle = scheduler.handle();
    let mut notices = handle.subscribe();
    let shutdown = CancellationToken::new();

    let started = Instant::now();
    let mut run_ids = Vec::new();
    let mut conf = serde_json::Map::new();
    if args.shape == Shape::Mapped {
        conf.insert("items".into(), (0..args.tasks).collect::<Vec<_>>().into());
    }
    for i in 0..args.dag_count {
        let options = TriggerOptions { triggered_by: "bench".into(), conf: conf.clone(), ..Default::default() };
        let run = trigger(&store, &format!("bench_{i:04}"), options).await.map_err(anyhow::Error::from)?;
        run_ids.push(run.run_id);
    }
    let mut workers = Vec::new();
    for i in 0..args.workers {
        let exe = std::env::current_exe().context("finding this program, to start workers")?;
        let child = tokio::process::Command::new(exe)
            .arg("--home")
            .arg(home.root())
            .args(["worker", "--concurrency", &args.parallelism.to_string(), "--name", &format!("bench-worker-{i}")])
            .env("SANDFLOW_DATABASE_URL", &database_url)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting a worker process")?;
        workers.push(child);
    }
    let task = if args.workers > 0 {
        tokio::spawn(scheduler.run(shutdown.clone()))
    } else {
        tokio::spawn(scheduler.run_with_worker(shutdown.clone()))
    };
    let mut remaining = args.dag_count;
    let mut failed = 0;
    while remaining > 0 {
        match notices.recv().await {
            Ok(Notice::RunFinished { state, .. }) => {
                remaining -= 1;
                if state != sandflow_core::state::RunState::Success {
                    failed += 1;
                }
            }
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
    let total = started.elapsed();
    shutdown.cancel();
    for mut worker in workers {
        let _ = worker.kill().await;
    }
    task.await.map_err(anyhow::Error::from)?.map_err(anyhow::Error::from)?;
    if failed > 0 {
        return Err(CliError::Failed(format!("{failed} runs failed")));
    }

    let mut gaps = Vec::new();
    for run_id in &run_ids {
        let tries = store.run_tries(run_id).await.map_err(anyhow::Error::from)?;
        let ended: std::collections::HashMap<&str, _> =
            tries.iter().filter_map(|t| Some((t.task_id.as_str(), t.ended_at?))).collect();
        for t in tries.iter().filter(|_| args.shape != Shape::Mapped) {
            let index: usize = t.task_id[1..].parse().unwrap_or(0);
            let upstream = upstream_of(args.shape, args.tasks, args.width, index);
            let ready = upstream.iter().filter_map(|u| ended.get(task_name(*u).as_str())).max();
            if let Some(ready) = ready {
                gaps.push((t.started_at - *ready).num_microseconds().unwrap_or(0) as f64 / 1000.0);
            }
        }
    }
    gaps.sort_by(f64::total_cmp);
    let count = args.dag_count * args.tasks;
    outln!(
        "shape {:?}, {} DAGs × {} tasks = {count} tasks, parallelism {}, {}, on {}",
        args.shape,
        args.dag_count,
        args.tasks,
        args.parallelism,
        match args.workers {
            0 => "a worker in the scheduler's process".to_string(),
            1 => "1 worker process".to_string(),
            n => format!("{n} worker processes"),
        },
        if home.has_database_url() { store.describe() } else { "a scratch SQLite file".to_string() }
    );
    outln!("loaded DAG files in {:.1} ms", load_time.as_secs_f64() * 1e3);
    outln!("total time:       {:.3} s", total.as_secs_f64());
    outln!("tasks per second: {:.0}", count as f64 / total.as_secs_f64());
    if !gaps.is_empty() {
        outln!(
            "gap end → successor start: p50 {:.3} ms, p99 {:.3} ms ({} hops)",
            percentile(&gaps, 0.5),
            percentile(&gaps, 0.99),
            gaps.len()
        );
    }
    if let Some(rss) = peak_rss_mib() {
        outln!("peak memory (RSS): {rss:.1} MiB");
    }
    store.close().await;
    Ok(())
}
