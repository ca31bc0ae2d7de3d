//! Opening a store: a SQLite file, a private in-memory SQLite database, or any database by URL.
//! Every open migrates the database to this build's schema first (see each backend for how two
//! processes opening a fresh database at once end with one migration).

use std::path::Path;

use crate::url::Kind;
use crate::{postgres, sqlite, DatabaseUrl, Result, Store};

/// How hard a SQLite commit tries to survive a power cut (PostgreSQL follows its server's
/// settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous = NORMAL` in WAL mode: safe against a killed process (the default).
    #[default]
    Normal,
    /// `synchronous = FULL`: also safe against a power cut, at several times the cost per commit.
    Full,
}

impl Store {
    /// Opens (creating if absent) the SQLite database at `path`, migrating it to this build's
    /// schema.
    pub async fn open(path: &Path, durability: Durability) -> Result<Store> {
        Ok(Store::new(sqlite::Sqlite::open(path, durability).await?))
    }

    /// A private in-memory SQLite database (for `dags test` and tests): same schema, nothing on
    /// disk.
    pub async fn in_memory() -> Result<Store> {
        Ok(Store::new(sqlite::Sqlite::in_memory().await?))
    }

    /// Connects to the database `url` names (PostgreSQL, or a SQLite file with
    /// [`Durability::Normal`]), migrating it to this build's schema.
    pub async fn connect(url: &DatabaseUrl) -> Result<Store> {
        match url.kind() {
            Kind::Sqlite(path) => Store::open(path, Durability::Normal).await,
            Kind::Postgres => Ok(Store::new(postgres::Postgres::connect(url).await?)),
        }
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}
