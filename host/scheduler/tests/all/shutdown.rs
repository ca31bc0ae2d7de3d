//! A stopped worker's grace: tries that end within it are reported as any other (nothing is lost
//! to a restart), tries still running at its end are killed and reported `interrupted` at once
//! (not a lease later), and the next scheduler to start judges and retries them per their policy.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sandflow_core::state::{RunState, TaskState};
use sandflow_sandbox::{Sandbox, SandboxConfig};
use sandflow_scheduler::{
    trigger, Scheduler, SchedulerConfig, SchedulerError, Shutdown, Stopping, TriggerOptions, Worker, WorkerConfig,
};
use sandflow_store::{Durability, Store, TaskInstanceRow};
use tokio::task::JoinHandle;

use crate::{dags, write_dag};

/// One try that sleeps `ms`, retried once at once if it fails.
fn napping(ms: u64) -> String {
    format!(
        r#"
id = "nap"
[tasks.nap]
plugin = "plugins/hostile.wasm"
params = {{ mode = "sleep", ms = {ms} }}
retries = 1
retry_delay = "10ms"
"#
    )
}

/// A scheduler and its in-process worker over the home in `dir`, as `standalone` runs them.
struct Process {
    store: Store,
    shutdown: Shutdown,
    told: Arc<Mutex<Vec<Stopping>>>,
    task: JoinHandle<Result<(), SchedulerError>>,
}

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig { max_concurrent_tries: 4, ..SandboxConfig::default() }).unwrap()
}

/// A scheduler over the home in `dir`, its DAG folder loaded.
async fn scheduler(dir: &Path, grace: Duration) -> (Store, Scheduler) {
    let store = Store::open(&dir.join("sandflow.db"), Durability::Normal).await.unwrap();
    let config = SchedulerConfig {
        dags_dir: Some(dags(dir)),
        poll_interval: Duration::from_millis(100),
        shutdown_grace: grace,
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), sandbox(), config);
    scheduler.load_dags().await.unwrap();
    (store, scheduler)
}

impl Process {
    async fn start(dir: &Path, grace: Duration) -> Process {
        let (store, scheduler) = scheduler(dir, grace).await;
        let told = Arc::new(Mutex::new(Vec::new()));
        let log = told.clone();
        let shutdown = Shutdown::new().telling(move |what| log.lock().unwrap().push(what));
        let task = tokio::spawn(scheduler.run_with_worker(shutdown.clone()));
        Process { store, shutdown, told, task }
    }

    /// Waits (up to 30 s, far more than any grace here) for the process to have stopped.
    async fn stopped(self) -> Vec<Stopping> {
        let ended = tokio::time::timeout(Duration::from_secs(30), self.task).await;
        ended.expect("stopped within 30 s").unwrap().unwrap();
        let told = self.told.lock().unwrap().clone();
        told
    }
}

fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dags(dir.path()).join("plugins")).unwrap();
    std::fs::copy(sandflow_test_artifacts::path("hostile"), dags(dir.path()).join("plugins/hostile.wasm")).unwrap();
    dir
}

async fn nap_instance(store: &Store, run_id: &str) -> TaskInstanceRow {
    store.task_instances(run_id).await.unwrap().into_iter().find(|t| t.task_id == "nap").unwrap()
}

