//! `sandflow db init|migrate|reset`: on the home's SQLite file, or on the database
//! `--database-url` names (PostgreSQL: init and migrate; reset stays SQLite's).

use clap::Subcommand;
use sandflow_scheduler::actions::HEARTBEAT_VALID_FOR;
use sandflow_store::{Durability, SchedulingGuard, Store, StoreError};

use crate::app::open_store;
use crate::out::outln;
use crate::{CliError, Home};

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Create the database (if absent) and bring it to this build's schema (a PostgreSQL
    /// database must exist: this creates Sandflow's tables in it).
    Init,
    /// Bring the database to this build's schema.
    Migrate,
    /// Delete every DAG, run and plugin in the SQLite database and start afresh. Refused while a
    /// scheduler runs on the home.
    Reset {
        /// Confirm: the data is gone for good.
        #[arg(long)]
        yes: bool,
        /// Reset although a scheduler's heartbeat is fresh, when you know that process is dead (a
        /// scheduler still running is refused all the same).
        #[arg(long)]
        force: bool,
    },
}

pub async fn run(cmd: DbCmd, home: &Home) -> Result<(), CliError> {
    match cmd {
        DbCmd::Init | DbCmd::Migrate => {
            let store = open_store(home).await?;
            outln!("database ready at {}", store.describe());
            store.close().await;
        }
        DbCmd::Reset { yes, force } => {
            let Some(path) = home.sqlite_database() else {
                return Err(CliError::Usage(anyhow::anyhow!(
                    "db reset works on a SQLite database only; to start {} afresh, drop and create the \
                     database with PostgreSQL's tools (dropdb, createdb), then run `sandflow db init`",
                    home.database_url()
                )));
            };
            reset(&path, yes, force).await?;
            open_store(home).await?.close().await;
            outln!("database reset at {}", path.display());
        }
    }
    Ok(())
}

/// Deletes the SQLite database at `path` (and its write-ahead log), once it is known to be ours
/// and no scheduler runs on it.
async fn reset(path: &std::path::Path, yes: bool, force: bool) -> Result<(), CliError> {
    if !yes {
        return Err(CliError::Usage(anyhow::anyhow!(
            "this deletes every DAG, run and log in {}: run again with --yes",
            path.display()
        )));
    }
    // Owning the home keeps a scheduler from running on the file being deleted, and one
    // from starting on it halfway through; a live owner is refused, --force or not.
    let lock_for = path.to_path_buf();
    let _scheduling = tokio::task::spawn_blocking(move || SchedulingGuard::acquire(&lock_for, "db reset"))
        .await
        .map_err(anyhow::Error::from)?
        .map_err(anyhow::Error::from)?;
    // Refuse to delete what is not ours (an empty file is nobody's: it may go).
    match Store::open(path, Durability::Normal).await {
        Ok(store) => {
            let fresh = refuse_a_fresh_heartbeat(&store, force).await;
            store.close().await;
            fresh?;
        }
        Err(StoreError::EmptyFile { .. }) => {}
        Err(e) => return Err(anyhow::Error::from(e).into()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::Usage(anyhow::anyhow!("removing {}: {e}", file.display()))),
        }
    }
    Ok(())
}

/// A scheduler that beat its heart a moment ago may still be running (on another machine sharing
/// the home, say, where the lock does not reach): refused unless `force`.
async fn refuse_a_fresh_heartbeat(store: &Store, force: bool) -> Result<(), CliError> {
    let live = store.live_schedulers(HEARTBEAT_VALID_FOR).await.map_err(anyhow::Error::from)?;
    match live.first() {
        Some(latest) if !force => Err(CliError::Usage(anyhow::anyhow!(
            "a scheduler (pid {}, started {}) said it was alive {} ago, though it holds no lock on this home: \
             if that process is gone, run again with --force",
            latest.pid,
            latest.started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            sandflow_sandbox::human_duration((chrono::Utc::now() - latest.heartbeat_at).to_std().unwrap_or_default()),
        ))),
        _ => Ok(()),
    }
}
