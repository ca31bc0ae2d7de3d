//! What several commands share: the store in the home, the sandbox, the DAG folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sandflow_core::dag::Caps;
use sandflow_scheduler::{load_file, DagFolder, LoadContext};
use sandflow_store::{Durability, RunRow, Store};

use crate::Home;

/// The embedded store in the home.
pub async fn open_store(home: &Home) -> anyhow::Result<Store> {
    Ok(Store::open(&home.database(), Durability::Normal).await?)
}

/// `--dags DIR`, checked to be a folder.
pub fn dags_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        bail!("the DAG folder {} does not exist (give one with --dags DIR)", dir.display());
    }
    Ok(dir.to_path_buf())
}

/// Loads every DAG file of `dir` into `store` once it has settled; broken files are reported on
/// stderr and recorded, and do not stop the others.
pub async fn sync_dags(dir: &Path, store: &Store, home: &Home) -> anyhow::Result<()> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let cx = LoadContext::new(store.clone(), sandbox, Caps::default(), false);
    let report = DagFolder::new(dags_dir(dir)?, cx).load_settled().await?;
    for (path, message) in report.errors {
        eprintln!("warning: {} was not loaded:\n{}", path.display(), indent(&message));
    }
    for path in report.unsettled {
        eprintln!("warning: {} was not loaded: it is still being written", path.display());
    }
    Ok(())
}

/// Loads one DAG file by DAG id from `dir` into `store` (every file is parsed until one has that
/// id). `store` may be in memory: `sha256:` plugin ids are then copied from the home's store.
pub async fn load_one(
    dir: &Path,
    dag_id: &str,
    store: &Store,
    home: &Home,
) -> anyhow::Result<sandflow_scheduler::Loaded> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let mut cx = LoadContext::new(store.clone(), sandbox, Caps::default(), false);
    if home.database().exists() {
        cx.plugin_source = Some(open_store(home).await?);
    }
    let mut errors = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dags_dir(dir)?)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml") && !p.is_dir())
        .collect();
    files.sort();
    for path in files {
        match load_file(&path, &cx).await {
            Ok(loaded) if loaded.dag.id == dag_id => return Ok(loaded),
            Ok(_) => {}
            Err(message) => errors.push(message),
        }
    }
    if errors.is_empty() {
        bail!("no DAG `{dag_id}` in {}", dir.display());
    }
    bail!("no DAG `{dag_id}` in {} (files that did not load:\n{})", dir.display(), indent(&errors.join("\n")))
}

/// Indents every line by two spaces.
pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// The error for a DAG id the store does not know, listing the ones it does.
pub async fn unknown_dag(store: &Store, dag_id: &str) -> anyhow::Error {
    let known: Vec<String> = match store.dags().await {
        Ok(dags) => dags.into_iter().map(|d| d.dag_id).collect(),
        Err(e) => return e.into(),
    };
    anyhow::anyhow!("no DAG `{dag_id}` (known: {})", if known.is_empty() { "none".into() } else { known.join(", ") })
}

/// A run by id, or `latest` for the DAG's newest run.
pub async fn find_run(store: &Store, dag_id: &str, run: &str) -> anyhow::Result<RunRow> {
    if store.dag(dag_id).await?.is_none() {
        return Err(unknown_dag(store, dag_id).await);
    }
    let found = if run == "latest" {
        store.runs(Some(dag_id), 1).await?.into_iter().next()
    } else {
        store.run(run).await?.filter(|r| r.dag_id == dag_id)
    };
    match found {
        Some(row) => Ok(row),
        None if run == "latest" => bail!("DAG `{dag_id}` has no runs yet"),
        None => bail!("DAG `{dag_id}` has no run `{run}` (see: sandflow dags show {dag_id})"),
    }
}

/// Parses `--conf` as a JSON object.
pub fn conf(text: Option<&str>) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let Some(text) = text else { return Ok(serde_json::Map::new()) };
    match serde_json::from_str(text).context("--conf is not valid JSON")? {
        serde_json::Value::Object(map) => Ok(map),
        other => bail!("--conf must be a JSON object, not {other}"),
    }
}

/// Who is running this command, for `triggered_by`.
pub fn user() -> String {
    std::env::var("SANDFLOW_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "cli".to_string())
}

/// Hands an action to the live scheduler (it alone can kill the tries it runs) and waits for its
/// result; with no scheduler alive, carries it out in this process with the same code.
pub async fn perform(
    store: &Store,
    home: &Home,
    action: &sandflow_scheduler::actions::Action,
) -> Result<String, crate::CliError> {
    use sandflow_scheduler::actions::HEARTBEAT_VALID_FOR;
    let payload = serde_json::to_string(action).map_err(anyhow::Error::from)?;
    let id = store.enqueue_action(action.kind(), &payload, &user()).await.map_err(anyhow::Error::from)?;
    if !store.live_scheduler(HEARTBEAT_VALID_FOR).await.map_err(anyhow::Error::from)? {
        let sandbox = crate::plugin_cmd::sandbox(home)?;
        let config = sandflow_scheduler::SchedulerConfig { create_scheduled_runs: false, ..Default::default() };
        let mut scheduler = sandflow_scheduler::Scheduler::new(store.clone(), sandbox, config);
        for (done, result) in scheduler.carry_out_pending().await.map_err(anyhow::Error::from)? {
            if done == id {
                return result.map_err(|message| crate::CliError::Usage(anyhow::anyhow!(message)));
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        if let Some(row) = store.action(id).await.map_err(anyhow::Error::from)? {
            match row.state.as_str() {
                "done" => return Ok(row.result.unwrap_or_default()),
                "failed" => return Err(crate::CliError::Usage(anyhow::anyhow!(row.result.unwrap_or_default()))),
                _ => {}
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(crate::CliError::Failed(format!(
        "the running scheduler did not carry out action {id} within 15 s; it stays queued"
    )))
}

/// A date (`2026-11-01`, midnight UTC) or an RFC 3339 time.
pub fn date(text: &str, flag: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(day) => Ok(day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
        Err(_) => bail!("{flag} {text:?} is not a date (2026-11-01) or an RFC 3339 time (2026-11-01T03:00:00Z)"),
    }
}