/// Waits (up to 30 s) until the instance is `running` under try `try_number`.
async fn until_running(store: &Store, run_id: &str, try_number: i64) {
    for _ in 0..1500 {
        let ti = nap_instance(store, run_id).await;
        if ti.state == TaskState::Running && ti.try_number == try_number {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("try {try_number} did not start: {:?}", nap_instance(store, run_id).await);
}

/// Waits (up to 30 s) for the run to end.
async fn until_ended(store: &Store, run_id: &str) -> RunState {
    for _ in 0..1500 {
        let run = store.run(run_id).await.unwrap().unwrap();
        if run.state.is_finished() {
            return run.state;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the run did not end: {:?}", nap_instance(store, run_id).await);
}

#[tokio::test]
async fn a_try_that_ends_within_the_grace_is_reported_and_its_result_kept() {
    let dir = home();
    write_dag(dir.path(), "nap", &napping(1500));
    let first = Process::start(dir.path(), Duration::from_secs(20)).await;
    let run = trigger(&first.store, "nap", TriggerOptions { triggered_by: "test".into(), ..Default::default() })
        .await
        .unwrap();
    until_running(&first.store, &run.run_id, 1).await;
    first.shutdown.stop();
    let store = first.store.clone();
    let told = first.stopped().await;
    assert_eq!(
        told,
        [
            Stopping::Draining { running: 1, grace: Duration::from_secs(20) },
            Stopping::Stopped { finished: 1, interrupted: 0 }
        ]
    );
    let tries = store.tries(&run.run_id, "nap", -1).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(tries[0].outcome.as_deref(), Some("success"), "{tries:?}");

    // Judged by the stopping scheduler or, if it stopped first, by the next one: either way the
    // result is the one the try reported, and the task does not run again.
    let second = Process::start(dir.path(), Duration::from_secs(20)).await;
    assert_eq!(until_ended(&second.store, &run.run_id).await, RunState::Success);
    let ti = nap_instance(&second.store, &run.run_id).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Success, 1));
    assert_eq!(ti.output, Some(serde_json::json!("slept")));
    second.shutdown.stop();
    second.stopped().await;
}

#[tokio::test]
async fn a_try_still_running_when_the_grace_ends_is_interrupted_at_once_and_retried_at_the_next_start() {
    let dir = home();
    write_dag(dir.path(), "nap", &napping(60_000));
    let first = Process::start(dir.path(), Duration::from_millis(200)).await;
    let run = trigger(&first.store, "nap", TriggerOptions { triggered_by: "test".into(), ..Default::default() })
        .await
        .unwrap();
    until_running(&first.store, &run.run_id, 1).await;
    first.shutdown.stop();
    let store = first.store.clone();
    let told = first.stopped().await;
    assert_eq!(
        told,
        [
            Stopping::Draining { running: 1, grace: Duration::from_millis(200) },
            Stopping::Killing { running: 1, asked: false },
            Stopping::Stopped { finished: 0, interrupted: 1 }
        ]
    );
    // Recorded by the worker as it stopped, not by a scheduler once the lease (10 s) expired.
    let tries = store.tries(&run.run_id, "nap", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("interrupted"), "{tries:?}");
    let message = tries[0].message.as_deref().unwrap_or_default();
    assert!(message.contains("the worker was stopped (graceful shutdown deadline 200ms passed)"), "{message}");
    assert!(tries[0].ended_at.is_some());

    // The next start retries it (its one retry), without waiting for a lease.
    let second = Process::start(dir.path(), Duration::from_secs(20)).await;
    until_running(&second.store, &run.run_id, 2).await;
    // A kill ends the grace at once: the second try, the last one allowed, fails with its reason.
    second.shutdown.kill();
    let told = second.stopped().await;
    assert_eq!(
        told[1..],
        [Stopping::Killing { running: 1, asked: true }, Stopping::Stopped { finished: 0, interrupted: 1 }]
    );

    let third = Process::start(dir.path(), Duration::from_secs(20)).await;
    assert_eq!(until_ended(&third.store, &run.run_id).await, RunState::Failed);
    let ti = nap_instance(&third.store, &run.run_id).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Failed, 2));
    let tries = third.store.tries(&run.run_id, "nap", -1).await.unwrap();
    assert_eq!(tries.len(), 2, "{tries:?}");
    assert_eq!(tries[1].outcome.as_deref(), Some("interrupted"));
    let reason = ti.reason.unwrap_or_default();
    assert!(reason.contains("interrupted: the worker was stopped and asked to kill its tries at once"), "{reason}");
    third.shutdown.stop();
    third.stopped().await;
}

/// `sandflow scheduler` and `sandflow worker`, apart, over the home in `dir`: a run of `nap` is
/// triggered, and once its try runs the scheduler stops first, then the worker (with `grace`),
/// which reports the try (ended, or interrupted) with no scheduler to judge it. Returns the store
/// and the run.
async fn reported_after_the_scheduler_stopped(dir: &Path, grace: Duration) -> (Store, String) {
    let (store, first) = scheduler(dir, Duration::from_secs(20)).await;
    let stop_scheduler = tokio_util::sync::CancellationToken::new();
    let first = tokio::spawn(first.run(stop_scheduler.clone()));
    let config = WorkerConfig { shutdown_grace: grace, ..WorkerConfig::default() };
    let stop_worker = Shutdown::new();
    let worker = tokio::spawn(Worker::new(store.clone(), sandbox(), config).run(stop_worker.clone()));
    let run =
        trigger(&store, "nap", TriggerOptions { triggered_by: "test".into(), ..Default::default() }).await.unwrap();
    until_running(&store, &run.run_id, 1).await;
    stop_scheduler.cancel();
    first.await.unwrap().unwrap();
    stop_worker.stop();
    tokio::time::timeout(Duration::from_secs(30), worker).await.unwrap().unwrap().unwrap();
    (store, run.run_id)
}

#[tokio::test]
async fn a_try_reported_while_no_scheduler_runs_is_judged_by_the_next_one() {
    let dir = home();
    write_dag(dir.path(), "nap", &napping(1000));
    let (store, run_id) = reported_after_the_scheduler_stopped(dir.path(), Duration::from_secs(20)).await;
    // Reported, not judged: the instance is still running as far as the store says.
    let ti = nap_instance(&store, &run_id).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Running, 1));
    assert_eq!(store.tries(&run_id, "nap", -1).await.unwrap()[0].outcome.as_deref(), Some("success"));

    let second = Process::start(dir.path(), Duration::from_secs(20)).await;
    assert_eq!(until_ended(&second.store, &run_id).await, RunState::Success);
    let ti = nap_instance(&second.store, &run_id).await;
    assert_eq!((ti.state, ti.try_number, ti.output), (TaskState::Success, 1, Some(serde_json::json!("slept"))));
    second.shutdown.stop();
    second.stopped().await;
}

#[tokio::test]
async fn a_failed_try_reported_while_no_scheduler_runs_still_gets_its_retry() {
    // The try the worker reported is in the store with its outcome, its instance still `running`:
    // the next scheduler must count that failure once, when it judges it, not also when it loads
    // the run (which spent the one retry and failed the task: what made the test above flaky).
    let dir = home();
    write_dag(dir.path(), "nap", &napping(60_000));
    let (store, run_id) = reported_after_the_scheduler_stopped(dir.path(), Duration::from_millis(100)).await;
    let ti = nap_instance(&store, &run_id).await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Running, 1));
    assert_eq!(store.tries(&run_id, "nap", -1).await.unwrap()[0].outcome.as_deref(), Some("interrupted"));

    let second = Process::start(dir.path(), Duration::from_millis(100)).await;
    until_running(&second.store, &run_id, 2).await;
    second.shutdown.kill();
    second.stopped().await;
}
