//! What a DAG folder can hold that must not hurt the scheduler: plugin paths leading out of the
//! folder, FIFOs, devices, huge files, two files declaring one DAG, deleted files.

use std::path::Path;
use std::time::Duration;

use sandflow_core::state::RunState;
use sandflow_sandbox::{Sandbox, SandboxConfig};
use sandflow_scheduler::{Scheduler, SchedulerConfig};
use sandflow_store::{Durability, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::folder::wait_for;
use crate::{dags, write_dag, Harness};

const GOOD: &str = r#"
id = "good"
[tasks.say]
plugin = "plugins/echo.wasm"
"#;

fn with_plugin(id: &str, plugin: &str) -> String {
    format!("id = \"{id}\"\n[tasks.a]\nplugin = \"{plugin}\"\n")
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Waits for `file`'s import error and returns it.
async fn import_error(h: &Harness, file: &str) -> String {
    let store = h.store.clone();
    let wanted = dags(h.path()).join(file).display().to_string();
    let found = wanted.clone();
    wait_for(&format!("an import error for {file}"), async || {
        store.import_errors().await.unwrap().iter().any(|e| e.file_path == found)
    })
    .await;
    h.store.import_errors().await.unwrap().into_iter().find(|e| e.file_path == wanted).unwrap().message
}

/// The scheduler still answers: a run of the good DAG succeeds.
async fn still_answers(h: &mut Harness) {
    let (_, state) = h.run("good", json!({})).await;
    assert_eq!(state, RunState::Success);
}

#[tokio::test]
async fn plugin_paths_leading_out_of_the_folder_are_refused() {
    let mut h = Harness::start(&[("good", GOOD)]).await;
    // A real plugin outside the folder, reached by `..` and by a symlink inside the folder.
    let outside = h.path().join("outside.wasm");
    std::fs::copy(sandflow_test_artifacts::path("echo"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, dags(h.path()).join("plugins/link.wasm")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dags(h.path()).join("plugins/zero.wasm")).unwrap();
    write_dag(h.path(), "dotdot", &with_plugin("dotdot", "../outside.wasm"));
    write_dag(h.path(), "zero", &with_plugin("zero", "../../../../../../../../dev/zero"));
    write_dag(h.path(), "link", &with_plugin("link", "plugins/link.wasm"));
    write_dag(h.path(), "zerolink", &with_plugin("zerolink", "plugins/zero.wasm"));
    for (file, plugin) in [
        ("dotdot.toml", "../outside.wasm"),
        ("zero.toml", "../../../../../../../../dev/zero"),
        ("link.toml", "plugins/link.wasm"),
        ("zerolink.toml", "plugins/zero.wasm"),
    ] {
        let message = import_error(&h, file).await;
        let expected = format!(
            "tasks.a.plugin: plugin path {plugin:?} leads outside the DAG folder: a plugin must be a file inside it"
        );
        assert!(message.ends_with(&expected), "{file}: {message}");
    }
    for dag in ["dotdot", "zero", "link", "zerolink"] {
        assert!(h.store.dag(dag).await.unwrap().is_none(), "{dag} was not loaded");
    }
    still_answers(&mut h).await;
}

#[tokio::test]
async fn a_fifo_as_a_plugin_or_a_dag_file_is_an_import_error_and_blocks_nothing() {
    let mut h = Harness::start(&[("good", GOOD)]).await;
    mkfifo(&dags(h.path()).join("plugins/fifo.wasm"));
    write_dag(h.path(), "fifo_plugin", &with_plugin("fifo_plugin", "plugins/fifo.wasm"));
    let message = import_error(&h, "fifo_plugin.toml").await;
    assert!(message.ends_with("fifo.wasm: a FIFO, not a regular file: a plugin must be a regular file"), "{message}");
    mkfifo(&dags(h.path()).join("fifo.toml"));
    let message = import_error(&h, "fifo.toml").await;
    assert!(message.ends_with("fifo.toml: a FIFO, not a regular file: a DAG file must be a regular file"), "{message}");
    // A DAG file that is a symlink to a device is refused the same way.
    std::os::unix::fs::symlink("/dev/zero", dags(h.path()).join("zero.toml")).unwrap();
    let message = import_error(&h, "zero.toml").await;
    assert!(
        message.ends_with("a character device, not a regular file: a DAG file must be a regular file"),
        "{message}"
    );
    still_answers(&mut h).await;
}

#[tokio::test]
async fn oversized_files_are_refused_without_being_read() {
    let mut h = Harness::start(&[("good", GOOD)]).await;
    // Sparse: as large as they say, without filling the disk.
    let huge = std::fs::File::create(dags(h.path()).join("plugins/huge.wasm")).unwrap();
    huge.set_len(sandflow_sandbox::MAX_PLUGIN_BYTES + 1).unwrap();
    write_dag(h.path(), "huge_plugin", &with_plugin("huge_plugin", "plugins/huge.wasm"));
    let message = import_error(&h, "huge_plugin.toml").await;
    assert!(message.ends_with("huge.wasm: 64.0 MiB, over the 64 MiB limit for a plugin"), "{message}");
    let big = std::fs::File::create(dags(h.path()).join("big.toml")).unwrap();
    big.set_len(sandflow_scheduler::MAX_DAG_FILE_BYTES * 2).unwrap();
    let message = import_error(&h, "big.toml").await;
    assert!(message.ends_with("big.toml: 8 MiB, over the 4 MiB limit for a DAG file"), "{message}");
    still_answers(&mut h).await;
}

#[tokio::test]
async fn two_files_declaring_one_dag_are_both_errors_until_one_goes() {
    let mut h = Harness::start(&[("good", GOOD)]).await;
    let good_version = h.store.dag("good").await.unwrap().unwrap().active_version;
    write_dag(h.path(), "copy", &GOOD.replace("[tasks.say]", "[tasks.other]"));
    let copy_error = import_error(&h, "copy.toml").await;
    let good_error = import_error(&h, "good.toml").await;
    assert!(copy_error.contains("copy.toml: DAG `good` is also declared in "), "{copy_error}");
    assert!(copy_error.contains("good.toml"), "{copy_error}");
    assert!(good_error.contains("good.toml: DAG `good` is also declared in "), "{good_error}");
    assert!(good_error.contains("copy.toml"), "{good_error}");
    let errors = h.store.import_errors().await.unwrap();
    assert!(errors.iter().all(|e| e.dag_id.as_deref() == Some("good")), "{errors:?}");
    let row = h.store.dag("good").await.unwrap().unwrap();
    assert_eq!(row.active_version, good_version, "the DAG keeps its last good version");
    assert!(!row.is_stale());
    let (run, state) = h.run("good", json!({})).await;
    assert_eq!((run.version, state), (good_version.clone(), RunState::Success));

    // The copy goes: the first file loads again, and both errors are gone.
    std::fs::remove_file(dags(h.path()).join("copy.toml")).unwrap();
    let store = h.store.clone();
    wait_for("the clash to end", async || store.import_errors().await.unwrap().is_empty()).await;
    assert_eq!(h.store.dag("good").await.unwrap().unwrap().active_version, good_version);
}

const DAILY: &str = r#"
id = "daily"
schedule = "@daily"
start_date = "2026-01-01"
[tasks.say]
plugin = "plugins/echo.wasm"
"#;

/// A scheduler over `dir` (its DAG folder already there) and a way to stop it.
async fn scheduler_over(dir: &Path, create_scheduled_runs: bool) -> (Store, CancellationToken) {
    let store = Store::open(&dir.join("sandflow.db"), Durability::Normal).await.unwrap();
    let sandbox = Sandbox::new(SandboxConfig { max_concurrent_tries: 4, ..SandboxConfig::default() }).unwrap();
    let config = SchedulerConfig {
        dags_dir: Some(dags(dir)),
        poll_interval: Duration::from_millis(100),
        create_scheduled_runs,
        ..SchedulerConfig::default()
    };
    let mut scheduler = Scheduler::new(store.clone(), sandbox, config);
    scheduler.load_dags().await.unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(scheduler.run_with_worker(shutdown.clone()));
    (store, shutdown)
}

/// Waits until the scheduler has finished a whole poll that started after this call: two actions
/// carried out one after the other (a poll carries out actions before it creates scheduled runs).
async fn two_polls(store: &Store) {
    for _ in 0..2 {
        let action = json!({"kind": "clear", "dag_id": "nothing", "run_ids": []});
        let id = store.enqueue_action("clear", &action, "tester").await.unwrap();
        let store2 = store.clone();
        wait_for("an action to be carried out", async || {
            store2.action(id).await.unwrap().is_some_and(|row| row.state != sandflow_store::ActionState::Pending)
        })
        .await;
    }
}

async fn scheduled_runs(store: &Store, dag_id: &str) -> usize {
    store
        .runs(Some(dag_id), 100)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.run_type == sandflow_store::RunType::Scheduled)
        .count()
}

#[tokio::test]
async fn a_dag_whose_file_is_gone_is_stale_even_after_a_restart_and_fresh_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dags(dir.path()).join("plugins")).unwrap();
    std::fs::copy(sandflow_test_artifacts::path("echo"), dags(dir.path()).join("plugins/echo.wasm")).unwrap();
    let nightly = DAILY.replace("\"daily\"", "\"nightly\"").replace("@daily", "0 3 * * *");
    write_dag(dir.path(), "daily", DAILY);
    write_dag(dir.path(), "nightly", &nightly);
    // First a scheduler that creates no scheduled runs: each DAG gets a manual run, its history.
    let (store, shutdown) = scheduler_over(dir.path(), false).await;
    for dag_id in ["daily", "nightly"] {
        let options = sandflow_scheduler::TriggerOptions { triggered_by: "test".into(), ..Default::default() };
        let run = sandflow_scheduler::trigger(&store, dag_id, options).await.unwrap();
        let runs = store.clone();
        wait_for("the manual run to end", async || {
            runs.run(&run.run_id).await.unwrap().is_some_and(|r| r.state.is_finished())
        })
        .await;
    }
    // `daily`'s file goes while the scheduler runs: it becomes stale.
    std::fs::remove_file(dags(dir.path()).join("daily.toml")).unwrap();
    let watched = store.clone();
    wait_for("daily to become stale", async || watched.dag("daily").await.unwrap().unwrap().is_stale()).await;
    assert!(!store.dag("nightly").await.unwrap().unwrap().is_stale());
    shutdown.cancel();
    // `nightly`'s file goes while no scheduler runs.
    std::fs::remove_file(dags(dir.path()).join("nightly.toml")).unwrap();

    // A scheduler that schedules: both are stale, keep their history, and get no scheduled run,
    // though one is due for each (start_date is long past and they never had one).
    let (store, shutdown) = scheduler_over(dir.path(), true).await;
    two_polls(&store).await;
    for dag_id in ["daily", "nightly"] {
        assert!(store.dag(dag_id).await.unwrap().unwrap().is_stale(), "{dag_id}");
        assert_eq!(store.runs(Some(dag_id), 10).await.unwrap().len(), 1, "{dag_id}: its history is kept");
        assert_eq!(scheduled_runs(&store, dag_id).await, 0, "{dag_id}: a stale DAG gets no scheduled runs");
    }
    // The files come back: fresh again, and scheduled.
    write_dag(dir.path(), "daily", DAILY);
    write_dag(dir.path(), "nightly", &nightly);
    for dag_id in ["daily", "nightly"] {
        let back = store.clone();
        wait_for("the DAG to be fresh again", async || !back.dag(dag_id).await.unwrap().unwrap().is_stale()).await;
        wait_for("a scheduled run", async || scheduled_runs(&back, dag_id).await > 0).await;
    }
    shutdown.cancel();
}
