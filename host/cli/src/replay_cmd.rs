//! `sandflow tasks replay`: a recorded try run again from the home's store and artifact store,
//! and compared with what it left (sandflow_scheduler::replay does the running and comparing).

use std::path::PathBuf;

use sandflow_core::text::clean;
use sandflow_scheduler::replay::{self, ReplayPlan};
use sandflow_scheduler::TryRecord;
use serde_json::json;

use crate::app::{find_run, open_store};
use crate::out::{err, outln};
use crate::{CliError, Home};

/// `tasks replay`'s options.
pub struct ReplayArgs {
    pub map_index: i64,
    pub try_number: Option<i64>,
    pub plugin: Option<PathBuf>,
    pub context: Option<PathBuf>,
    pub json: bool,
}

/// What a replay needs, found in the home's store or over the API.
struct Gathered {
    run_id: String,
    instance: String,
    try_number: i64,
    record: TryRecord,
    plugin_bytes: Vec<u8>,
    /// The (name, hash) of the artifacts the try left.
    recorded: Vec<(String, String)>,
    /// Holds the blobs of the record's inputs.
    inputs: sandflow_blobs::Blobs,
    mounts: Vec<(String, PathBuf)>,
    secrets: Vec<(String, String)>,
    /// A folder of downloaded inputs, removed after the replay.
    downloaded: Option<tempfile::TempDir>,
}

/// The try to replay: `--try N` or the latest, checked against the instance's tries.
fn pick_try(instance: &str, run_id: &str, tries: &[i64], asked: Option<i64>) -> Result<i64, CliError> {
    let Some(last) = tries.iter().copied().max() else {
        return Err(CliError::Usage(anyhow::anyhow!("{instance} has no tries in run {run_id}")));
    };
    let try_number = asked.unwrap_or(last);
    if !tries.contains(&try_number) {
        return Err(CliError::Usage(anyhow::anyhow!(
            "{instance} has no try {try_number} in run {run_id} (its tries: 1 to {last})"
        )));
    }
    Ok(try_number)
}

fn instance_of(task_id: &str, map_index: i64) -> String {
    if map_index >= 0 {
        format!("{task_id}[{map_index}]")
    } else {
        task_id.to_string()
    }
}

fn not_recorded(try_number: i64, instance: &str) -> CliError {
    CliError::Usage(anyhow::anyhow!(
        "try {try_number} of {instance} was not recorded (it never started, or ran before tries were recorded)"
    ))
}

/// A stored record, as JSON, read back.
fn parse_record(record: serde_json::Value, try_number: i64) -> Result<TryRecord, CliError> {
    serde_json::from_value(record)
        .map_err(|e| anyhow::anyhow!("the record of try {try_number} is unreadable: {e}").into())
}

fn plugin_file(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(anyhow::anyhow!("{}: {e}", path.display())))
}

/// From the home's store and blob store (with its mounts, and its secrets when the key is here).
async fn gather_local(
    dag_id: &str,
    run: &str,
    task_id: &str,
    args: &ReplayArgs,
    home: &Home,
) -> Result<Gathered, CliError> {
    let store = open_store(home).await?;
    let run_id = find_run(&store, dag_id, run).await.map_err(CliError::Usage)?.run_id;
    let instance = instance_of(task_id, args.map_index);
    let tries: Vec<i64> = store
        .tries(&run_id, task_id, args.map_index)
        .await
        .map_err(anyhow::Error::from)?
        .iter()
        .map(|t| t.try_number)
        .collect();
    let try_number = pick_try(&instance, &run_id, &tries, args.try_number)?;
    let record = store
        .try_record(&run_id, task_id, args.map_index, try_number)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| not_recorded(try_number, &instance))?;
    let record = parse_record(record, try_number)?;
    let plugin_bytes = match &args.plugin {
        Some(path) => plugin_file(path)?,
        None => store.plugin_bytes(&record.plugin_id).await.map_err(anyhow::Error::from)?.ok_or_else(|| {
            anyhow::anyhow!("plugin {} is no longer in the store: give one with --plugin FILE", record.plugin_id)
        })?,
    };
    let grants = home.grants()?;
    let blobs = sandflow_blobs::Blobs::open(&grants.blobs).map_err(anyhow::Error::from)?;
    let mounts = store
        .mounts()
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|m| record.mounts.contains(&m.name))
        .map(|m| (m.name, PathBuf::from(m.path)))
        .collect();
    let mut secrets = Vec::new();
    if let (false, Some(key)) = (record.secrets.is_empty(), &grants.secret_key) {
        for (name, sealed) in store.sealed_secrets(&record.secrets).await.map_err(anyhow::Error::from)? {
            let value = key.open(&name, &sealed).map_err(|e| anyhow::anyhow!("secret {name}: {e}"))?;
            secrets.push((name, value));
        }
    }
    let recorded: Vec<(String, String)> = store
        .artifacts(&run_id, Some(task_id))
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|a| a.map_index == args.map_index && a.try_number == try_number)
        .map(|a| (a.name, a.hash))
        .collect();
    Ok(Gathered {
        run_id,
        instance,
        try_number,
        record,
        plugin_bytes,
        recorded,
        inputs: blobs,
        mounts,
        secrets,
        downloaded: None,
    })
}

