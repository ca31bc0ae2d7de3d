//! `sandflow mounts set|list|remove` and `sandflow secrets set|list|remove`: what an admin lets
//! tasks touch. Each change is audited; a secret's value is read from stdin, sealed with the
//! home's key, and never printed or read back.

use std::io::Read;

use clap::Subcommand;
use sandflow_core::dag::grant_name_problem;
use serde_json::json;

use crate::app::open_store;
use crate::out::outln;
use crate::{table, CliError, Home};

/// The longest secret value: far above any password, token or key file.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub enum MountsCmd {
    /// Declare a host folder tasks may read at /data/NAME (when their DAG says `mounts = [NAME]`).
    Set { name: String, path: std::path::PathBuf },
    /// List the declared mounts.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a mount (DAGs that name it are refused at their next load; tries fail to start).
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Set a secret from stdin (one line, or all of it with --raw): tasks granted it get it as
    /// the environment variable NAME in upper case.
    Set {
        name: String,
        /// Keep the value exactly as read (by default one trailing newline is dropped).
        #[arg(long)]
        raw: bool,
    },
    /// List secrets by name (values are never shown).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCmd {
    /// Delete the artifacts recorded before --older-than ago, except those of each DAG's last
    /// --keep-runs runs, then the blobs no artifact names any more (and are as old).
    Gc {
        /// How old an artifact must be to go (e.g. 30d, 12h).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: std::time::Duration,
        /// The last runs of each DAG whose artifacts are kept, however old.
        #[arg(long, value_name = "N", default_value_t = 5)]
        keep_runs: u32,
    },
}

/// `sandflow artifacts gc`.
pub async fn artifacts(cmd: ArtifactsCmd, home: &Home) -> Result<(), CliError> {
    let ArtifactsCmd::Gc { older_than, keep_runs } = cmd;
    let older = chrono::Duration::from_std(older_than)
        .map_err(|e| CliError::Usage(anyhow::anyhow!("--older-than {older_than:?}: {e}")))?;
    let before = chrono::Utc::now() - older;
    let store = open_store(home).await?;
    let rows = store.delete_artifacts(before, i64::from(keep_runs)).await.map_err(anyhow::Error::from)?;
    let blobs = sandflow_blobs::Blobs::open(&home.grants()?.blobs).map_err(anyhow::Error::from)?;
    let named: std::collections::HashSet<String> =
        store.artifact_hashes().await.map_err(anyhow::Error::from)?.into_iter().collect();
    let (mut deleted, mut freed) = (0u64, 0u64);
    // A blob newer than the cutoff may be a running try's, not reported yet: it stays.
    for blob in blobs.list().await.map_err(anyhow::Error::from)? {
        if !named.contains(&blob.hash) && blob.last_modified < before {
            blobs.delete(&blob.hash).await.map_err(anyhow::Error::from)?;
            deleted += 1;
            freed += blob.size;
        }
    }
    outln!(
        "deleted {rows} artifacts recorded before {} (kept the last {keep_runs} runs of each DAG) and {deleted} \
         blobs no artifact names ({})",
        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        sandflow_sandbox::human_bytes(freed)
    );
    Ok(())
}

fn check_name(name: &str, what: &str) -> Result<(), CliError> {
    match grant_name_problem(name, what) {
        Some(problem) => Err(CliError::Usage(anyhow::anyhow!(problem))),
        None => Ok(()),
    }
}

pub async fn mounts(cmd: MountsCmd, home: &Home) -> Result<(), CliError> {
    let store = open_store(home).await?;
    match cmd {
        MountsCmd::Set { name, path } => {
            check_name(&name, "mount name")?;
            let path = std::fs::canonicalize(&path)
                .map_err(|e| CliError::Usage(anyhow::anyhow!("{}: {e}", path.display())))?;
            if !path.is_dir() {
                return Err(CliError::Usage(anyhow::anyhow!("{} is not a directory", path.display())));
            }
            let path = path.display().to_string();
            let audit = crate::app::local_principal().audit("mount.set", &name, json!({"path": path}));
            store.audited(&audit).set_mount(&name, &path).await.map_err(anyhow::Error::from)?;
            outln!("mount {name}: {path}, read-only at /data/{name} for tasks that name it");
        }
        MountsCmd::List { json: as_json } => {
            let mounts = store.mounts().await.map_err(anyhow::Error::from)?;
            if as_json {
                return Ok(table::json(&json!(mounts))?);
            }
            let rows: Vec<Vec<String>> = mounts
                .iter()
                .map(|m| vec![m.name.clone(), m.path.clone(), m.created_by.clone(), m.updated_at.to_rfc3339()])
                .collect();
            table::print(&["mount", "path", "set by", "updated"], &rows);
        }
        MountsCmd::Remove { name } => {
            let audit = crate::app::local_principal().audit("mount.delete", &name, json!({}));
            if !store.audited(&audit).delete_mount(&name).await.map_err(anyhow::Error::from)? {
                return Err(CliError::Usage(anyhow::anyhow!("no mount {name:?}")));
            }
            outln!("mount {name} removed");
        }
    }
    Ok(())
}

pub async fn secrets(cmd: SecretsCmd, home: &Home) -> Result<(), CliError> {
    let store = open_store(home).await?;
    match cmd {
        SecretsCmd::Set { name, raw } => {
            check_name(&name, "secret name")?;
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_SECRET_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| CliError::Usage(anyhow::anyhow!("reading the value from stdin: {e}")))?;
            if bytes.len() as u64 > MAX_SECRET_BYTES {
                return Err(CliError::Usage(anyhow::anyhow!("a secret is at most {MAX_SECRET_BYTES} bytes")));
            }
            let mut value = String::from_utf8(bytes)
                .map_err(|_| CliError::Usage(anyhow::anyhow!("the value is not UTF-8 text")))?;
            if !raw {
                if value.ends_with('\n') {
                    value.pop();
                }
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            if value.is_empty() {
                return Err(CliError::Usage(anyhow::anyhow!("the value is empty (give it on stdin)")));
            }
            let key = home.secret_key(true)?.expect("made when missing");
            let mut nonce = [0u8; sandflow_core::secrets::NONCE_BYTES];
            getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no random bytes from the OS: {e}"))?;
            let sealed = key.seal(&name, &value, nonce);
            let audit = crate::app::local_principal().audit("secret.set", &name, json!({}));
            store.audited(&audit).set_secret(&name, &sealed).await.map_err(anyhow::Error::from)?;
            outln!("secret {name} set; tasks granted it read ${}", sandflow_core::dag::Grants::secret_env_name(&name));
        }
        SecretsCmd::List { json: as_json } => {
            let secrets = store.secrets().await.map_err(anyhow::Error::from)?;
            if as_json {
                return Ok(table::json(&json!(secrets))?);
            }
            let rows: Vec<Vec<String>> =
                secrets.iter().map(|s| vec![s.name.clone(), s.created_by.clone(), s.updated_at.to_rfc3339()]).collect();
            table::print(&["secret", "set by", "updated"], &rows);
        }
        SecretsCmd::Remove { name } => {
            let audit = crate::app::local_principal().audit("secret.delete", &name, json!({}));
            if !store.audited(&audit).delete_secret(&name).await.map_err(anyhow::Error::from)? {
                return Err(CliError::Usage(anyhow::anyhow!("no secret {name:?}")));
            }
            outln!("secret {name} removed");
        }
    }
    Ok(())
}
