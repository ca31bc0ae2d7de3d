//! What the store keeps and gives back: plugins, DAGs, runs, JSON as values, pools, actions,
//! heartbeats.

use std::time::Duration;

use chrono::Utc;
use sandflow_core::state::{RunState, TaskState};
use sandflow_store::{ActionState, Change, PauseChange, PluginKind, RunType, StoreError, TryEnd};
use serde_json::json;

use crate::{at, new_run, plugin_id_of, with_dag, Db};

crate::on_both!(
    plugin_bytes_are_checked_against_their_id_on_read,
    a_stale_dag_is_fresh_again_when_its_file_loads,
    versions_are_recorded_once_and_the_latest_is_active,
    an_import_error_keeps_the_last_good_version,
    one_scheduled_run_per_interval,
    runs_are_listed_newest_first_and_by_dates,
    changes_apply_in_one_transaction_and_read_back,
    json_comes_back_as_the_values_that_went_in,
    a_nul_in_text_or_json_is_stored_as_the_database_can,
    failed_tries_count_since_the_last_clear,
    pools_are_set_resized_and_deleted,
    live_schedulers_are_those_with_a_fresh_heartbeat,
    an_action_is_claimed_once_and_finished_once,
    pausing_says_whether_it_changed_anything,
);

async fn plugin_bytes_are_checked_against_their_id_on_read(db: Db) {
    let store = &db.store;
    let id = plugin_id_of(b"good bytes");
    store.put_plugin(&id, b"good bytes", PluginKind::P2Command).await.unwrap();
    store.put_plugin(&id, b"good bytes", PluginKind::P2Command).await.unwrap();
    let listed = store.plugins().await.unwrap();
    assert_eq!(
        (listed.len(), listed[0].id.as_str(), listed[0].size, listed[0].kind),
        (1, id.as_str(), 10, PluginKind::P2Command)
    );
    assert!(store.has_plugin(&id).await.unwrap());
    assert!(!store.has_plugin(&plugin_id_of(b"other")).await.unwrap());
    db.execute(
        "UPDATE plugins SET bytes = ?1 WHERE id = CAST(?2 AS TEXT)",
        "UPDATE plugins SET bytes = $1 WHERE id = convert_from($2, 'UTF8')",
        &[b"tampered", id.as_bytes()],
    )
    .await;
    let err = store.plugin_bytes(&id).await.unwrap_err();
    assert!(matches!(err, StoreError::PluginMismatch { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("plugin bytes stored as {id} hash to {}: refusing to use them", plugin_id_of(b"tampered"))
    );
}

async fn a_stale_dag_is_fresh_again_when_its_file_loads(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    assert!(!store.dag("d").await.unwrap().unwrap().is_stale());
    assert!(store.mark_stale("d").await.unwrap());
    assert!(!store.mark_stale("d").await.unwrap(), "already stale");
    let row = store.dag("d").await.unwrap().unwrap();
    assert!(row.is_stale() && row.active_version == "v1");
    with_dag(store).await;
    assert!(!store.dag("d").await.unwrap().unwrap().is_stale());
}

async fn versions_are_recorded_once_and_the_latest_is_active(db: Db) {
    let store = &db.store;
    let spec = json!({"file": "d.toml", "source": "id = \"d\"\n", "plugins": {"a.wasm": "sha256:00"}});
    assert!(store.record_dag_version("d", "v1", &spec, "dags/d.toml", true).await.unwrap());
    assert!(!store.record_dag_version("d", "v1", &spec, "dags/d.toml", false).await.unwrap());
    assert!(store.dag("d").await.unwrap().unwrap().is_paused, "paused at creation, and a reload does not unpause");
    assert!(store.record_dag_version("d", "v2", &json!({"x": 1}), "dags/d.toml", false).await.unwrap());
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v2");
    let versions: Vec<_> = store.dag_versions("d").await.unwrap().into_iter().map(|(v, _)| v).collect();
    assert_eq!(versions, ["v1", "v2"]);
    assert_eq!(store.dag_spec("d", "v1").await.unwrap(), Some(spec));
    assert_eq!(store.dag_spec("d", "v3").await.unwrap(), None);
    assert_eq!(store.dags().await.unwrap().len(), 1);
}

async fn an_import_error_keeps_the_last_good_version(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.record_import_error("dags/d.toml", None, "dags/d.toml:3:1: bad").await.unwrap();
    let errors = store.import_errors().await.unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].dag_id.as_deref(), Some("d"));
    assert_eq!(errors[0].message, "dags/d.toml:3:1: bad");
    assert_eq!(store.dag("d").await.unwrap().unwrap().active_version, "v1");
    with_dag(store).await;
    assert!(store.import_errors().await.unwrap().is_empty(), "a good load clears the error");
    store.record_import_error("dags/e.toml", Some("d"), "declared twice").await.unwrap();
    assert_eq!(store.import_errors().await.unwrap()[0].dag_id.as_deref(), Some("d"), "the DAG it declares");
    store.clear_import_error("dags/e.toml").await.unwrap();
    assert!(store.import_errors().await.unwrap().is_empty());
}

