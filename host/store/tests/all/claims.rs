//! Claims: workers take queued instances under leases, within pools and DAG limits counted across
//! every worker; renewals tell a worker what it still holds; reports are recorded once; a try
//! whose lease expired is taken over, and its late report refused.

use std::time::Duration;

use chrono::Utc;
use sandflow_core::state::TaskState;
use sandflow_store::{
    Change, ClaimRequest, QueuedJob, Report, ReportFate, RunType, Running, Store, TryEnd, WorkerInfo,
};
use serde_json::json;

use crate::{new_run, with_dag, Db};

crate::on_both!(
    a_report_records_its_artifacts_and_what_the_try_was_given,
    claims_take_the_highest_priority_first_and_never_the_same_instance_twice,
    a_pool_holds_across_workers,
    a_pool_holds_across_workers_claiming_at_the_same_moment,
    max_active_tasks_holds_across_workers,
    a_reported_try_frees_its_slot_and_waits_to_be_judged,
    a_renewal_answers_what_the_worker_still_holds,
    an_expired_lease_is_taken_over_and_the_late_report_refused,
    a_report_after_a_clear_records_the_try_alone,
    a_running_tries_log_is_readable_and_its_report_has_the_last_word,
);

const RUN: &str = "r1";

/// DAG `d` and a running manual run `r1` of `tasks`, each queued with `pool` and its priority (its
/// position: the last task first).
async fn with_queued(store: &Store, tasks: &[&str], pool: &str, max_active_tasks: i64) {
    with_dag(store).await;
    let mut run = new_run(RUN, RunType::Manual, 0);
    run.interval = None;
    let ids: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
    store.create_run(&run, &ids).await.unwrap();
    let mut changes = Vec::new();
    for (priority, task) in tasks.iter().enumerate() {
        changes.push(Change::TaskState {
            run_id: RUN.into(),
            task_id: task.to_string(),
            map_index: -1,
            from: TaskState::None,
            to: TaskState::Scheduled,
            reason: None,
            output: None,
            at: Utc::now(),
        });
        changes.push(Change::Queued {
            run_id: RUN.into(),
            task_id: task.to_string(),
            map_index: -1,
            from: TaskState::Scheduled,
            job: Box::new(QueuedJob {
                plugin_id: "sha256:abc".into(),
                pool: pool.into(),
                pool_slots: 1,
                priority: priority as i64,
                max_active_tasks,
                job: json!({ "context": { "task_id": task }, "limits": {} }),
            }),
            at: Utc::now(),
        });
    }
    store.apply(&changes).await.unwrap();
}

fn worker(id: &str) -> WorkerInfo {
    WorkerInfo { id: id.into(), hostname: "test".into(), pid: 1, concurrency: 8, pools: vec![], started_at: Utc::now() }
}

async fn claim(store: &Store, worker: &str, limit: usize) -> Vec<String> {
    let request = ClaimRequest { worker, pools: &[], limit, lease: Duration::from_secs(30) };
    store.claim(&request).await.unwrap().claimed.into_iter().map(|c| c.task_id).collect()
}

fn report(task_id: &str, try_number: i64, outcome: &str) -> Report {
    Report {
        run_id: RUN.into(),
        task_id: task_id.into(),
        map_index: -1,
        try_number,
        outcome: outcome.into(),
        message: outcome.into(),
        log: "a log".into(),
        fuel_used: 1,
        peak_memory: 2,
        wall: Duration::from_millis(3),
        result: (outcome == "success").then(|| json!({ "output": 42 })),
        at: Utc::now(),
        artifacts: Vec::new(),
        record: None,
    }
}

async fn state_of(store: &Store, task_id: &str) -> (TaskState, i64) {
    let ti = store.task_instances(RUN).await.unwrap().into_iter().find(|t| t.task_id == task_id).unwrap();
    (ti.state, ti.try_number)
}

