//! `sandflow plugin add|inspect|run|list`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use sandflow_sandbox::{
    human_bytes, human_duration, CodeSource, KillSwitch, Limits, Outcome, Plugin, PluginId, Sandbox, SandboxConfig,
    MAX_PLUGIN_BYTES,
};
use sandflow_sdk::TaskContext;
use sandflow_store::Store;

use crate::app::open_store;
use crate::out::{err, errln, outln};
use crate::{table, CliError, Home};

#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Check a wasm file and add it to the store (the home's database); prints its id.
    Add {
        /// The .wasm file.
        file: PathBuf,
    },
    /// Show a plugin's id, kind, size, initial memory, imports and exports.
    Inspect {
        /// A .wasm file, or the sha256: id of a stored plugin.
        plugin: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin once: the result JSON on stdout, the plugin's log and a summary on stderr.
    Run {
        /// A .wasm file, or the sha256: id of a stored plugin.
        plugin: String,
        /// The task context as JSON (fields left out take their defaults), or @FILE to read it.
        #[arg(long, default_value = "{}", conflicts_with = "context")]
        input: String,
        /// A file holding the task context (the same as `--input @FILE`), e.g. a recorded one.
        #[arg(long)]
        context: Option<PathBuf>,
        /// Fuel (about one unit per wasm instruction).
        #[arg(long)]
        fuel: Option<u64>,
        /// Memory limit in MiB.
        #[arg(long = "memory-mb")]
        memory_mb: Option<u64>,
        /// Wall-clock limit in seconds (fractions allowed).
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Run a plugin against recorded contexts (DIR/NAME.context.json) and compare each result with
    /// DIR/NAME.expected.json (a task result, or {"error": "TEXT"} for a try that must fail).
    Test {
        /// The folder of cases.
        dir: PathBuf,
        /// The .wasm file or stored sha256: id; default: the one .wasm in DIR or its parent.
        #[arg(long)]
        plugin: Option<String>,
        /// Write what the plugin returns as the expected results instead of comparing.
        #[arg(long)]
        update: bool,
        /// Fuel per case.
        #[arg(long)]
        fuel: Option<u64>,
    },
    /// Make a plugin project that builds with `./build.sh` and passes `plugin run` and `plugin test`.
    New {
        /// The plugin's name (lowercase letters, digits and `-`): the project's folder.
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: crate::plugin_new::Lang,
        /// Where to make the folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// List the plugins in the store: id, kind, size, when added.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: PluginCmd, home: &Home) -> Result<(), CliError> {
    match cmd {
        PluginCmd::Add { file } => add(&file, home).await,
        PluginCmd::Inspect { plugin, json } => inspect(&plugin, json, home).await,
        PluginCmd::Run { plugin, input, context, fuel, memory_mb, timeout } => {
            let limits = limits(fuel, memory_mb, timeout)?;
            let input = match context {
                Some(path) => format!("@{}", path.display()),
                None => input,
            };
            run_once(&plugin, &input, limits, home).await
        }
        PluginCmd::Test { dir, plugin, update, fuel } => {
            let limits = limits(fuel, None, None)?;
            crate::plugin_test::run(&dir, plugin.as_deref(), update, limits, home).await
        }
        PluginCmd::New { name, lang, dir } => crate::plugin_new::scaffold(lang, &name, &dir).map(|_| ()),
        PluginCmd::List { json } => list(json, home).await,
    }
}

/// A sandbox for one command: compiled code cached in the home, a small pool.
pub fn sandbox(home: &Home) -> anyhow::Result<Sandbox> {
    sandbox_with(home, 8)
}

/// A sandbox sized for `concurrent` tries at once.
pub fn sandbox_with(home: &Home, concurrent: usize) -> anyhow::Result<Sandbox> {
    let max_concurrent_tries = u32::try_from(concurrent.max(1)).unwrap_or(u32::MAX);
    let config = SandboxConfig { cache_dir: Some(home.code_cache()), max_concurrent_tries, ..SandboxConfig::default() };
    Ok(Sandbox::new(config)?)
}

/// Reads a plugin named by path or by id (from the store, checked against the id).
async fn plugin_bytes(target: &str, home: &Home) -> anyhow::Result<Vec<u8>> {
    if target.starts_with("sha256:") {
        let id: PluginId = target.parse()?;
        let store = open_store(home).await?;
        return store
            .plugin_bytes(id.as_str())
            .await?
            .ok_or_else(|| anyhow!("no plugin {id} in the store (add it with: sandflow plugin add FILE.wasm)"));
    }
    read_file(&PathBuf::from(target))
}

/// A plugin file, read as the DAG loader reads one: a regular file, at most the sandbox's limit.
fn read_file(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    sandflow_scheduler::read_regular_file(path, MAX_PLUGIN_BYTES, "a plugin").map_err(|message| anyhow!(message))
}

pub(crate) async fn load(target: &str, home: &Home) -> anyhow::Result<(Sandbox, Arc<Plugin>)> {
    let bytes = plugin_bytes(target, home).await?;
    let sandbox = sandbox(home)?;
    let plugin = sandbox.load(&bytes).with_context(|| format!("{target} is not a plugin Sandflow can run"))?;
    Ok((sandbox, plugin))
}

async fn add(file: &std::path::Path, home: &Home) -> Result<(), CliError> {
    let bytes = read_file(file)?;
    let info =
        sandbox(home)?.check(&bytes).with_context(|| format!("{} is not a plugin Sandflow can run", file.display()))?;
    let store = open_store(home).await?;
    let kind = sandflow_scheduler::stored_kind(info.kind);
    store.put_plugin(info.id.as_str(), &bytes, kind).await.map_err(anyhow::Error::from)?;
    outln!("{}", info.id);
    Ok(())
}

async fn inspect(target: &str, json: bool, home: &Home) -> Result<(), CliError> {
    let (_, plugin) = load(target, home).await?;
    let info = &plugin.info;
    if json {
        outln!("{}", serde_json::to_string_pretty(info).map_err(anyhow::Error::from)?);
        return Ok(());
    }
    outln!("id:      {}", info.id);
    outln!("kind:    {}", info.kind);
    outln!("abi:     {}", info.kind.abi());
    outln!("size:    {} bytes", info.size);
    outln!("memory:  {} at start (counts toward the memory limit)", human_bytes(info.initial_memory_bytes));
    outln!("imports: {}", info.imports.len());
    for import in &info.imports {
        outln!("  {import}");
    }
    outln!("exports: {}", info.exports.len());
    for export in &info.exports {
        outln!("  {export}");
    }
    Ok(())
}

async fn list(json: bool, home: &Home) -> Result<(), CliError> {
    let store: Store = open_store(home).await?;
    let plugins = store.plugins().await.map_err(anyhow::Error::from)?;
    if json {
        return Ok(table::json(&plugins)?);
    }
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let size = human_bytes(u64::try_from(p.size).unwrap_or(0));
            vec![p.id.clone(), p.kind.to_string(), size, table::time(&p.created_at)]
        })
        .collect();
    table::print(&["id", "kind", "size", "added"], &rows);
    Ok(())
}

