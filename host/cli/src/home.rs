//! `$SANDFLOW_HOME`: where this machine keeps the embedded database (DAGs, runs, plugin bytes) and
//! compiled code.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The home directory and the paths inside it.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `explicit` (from `--home` or `SANDFLOW_HOME`), else `~/.sandflow`; created if absent.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Home> {
        let root = match explicit {
            Some(root) => root,
            None => {
                let user_home = std::env::var_os("HOME")
                    .context("neither --home, SANDFLOW_HOME nor HOME is set: say where Sandflow's home is")?;
                PathBuf::from(user_home).join(".sandflow")
            }
        };
        std::fs::create_dir_all(&root).with_context(|| format!("creating Sandflow's home {}", root.display()))?;
        Ok(Home { root })
    }

    /// The home itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The embedded database.
    pub fn database(&self) -> PathBuf {
        self.root.join("sandflow.db")
    }

    /// Compiled code, by engine fingerprint and plugin id.
    pub fn code_cache(&self) -> PathBuf {
        self.root.join("cache").join("code")
    }
}