async fn claims_take_the_highest_priority_first_and_never_the_same_instance_twice(db: Db) {
    with_queued(&db.store, &["a", "b", "c"], "default_pool", 16).await;
    assert_eq!(claim(&db.store, "w1", 2).await, ["c", "b"]);
    assert_eq!(claim(&db.store, "w2", 5).await, ["a"]);
    assert!(claim(&db.store, "w1", 5).await.is_empty());
    assert_eq!(state_of(&db.store, "c").await, (TaskState::Running, 1));
    let tries = db.store.tries(RUN, "c", -1).await.unwrap();
    assert_eq!((tries.len(), tries[0].try_number, tries[0].outcome.as_deref()), (1, 1, None));
    // The claim copies when the instance was queued into its try, for the Gantt chart.
    assert!(tries[0].queued_at.is_some_and(|q| q <= tries[0].started_at), "{:?}", tries[0]);
}

async fn a_pool_holds_across_workers(db: Db) {
    db.store.set_pool("small", 2, None).await.unwrap();
    with_queued(&db.store, &["a", "b", "c", "d"], "small", 16).await;
    assert_eq!(claim(&db.store, "w1", 1).await.len(), 1);
    assert_eq!(claim(&db.store, "w2", 4).await.len(), 1, "one slot was left");
    assert!(claim(&db.store, "w3", 4).await.is_empty(), "the pool is full, whoever asks");
    // A pool that does not exist takes nothing.
    db.store.delete_pool("small").await.unwrap();
    assert!(claim(&db.store, "w3", 4).await.is_empty());
}

async fn a_pool_holds_across_workers_claiming_at_the_same_moment(db: Db) {
    db.store.set_pool("small", 2, None).await.unwrap();
    let tasks: Vec<String> = (0..12).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = tasks.iter().map(String::as_str).collect();
    with_queued(&db.store, &names, "small", 16).await;
    // Separate connection pools, as other processes' would be, all claiming at once.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..4 {
        let store = db.open_again().await;
        set.spawn(async move { claim(&store, &format!("w{i}"), 4).await.len() });
    }
    let claimed: usize = set.join_all().await.into_iter().sum();
    assert_eq!(claimed, 2, "exactly the pool's two slots were taken");
}

async fn max_active_tasks_holds_across_workers(db: Db) {
    with_queued(&db.store, &["a", "b", "c"], "default_pool", 2).await;
    assert_eq!(claim(&db.store, "w1", 1).await.len(), 1);
    assert_eq!(claim(&db.store, "w2", 3).await.len(), 1);
    assert!(claim(&db.store, "w3", 3).await.is_empty());
}

async fn a_reported_try_frees_its_slot_and_waits_to_be_judged(db: Db) {
    db.store.set_pool("one", 1, None).await.unwrap();
    with_queued(&db.store, &["a", "b"], "one", 16).await;
    assert_eq!(claim(&db.store, "w1", 2).await, ["b"]);
    let fates = db.store.report_tries("w1", &[report("b", 1, "success")]).await.unwrap();
    assert_eq!(fates, [ReportFate::Accepted]);
    assert_eq!(state_of(&db.store, "b").await, (TaskState::Running, 1), "running until judged");
    let reported = db.store.reported_tries().await.unwrap();
    assert_eq!(reported.len(), 1);
    assert_eq!((reported[0].task_id.as_str(), reported[0].outcome.as_str()), ("b", "success"));
    assert_eq!(reported[0].result, Some(json!({ "output": 42 })));
    assert_eq!(claim(&db.store, "w2", 2).await, ["a"], "the reported try's slot is free");
    // The judgment ends the instance and the try takes the judged outcome.
    let judged = TryEnd {
        run_id: RUN.into(),
        task_id: "b".into(),
        map_index: -1,
        try_number: 1,
        outcome: "success".into(),
        message: "success".into(),
        log: String::new(),
        fuel_used: 0,
        peak_memory: 0,
        wall: Duration::ZERO,
        at: Utc::now(),
        state: Some(TaskState::Success),
        output: Some(json!(42)),
        metrics: None,
        next_try_at: None,
    };
    db.store.apply(&[Change::Judged(Box::new(judged.clone()))]).await.unwrap();
    assert_eq!(state_of(&db.store, "b").await, (TaskState::Success, 1));
    assert!(db.store.reported_tries().await.unwrap().is_empty());
    let tries = db.store.tries(RUN, "b", -1).await.unwrap();
    assert_eq!((tries[0].outcome.as_deref(), tries[0].log.as_deref()), (Some("success"), Some("a log")));
    // Judged twice: the second finds it ended, and loses.
    assert!(db.store.apply(&[Change::Judged(Box::new(judged))]).await.is_err());
}

