//! Every state change is a guarded write: each wins from the state it expects and loses, typed,
//! from any other, and a lost race commits nothing of its batch.

use std::time::Duration;

use chrono::Utc;
use sandflow_core::state::{RunState, TaskState};
use sandflow_store::{Change, LostRace, RunType, Store, StoreError, TryEnd};
use serde_json::json;

use crate::{new_run, with_dag, Db};

crate::on_both!(
    a_run_state_change_wins_from_its_state_and_loses_from_another,
    a_task_state_change_wins_from_its_state_and_loses_from_another,
    an_expansion_loses_to_a_queued_or_running_instance,
    a_reset_wins_from_its_state_and_loses_from_another,
    a_try_start_wins_from_its_state_and_loses_from_another,
    a_try_end_moves_only_the_instance_running_that_try,
    a_try_recorded_alone_needs_no_instance_but_ends_once,
    a_lost_race_commits_nothing_of_its_batch,
    a_run_created_in_a_batch_commits_with_it_or_not_at_all,
    a_move_the_state_machine_lacks_is_refused_and_writes_nothing,
);

const RUN: &str = "r1";

/// DAG `d`, and a manual run `r1` (queued) of tasks `a` and `m`.
async fn with_run(store: &Store) {
    with_dag(store).await;
    let mut run = new_run(RUN, RunType::Manual, 0);
    run.interval = None;
    store.create_run(&run, &["a".to_string(), "m".to_string()]).await.unwrap();
}

fn task_state(task_id: &str, map_index: i64, from: TaskState, to: TaskState) -> Change {
    Change::TaskState {
        run_id: RUN.into(),
        task_id: task_id.into(),
        map_index,
        from,
        to,
        reason: Some(format!("now {to}")),
        output: None,
        at: Utc::now(),
    }
}

/// The moves that bring an instance from `from` to `queued`, then its try's start (the claim).
fn try_started(task_id: &str, map_index: i64, from: TaskState, try_number: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    if from != TaskState::Scheduled {
        changes.push(task_state(task_id, map_index, from, TaskState::Scheduled));
    }
    changes.push(task_state(task_id, map_index, TaskState::Scheduled, TaskState::Queued));
    changes.push(Change::TryStarted {
        run_id: RUN.into(),
        task_id: task_id.into(),
        map_index,
        from: TaskState::Queued,
        try_number,
        plugin_id: "sha256:abc".into(),
        at: Utc::now(),
    });
    changes
}

fn try_ended(task_id: &str, try_number: i64, state: Option<TaskState>) -> Change {
    Change::TryEnded(Box::new(TryEnd {
        run_id: RUN.into(),
        task_id: task_id.into(),
        map_index: -1,
        try_number,
        outcome: "success".into(),
        message: "success".into(),
        log: String::new(),
        fuel_used: 1,
        peak_memory: 1,
        wall: Duration::from_millis(1),
        at: Utc::now(),
        state,
        output: Some(json!({"try": try_number})),
        metrics: Some(serde_json::Map::new()),
        next_try_at: None,
    }))
}

/// The lost race an error is, or a failure naming what it is instead.
fn lost(err: StoreError) -> LostRace {
    match err {
        StoreError::LostRace(race) => *race,
        other => panic!("expected a lost race, got {other:?}"),
    }
}

async fn state_of(store: &Store, task_id: &str, map_index: i64) -> Option<TaskState> {
    store
        .task_instances(RUN)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.task_id == task_id && t.map_index == map_index)
        .map(|t| t.state)
}

async fn a_run_state_change_wins_from_its_state_and_loses_from_another(db: Db) {
    let store = &db.store;
    with_run(store).await;
    let start =
        || Change::RunState { run_id: RUN.into(), from: RunState::Queued, to: RunState::Running, at: Utc::now() };
    store.apply(&[start()]).await.unwrap();
    let race = lost(store.apply(&[start()]).await.unwrap_err());
    assert_eq!(
        race,
        LostRace {
            run_id: RUN.into(),
            task_id: None,
            map_index: None,
            expected: "queued".into(),
            found: Some("running".into())
        }
    );
    assert_eq!(
        race.to_string(),
        "lost a race on run r1: expected queued, found running (another process changed it first; nothing of the batch was committed)"
    );
    let missing =
        Change::RunState { run_id: "nope".into(), from: RunState::Queued, to: RunState::Running, at: Utc::now() };
    let race = lost(store.apply(&[missing]).await.unwrap_err());
    assert!(race.to_string().contains("found no such row"), "{race}");
    assert_eq!((race.run_id.as_str(), race.found), ("nope", None));
}