async fn one_scheduled_run_per_interval(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    let tasks = vec!["a".to_string(), "b".to_string()];
    assert!(store.create_run(&new_run("r1", RunType::Scheduled, 0), &tasks).await.unwrap());
    assert!(!store.create_run(&new_run("r2", RunType::Scheduled, 0), &tasks).await.unwrap());
    assert!(!store.create_run(&new_run("r1", RunType::Manual, 0), &tasks).await.unwrap(), "an id taken");
    assert!(store.create_run(&new_run("r3", RunType::Manual, 0), &tasks).await.unwrap());
    assert_eq!(store.runs(Some("d"), 10).await.unwrap().len(), 2);
    assert_eq!(store.task_instances("r2").await.unwrap().len(), 0, "nothing half-created");
    assert_eq!(store.task_instances("r1").await.unwrap().len(), 2);
    assert_eq!(store.last_scheduled_interval_end("d").await.unwrap(), Some(at(86_400)));
    assert_eq!(store.last_scheduled_interval_end("e").await.unwrap(), None);
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!((run.run_type, run.state), (RunType::Scheduled, RunState::Queued));
    assert_eq!((run.interval_start, run.interval_end), (Some(at(0)), Some(at(86_400))));
}

async fn runs_are_listed_newest_first_and_by_dates(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    for (id, start) in [("r1", 0), ("r2", 86_400), ("r3", 2 * 86_400)] {
        store.create_run(&new_run(id, RunType::Backfill, start), &[]).await.unwrap();
    }
    let ids = |rows: Vec<sandflow_store::RunRow>| rows.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
    assert_eq!(ids(store.runs(None, 10).await.unwrap()), ["r3", "r2", "r1"]);
    assert_eq!(ids(store.runs(Some("d"), 2).await.unwrap()), ["r3", "r2"]);
    assert!(store.runs(Some("e"), 10).await.unwrap().is_empty());
    assert_eq!(ids(store.runs_between("d", at(86_400), at(2 * 86_400)).await.unwrap()), ["r2", "r3"]);
    assert_eq!(ids(store.active_runs().await.unwrap()), ["r1", "r2", "r3"]);
}

/// The moves that bring an instance from `from` to `queued` (the scheduler's), then its try's
/// start (an executor's claim): the only way a try starts.
fn try_started(run_id: &str, task_id: &str, map_index: i64, from: TaskState, try_number: i64) -> Vec<Change> {
    let step = |from, to| Change::TaskState {
        run_id: run_id.into(),
        task_id: task_id.into(),
        map_index,
        from,
        to,
        reason: None,
        output: None,
        at: Utc::now(),
    };
    let mut changes = Vec::new();
    if from != TaskState::Scheduled {
        changes.push(step(from, TaskState::Scheduled));
    }
    changes.push(step(TaskState::Scheduled, TaskState::Queued));
    changes.push(Change::TryStarted {
        run_id: run_id.into(),
        task_id: task_id.into(),
        map_index,
        from: TaskState::Queued,
        try_number,
        plugin_id: "sha256:abc".into(),
        at: Utc::now(),
    });
    changes
}

