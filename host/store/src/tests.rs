//! The store against a real SQLite file.

use chrono::{TimeZone, Utc};

use super::*;

async fn fresh() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sandflow.db"), Durability::Normal).await.unwrap();
    (dir, store)
}

fn new_run(run_id: &str, run_type: RunType, start: i64) -> NewRun {
    let at = Utc.timestamp_opt(start, 0).unwrap();
    NewRun {
        run_id: run_id.into(),
        dag_id: "d".into(),
        version: "v1".into(),
        run_type,
        logical_date: at,
        interval: Some((at, at + chrono::Duration::days(1))),
        conf: "{}".into(),
        note: Some("a note".into()),
        triggered_by: "tester".into(),
        created_at: at,
    }
}

async fn with_dag(store: &Store) {
    store.record_dag_version("d", "v1", "{}", "dags/d.toml", false).await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Store::open(&path, Durability::Normal).await.unwrap_err();
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a Sandflow database (not even SQLite): move it away or choose another --home",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), vec![b'x'; 8192], "the file is left as it was");
}

#[tokio::test]
async fn a_database_from_a_newer_sandflow_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    let store = Store::open(&path, Durability::Normal).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (9999, 'future', 1, x'00', 0)",
    )
    .execute(&store.pool)
    .await
    .unwrap();
    store.close().await;
    let err = Store::open(&path, Durability::Normal).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} was written by a newer Sandflow (schema version 9999; this build knows up to 3): upgrade Sandflow",
            path.display()
        )
    );
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    let store = Store::open(&path, Durability::Full).await.unwrap();
    with_dag(&store).await;
    let id = plugin_id_of(b"bytes");
    store.put_plugin(&id, b"bytes", "p1_command").await.unwrap();
    store.close().await;
    let store = Store::open(&path, Durability::Normal).await.unwrap();
    assert_eq!(store.dags().await.unwrap().len(), 1);
    assert_eq!(store.plugin_bytes(&id).await.unwrap().as_deref(), Some(&b"bytes"[..]));
    assert_eq!(store.plugin_bytes(&plugin_id_of(b"other")).await.unwrap(), None);
}

#[tokio::test]
async fn plugin_bytes_are_checked_against_their_id_on_read() {
    let (_dir, store) = fresh().await;
    let id = plugin_id_of(b"good bytes");
    store.put_plugin(&id, b"good bytes", "p1_command").await.unwrap();
    let listed = store.plugins().await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].id.as_str(), listed[0].size, listed[0].kind.as_str()),
        (1, id.as_str(), 10, "p1_command")
    );
    sqlx::query("UPDATE plugins SET bytes = ? WHERE id = ?")
        .bind(&b"tampered"[..])
        .bind(&id)
        .execute(&store.pool)
        .await
        .unwrap();
    let err = store.plugin_bytes(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::PluginMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("plugin bytes stored as {id} hash to {}: refusing to use them", plugin_id_of(b"tampered"))
    );
}

#[tokio::test]
async fn a_stale_dag_is_fresh_again_when_its_file_loads() {
    let (_dir, store) = fresh().await;
    with_dag(&store).await;
    assert!(!store.dag("d").await.unwrap().unwrap().is_stale());
    assert!(store.mark_stale("d").await.unwrap());
    assert!(!store.mark_stale("d").await.unwrap(), "already stale");
    let row = store.dag("d").await.unwrap().unwrap();
    assert!(row.is_stale() && row.active_version == "v1");
    store.record_dag_version("d", "v1", "{}", "dags/d.toml", false).await.unwrap();
    assert!(!store.dag("d").await.unwrap().unwrap().is_stale());
}

#[tokio::test]
async fn versions_are_recorded_once_and_the_latest_is_active() {
    let (_dir, store) = fresh().await;
    assert!(store.record_dag_version("d", "v1", "{}", "dags/d.toml", true).await.unwrap());
    assert!(!store.record_dag_version("d", "v1", "{}", "dags/d.toml", false).await.unwrap());
    assert!(store.dag("d").await.unwrap().unwrap().is_paused, "paused at creation, and a reload does not unpause");
    assert!(store.record_dag_version("d", "v2", "{\"x\":1}", "dags/d.toml", false).await.unwrap());
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v2");
    let versions: Vec<_> = store.dag_versions("d").await.unwrap().into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(store.dag_spec("d", "v1").await.unwrap().as_deref(), Some("{}"));
}

