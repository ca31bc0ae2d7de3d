//! What several commands share: the store in the home, the sandbox, the DAG folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sandflow_core::dag::Caps;
use sandflow_scheduler::{load_file, DagFolder, LoadContext};
use sandflow_store::{Durability, RunRow, Store};

use crate::Home;

/// The store every command uses: the database `--database-url` names, else the home's SQLite file.
pub async fn open_store(home: &Home) -> anyhow::Result<Store> {
    if home.has_database_url() {
        return Ok(Store::connect(&home.database_url()).await?);
    }
    Ok(Store::open(&home.database(), Durability::Normal).await?)
}

/// `--dags DIR`, checked to be a folder.
pub fn dags_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(dir.to_path_buf()),
        Ok(_) => bail!("the DAG folder {} is not a folder (give one with --dags DIR)", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the DAG folder {} does not exist (give one with --dags DIR)", dir.display())
        }
        Err(e) => bail!("the DAG folder {}: {e}", dir.display()),
    }
}

/// A count that must be at least 1 (`--parallelism`): 0 would accept work and never run it.
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (0 would run nothing, ever)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// Loads every DAG file of `dir` into `store` once it has settled; broken files are recorded as
/// import errors and do not stop the others.
pub async fn sync_dags(dir: &Path, store: &Store, home: &Home) -> anyhow::Result<sandflow_scheduler::LoadReport> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let cx = LoadContext::new(store.clone(), sandbox, Caps::default(), false);
    Ok(DagFolder::new(dags_dir(dir)?, cx).load_settled().await?)
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
    if home.has_database() {
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
    sandflow_scheduler::SchedulerError::UnknownDag { dag_id: dag_id.to_string(), known }.into()
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

/// Parses `--conf` (JSON, or `@FILE` to read it from a file) as a JSON object.
pub fn conf(text: Option<&str>) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    match text {
        None => Ok(serde_json::Map::new()),
        Some(text) => json_object_arg(text, "--conf"),
    }
}

/// The most a JSON argument read from a file may hold: far more than any conf or context needs,
/// and a typo'd path to a large file fails at once instead of filling memory.
const MAX_ARG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A flag's value as a JSON object: inline JSON, or `@FILE`. Errors quote only the start of the
/// text and the position, never all of it.
pub fn json_object_arg(text: &str, flag: &str) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let (text, what) = match text.strip_prefix('@') {
        Some(path) => (read_arg_file(Path::new(path), flag)?, format!("{flag} file {path}")),
        None => (text.to_string(), flag.to_string()),
    };
    let start = || format!("{:?}", sandflow_core::text::shorten(text.trim_start(), 40));
    match serde_json::from_str(&text) {
        Err(e) => bail!("{what} is not valid JSON: {e} (it starts {})", start()),
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => bail!(
            "{what} must be a JSON object ({{\"key\": value, ...}}), not {} (it starts {})",
            sandflow_core::text::json_kind(&other),
            start()
        ),
    }
}

/// Reads the file an `@FILE` argument names: a regular file of at most [`MAX_ARG_FILE_BYTES`].
fn read_arg_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).with_context(|| format!("{flag} @{}", path.display()))?;
    if !meta.is_file() {
        bail!("{flag} @{}: not a regular file", path.display());
    }
    if meta.len() > MAX_ARG_FILE_BYTES {
        bail!("{flag} @{}: {} bytes; the limit is {MAX_ARG_FILE_BYTES}", path.display(), meta.len());
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ARG_FILE_BYTES).read_to_string(&mut text))
        .with_context(|| format!("{flag} @{}", path.display()))?;
    Ok(text)
}

/// Who is running this command, for `triggered_by`.
/// The command line on this machine as the store's admin, named after the OS user (for the
/// audit log and the runs it starts).
pub fn local_principal() -> sandflow_service::auth::Principal {
    sandflow_service::auth::Principal::local(&user())
}

pub fn user() -> String {
    std::env::var("SANDFLOW_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "cli".to_string())
}

/// The use cases over `store`, as this command carries them out.
pub fn service(store: Store, home: &Home) -> anyhow::Result<sandflow_service::Service> {
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    Ok(sandflow_service::Service::new(store, sandbox, sandflow_service::ServiceConfig::default()))
}

/// Hands an action to the scheduler that owns the home (it alone can kill the tries it runs) and
/// waits for its result; whenever none owns it, carries it out in this process with the same code
/// (the service's: the API does the same).
pub async fn perform(
    store: &Store,
    home: &Home,
    action: &sandflow_scheduler::actions::Action,
) -> Result<String, crate::CliError> {
    let service = service(store.clone(), home)?;
    match service.perform(action, &local_principal()).await {
        Ok(done) => Ok(done.result),
        Err(sandflow_service::ServiceError::Timeout(message)) => Err(crate::CliError::Failed(message)),
        Err(e) => Err(crate::runs_cmd::service_error(e)),
    }
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