fn try_end(run_id: &str, task_id: &str, try_number: i64, outcome: &str, state: Option<TaskState>) -> TryEnd {
    TryEnd {
        run_id: run_id.into(),
        task_id: task_id.into(),
        map_index: -1,
        try_number,
        outcome: outcome.into(),
        message: outcome.into(),
        log: "line 1\n".into(),
        fuel_used: 10,
        peak_memory: 65536,
        wall: Duration::from_micros(1500),
        at: Utc::now(),
        state,
        output: None,
        metrics: None,
        next_try_at: None,
    }
}

async fn changes_apply_in_one_transaction_and_read_back(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.create_run(&new_run("r1", RunType::Manual, 0), &["a".to_string()]).await.unwrap();
    let now = Utc::now();
    store
        .apply(
            &[
                vec![Change::RunState { run_id: "r1".into(), from: RunState::Queued, to: RunState::Running, at: now }],
                vec![Change::TaskState {
                    run_id: "r1".into(),
                    task_id: "a".into(),
                    map_index: -1,
                    from: TaskState::None,
                    to: TaskState::Scheduled,
                    reason: None,
                    output: None,
                    at: now,
                }],
                try_started("r1", "a", -1, TaskState::Scheduled, 1),
            ]
            .concat(),
        )
        .await
        .unwrap();
    let ti = &store.task_instances("r1").await.unwrap()[0];
    assert_eq!((ti.state, ti.try_number), (TaskState::Running, 1));
    assert!(ti.started_at.is_some());
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Running);
    assert!(run.started_at.is_some() && run.ended_at.is_none());

    let mut end = try_end("r1", "a", 1, "success", Some(TaskState::Success));
    end.output = Some(json!({"k": 1}));
    end.metrics = Some(json!({"loss": 0.5}).as_object().cloned().unwrap());
    store
        .apply(&[
            Change::TryEnded(Box::new(end)),
            Change::RunState { run_id: "r1".into(), from: RunState::Running, to: RunState::Success, at: now },
        ])
        .await
        .unwrap();
    let ti = &store.task_instances("r1").await.unwrap()[0];
    assert_eq!(ti.state, TaskState::Success);
    assert_eq!(ti.output, Some(json!({"k": 1})));
    assert_eq!(ti.metrics, json!({"loss": 0.5}).as_object().cloned());
    assert!(ti.ended_at.is_some() && ti.reason.is_none());
    let tries = store.tries("r1", "a", -1).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!((tries[0].outcome.as_deref(), tries[0].log.as_deref()), (Some("success"), Some("line 1\n")));
    assert_eq!((tries[0].wall_us, tries[0].fuel_used, tries[0].peak_memory), (Some(1500), Some(10), Some(65536)));
    let timeline = store.run_tries("r1").await.unwrap();
    assert_eq!((timeline.len(), timeline[0].log.as_deref()), (1, None), "timelines carry no logs");
    let run = store.run("r1").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Success);
    assert!(run.ended_at.is_some() && run.started_at.is_some());
    assert!(store.active_runs().await.unwrap().is_empty());

    // Reopened by hand, a run's end is forgotten until it ends again.
    store
        .apply(&[Change::RunState { run_id: "r1".into(), from: RunState::Success, to: RunState::Running, at: now }])
        .await
        .unwrap();
    assert_eq!(store.run("r1").await.unwrap().unwrap().ended_at, None);
}

