//! The databases the tests run on: a real SQLite file in a temporary directory, or a fresh
//! PostgreSQL database on a real server.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use sandflow_store::{DatabaseUrl, Durability, Store};
use sqlx::{Connection, Executor};

/// Where the admin URL of the PostgreSQL server for tests is read from.
const POSTGRES_URL_VAR: &str = "SANDFLOW_TEST_POSTGRES_URL";

/// The URL of a new, empty PostgreSQL database on the server `SANDFLOW_TEST_POSTGRES_URL` names
/// (an admin URL, such as postgres://postgres@127.0.0.1:55432/postgres). One small function so
/// that the test harness crate's `fresh_database` can replace it.
pub async fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let admin = std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!("{POSTGRES_URL_VAR} is not set: the store's PostgreSQL tests need a server, named by an admin URL such as postgres://postgres@127.0.0.1:5432/postgres")
    });
    let name = format!(
        "sandflow_store_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        chrono::Utc::now().timestamp_micros()
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connecting to the test server");
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("creating a test database");
    conn.close().await.expect("closing the admin connection");
    with_database(&admin, &name)
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, ""), |(b, q)| (b, q));
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_at..].find('/') {
        Some(slash) => &base[..authority_at + slash],
        None => base,
    };
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// One test's database and the store open on it.
pub struct Db {
    pub store: Store,
    pub url: DatabaseUrl,
    pub kind: Kind,
    /// Keeps a SQLite database's directory for the test's length.
    _dir: Option<tempfile::TempDir>,
}

pub enum Kind {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Db {
    /// A new SQLite file in a new temporary directory.
    pub async fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("sandflow.db");
        let store = Store::open(&path, Durability::Normal).await.expect("opening a new SQLite store");
        Db { store, url: DatabaseUrl::sqlite(&path), kind: Kind::Sqlite(path), _dir: Some(dir) }
    }

    /// A fresh PostgreSQL database.
    pub async fn postgres() -> Db {
        let text = fresh_database().await;
        let url = DatabaseUrl::parse(&text).expect("the test server's URL");
        let store = Store::connect(&url).await.expect("connecting to a fresh PostgreSQL database");
        Db { store, url, kind: Kind::Postgres(text), _dir: None }
    }

    /// The SQLite file `url` names in `dir`, with a store already open on it.
    pub fn sqlite_at(dir: tempfile::TempDir, url: DatabaseUrl, store: Store) -> Db {
        let path = url.sqlite_path().expect("a SQLite URL").to_path_buf();
        Db { store, url, kind: Kind::Sqlite(path), _dir: Some(dir) }
    }

    /// The PostgreSQL database `text` names, with a store already open on it.
    pub fn postgres_at(text: String, url: DatabaseUrl, store: Store) -> Db {
        Db { store, url, kind: Kind::Postgres(text), _dir: None }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.kind, Kind::Postgres(_))
    }

    /// Another store on the same database, as another process would open it.
    pub async fn open_again(&self) -> Store {
        Store::connect(&self.url).await.expect("opening the database again")
    }

    /// Runs raw SQL on the database, beside the store (to tamper with it as a user or a bug would):
    /// `sqlite` on SQLite, `postgres` on PostgreSQL, with `binds` as text parameters.
    pub async fn execute(&self, sqlite: &str, postgres: &str, binds: &[&[u8]]) {
        match &self.kind {
            Kind::Sqlite(path) => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                let mut query = sqlx::query(sqlite);
                for bind in binds {
                    query = query.bind(bind.to_vec());
                }
                query.execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let mut query = sqlx::query(postgres);
                for bind in binds {
                    query = query.bind(bind.to_vec());
                }
                query.execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// A count read with raw SQL (the same statement on both).
    pub async fn count(&self, sql: &str) -> i64 {
        match &self.kind {
            Kind::Sqlite(path) => {
                let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
            Kind::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
            }
        }
    }
}

#[test]
fn a_database_url_names_another_database() {
    assert_eq!(with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
    assert_eq!(with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
    assert_eq!(with_database("postgres://u@h/postgres?sslmode=disable", "t1"), "postgres://u@h/t1?sslmode=disable");
}
