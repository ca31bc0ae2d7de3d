//! The scheduler with its real parts: a SQLite file, the sandbox, plugins built from source, a DAG
//! folder on disk. One binary for the whole area.

mod actions;
mod folder;
mod grants;
mod loading;
mod numbers;
mod pipelines;
mod rules;
mod runs;
mod shutdown;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sandflow_core::state::RunState;
use sandflow_sandbox::{Sandbox, SandboxConfig};
use sandflow_scheduler::{trigger, Notice, Scheduler, SchedulerConfig, SchedulerHandle, TriggerOptions};
use sandflow_store::{Durability, RunRow, Store, TaskInstanceRow};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A scheduler running over a scratch home: DAG folder with the test plugins in `dags/plugins/`.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub handle: SchedulerHandle,
    pub notices: broadcast::Receiver<Notice>,
    shutdown: CancellationToken,
}

/// Where DAG files go.
pub fn dags(dir: &Path) -> PathBuf {
    dir.join("dags")
}

/// Writes a DAG file.
pub fn write_dag(dir: &Path, name: &str, text: &str) {
    std::fs::write(dags(dir).join(format!("{name}.toml")), text).unwrap();
}

impl Harness {
    /// Starts a scheduler after writing `files` (name, TOML) into the DAG folder.
    pub async fn start(files: &[(&str, &str)]) -> Harness {
        Harness::start_with(files, |_| {}).await
    }

    pub async fn start_with(files: &[(&str, &str)], configure: impl FnOnce(&mut SchedulerConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dags(dir.path()).join("plugins");
        std::fs::create_dir_all(&plugins).unwrap();
        for stem in ["noop", "echo", "hostile", "hostile-p2", "grants"] {
            std::fs::copy(sandflow_test_artifacts::path(stem), plugins.join(format!("{stem}.wasm"))).unwrap();
        }
        for (name, text) in files {
            write_dag(dir.path(), name, text);
        }
        let store = Store::open(&dir.path().join("sandflow.db"), Durability::Normal).await.unwrap();
        let sandbox = Sandbox::new(SandboxConfig { max_concurrent_tries: 64, ..SandboxConfig::default() }).unwrap();
        let mut config = SchedulerConfig {
            dags_dir: Some(dags(dir.path())),
            poll_interval: Duration::from_millis(100),
            ..SchedulerConfig::default()
        };
        configure(&mut config);
        let mut scheduler = Scheduler::new(store.clone(), sandbox, config);
        let report = scheduler.load_dags().await.unwrap();
        assert!(report.errors.is_empty() || files.iter().any(|(n, _)| n.starts_with("broken")), "{:?}", report.errors);
        let handle = scheduler.handle();
        let notices = handle.subscribe();
        let shutdown = CancellationToken::new();
        tokio::spawn(scheduler.run_with_worker(shutdown.clone()));
        Harness { dir, store, handle, notices, shutdown }
    }

    /// Triggers a run of `dag_id` with `conf`.
    pub async fn trigger(&self, dag_id: &str, conf: Value) -> RunRow {
        let conf: Map<String, Value> = serde_json::from_value(conf).unwrap();
        let run =
            trigger(&self.store, dag_id, TriggerOptions { conf, triggered_by: "test".into(), ..Default::default() })
                .await
                .unwrap();
        self.handle.wake();
        run
    }

    /// Waits (up to 30 s) for `run_id` to end; returns its state.
    pub async fn wait(&mut self, run_id: &str) -> RunState {
        if let Some(run) = self.store.run(run_id).await.unwrap() {
            if run.state.is_finished() {
                return run.state;
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let notice = tokio::time::timeout_at(deadline, self.notices.recv()).await;
            match notice {
                // A notice can be stale: an action (a mark, a clear) may have reopened the run
                // after it was sent. Only the store says whether the run has ended now.
                Ok(Ok(Notice::RunFinished { run_id: id, .. })) if id == run_id => {
                    let run = self.store.run(run_id).await.unwrap().expect("the run exists");
                    if run.state.is_finished() {
                        return run.state;
                    }
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("notices closed: {e}"),
                Err(_) => {
                    let states = self.states(run_id).await;
                    panic!("run {run_id} did not end within 30 s: {states:?}")
                }
            }
        }
    }

    /// Triggers and waits.
    pub async fn run(&mut self, dag_id: &str, conf: Value) -> (RunRow, RunState) {
        let run = self.trigger(dag_id, conf).await;
        let state = self.wait(&run.run_id).await;
        (run, state)
    }

    /// Asks the scheduler to carry out an action, and waits (up to 10 s) for its result.
    pub async fn act(&self, action: sandflow_scheduler::actions::Action) -> String {
        let id =
            self.store.enqueue_action(action.kind(), &serde_json::to_value(&action).unwrap(), "tester").await.unwrap();
        self.handle.wake();
        for _ in 0..200 {
            let row = self.store.action(id).await.unwrap().unwrap();
            match row.state.as_str() {
                "done" => return row.result.unwrap(),
                "failed" => panic!("action failed: {:?}", row.result),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("action {id} was not carried out");
    }

    /// Waits (up to 10 s) until `check` holds for the run's task instances.
    pub async fn until(&self, run_id: &str, what: &str, check: impl Fn(&[TaskInstanceRow]) -> bool) {
        for _ in 0..500 {
            if check(&self.store.task_instances(run_id).await.unwrap()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let states = self.states(run_id).await;
        panic!("{what} did not happen: {states:?}");
    }

    /// The run's instances as `task[map_index]=state`, for failure messages (at most 50).
    async fn states(&self, run_id: &str) -> Vec<String> {
        let tis = self.store.task_instances(run_id).await.unwrap();
        tis.iter().map(|t| format!("{}[{}]={}", t.task_id, t.map_index, t.state)).take(50).collect()
    }

    /// One task instance of a run.
    pub async fn ti(&self, run_id: &str, task_id: &str) -> TaskInstanceRow {
        self.store.task_instances(run_id).await.unwrap().into_iter().find(|t| t.task_id == task_id).unwrap()
    }

    /// A task's output as JSON.
    pub async fn output(&self, run_id: &str, task_id: &str) -> Value {
        self.ti(run_id, task_id).await.output.unwrap_or(Value::Null)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