/// Over the API: the record, the plugin's bytes and the input artifacts (downloaded into a
/// temporary blob store, each checked against its recorded hash). Mounts and secrets stay on the
/// server: the replay goes without them, and says so.
async fn gather_remote(
    dag_id: &str,
    run: &str,
    task_id: &str,
    args: &ReplayArgs,
    client: &crate::client::Client,
) -> Result<Gathered, CliError> {
    use crate::client::encode;
    let run = crate::remote::find_run(client, dag_id, run).await?;
    let run_id = run["run_id"].as_str().unwrap_or_default().to_string();
    let instance = instance_of(task_id, args.map_index);
    let base = format!("/api/v1/runs/{}/tasks/{}", encode(&run_id), encode(task_id));
    let map = if args.map_index >= 0 { format!("?map_index={}", args.map_index) } else { String::new() };
    let tries = client.get(&format!("{base}/tries{map}")).await?;
    let tries: Vec<i64> =
        tries["items"].as_array().into_iter().flatten().filter_map(|t| t["try_number"].as_i64()).collect();
    let try_number = pick_try(&instance, &run_id, &tries, args.try_number)?;
    let record = match client.get(&format!("{base}/tries/{try_number}/record{map}")).await {
        Ok(record) => record,
        Err(CliError::Usage(e)) if e.to_string().contains("not_found") || e.to_string().contains("not found") => {
            return Err(not_recorded(try_number, &instance))
        }
        Err(e) => return Err(e),
    };
    let record = parse_record(record, try_number)?;
    let plugin_bytes = match &args.plugin {
        Some(path) => plugin_file(path)?,
        None => {
            let response = client.stream(&format!("/api/v1/plugins/{}/bytes", encode(&record.plugin_id))).await?;
            let bytes = response.bytes().await.map_err(|e| CliError::Failed(format!("reading the plugin: {e}")))?;
            let id = sandflow_sandbox::PluginId::of(&bytes);
            if id.as_str() != record.plugin_id {
                return Err(CliError::Failed(format!("the server sent plugin {id} for {}", record.plugin_id)));
            }
            bytes.to_vec()
        }
    };
    let all = client.get(&format!("/api/v1/runs/{}/artifacts", encode(&run_id))).await?;
    let rows: Vec<&serde_json::Value> = all["items"].as_array().into_iter().flatten().collect();
    let recorded = rows
        .iter()
        .filter(|a| a["task_id"] == task_id && a["map_index"] == args.map_index && a["try_number"] == try_number)
        .map(|a| {
            (a["name"].as_str().unwrap_or_default().to_string(), a["hash"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let downloaded = tempfile::tempdir().map_err(|e| CliError::Failed(format!("a temporary folder: {e}")))?;
    let inputs = sandflow_blobs::Blobs::open(&downloaded.path().display().to_string()).map_err(anyhow::Error::from)?;
    for input in &record.inputs {
        let Some(row) = rows.iter().find(|a| {
            a["hash"] == input.hash.as_str()
                && input.path.starts_with(&format!("{}/", a["task_id"].as_str().unwrap_or("")))
        }) else {
            return Err(CliError::Failed(format!(
                "putting the recorded inputs in /in: {} ({}) is no longer an artifact of run {run_id}",
                input.path, input.hash
            )));
        };
        let path = format!(
            "/api/v1/runs/{}/tasks/{}/artifacts/{}?map_index={}&try={}",
            encode(&run_id),
            encode(row["task_id"].as_str().unwrap_or_default()),
            encode(row["name"].as_str().unwrap_or_default()),
            row["map_index"],
            row["try_number"]
        );
        let bytes = client
            .stream(&path)
            .await?
            .bytes()
            .await
            .map_err(|e| CliError::Failed(format!("downloading {}: {e}", input.path)))?;
        let blob = inputs.put_bytes(bytes).await.map_err(anyhow::Error::from)?;
        if blob.hash != input.hash {
            return Err(CliError::Failed(format!(
                "putting the recorded inputs in /in: {} downloaded as {}, recorded as {}",
                input.path, blob.hash, input.hash
            )));
        }
    }
    Ok(Gathered {
        run_id,
        instance,
        try_number,
        record,
        plugin_bytes,
        recorded,
        inputs,
        mounts: Vec::new(),
        secrets: Vec::new(),
        downloaded: Some(downloaded),
    })
}

/// `tasks replay` from the home (`client` None) or over the API.
pub async fn replay(
    dag_id: &str,
    run: &str,
    task_id: &str,
    args: &ReplayArgs,
    home: &Home,
    client: Option<&crate::client::Client>,
) -> Result<(), CliError> {
    let g = match client {
        Some(client) => gather_remote(dag_id, run, task_id, args, client).await?,
        None => gather_local(dag_id, run, task_id, args, home).await?,
    };
    let Gathered { run_id, instance, try_number, record, plugin_bytes, recorded, inputs, mounts, secrets, downloaded } =
        g;
    let context = match &args.context {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| CliError::Usage(anyhow::anyhow!("{}: {e}", path.display())))?;
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .map_err(|e| CliError::Usage(anyhow::anyhow!("{}: not JSON: {e}", path.display())))?;
            Some(bytes)
        }
        None => None,
    };
    let context_changed = context.as_deref().is_some_and(|c| c != record.context.as_bytes());

    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let plugin = sandbox.load(&plugin_bytes).map_err(|e| CliError::Usage(anyhow::anyhow!("{e}")))?;
    let work_dir = home.grants()?.work_dir.join(format!("replay-{}", std::process::id()));
    let plan = ReplayPlan {
        record: &record,
        plugin: &plugin,
        context: context.as_deref(),
        inputs: &inputs,
        mounts,
        secrets,
        work_dir: &work_dir,
    };
    // The record is sound but the replay cannot be set up (an input blob gone): a failure, not a usage error.
    let replayed = replay::replay(&sandbox, plan).await.map_err(CliError::Failed)?;

    drop(downloaded);
    let differences = replay::compare(&record, &recorded, &replayed, context_changed);
    let outcome = replay::outcome_kind(&replayed.report.outcome);
    if args.json {
        crate::table::json(&json!({
            "run_id": run_id,
            "task_id": task_id,
            "map_index": args.map_index,
            "try_number": try_number,
            "identical": differences.is_empty(),
            "differences": differences.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "notes": replayed.notes,
            "outcome": outcome,
            "recorded_outcome": record.outcome,
            "result_sha256": replayed.result_sha256,
            "recorded_result_sha256": record.result_sha256,
            "artifacts": replayed.artifacts.iter()
                .map(|a| json!({"name": a.name, "size": a.size, "hash": a.hash}))
                .collect::<Vec<_>>(),
            "fuel_used": replayed.report.fuel_used,
            "record": record,
        }))?;
    } else {
        err!("{}", clean(&replayed.report.log, true));
        outln!(
            "replayed try {try_number} of {instance} in run {} (plugin {}, seed {}, clock from {} ns)",
            run_id,
            replayed.report.plugin,
            record.determinism.seed,
            record.determinism.clock_start_ns
        );
        let how =
            if replayed.report.outcome.is_success() { String::new() } else { format!(": {}", replayed.report.outcome) };
        outln!("outcome: {outcome}{how} (recorded: {})", record.outcome.as_deref().unwrap_or("not recorded"));
        if let Some(hash) = &replayed.result_sha256 {
            outln!("result: {hash}");
        }
        outln!("artifacts: {} left, {} recorded", replayed.artifacts.len(), recorded.len());
        for note in &replayed.notes {
            outln!("note: {note}");
        }
        if differences.is_empty() {
            outln!("identical: same outcome, result and artifacts");
        } else {
            for d in &differences {
                outln!("difference: {d}");
            }
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!("the replay of try {try_number} differs from it in {} ways", differences.len())))
    }
}
