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

pub async fn replay(dag_id: &str, run: &str, task_id: &str, args: &ReplayArgs, home: &Home) -> Result<(), CliError> {
    let store = open_store(home).await?;
    let run = find_run(&store, dag_id, run).await.map_err(CliError::Usage)?;
    let tries = store.tries(&run.run_id, task_id, args.map_index).await.map_err(anyhow::Error::from)?;
    let instance = if args.map_index >= 0 { format!("{task_id}[{}]", args.map_index) } else { task_id.to_string() };
    let Some(last) = tries.iter().map(|t| t.try_number).max() else {
        return Err(CliError::Usage(anyhow::anyhow!("{instance} has no tries in run {}", run.run_id)));
    };
    let try_number = args.try_number.unwrap_or(last);
    if !tries.iter().any(|t| t.try_number == try_number) {
        return Err(CliError::Usage(anyhow::anyhow!(
            "{instance} has no try {try_number} in run {} (its tries: 1 to {last})",
            run.run_id
        )));
    }
    let record = store
        .try_record(&run.run_id, task_id, args.map_index, try_number)
        .await
        .map_err(anyhow::Error::from)?
        .ok_or_else(|| {
            CliError::Usage(anyhow::anyhow!(
                "try {try_number} of {instance} was not recorded (it never started, or ran before tries were recorded)"
            ))
        })?;
    let record: TryRecord = serde_json::from_value(record)
        .map_err(|e| anyhow::anyhow!("the record of try {try_number} is unreadable: {e}"))?;

    let plugin_bytes = match &args.plugin {
        Some(path) => std::fs::read(path).map_err(|e| CliError::Usage(anyhow::anyhow!("{}: {e}", path.display())))?,
        None => store.plugin_bytes(&record.plugin_id).await.map_err(anyhow::Error::from)?.ok_or_else(|| {
            anyhow::anyhow!("plugin {} is no longer in the store: give one with --plugin FILE", record.plugin_id)
        })?,
    };
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
    let sandbox = crate::plugin_cmd::sandbox(home)?;
    let plugin = sandbox.load(&plugin_bytes).map_err(|e| CliError::Usage(anyhow::anyhow!("{e}")))?;
    let work_dir = grants.work_dir.join(format!("replay-{}", std::process::id()));
    let plan = ReplayPlan {
        record: &record,
        plugin: &plugin,
        context: context.as_deref(),
        inputs: &blobs,
        mounts,
        secrets,
        work_dir: &work_dir,
    };
    // The record is sound but the replay cannot be set up (an input blob gone): a failure, not a usage error.
    let replayed = replay::replay(&sandbox, plan).await.map_err(CliError::Failed)?;

    let recorded: Vec<(String, String)> = store
        .artifacts(&run.run_id, Some(task_id))
        .await
        .map_err(anyhow::Error::from)?
        .into_iter()
        .filter(|a| a.map_index == args.map_index && a.try_number == try_number)
        .map(|a| (a.name, a.hash))
        .collect();
    let differences = replay::compare(&record, &recorded, &replayed, context_changed);
    let outcome = replay::outcome_kind(&replayed.report.outcome);
    if args.json {
        crate::table::json(&json!({
            "run_id": run.run_id,
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
            run.run_id,
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
