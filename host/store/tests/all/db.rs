//! The databases the tests run on: a real SQLite file in a temporary directory, or a fresh
//! PostgreSQL database on a real server.

use std::path::PathBuf;

use sandflow_store::{DatabaseUrl, Durability, Store};
use sqlx::Connection;

/// The URL of a new, empty PostgreSQL database: on the server `SANDFLOW_TEST_POSTGRES_URL`
/// names (scripts/test.sh starts one), or on a private cluster the harness starts itself.
pub async fn fresh_database() -> String {
    sandflow_test_postgres::fresh_database().await
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
    assert_eq!(sandflow_test_postgres::with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
    assert_eq!(sandflow_test_postgres::with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
    assert_eq!(
        sandflow_test_postgres::with_database("postgres://u@h/postgres?sslmode=disable", "t1"),
        "postgres://u@h/t1?sslmode=disable"
    );
}