fn limits(fuel: Option<u64>, memory_mb: Option<u64>, timeout: Option<f64>) -> anyhow::Result<Limits> {
    let mut limits = Limits::default();
    if let Some(fuel) = fuel {
        limits.fuel = fuel;
    }
    if let Some(mb) = memory_mb {
        limits.memory_bytes = mb.checked_mul(1024 * 1024).ok_or_else(|| anyhow!("--memory-mb {mb} is too large"))?;
    }
    if let Some(secs) = timeout {
        limits.timeout = Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| anyhow!("--timeout must be a positive number of seconds, not {secs}"))?;
    }
    if let Err(over) = sandflow_sandbox::Caps::default().check(&limits) {
        bail!("{}", over.join("; "));
    }
    Ok(limits)
}

/// The task context: the defaults, overlaid with the fields the user gave.
pub(crate) fn context(input: &str) -> anyhow::Result<Vec<u8>> {
    let given = crate::app::json_object_arg(input, "--input")?;
    let mut context = serde_json::to_value(TaskContext::empty())?;
    let fields = context.as_object_mut().expect("a struct serialises to an object");
    fields.extend(given);
    Ok(serde_json::to_vec(&context)?)
}

async fn run_once(target: &str, input: &str, limits: Limits, home: &Home) -> Result<(), CliError> {
    let input = context(input)?;
    let (sandbox, plugin) = load(target, home).await?;
    let kill = KillSwitch::new();
    let report = sandbox.run(&plugin, &input, &limits, &kill).await;
    err!("{}", sandflow_core::text::clean(&report.log, true));
    if !report.log.is_empty() && !report.log.ends_with('\n') {
        errln!();
    }
    let code = match plugin.source {
        CodeSource::Compiled => "compiled now",
        CodeSource::DiskCache => "code from cache",
    };
    let usage = format!(
        "fuel {}, peak memory {}, {}, {code}",
        report.fuel_used,
        human_bytes(report.peak_memory_bytes),
        human_duration(report.wall_time)
    );
    match &report.outcome {
        Outcome::Success { result } => {
            outln!("{}", serde_json::to_string(result).map_err(anyhow::Error::from)?);
            errln!("sandflow: success ({usage})");
            Ok(())
        }
        failure => Err(CliError::Failed(format!("{failure} (plugin {}; {usage})", report.plugin))),
    }
}