async fn a_task_state_change_wins_from_its_state_and_loses_from_another(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[task_state("a", -1, TaskState::None, TaskState::Scheduled)]).await.unwrap();
    let race = lost(store.apply(&[task_state("a", -1, TaskState::None, TaskState::Skipped)]).await.unwrap_err());
    assert_eq!(
        race,
        LostRace {
            run_id: RUN.into(),
            task_id: Some("a".into()),
            map_index: Some(-1),
            expected: "none".into(),
            found: Some("scheduled".into())
        }
    );
    assert!(
        race.to_string().starts_with("lost a race on task instance r1/a: expected none, found scheduled"),
        "{race}"
    );
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Scheduled));
    let race = lost(store.apply(&[task_state("a", 7, TaskState::None, TaskState::Scheduled)]).await.unwrap_err());
    assert_eq!((race.map_index, race.found.as_deref()), (Some(7), None), "no such instance");
    assert!(race.to_string().starts_with("lost a race on task instance r1/a[7]: expected none, found no such row"));
    // A mapped task's aggregate output comes back as the value it is.
    let settle = Change::TaskState {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        from: TaskState::Scheduled,
        to: TaskState::Success,
        reason: Some("now success".into()),
        output: Some(json!([1, {"two": 2}])),
        at: Utc::now(),
    };
    store.apply(&[settle]).await.unwrap();
    let ti = store.task_instances(RUN).await.unwrap().remove(0);
    assert_eq!(
        (ti.state, ti.output, ti.reason.as_deref()),
        (TaskState::Success, Some(json!([1, {"two": 2}])), Some("now success"))
    );
    assert!(ti.ended_at.is_some());
}

async fn an_expansion_loses_to_a_queued_or_running_instance(db: Db) {
    let store = &db.store;
    with_run(store).await;
    let expand = |items: Vec<serde_json::Value>| Change::Expand {
        run_id: RUN.into(),
        task_id: "m".into(),
        items,
        at: Utc::now(),
    };
    store.apply(&[expand(vec![json!("x"), json!("y"), json!("z")])]).await.unwrap();
    assert_eq!(state_of(store, "m", 2).await, Some(TaskState::Scheduled));
    // An expansion over instances that ended (after a clear, say) takes them over.
    store.apply(&[task_state("m", 0, TaskState::Scheduled, TaskState::Failed)]).await.unwrap();
    store.apply(&[expand(vec![json!("x2"), json!("y2")])]).await.unwrap();
    assert_eq!(state_of(store, "m", 0).await, Some(TaskState::Scheduled));
    // One instance running: the expansion loses, and nothing of it is written.
    store.apply(&[try_started("m", 1, TaskState::Scheduled, 1)].concat()).await.unwrap();
    let race = lost(store.apply(&[expand(vec![json!("x3"), json!("y3"), json!("z3")])]).await.unwrap_err());
    assert_eq!((race.task_id.as_deref(), race.map_index, race.found.as_deref()), (Some("m"), Some(1), Some("running")));
    assert_eq!(race.expected, "any state but queued or running");
    let items: Vec<_> =
        store.task_instances(RUN).await.unwrap().into_iter().filter(|t| t.map_index >= 0).map(|t| t.map_item).collect();
    assert_eq!(items, [Some(json!("x2")), Some(json!("y2")), Some(json!("z"))], "the lost expansion wrote nothing");
}