#[tokio::test]
async fn an_import_error_keeps_the_last_good_version() {
    let (_dir, store) = fresh().await;
    with_dag(&store).await;
    store.record_import_error("dags/d.toml", None, "dags/d.toml:3:1: bad").await.unwrap();
    let errors = store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].dag_id.as_deref(), Some("d"));
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v1");
    store.record_dag_version("d", "v1", "{}", "dags/d.toml", false).await.unwrap();
    assert!(store.import_errors().await.unwrap().is_empty(), "a good load clears the error");
    store.record_import_error("dags/e.toml", Some("d"), "declared twice").await.unwrap();
    assert_eq!(store.import_errors().await.unwrap()[0].dag_id.as_deref(), Some("d"), "the DAG it declares");
    store.clear_import_error("dags/e.toml").await.unwrap();
    assert!(store.import_errors().await.unwrap().is_empty());
}

#[tokio::test]
async fn one_scheduled_run_per_interval() {
    let (_dir, store) = fresh().await;
    with_dag(&store).await;
    let tasks = vec!["a".to_string(), "b".to_string()];
    assert!(store.create_run(&new_run("r1", RunType::Scheduled, 0), &tasks).await.unwrap());
    assert!(!store.create_run(&new_run("r2", RunType::Scheduled, 0), &tasks).await.unwrap());
    assert!(store.create_run(&new_run("r3", RunType::Manual, 0), &tasks).await.unwrap());
    assert_eq!(store.runs(Some("d"), 10).await.unwrap().len(), 2);
    assert_eq!(store.task_instances("r2").await.unwrap().len(), 0, "nothing half-created");
    assert_eq!(store.last_scheduled_interval_end("d").await.unwrap(), Some(Utc.timestamp_opt(86_400, 0).unwrap()));
}

#[tokio::test]
async fn changes_apply_in_one_transaction_and_read_back() {
    let (_dir, store) = fresh().await;
    with_dag(&store).await;
    store.create_run(&new_run("r1", RunType::Manual, 0), &["a".to_string()]).await.unwrap();
    let at = Utc::now();
    store
        .apply(&[
            Change::RunState { run_id: "r1".into(), state: RunState::Running, at },
            Change::TryStarted {
                run_id: "r1".into(),
                task_id: "a".into(),
                map_index: -1,
                try_number: 1,
                plugin_id: "sha256:abc".into(),
                at,
            },
        ])
        .await
        .unwrap();
    let ti = &store.task_instances("r1").await.unwrap()[0];
    assert_eq!((ti.state, ti.try_number), (TaskState::Running, 1));
    assert_eq!(store.active_runs().await.unwrap()[0].state, RunState::Running);

    store
        .apply(&[
            Change::TryEnded(Box::new(TryEnd {
                run_id: "r1".into(),
                task_id: "a".into(),
                map_index: -1,
                try_number: 1,
                outcome: "success".into(),
                message: "success".into(),
                log: "line 1\n".into(),
                fuel_used: 10,
                peak_memory: 65536,
                wall: Duration::from_micros(1500),
                at,
                state: Some(TaskState::Success),
                output: Some("{\"k\":1}".into()),
                metrics: Some("{\"loss\":0.5}".into()),
                next_try_at: None,
            })),
            Change::RunState { run_id: "r1".into(), state: RunState::Success, at },
        ])
        .await
        .unwrap();
    let ti = &store.task_instances("r1").await.unwrap()[0];
    assert_eq!(ti.state, TaskState::Success);
    assert_eq!(ti.output, Some(serde_json::json!({"k": 1})), "JSON comes back as a value");
    let tries = store.tries("r1", "a", -1).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].log.as_deref(), Some("line 1\n"));
    assert_eq!(tries[0].wall_us, Some(1500));
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Success);
    assert!(run.ended_at.is_some() && run.started_at.is_some());
    assert!(store.active_runs().await.unwrap().is_empty());
}

