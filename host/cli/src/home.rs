//! `$SANDFLOW_HOME`: where this machine keeps the embedded database (DAGs, runs, plugin bytes) and
//! compiled code; and, when `--database-url` names one, the database used instead of the home's.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sandflow_store::DatabaseUrl;

/// The home directory and the paths inside it, and the database in use.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
    /// `--database-url` / `SANDFLOW_DATABASE_URL`: used instead of the home's SQLite file.
    database_url: Option<DatabaseUrl>,
}

impl Home {
    /// `explicit` (from `--home` or `SANDFLOW_HOME`), else `~/.sandflow`; created if absent.
    pub fn resolve(explicit: Option<PathBuf>, database_url: Option<DatabaseUrl>) -> Result<Home> {
        let root = match explicit {
            Some(root) => root,
            None => {
                let user_home = std::env::var_os("HOME")
                    .context("neither --home, SANDFLOW_HOME nor HOME is set: say where Sandflow's home is")?;
                PathBuf::from(user_home).join(".sandflow")
            }
        };
        std::fs::create_dir_all(&root).with_context(|| format!("creating Sandflow's home {}", root.display()))?;
        Ok(Home { root, database_url })
    }

    /// The home itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The database every command uses: the one `--database-url` names, else the home's SQLite file.
    pub fn database_url(&self) -> DatabaseUrl {
        self.database_url.clone().unwrap_or_else(|| DatabaseUrl::sqlite(&self.database()))
    }

    /// Whether `--database-url` names the database (else it is the home's file).
    pub fn has_database_url(&self) -> bool {
        self.database_url.is_some()
    }

    /// The SQLite file in use, if the database is one (the home's, or the one the URL names).
    pub fn sqlite_database(&self) -> Option<PathBuf> {
        match &self.database_url {
            Some(url) => url.sqlite_path().map(Path::to_path_buf),
            None => Some(self.database()),
        }
    }

    /// Whether there is a database to read already: a URL is taken to name one; the home's file
    /// must exist.
    pub fn has_database(&self) -> bool {
        self.sqlite_database().is_none_or(|path| path.exists())
    }

    /// The home's embedded database.
    pub fn database(&self) -> PathBuf {
        self.root.join("sandflow.db")
    }

    /// The first admin's token, written (mode 0600) by the first start of a server on this
    /// home's store; a CLI with this home sends it to `--server` when SANDFLOW_TOKEN is not set.
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }

    /// Compiled code, by engine fingerprint and plugin id.
    pub fn code_cache(&self) -> PathBuf {
        self.root.join("cache").join("code")
    }

    /// The key secrets are sealed with: `SANDFLOW_SECRET_KEY` (64 hex digits) when set, else the
    /// home's `secret.key` (mode 0600), made when `create` and it is missing. A key file others
    /// may read is refused: whoever reads it reads every secret.
    pub fn secret_key(&self, create: bool) -> Result<Option<sandflow_core::secrets::SecretKey>> {
        use sandflow_core::secrets::SecretKey;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        if let Ok(text) = std::env::var("SANDFLOW_SECRET_KEY") {
            return Ok(Some(SecretKey::from_hex(&text).context("SANDFLOW_SECRET_KEY")?));
        }
        let path = self.root.join("secret.key");
        match std::fs::metadata(&path) {
            Ok(meta) => {
                if meta.permissions().mode() & 0o077 != 0 {
                    anyhow::bail!(
                        "{} may be read by others (mode {:o}): chmod 600 it",
                        path.display(),
                        meta.permissions().mode() & 0o777
                    );
                }
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                Ok(Some(SecretKey::from_hex(&text).with_context(|| path.display().to_string())?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let mut bytes = [0u8; sandflow_core::secrets::KEY_BYTES];
                getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no random bytes from the OS: {e}"))?;
                let key = SecretKey::from_bytes(bytes);
                std::fs::create_dir_all(&self.root)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                std::io::Write::write_all(&mut file, format!("{}\n", key.to_hex()).as_bytes())?;
                Ok(Some(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The grant settings of this home: tries in `work/`, artifacts in `artifacts/` (or
    /// `SANDFLOW_ARTIFACTS`, e.g. `s3://bucket/prefix`), secrets sealed with [`Home::secret_key`].
    pub fn grants(&self) -> Result<sandflow_scheduler::GrantConfig> {
        let mut grants = sandflow_scheduler::GrantConfig::in_home(&self.root);
        if let Ok(location) = std::env::var("SANDFLOW_ARTIFACTS") {
            grants.blobs = location;
        }
        grants.secret_key = self.secret_key(false)?;
        Ok(grants)
    }
}