async fn json_comes_back_as_the_values_that_went_in(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    let conf = json!({"customers": ["acme", "globex"], "depth": {"max": 3}, "ratio": 0.783_099_223_758_605_9});
    let mut run = new_run("r1", RunType::Manual, 0);
    run.conf = conf.as_object().cloned().unwrap();
    store.create_run(&run, &["a".to_string(), "m".to_string()]).await.unwrap();
    assert_eq!(serde_json::Value::Object(store.run("r1").await.unwrap().unwrap().conf), conf);

    let items =
        vec![json!({"customer": "acme", "n": 1}), json!("plain"), json!([1, 2.5, null]), json!(6.022_140_76e23)];
    let output = json!({"rows": 12_345_678_901_i64, "text": "é ✓ \"quoted\"", "nested": [{"a": []}, {}], "f": 1e-7});
    store
        .apply(
            &[
                try_started("r1", "a", -1, TaskState::None, 1),
                vec![Change::TryEnded(Box::new(TryEnd {
                    output: Some(output.clone()),
                    metrics: Some(json!({"auc": 0.91, "n": 3}).as_object().cloned().unwrap()),
                    ..try_end("r1", "a", 1, "success", Some(TaskState::Success))
                }))],
                vec![Change::Expand { run_id: "r1".into(), task_id: "m".into(), items: items.clone(), at: Utc::now() }],
            ]
            .concat(),
        )
        .await
        .unwrap();
    let instances = store.task_instances("r1").await.unwrap();
    assert_eq!(instances[0].output, Some(output));
    assert_eq!(instances[0].metrics, json!({"auc": 0.91, "n": 3}).as_object().cloned());
    let mapped: Vec<_> = instances.iter().filter(|t| t.map_index >= 0).map(|t| t.map_item.clone().unwrap()).collect();
    assert_eq!(mapped, items);

    let payload = json!({"kind": "clear", "run_ids": ["r1"], "map_index": null, "downstream": true});
    let id = store.enqueue_action("clear", &payload, "tester").await.unwrap();
    assert_eq!(store.action(id).await.unwrap().unwrap().payload, payload);
}

async fn a_nul_in_text_or_json_is_stored_as_the_database_can(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.create_run(&new_run("r1", RunType::Manual, 0), &["a".to_string()]).await.unwrap();
    let end = TryEnd {
        log: "before\0after\n".into(),
        output: Some(json!({"text": "a\u{0}b"})),
        ..try_end("r1", "a", 1, "success", Some(TaskState::Success))
    };
    store
        .apply(&[try_started("r1", "a", -1, TaskState::None, 1), vec![Change::TryEnded(Box::new(end))]].concat())
        .await
        .unwrap();
    let log = store.tries("r1", "a", -1).await.unwrap().remove(0).log.unwrap();
    let output = store.task_instances("r1").await.unwrap().remove(0).output.unwrap();
    if db.is_postgres() {
        // PostgreSQL's text and JSONB cannot hold U+0000: it is stored as U+FFFD, not refused.
        assert_eq!((log.as_str(), output), ("before\u{FFFD}after\n", json!({"text": "a\u{FFFD}b"})));
    } else {
        assert_eq!((log.as_str(), output), ("before\0after\n", json!({"text": "a\u{0}b"})));
    }
}

async fn failed_tries_count_since_the_last_clear(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    store.create_run(&new_run("r1", RunType::Manual, 0), &["a".to_string()]).await.unwrap();
    store
        .apply(
            &[
                try_started("r1", "a", -1, TaskState::None, 1),
                vec![Change::TryEnded(Box::new(try_end("r1", "a", 1, "trap", Some(TaskState::UpForRetry))))],
                try_started("r1", "a", -1, TaskState::UpForRetry, 2),
                vec![Change::TryEnded(Box::new(try_end(
                    "r1",
                    "a",
                    2,
                    "rescheduled",
                    Some(TaskState::UpForReschedule),
                )))],
                try_started("r1", "a", -1, TaskState::UpForReschedule, 3),
                vec![Change::TryEnded(Box::new(try_end("r1", "a", 3, "timeout", Some(TaskState::Failed))))],
            ]
            .concat(),
        )
        .await
        .unwrap();
    assert_eq!(store.failed_tries("r1").await.unwrap(), [("a".to_string(), -1, 2)]);
    let ti = store.task_instances("r1").await.unwrap().remove(0);
    assert_eq!((ti.state, ti.reason.as_deref()), (TaskState::Failed, Some("timeout")));
    store
        .apply(&[Change::Reset {
            run_id: "r1".into(),
            task_id: "a".into(),
            map_index: -1,
            from: TaskState::Failed,
            at: Utc::now(),
        }])
        .await
        .unwrap();
    assert!(store.failed_tries("r1").await.unwrap().is_empty(), "a clear gives the retries back");
    let ti = store.task_instances("r1").await.unwrap().remove(0);
    assert_eq!((ti.state, ti.tries_before_clear, ti.reason), (TaskState::None, 3, None));
}