async fn a_reset_wins_from_its_state_and_loses_from_another(db: Db) {
    let store = &db.store;
    with_run(store).await;
    let reset = |from| Change::Reset { run_id: RUN.into(), task_id: "a".into(), map_index: -1, from, at: Utc::now() };
    store
        .apply(&[try_started("a", -1, TaskState::None, 1), vec![try_ended("a", 1, Some(TaskState::Success))]].concat())
        .await
        .unwrap();
    let race = lost(store.apply(&[reset(TaskState::Failed)]).await.unwrap_err());
    assert_eq!((race.expected.as_str(), race.found.as_deref()), ("failed", Some("success")));
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Success));
    store.apply(&[reset(TaskState::Success)]).await.unwrap();
    let ti = store.task_instances(RUN).await.unwrap().remove(0);
    assert_eq!((ti.state, ti.output, ti.tries_before_clear), (TaskState::None, None, 1));
}

async fn a_try_start_wins_from_its_state_and_loses_from_another(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[task_state("a", -1, TaskState::None, TaskState::Scheduled)]).await.unwrap();
    store.apply(&[try_started("a", -1, TaskState::Scheduled, 1)].concat()).await.unwrap();
    let race = lost(store.apply(&[try_started("a", -1, TaskState::Scheduled, 2)].concat()).await.unwrap_err());
    assert_eq!((race.expected.as_str(), race.found.as_deref()), ("scheduled", Some("running")));
    let tries = store.tries(RUN, "a", -1).await.unwrap();
    assert_eq!(tries.len(), 1, "the losing start recorded no try");
    assert_eq!(store.task_instances(RUN).await.unwrap()[0].try_number, 1);
}

async fn a_try_end_moves_only_the_instance_running_that_try(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[try_started("a", -1, TaskState::None, 1)].concat()).await.unwrap();
    // The end of a try the instance is not running (its number is another's).
    let race = lost(store.apply(&[try_ended("a", 2, Some(TaskState::Success))]).await.unwrap_err());
    assert_eq!((race.expected.as_str(), race.found.as_deref()), ("running (try 2)", Some("running (try 1)")));
    assert_eq!(store.tries(RUN, "a", -1).await.unwrap()[0].outcome, None, "the try is not ended by a loser");
    store.apply(&[try_ended("a", 1, Some(TaskState::Success))]).await.unwrap();
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Success));
    // A second end of the same try (a result arriving twice): the instance is no longer running it.
    let race = lost(store.apply(&[try_ended("a", 1, Some(TaskState::Failed))]).await.unwrap_err());
    assert_eq!((race.expected.as_str(), race.found.as_deref()), ("running (try 1)", Some("success (try 1)")));
    let ti = store.task_instances(RUN).await.unwrap().remove(0);
    assert_eq!((ti.state, ti.output), (TaskState::Success, Some(json!({"try": 1}))));
}

async fn a_try_recorded_alone_needs_no_instance_but_ends_once(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[try_started("a", -1, TaskState::None, 1)].concat()).await.unwrap();
    // Cleared while it ran: the instance is none, and the try's end is recorded alone.
    store
        .apply(&[Change::Reset {
            run_id: RUN.into(),
            task_id: "a".into(),
            map_index: -1,
            from: TaskState::Running,
            at: Utc::now(),
        }])
        .await
        .unwrap();
    store.apply(&[try_ended("a", 1, None)]).await.unwrap();
    let ti = store.task_instances(RUN).await.unwrap().remove(0);
    assert_eq!((ti.state, ti.output), (TaskState::None, None), "the instance is left as it is");
    assert_eq!(store.tries(RUN, "a", -1).await.unwrap()[0].outcome.as_deref(), Some("success"));
    let race = lost(store.apply(&[try_ended("a", 1, None)]).await.unwrap_err());
    assert_eq!((race.expected.as_str(), race.found.as_deref()), ("try 1 not yet ended", Some("try 1 ended (success)")));
    let race = lost(store.apply(&[try_ended("a", 9, None)]).await.unwrap_err());
    assert_eq!(race.found, None, "no such try");
}

