//! `sandflow db init|migrate|reset`.

use clap::Subcommand;

use crate::app::open_store;
use crate::out::outln;
use crate::{CliError, Home};

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Create the database (if absent) and bring it to this build's schema.
    Init,
    /// Bring the database to this build's schema.
    Migrate,
    /// Delete every DAG, run and plugin in the database and start afresh.
    Reset {
        /// Confirm: the data is gone for good.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(cmd: DbCmd, home: &Home) -> Result<(), CliError> {
    let path = home.database();
    match cmd {
        DbCmd::Init | DbCmd::Migrate => {
            open_store(home).await?.close().await;
            outln!("database ready at {}", path.display());
        }
        DbCmd::Reset { yes } => {
            if !yes {
                return Err(CliError::Usage(anyhow::anyhow!(
                    "this deletes every DAG, run and log in {}: run again with --yes",
                    path.display()
                )));
            }
            // Refuse to delete what is not ours.
            open_store(home).await?.close().await;
            for suffix in ["", "-wal", "-shm"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(CliError::Usage(anyhow::anyhow!("removing {}: {e}", file.display()))),
                }
            }
            open_store(home).await?.close().await;
            outln!("database reset at {}", path.display());
        }
    }
    Ok(())
}
