//! `sandflow runs compare A B...`: runs of one DAG side by side, task by task.

use clap::Subcommand;

use crate::client::{encode, Client};
use crate::{table, CliError, Home};

#[derive(Debug, Subcommand)]
pub enum RunsCmd {
    /// Compare runs of one DAG: per task, state, duration, fuel, peak memory, metrics, and
    /// whether the outputs differ (e.g. two experiments' runs).
    Compare {
        /// Two to twenty run ids of one DAG.
        #[arg(num_args = 2.., required = true)]
        runs: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: RunsCmd, home: &Home, server: Option<&str>) -> Result<(), CliError> {
    let RunsCmd::Compare { runs, json } = cmd;
    let comparison = match server {
        Some(url) => {
            let client = Client::new(url)?;
            let first = client.get(&format!("/api/v1/runs/{}", encode(&runs[0]))).await?;
            let dag_id = first["dag_id"].as_str().unwrap_or_default().to_string();
            let list: Vec<String> = runs.iter().map(|r| encode(r)).collect();
            client.get(&format!("/api/v1/dags/{}/compare?runs={}", encode(&dag_id), list.join(","))).await?
        }
        None => {
            let store = crate::app::open_store(home).await?;
            let service = crate::app::service(store.clone(), home)?;
            let first = service.run_row(&runs[0]).await.map_err(service_error)?;
            let comparison = service.compare(&first.dag_id, &runs).await.map_err(service_error)?;
            serde_json::to_value(comparison).map_err(anyhow::Error::from)?
        }
    };
    if json {
        return Ok(table::json(&comparison)?);
    }
    crate::remote::print_comparison(&comparison);
    Ok(())
}

/// A use case's refusal as the CLI's: the caller's mistake is exit 2, the rest exit 1.
pub fn service_error(e: sandflow_service::ServiceError) -> CliError {
    if e.is_callers() {
        CliError::Usage(e.into())
    } else {
        CliError::Failed(e.to_string())
    }
}
