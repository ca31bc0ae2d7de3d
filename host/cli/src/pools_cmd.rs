//! `sandflow pools set|list|delete`.

use clap::Subcommand;
use serde_json::json;

use crate::app::open_store;
use crate::out::outln;
use crate::{table, CliError, Home};

#[derive(Debug, Subcommand)]
pub enum PoolsCmd {
    /// Create a pool, or change its number of slots.
    Set {
        name: String,
        slots: i64,
        /// What the pool guards (a database, an API quota...).
        #[arg(long)]
        description: Option<String>,
    },
    /// List pools with their slots.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a pool (tasks that name it then fail with a clear reason).
    Delete { name: String },
}

const NAME_RULE: &str = "letters, digits, \"_\", \".\" and \"-\"";

pub async fn run(cmd: PoolsCmd, home: &Home) -> Result<(), CliError> {
    let store = open_store(home).await?;
    match cmd {
        PoolsCmd::Set { name, slots, description } => {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                return Err(CliError::Usage(anyhow::anyhow!("pool name `{name}`: use only {NAME_RULE}")));
            }
            if !(0..=1_000_000).contains(&slots) {
                return Err(CliError::Usage(anyhow::anyhow!("slots must be between 0 and 1000000, not {slots}")));
            }
            let audit = crate::app::local_principal().audit(
                "pool.set",
                &name,
                json!({"slots": slots, "description": description}),
            );
            store.audited(&audit).set_pool(&name, slots, description.as_deref()).await.map_err(anyhow::Error::from)?;
            outln!("pool {name}: {slots} slots");
        }
        PoolsCmd::List { json: as_json } => {
            let pools = store.pools().await.map_err(anyhow::Error::from)?;
            if as_json {
                return Ok(table::json(&json!(pools))?);
            }
            let rows: Vec<Vec<String>> = pools
                .iter()
                .map(|p| vec![p.name.clone(), p.slots.to_string(), p.description.clone().unwrap_or_default()])
                .collect();
            table::print(&["pool", "slots", "description"], &rows);
        }
        PoolsCmd::Delete { name } => {
            if name == "default_pool" {
                return Err(CliError::Usage(anyhow::anyhow!(
                    "default_pool cannot be deleted (resize it with: sandflow pools set default_pool N)"
                )));
            }
            let audit = crate::app::local_principal().audit("pool.delete", &name, json!({}));
            if !store.audited(&audit).delete_pool(&name).await.map_err(anyhow::Error::from)? {
                let known: Vec<String> =
                    store.pools().await.map_err(anyhow::Error::from)?.into_iter().map(|p| p.name).collect();
                return Err(CliError::Usage(anyhow::anyhow!("no pool `{name}` (pools: {})", known.join(", "))));
            }
            outln!("pool {name} deleted");
        }
    }
    Ok(())
}
