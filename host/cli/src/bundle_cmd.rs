//! `sandflow bundle build|push`: a DAG folder as one archive, and that archive onto a server,
//! as new versions or as an experiment, triggered in the same command if asked.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{encode, wait_for_run, Client};
use crate::out::{errln, outln};
use crate::{table, CliError};

#[derive(Debug, Subcommand)]
pub enum BundleCmd {
    /// Build a .tar.gz of a DAG folder: its top-level *.toml files and every *.wasm under it
    /// (the same bytes for the same folder, whenever and wherever it is built).
    Build {
        /// The DAG folder.
        dir: PathBuf,
        /// The archive to write.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Upload a DAG folder (or a built .tar.gz/.zip) to a server: checked whole, stored all or
    /// nothing; each changed DAG gets a new version, active unless --no-activate or --experiment.
    Push {
        /// A DAG folder, or a bundle built with `bundle build`.
        source: PathBuf,
        /// Upload as this experiment: versions never scheduled and never activated, run by
        /// triggers only (yours and your colleagues', side by side).
        #[arg(long)]
        experiment: Option<String>,
        /// A note for the experiment (and for the runs --trigger starts).
        #[arg(long)]
        note: Option<String>,
        /// Keep each DAG's active version: the new versions are stored, not scheduled.
        #[arg(long, conflicts_with = "experiment")]
        no_activate: bool,
        /// Then trigger a run of each pushed DAG (of its pushed version).
        #[arg(long)]
        trigger: bool,
        /// The triggered runs' configuration, a JSON object (or @FILE).
        #[arg(long, requires = "trigger")]
        conf: Option<String>,
        /// With --trigger: wait for the runs to end; exit 1 if one failed.
        #[arg(long, requires = "trigger")]
        wait: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: BundleCmd, server: Option<&str>) -> Result<(), CliError> {
    match cmd {
        BundleCmd::Build { dir, output } => {
            let bytes = build(&dir)?;
            std::fs::write(&output, &bytes)
                .map_err(|e| CliError::Usage(anyhow::anyhow!("writing {}: {e}", output.display())))?;
            outln!("wrote {} ({} bytes)", output.display(), bytes.len());
            Ok(())
        }
        BundleCmd::Push { source, experiment, note, no_activate, trigger, conf, wait, json } => {
            let server = server.ok_or_else(|| {
                CliError::Usage(anyhow::anyhow!("bundle push needs a server: --server URL or SANDFLOW_SERVER"))
            })?;
            let conf = crate::app::conf(conf.as_deref())?;
            let bytes = if source.is_dir() { build(&source)? } else { read_archive(&source)? };
            let client = Client::new(server)?;
            let mut query = Vec::new();
            if let Some(name) = &experiment {
                query.push(format!("experiment={}", encode(name)));
            }
            if let Some(note) = &note {
                query.push(format!("note={}", encode(note)));
            }
            if no_activate {
                query.push("no_activate=true".to_string());
            }
            let path = if query.is_empty() {
                "/api/v1/bundles".to_string()
            } else {
                format!("/api/v1/bundles?{}", query.join("&"))
            };
            let content_type = if bytes.starts_with(b"PK") { "application/zip" } else { "application/gzip" };
            let report = client.post_bytes(&path, content_type, bytes).await?;
            let mut runs = Vec::new();
            if trigger {
                for dag in report["dags"].as_array().into_iter().flatten() {
                    let dag_id = dag["dag_id"].as_str().unwrap_or_default();
                    let body =
                        json!({"conf": conf, "note": note, "dag_version": dag["version"], "experiment": experiment});
                    let run = client.post(&format!("/api/v1/dags/{}/runs", encode(dag_id)), &body).await?;
                    runs.push(run);
                }
            }
            if json {
                table::json(&json!({"push": report, "runs": runs}))?;
            } else {
                print_report(&report, &runs);
            }
            if !wait {
                return Ok(());
            }
            let mut failed = Vec::new();
            for run in &runs {
                let run_id = run["run_id"].as_str().unwrap_or_default();
                let state = wait_for_run(&client, run_id, |_, _| {}).await?;
                if !json {
                    outln!("{run_id}: {state}");
                }
                if state != "success" {
                    failed.push(run_id.to_string());
                }
            }
            match failed.len() {
                0 => Ok(()),
                _ => Err(CliError::Failed(format!("run(s) failed: {}", failed.join(", ")))),
            }
        }
    }
}

fn build(dir: &Path) -> Result<Vec<u8>, CliError> {
    sandflow_bundle::build(dir, &sandflow_bundle::Limits::default())
        .map_err(|e| CliError::Usage(anyhow::anyhow!("building a bundle of {}: {e}", dir.display())))
}

fn read_archive(path: &Path) -> Result<Vec<u8>, CliError> {
    let limit = sandflow_bundle::Limits::default().max_archive_bytes;
    sandflow_scheduler::read_regular_file(path, limit, "a bundle").map_err(|e| CliError::Usage(anyhow::anyhow!(e)))
}

fn print_report(report: &Value, runs: &[Value]) {
    for dag in report["dags"].as_array().into_iter().flatten() {
        let what = if dag["new_dag"] == true {
            "new DAG"
        } else if dag["new_version"] == true {
            "new version"
        } else {
            "unchanged"
        };
        let placement = match dag["experiment"].as_str() {
            Some(name) => format!(", experiment {name}"),
            None if dag["activated"] == true => ", active".to_string(),
            None if dag["new_version"] == true => ", not activated".to_string(),
            None => String::new(),
        };
        outln!(
            "{} {} ({what}{placement}, {} tasks) from {}",
            dag["dag_id"].as_str().unwrap_or(""),
            dag["version"].as_str().unwrap_or(""),
            dag["tasks"],
            dag["file"].as_str().unwrap_or("")
        );
    }
    for plugin in report["plugins"].as_array().into_iter().flatten() {
        let what = if plugin["new"] == true { "new" } else { "known" };
        outln!(
            "plugin {} {} ({what}, {} bytes)",
            plugin["path"].as_str().unwrap_or(""),
            plugin["plugin_id"].as_str().unwrap_or(""),
            plugin["size"]
        );
    }
    for ignored in report["ignored"].as_array().into_iter().flatten() {
        errln!("ignored {}: {}", ignored["path"].as_str().unwrap_or(""), ignored["reason"].as_str().unwrap_or(""));
    }
    for run in runs {
        let paused = if run["dag_paused"] == true { " (the DAG is paused: it starts once unpaused)" } else { "" };
        outln!(
            "triggered {} run {}{paused}",
            run["dag_id"].as_str().unwrap_or(""),
            run["run_id"].as_str().unwrap_or("")
        );
    }
}
