//! The store's test suite, one binary: every test body is written once and run on SQLite (a real
//! file in a temporary directory) and on PostgreSQL (a fresh database on a real server, from
//! `SANDFLOW_TEST_POSTGRES_URL`). A few tests are about one backend's own ways (an empty SQLite
//! file, a PostgreSQL URL's password) and run on that one.

mod db;

mod basics;
mod claims;
mod concurrency;
mod guarded;
mod opening;
mod overview;
mod ownership;
mod users;
mod versions;

use chrono::{DateTime, TimeZone, Utc};
use sandflow_store::{NewRun, RunType, Store};

pub use db::{fresh_database, Db};

/// Generates, for each named test body `async fn name(db: Db)`, a test `sqlite::name` on a new
/// SQLite file and a test `postgres::name` on a fresh PostgreSQL database.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Db::postgres().await).await
                }
            )*
        }
    };
}

/// A time `secs` after the epoch.
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().expect("a valid time")
}

/// A run of DAG `d` version `v1` starting at `start`, with a one-day interval.
pub fn new_run(run_id: &str, run_type: RunType, start: i64) -> NewRun {
    let at = at(start);
    NewRun {
        run_id: run_id.into(),
        dag_id: "d".into(),
        version: "v1".into(),
        run_type,
        logical_date: at,
        interval: Some((at, at + chrono::Duration::days(1))),
        conf: serde_json::Map::new(),
        note: Some("a note".into()),
        triggered_by: "tester".into(),
        created_at: at,
        experiment: None,
    }
}

/// Records DAG `d` version `v1`.
pub async fn with_dag(store: &Store) {
    store.record_dag_version("d", "v1", &serde_json::json!({}), "dags/d.toml", false).await.unwrap();
}

/// The id the sandbox gives plugin bytes.
pub fn plugin_id_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