async fn pools_are_set_resized_and_deleted(db: Db) {
    let store = &db.store;
    let names = |pools: Vec<sandflow_store::PoolRow>| {
        pools.into_iter().map(|p| (p.name, p.slots, p.description)).collect::<Vec<_>>()
    };
    assert_eq!(
        names(store.pools().await.unwrap()),
        [("default_pool".into(), 128, Some("tasks that name no pool".into()))]
    );
    store.set_pool("gpu", 2, Some("the two cards")).await.unwrap();
    store.set_pool("gpu", 3, None).await.unwrap();
    assert_eq!(names(store.pools().await.unwrap())[1], ("gpu".into(), 3, Some("the two cards".into())));
    assert!(store.delete_pool("gpu").await.unwrap());
    assert!(!store.delete_pool("gpu").await.unwrap());
    assert_eq!(store.pools().await.unwrap().len(), 1);
}

async fn live_schedulers_are_those_with_a_fresh_heartbeat(db: Db) {
    let store = &db.store;
    let started = Utc::now();
    store.heartbeat("s1", 4242, started).await.unwrap();
    store.heartbeat("s1", 4242, started).await.unwrap();
    let live = store.live_schedulers(Duration::from_secs(60)).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!((live[0].id.as_str(), live[0].pid), ("s1", 4242));
    assert!(store.live_scheduler(Duration::from_secs(60)).await.unwrap());
    store.remove_scheduler("s1").await.unwrap();
    assert!(store.live_schedulers(Duration::from_secs(60)).await.unwrap().is_empty());
}

async fn an_action_is_claimed_once_and_finished_once(db: Db) {
    let store = &db.store;
    let other = db.open_again().await;
    let id = store.enqueue_action("mark", &json!({"kind": "mark"}), "tester").await.unwrap();
    assert!(!store.finish_action(id, ActionState::Done, "early").await.unwrap(), "not claimed yet");
    assert_eq!(store.pending_actions().await.unwrap().len(), 1);
    assert!(store.claim_action(id).await.unwrap());
    assert!(!other.claim_action(id).await.unwrap(), "claimed once");
    assert!(store.pending_actions().await.unwrap().is_empty());
    assert_eq!(store.action(id).await.unwrap().unwrap().state, ActionState::Running);
    let err = store.finish_action(id, ActionState::Pending, "back").await.unwrap_err();
    assert_eq!(err.to_string(), "an action is finished as done or failed, not pending");
    assert!(store.finish_action(id, ActionState::Failed, "no such run").await.unwrap());
    assert!(!other.finish_action(id, ActionState::Done, "again").await.unwrap(), "finished once");
    let row = store.action(id).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.result.as_deref(), row.kind.as_str()),
        (ActionState::Failed, Some("no such run"), "mark")
    );
    assert!(row.done_at.is_some());
    assert_eq!(store.action(id + 1).await.unwrap(), None);
}

async fn pausing_says_whether_it_changed_anything(db: Db) {
    let store = &db.store;
    with_dag(store).await;
    assert_eq!(store.set_paused("d", true).await.unwrap(), PauseChange::Changed);
    assert_eq!(store.set_paused("d", true).await.unwrap(), PauseChange::Already);
    assert!(store.dag("d").await.unwrap().unwrap().is_paused);
    assert_eq!(store.set_paused("d", false).await.unwrap(), PauseChange::Changed);
    assert!(!store.dag("d").await.unwrap().unwrap().is_paused);
    assert_eq!(store.set_paused("nope", true).await.unwrap(), PauseChange::NoSuchDag);
}