async fn a_renewal_answers_what_the_worker_still_holds(db: Db) {
    with_queued(&db.store, &["a", "b"], "default_pool", 16).await;
    claim(&db.store, "w1", 2).await;
    let held = db.store.renew_leases(&worker("w1"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(held.len(), 2);
    // A clear of `a`: the worker no longer holds it, and kills its try.
    let reset = Change::Reset {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        from: TaskState::Running,
        at: Utc::now(),
    };
    db.store.apply(&[reset]).await.unwrap();
    let held = db.store.renew_leases(&worker("w1"), Duration::from_secs(30)).await.unwrap();
    assert_eq!(held.iter().map(|h| h.task_id.as_str()).collect::<Vec<_>>(), ["b"]);
    assert!(db.store.renew_leases(&worker("w2"), Duration::from_secs(30)).await.unwrap().is_empty());
    let live = db.store.live_workers(Duration::from_secs(60)).await.unwrap();
    assert_eq!(live.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w1", "w2"]);
    db.store.remove_worker("w2").await.unwrap();
    assert_eq!(db.store.live_workers(Duration::from_secs(60)).await.unwrap().len(), 1);
}

async fn an_expired_lease_is_taken_over_and_the_late_report_refused(db: Db) {
    with_queued(&db.store, &["a"], "default_pool", 16).await;
    let request = ClaimRequest { worker: "w1", pools: &[], limit: 1, lease: Duration::from_secs(1) };
    assert_eq!(db.store.claim(&request).await.unwrap().claimed.len(), 1);
    assert!(db.store.expired_leases(Utc::now()).await.unwrap().is_empty());
    let later = Utc::now() + chrono::Duration::seconds(2);
    let expired = db.store.expired_leases(later).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!((expired[0].task_id.as_str(), expired[0].lease_owner.as_deref()), ("a", Some("w1")));
    let interrupted = TryEnd {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        outcome: "interrupted".into(),
        message: "interrupted".into(),
        log: String::new(),
        fuel_used: 0,
        peak_memory: 0,
        wall: Duration::ZERO,
        at: later,
        state: Some(TaskState::UpForRetry),
        output: None,
        metrics: None,
        next_try_at: Some(later),
    };
    db.store.apply(&[Change::TryEnded(Box::new(interrupted))]).await.unwrap();
    let fates = db.store.report_tries("w1", &[report("a", 1, "success")]).await.unwrap();
    assert_eq!(fates, [ReportFate::Refused]);
    let tries = db.store.tries(RUN, "a", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("interrupted"), "the late report changed nothing");
    assert_eq!(state_of(&db.store, "a").await, (TaskState::UpForRetry, 1));
    assert!(db.store.reported_tries().await.unwrap().is_empty());
}

async fn a_report_after_a_clear_records_the_try_alone(db: Db) {
    with_queued(&db.store, &["a"], "default_pool", 16).await;
    claim(&db.store, "w1", 1).await;
    let reset = Change::Reset {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        from: TaskState::Running,
        at: Utc::now(),
    };
    db.store.apply(&[reset]).await.unwrap();
    // Queued again at once, but not claimable while the old try may still run.
    let requeue = [
        Change::TaskState {
            run_id: RUN.into(),
            task_id: "a".into(),
            map_index: -1,
            from: TaskState::None,
            to: TaskState::Scheduled,
            reason: None,
            output: None,
            at: Utc::now(),
        },
        Change::Queued {
            run_id: RUN.into(),
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
            at: Utc::now(),
        },
    ];
    db.store.apply(&requeue).await.unwrap();
    assert!(claim(&db.store, "w2", 1).await.is_empty(), "the cleared try has not ended yet");
    let fates = db.store.report_tries("w1", &[report("a", 1, "killed")]).await.unwrap();
    assert_eq!(fates, [ReportFate::Orphaned]);
    assert_eq!(claim(&db.store, "w2", 1).await, ["a"], "claimable once the old try ended");
    assert_eq!(state_of(&db.store, "a").await, (TaskState::Running, 2));
    let tries = db.store.tries(RUN, "a", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("killed"));
    assert!(db.store.reported_tries().await.unwrap().is_empty());
}

async fn a_running_tries_log_is_readable_and_its_report_has_the_last_word(db: Db) {
    with_queued(&db.store, &["a"], "default_pool", 16).await;
    assert_eq!(claim(&db.store, "w1", 1).await, ["a"]);
    let running = |log| Running { log, progress: None };
    db.store.write_running(RUN, "a", -1, 1, &running("line 1\n")).await.unwrap();
    let progress = Running { log: "line 1\nline 2\n", progress: Some((0.25, "a quarter")) };
    db.store.write_running(RUN, "a", -1, 1, &progress).await.unwrap();
    let tries = db.store.tries(RUN, "a", -1).await.unwrap();
    assert_eq!((tries[0].log.as_deref(), tries[0].outcome.as_deref()), (Some("line 1\nline 2\n"), None));
    assert_eq!((tries[0].progress, tries[0].progress_message.as_deref()), (Some(0.25), Some("a quarter")));
    db.store.report_tries("w1", &[report("a", 1, "success")]).await.unwrap();
    // A write that arrives after the report changes nothing.
    db.store.write_running(RUN, "a", -1, 1, &running("late")).await.unwrap();
    let tries = db.store.tries(RUN, "a", -1).await.unwrap();
    assert_eq!(tries[0].log.as_deref(), Some("a log"));
    // An unknown try: nothing to write, no error.
    db.store.write_running(RUN, "a", -1, 9, &running("nobody")).await.unwrap();
}

async fn a_report_records_its_artifacts_and_what_the_try_was_given(db: Db) {
    use sandflow_store::NewArtifact;
    with_queued(&db.store, &["a"], "default_pool", 16).await;
    claim(&db.store, "w1", 1).await;
    let record = json!({"context": "{\"params\":{}}", "seed": 7});
    let artifacts = vec![
        NewArtifact { name: "model/weights.bin".into(), size: 3, hash: format!("sha256:{}", "a".repeat(64)) },
        NewArtifact { name: "data.csv".into(), size: 5, hash: format!("sha256:{}", "b".repeat(64)) },
    ];
    let with = Report { artifacts, record: Some(record.clone()), ..report("a", 1, "success") };
    assert_eq!(db.store.report_tries("w1", &[with]).await.unwrap(), [ReportFate::Accepted]);
    let listed = db.store.artifacts(RUN, Some("a")).await.unwrap();
    let names: Vec<_> = listed.iter().map(|a| (a.name.as_str(), a.size, a.try_number)).collect();
    assert_eq!(names, [("data.csv", 5, 1), ("model/weights.bin", 3, 1)]);
    assert!(db.store.artifacts(RUN, Some("other")).await.unwrap().is_empty());
    assert_eq!(db.store.artifacts(RUN, None).await.unwrap().len(), 2);
    assert_eq!(db.store.try_record(RUN, "a", -1, 1).await.unwrap(), Some(record));
    assert_eq!(db.store.try_record(RUN, "a", -1, 2).await.unwrap(), None);
    // Downstream tasks see them only once the instance succeeded with that try.
    assert!(db.store.upstream_artifacts(RUN, &["a".into()]).await.unwrap().is_empty());
    let judged = TryEnd {
        run_id: RUN.into(),
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        outcome: "success".into(),
        message: "success".into(),
        log: String::new(),
        fuel_used: 0,
        peak_memory: 0,
        wall: Duration::ZERO,
        at: Utc::now(),
        state: Some(TaskState::Success),
        output: Some(json!(42)),
        metrics: None,
        next_try_at: None,
    };
    db.store.apply(&[Change::Judged(Box::new(judged))]).await.unwrap();
    let upstream = db.store.upstream_artifacts(RUN, &["a".into(), "b".into()]).await.unwrap();
    assert_eq!(upstream.len(), 2);
    assert_eq!(db.store.artifact_hashes().await.unwrap().len(), 2);
    // Retention: the DAG's last run is kept whatever its age; with none kept, old rows go.
    assert_eq!(db.store.delete_artifacts(Utc::now() + chrono::Duration::days(1), 1).await.unwrap(), 0);
    assert_eq!(db.store.delete_artifacts(Utc::now() - chrono::Duration::days(1), 0).await.unwrap(), 0);
    assert_eq!(db.store.delete_artifacts(Utc::now() + chrono::Duration::days(1), 0).await.unwrap(), 2);
    assert!(db.store.artifact_hashes().await.unwrap().is_empty());
}