async fn a_lost_race_commits_nothing_of_its_batch(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[try_started("a", -1, TaskState::None, 1)].concat()).await.unwrap();
    let mut child = new_run("c1", RunType::Manual, 100);
    child.interval = None;
    let batch = [
        Change::RunState { run_id: RUN.into(), from: RunState::Queued, to: RunState::Running, at: Utc::now() },
        try_ended("a", 1, Some(TaskState::Success)),
        Change::CreateRun { run: Box::new(child), task_ids: vec!["x".into()] },
        Change::Expand { run_id: RUN.into(), task_id: "m".into(), items: vec![json!(1)], at: Utc::now() },
        // Loses: m is none.
        task_state("m", -1, TaskState::Scheduled, TaskState::Success),
    ];
    let race = lost(store.apply(&batch).await.unwrap_err());
    assert_eq!((race.task_id.as_deref(), race.found.as_deref()), (Some("m"), Some("none")));
    assert_eq!(store.run(RUN).await.unwrap().unwrap().state, RunState::Queued);
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Running));
    assert_eq!(store.tries(RUN, "a", -1).await.unwrap()[0].outcome, None);
    assert_eq!(store.run("c1").await.unwrap(), None);
    assert_eq!(state_of(store, "m", 0).await, None, "no expansion");
    // The same batch decided again from what is there commits whole.
    let mut batch = batch.to_vec();
    batch[4] = task_state("m", -1, TaskState::None, TaskState::Running);
    store.apply(&batch).await.unwrap();
    assert_eq!(state_of(store, "m", 0).await, Some(TaskState::Scheduled));
    assert!(store.run("c1").await.unwrap().is_some());
}

async fn a_run_created_in_a_batch_commits_with_it_or_not_at_all(db: Db) {
    let store = &db.store;
    with_run(store).await;
    store.apply(&[try_started("a", -1, TaskState::None, 1)].concat()).await.unwrap();
    let child = |id: &str| {
        let mut run = new_run(id, RunType::Manual, 100);
        run.interval = None;
        Change::CreateRun { run: Box::new(run), task_ids: vec!["a".into(), "b".into()] }
    };
    // The try's end, a triggered run, then a change that fails: none of it is committed.
    let err = store.apply(&[try_ended("a", 1, Some(TaskState::Success)), child("c1"), child("c1")]).await.unwrap_err();
    assert!(matches!(&err, StoreError::RunExists { run_id } if run_id == "c1"), "{err:?}");
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Running));
    assert_eq!(store.tries(RUN, "a", -1).await.unwrap()[0].outcome, None);
    assert_eq!(store.run("c1").await.unwrap(), None);
    assert!(store.task_instances("c1").await.unwrap().is_empty());

    store.apply(&[try_ended("a", 1, Some(TaskState::Success)), child("c1")]).await.unwrap();
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Success));
    let created = store.run("c1").await.unwrap().unwrap();
    assert_eq!((created.state, created.triggered_by.as_str()), (RunState::Queued, "tester"));
    let states: Vec<_> = store.task_instances("c1").await.unwrap().into_iter().map(|t| (t.task_id, t.state)).collect();
    assert_eq!(states, [("a".to_string(), TaskState::None), ("b".to_string(), TaskState::None)]);
}

async fn a_move_the_state_machine_lacks_is_refused_and_writes_nothing(db: Db) {
    let store = &db.store;
    with_run(store).await;
    async fn illegal(store: &Store, changes: &[Change]) -> (TaskState, TaskState) {
        match store.apply(changes).await {
            Err(StoreError::IllegalTransition { from, to, .. }) => (from, to),
            other => panic!("an illegal move is refused as such, not {other:?}"),
        }
    }
    // A try starts only from queued (an executor's claim), never straight from scheduled.
    let scheduled = task_state("a", -1, TaskState::None, TaskState::Scheduled);
    let start = Change::TryStarted {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        from: TaskState::Scheduled,
        try_number: 1,
        plugin_id: "sha256:abc".into(),
        at: Utc::now(),
    };
    assert_eq!(illegal(store, &[scheduled.clone(), start]).await, (TaskState::Scheduled, TaskState::Running));
    // Nothing of the batch was written: the legal first change neither.
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::None));
    // A finished instance does not go back to scheduled but by a clear; skipped needs none.
    assert_eq!(
        illegal(store, &[task_state("a", -1, TaskState::None, TaskState::Queued)]).await,
        (TaskState::None, TaskState::Queued)
    );
    store.apply(&[scheduled]).await.unwrap();
    assert_eq!(state_of(store, "a", -1).await, Some(TaskState::Scheduled));
}
