//! One scheduler per store, for now: a file lock on SQLite, an advisory lock on PostgreSQL.

use sandflow_store::{Store, StoreError};

use crate::Db;

crate::on_both!(one_process_at_a_time_owns_scheduling);

async fn one_process_at_a_time_owns_scheduling(db: Db) {
    let guard = db.store.own_scheduling("standalone").await.unwrap();
    // Another store on the same database is refused as another process would be, told who owns it.
    let other = db.open_again().await;
    let err = other.own_scheduling("dags backfill").await.unwrap_err();
    let StoreError::SchedulerRunning { owner: Some(owner), lock } = &err else { panic!("{err:?}") };
    assert_eq!((owner.pid, owner.role.as_str()), (std::process::id(), "standalone"));
    assert_eq!(lock.is_some(), !db.is_postgres(), "a lock file on SQLite only");
    let place = if db.is_postgres() { "database" } else { "home" };
    assert!(
        err.to_string().starts_with(&format!(
            "a scheduler already runs on this {place}: pid {} (standalone, since ",
            std::process::id()
        )),
        "{err}"
    );
    guard.release().await.unwrap();
    let again = other.own_scheduling("dags backfill").await.unwrap();
    let err = db.store.own_scheduling("standalone").await.unwrap_err();
    let StoreError::SchedulerRunning { owner: Some(owner), .. } = &err else { panic!("{err:?}") };
    assert_eq!(owner.role, "dags backfill", "the new owner, not the gone one");
    drop(again);
    // Dropped as a dying process drops it: the lock is freed (on PostgreSQL once the server has
    // seen the connection close, which the loop waits for).
    let mut attempts = 0;
    let taken = loop {
        match db.store.own_scheduling("standalone").await {
            Ok(guard) => break guard,
            Err(StoreError::SchedulerRunning { .. }) if attempts < 200 => attempts += 1,
            Err(other) => panic!("{other:?}"),
        }
    };
    taken.release().await.unwrap();
}

#[tokio::test]
async fn sqlite_a_gone_owners_details_are_wiped_from_the_lock_file() {
    let db = Db::sqlite().await;
    let path = db.url.sqlite_path().unwrap().to_path_buf();
    let lock = sandflow_store::lock_path(&path);
    let guard = db.store.own_scheduling("standalone").await.unwrap();
    assert!(std::fs::read_to_string(&lock).unwrap().contains("\"role\":\"standalone\""));
    drop(guard);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "a gone owner's details are wiped");
}

#[tokio::test]
async fn sqlite_in_memory_stores_need_no_lock() {
    let store = Store::in_memory().await.unwrap();
    let _first = store.own_scheduling("dags test").await.unwrap();
    let _second = store.own_scheduling("dags test").await.unwrap();
}

#[tokio::test]
async fn postgres_a_killed_owners_lock_is_freed_by_the_server() {
    let db = Db::postgres().await;
    let guard = db.store.own_scheduling("standalone").await.unwrap();
    // Kill the owner's session as the server sees a dead process's: its connection ends. The
    // lock is the store's scheduling lock, key 0x53464C57 ("SFLW").
    let crate::db::Kind::Postgres(url) = &db.kind else { unreachable!() };
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(url).await.unwrap();
    let killed: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks
         WHERE locktype = 'advisory' AND objid::bigint = x'53464C57'::bigint AND granted
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed);
    let next = db.open_again().await.own_scheduling("standalone").await.unwrap();
    next.release().await.unwrap();
    drop(guard);
}