#[tokio::test]
async fn in_memory_stores_are_private() {
    let a = Store::in_memory().await.unwrap();
    let b = Store::in_memory().await.unwrap();
    with_dag(&a).await;
    assert_eq!(a.dags().await.unwrap().len(), 1);
    assert!(b.dags().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_opening_a_new_database_at_once_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    let opens: Vec<_> = (0..16)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { Store::open(&path, Durability::Normal).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn an_empty_database_file_is_refused_not_taken_for_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandflow.db");
    std::fs::write(&path, b"").unwrap();
    let err = Store::open(&path, Durability::Normal).await.unwrap_err();
    assert!(matches!(err, StoreError::EmptyFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} is empty (0 bytes), so it holds no Sandflow history: restore it from a backup, or delete it (`sandflow db reset --yes`) to start with a new database",
            path.display()
        )
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "the file is left as it was");
    assert!(!dir.path().join("sandflow.db-wal").exists(), "nothing was created beside it");

    std::fs::remove_file(&path).unwrap();
    Store::open(&path, Durability::Normal).await.unwrap().close().await;
    assert!(std::fs::metadata(&path).unwrap().len() > 0, "a missing file is a new database, written at once");
    Store::open(&path, Durability::Normal).await.unwrap();
}

fn child_run(run_id: &str) -> Change {
    let mut run = new_run(run_id, RunType::Manual, 100);
    run.interval = None;
    Change::CreateRun { run: Box::new(run), task_ids: vec!["a".into(), "b".into()] }
}

fn success_end(at: chrono::DateTime<Utc>) -> Change {
    Change::TryEnded(Box::new(TryEnd {
        run_id: "r1".into(),
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        outcome: "success".into(),
        message: "success".into(),
        log: String::new(),
        fuel_used: 1,
        peak_memory: 1,
        wall: Duration::from_millis(1),
        at,
        state: Some(TaskState::Success),
        output: Some("{}".into()),
        metrics: Some("{}".into()),
        next_try_at: None,
    }))
}

#[tokio::test]
async fn a_run_created_in_a_batch_commits_with_it_or_not_at_all() {
    let (_dir, store) = fresh().await;
    with_dag(&store).await;
    store.create_run(&new_run("r1", RunType::Manual, 0), &["a".to_string()]).await.unwrap();
    let at = Utc::now();
    let started = Change::TryStarted {
        run_id: "r1".into(),
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        plugin_id: "sha256:abc".into(),
        at,
    };
    store.apply(&[started]).await.unwrap();

    // The try's end, a triggered run, then a change that fails: none of it is committed.
    let err = store.apply(&[success_end(at), child_run("c1"), child_run("c1")]).await.unwrap_err();
    assert!(matches!(&err, StoreError::RunExists { run_id } if run_id == "c1"), "{err:?}");
    assert_eq!(store.task_instances("r1").await.unwrap()[0].state, TaskState::Running);
    assert_eq!(store.tries("r1", "a", -1).await.unwrap()[0].outcome, None);
    assert_eq!(store.run("c1").await.unwrap(), None);
    assert!(store.task_instances("c1").await.unwrap().is_empty());

    store.apply(&[success_end(at), child_run("c1")]).await.unwrap();
    assert_eq!(store.task_instances("r1").await.unwrap()[0].state, TaskState::Success);
    let child = store.run("c1").await.unwrap().unwrap();
    assert_eq!((child.state, child.triggered_by.as_str()), (RunState::Queued, "tester"));
    let states: Vec<_> = store.task_instances("c1").await.unwrap().into_iter().map(|t| (t.task_id, t.state)).collect();
    assert_eq!(states, [("a".to_string(), TaskState::None), ("b".to_string(), TaskState::None)]);
}

#[tokio::test]
async fn one_process_at_a_time_owns_scheduling_on_a_file() {
    let (dir, store) = fresh().await;
    let guard = store.own_scheduling("standalone").await.unwrap();
    let lock = dir.path().join("sandflow.scheduler-lock");
    assert!(lock.exists());
    // A second open of the lock file is refused as another process would be, and told who owns it.
    let other = Store::open(&dir.path().join("sandflow.db"), Durability::Normal).await.unwrap();
    let err = other.own_scheduling("dags backfill").await.unwrap_err();
    let StoreError::SchedulerRunning { owner: Some(owner), .. } = &err else { panic!("{err:?}") };
    assert_eq!((owner.pid, owner.role.as_str()), (std::process::id(), "standalone"));
    assert!(
        err.to_string().starts_with(&format!(
            "a scheduler already runs on this home: pid {} (standalone, since ",
            std::process::id()
        )),
        "{err}"
    );
    drop(guard);
    let again = other.own_scheduling("dags backfill").await.unwrap();
    assert!(std::fs::read_to_string(&lock).unwrap().contains("\"role\":\"dags backfill\""));
    drop(again);
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "", "a gone owner's details are wiped");
}

#[tokio::test]
async fn in_memory_stores_need_no_lock() {
    let store = Store::in_memory().await.unwrap();
    let _first = store.own_scheduling("dags test").await.unwrap();
    let _second = store.own_scheduling("dags test").await.unwrap();
}

#[tokio::test]
async fn live_schedulers_are_those_with_a_fresh_heartbeat() {
    let (_dir, store) = fresh().await;
    let started = Utc::now();
    store.heartbeat("s1", 4242, started).await.unwrap();
    let live = store.live_schedulers(Duration::from_secs(60)).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].id.as_str(), live[0].pid), ("s1", 4242));
    assert!(store.live_scheduler(Duration::from_secs(60)).await.unwrap());
    store.remove_scheduler("s1").await.unwrap();
    assert!(store.live_schedulers(Duration::from_secs(60)).await.unwrap().is_empty());
}
