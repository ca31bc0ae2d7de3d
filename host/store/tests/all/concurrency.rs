//! Two processes at once on one database: what one wins, the other is told it lost.

use chrono::Utc;
use sandflow_core::state::TaskState;
use sandflow_store::{Change, RunType, Store, StoreError};

use crate::{new_run, with_dag, Db};

crate::on_both!(one_run_per_scheduled_interval_under_two_concurrent_creators, two_starters_of_one_task_start_it_once);

const INTERVALS: i64 = 12;

async fn one_run_per_scheduled_interval_under_two_concurrent_creators(db: Db) {
    with_dag(&db.store).await;
    let creators: Vec<Store> = vec![db.store.clone(), db.open_again().await];
    let tasks: Vec<String> = (0..20).map(|n| format!("t{n}")).collect();
    let mut handles = Vec::new();
    for (who, store) in creators.into_iter().enumerate() {
        let tasks = tasks.clone();
        handles.push(tokio::spawn(async move {
            let mut created = Vec::new();
            for interval in 0..INTERVALS {
                // Each creator names its runs its own way: only the interval is shared.
                let run = new_run(&format!("creator{who}__{interval}"), RunType::Scheduled, interval * 86_400);
                if store.create_run(&run, &tasks).await.unwrap() {
                    created.push(run.run_id);
                }
            }
            created
        }));
    }
    let mut created = Vec::new();
    for handle in handles {
        created.extend(handle.await.unwrap());
    }
    assert_eq!(created.len() as i64, INTERVALS, "each interval created exactly once: {created:?}");
    let runs = db.store.runs(Some("d"), 100).await.unwrap();
    assert_eq!(runs.len() as i64, INTERVALS);
    let mut starts: Vec<_> = runs.iter().map(|r| r.interval_start).collect();
    starts.dedup();
    assert_eq!(starts.len() as i64, INTERVALS);
    assert_eq!(db.count("SELECT COUNT(*) FROM task_instances").await, INTERVALS * 20, "only the winners' instances");
}

async fn two_starters_of_one_task_start_it_once(db: Db) {
    const TASKS: usize = 16;
    with_dag(&db.store).await;
    let tasks: Vec<String> = (0..TASKS).map(|n| format!("t{n}")).collect();
    let mut run = new_run("r1", RunType::Manual, 0);
    run.interval = None;
    db.store.create_run(&run, &tasks).await.unwrap();
    let schedule: Vec<Change> = tasks
        .iter()
        .map(|t| Change::TaskState {
            run_id: "r1".into(),
            task_id: t.clone(),
            map_index: -1,
            from: TaskState::None,
            to: TaskState::Scheduled,
            reason: None,
            output: None,
            at: Utc::now(),
        })
        .collect();
    db.store.apply(&schedule).await.unwrap();
    let starters: Vec<Store> = vec![db.store.clone(), db.open_again().await];
    let mut handles = Vec::new();
    for (who, store) in starters.into_iter().enumerate() {
        let tasks = tasks.clone();
        handles.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for task_id in tasks {
                // The scheduler's queued, then an executor's claim, in one batch.
                let queue = Change::TaskState {
                    run_id: "r1".into(),
                    task_id: task_id.clone(),
                    map_index: -1,
                    from: TaskState::Scheduled,
                    to: TaskState::Queued,
                    reason: None,
                    output: None,
                    at: Utc::now(),
                };
                let start = Change::TryStarted {
                    run_id: "r1".into(),
                    task_id: task_id.clone(),
                    map_index: -1,
                    from: TaskState::Queued,
                    try_number: 1,
                    plugin_id: format!("sha256:starter{who}"),
                    at: Utc::now(),
                };
                match store.apply(&[queue, start]).await {
                    Ok(()) => won.push(task_id),
                    Err(StoreError::LostRace(race)) => assert_eq!(race.found.as_deref(), Some("running")),
                    Err(other) => panic!("a loser is told it lost, not {other:?}"),
                }
            }
            won
        }));
    }
    let mut won = Vec::new();
    for handle in handles {
        won.extend(handle.await.unwrap());
    }
    won.sort();
    let mut expected = tasks.clone();
    expected.sort();
    assert_eq!(won, expected, "every task started exactly once");
    assert_eq!(db.count("SELECT COUNT(*) FROM task_tries").await, TASKS as i64, "one try each");
}
