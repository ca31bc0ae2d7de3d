//! Reads for overviews: each DAG's newest runs, the end of its latest scheduled interval, the
//! states of many runs' instances counted by task (a mapped task is one cell), plugin pins, and
//! when each try was queued.

use chrono::Utc;
use sandflow_core::state::TaskState;
use sandflow_store::{Change, NewVersion, Placement, QueuedJob, RunType, VersionOrigin};
use serde_json::json;

use crate::{at, new_run, with_dag, Db};

crate::on_both!(
    each_dag_gets_its_own_newest_runs,
    the_latest_scheduled_interval_end_of_every_dag,
    instances_are_counted_by_run_task_and_state,
    every_plugin_pin_is_listed,
    a_claimed_try_knows_when_it_was_queued,
);

async fn each_dag_gets_its_own_newest_runs(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.record_dag_version("e", "v1", &json!({}), "dags/e.toml", false).await.unwrap();
    store.record_dag_version("quiet", "v1", &json!({}), "dags/quiet.toml", false).await.unwrap();
    for i in 0..12 {
        store.create_run(&new_run(&format!("d{i:02}"), RunType::Backfill, i * 86_400), &[]).await.unwrap();
    }
    for i in 0..3 {
        let mut run = new_run(&format!("e{i}"), RunType::Manual, 100 + i);
        run.dag_id = "e".into();
        run.interval = None;
        store.create_run(&run, &[]).await.unwrap();
    }
    let runs: Vec<(String, String)> =
        store.recent_runs(10).await.unwrap().into_iter().map(|r| (r.dag_id, r.run_id)).collect();
    let mut expected: Vec<(String, String)> = (2..12).rev().map(|i| ("d".into(), format!("d{i:02}"))).collect();
    expected.extend((0..3).rev().map(|i| ("e".into(), format!("e{i}"))));
    assert_eq!(runs, expected);
    assert!(store.recent_runs(0).await.unwrap().is_empty());
    // Of some DAGs only: a page of the DAG list.
    let of = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let runs: Vec<(String, String)> = store
        .recent_runs_of(2, &of(&["e", "quiet", "nope"]))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.dag_id, r.run_id))
        .collect();
    assert_eq!(runs, [("e".to_string(), "e2".to_string()), ("e".to_string(), "e1".to_string())]);
    assert!(store.recent_runs_of(10, &[]).await.unwrap().is_empty());
}

async fn the_latest_scheduled_interval_end_of_every_dag(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.record_dag_version("e", "v1", &json!({}), "dags/e.toml", false).await.unwrap();
    for (id, start) in [("s1", 0), ("s2", 86_400)] {
        store.create_run(&new_run(id, RunType::Scheduled, start), &[]).await.unwrap();
    }
    // A backfill run later than every scheduled one does not move the schedule.
    store.create_run(&new_run("b", RunType::Backfill, 10 * 86_400), &[]).await.unwrap();
    assert_eq!(store.last_scheduled_interval_ends().await.unwrap(), vec![("d".to_string(), at(2 * 86_400))]);
}

async fn instances_are_counted_by_run_task_and_state(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    for id in ["r1", "r2"] {
        let mut run = new_run(id, RunType::Manual, if id == "r1" { 0 } else { 10 });
        run.interval = None;
        store.create_run(&run, &["a".into(), "m".into()]).await.unwrap();
    }
    let items = (0..5).map(|i| json!(i)).collect();
    store.apply(&[Change::Expand { run_id: "r1".into(), task_id: "m".into(), items, at: Utc::now() }]).await.unwrap();
    let queue = |map_index| Change::TaskState {
        run_id: "r1".into(),
        task_id: "m".into(),
        map_index,
        from: TaskState::Scheduled,
        to: TaskState::Queued,
        reason: None,
        output: None,
        at: Utc::now(),
    };
    store.apply(&[queue(0), queue(3)]).await.unwrap();
    let mut counts: Vec<(String, String, bool, TaskState, i64)> = store
        .state_counts(&["r1".into(), "r2".into(), "unknown".into()])
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.run_id, c.task_id, c.mapped, c.state, c.instances))
        .collect();
    counts.sort_by(|x, y| (&x.0, &x.1, x.2, x.3.as_str()).cmp(&(&y.0, &y.1, y.2, y.3.as_str())));
    let row = |run: &str, task: &str, mapped, state, n| (run.to_string(), task.to_string(), mapped, state, n);
    assert_eq!(
        counts,
        vec![
            row("r1", "a", false, TaskState::None, 1),
            // The mapped task's own row, then its instances by state.
            row("r1", "m", false, TaskState::None, 1),
            row("r1", "m", true, TaskState::Queued, 2),
            row("r1", "m", true, TaskState::Scheduled, 3),
            row("r2", "a", false, TaskState::None, 1),
            row("r2", "m", false, TaskState::None, 1),
        ]
    );
    assert!(store.state_counts(&[]).await.unwrap().is_empty());
}

async fn every_plugin_pin_is_listed(db: Db) {
    let store = &db.store;
    let spec = json!({"file": "d.toml"});
    for (version, plugins) in
        [("v1", vec!["sha256:aa".to_string(), "sha256:bb".into()]), ("v2", vec!["sha256:bb".into()])]
    {
        store
            .record_version(&NewVersion {
                dag_id: "d",
                version,
                spec: &spec,
                file_path: "bundle:d.toml",
                plugin_ids: &plugins,
                paused_if_new: false,
                origin: VersionOrigin::Bundle,
                uploaded_by: None,
                placement: Placement::Activate,
            })
            .await
            .unwrap();
    }
    let uses: Vec<(String, String)> =
        store.plugin_uses().await.unwrap().into_iter().map(|u| (u.plugin_id, u.version)).collect();
    let pin = |p: &str, v: &str| (p.to_string(), v.to_string());
    assert_eq!(uses, vec![pin("sha256:aa", "v1"), pin("sha256:bb", "v1"), pin("sha256:bb", "v2")]);
}

async fn a_claimed_try_knows_when_it_was_queued(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    let mut run = new_run("r1", RunType::Manual, 0);
    run.interval = None;
    store.create_run(&run, &["a".into()]).await.unwrap();
    let queued_at = at(1_000_000);
    store
        .apply(&[
            Change::TaskState {
                run_id: "r1".into(),
                task_id: "a".into(),
                map_index: -1,
                from: TaskState::None,
                to: TaskState::Scheduled,
                reason: None,
                output: None,
                at: queued_at,
            },
            Change::Queued {
                run_id: "r1".into(),
                task_id: "a".into(),
                map_index: -1,
                from: TaskState::Scheduled,
                job: Box::new(QueuedJob {
                    plugin_id: "sha256:abc".into(),
                    pool: "default_pool".into(),
                    pool_slots: 1,
                    priority: 1,
                    max_active_tasks: 16,
                    job: json!({}),
                }),
                at: queued_at,
            },
            Change::TryStarted {
                run_id: "r1".into(),
                task_id: "a".into(),
                map_index: -1,
                from: TaskState::Queued,
                try_number: 1,
                plugin_id: "sha256:abc".into(),
                at: queued_at + chrono::Duration::seconds(2),
            },
        ])
        .await
        .unwrap();
    let tries = store.tries("r1", "a", -1).await.unwrap();
    assert_eq!((tries[0].queued_at, tries[0].started_at), (Some(queued_at), queued_at + chrono::Duration::seconds(2)));
    assert_eq!(store.run_tries("r1").await.unwrap()[0].queued_at, Some(queued_at));
}
