//! The DAG folder is watched: new and changed files load without a restart, broken ones are
//! reported and do not unload the last good version, and versions run side by side.

use std::time::Duration;

use sandflow_core::state::RunState;
use sandflow_scheduler::{trigger, TriggerOptions};
use serde_json::json;

use crate::{write_dag, Harness};

const V1: &str = r#"
id = "versions"
[tasks.say]
plugin = "plugins/echo.wasm"
params = { version = 1 }
"#;

pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    // Generous: a file loads once it has settled, and the machine may be busy.
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test]
async fn a_new_file_is_loaded_without_a_restart() {
    let mut h = Harness::start(&[]).await;
    write_dag(h.path(), "versions", V1);
    let store = h.store.clone();
    wait_for("loading the new file", async || store.dag("versions").await.unwrap().is_some()).await;
    let (_, state) = h.run("versions", json!({})).await;
    assert_eq!(state, RunState::Success);
}

#[tokio::test]
async fn a_broken_edit_keeps_the_last_good_version() {
    let mut h = Harness::start(&[("versions", V1)]).await;
    let good = h.store.dag("versions").await.unwrap().unwrap().active_version;
    write_dag(h.path(), "versions", "id = \"versions\"\n[tasks.say]\nplugin = \"plugins/missing.wasm\"\n");
    let store = h.store.clone();
    wait_for("recording the import error", async || !store.import_errors().await.unwrap().is_empty()).await;
    let errors = h.store.import_errors().await.unwrap();
    assert_eq!(errors[0].dag_id.as_deref(), Some("versions"));
    assert!(
        errors[0].message.contains("versions.toml:3:10: tasks.say.plugin: no such file: "),
        "{}",
        errors[0].message
    );
    assert_eq!(h.store.dag("versions").await.unwrap().unwrap().active_version, good);
    let (run, state) = h.run("versions", json!({})).await;
    assert_eq!((run.version, state), (good, RunState::Success));
}

#[tokio::test]
async fn two_versions_of_a_dag_run_side_by_side() {
    let mut h = Harness::start(&[("versions", V1)]).await;
    let v1 = h.store.dag("versions").await.unwrap().unwrap().active_version;
    write_dag(h.path(), "versions", &V1.replace("version = 1", "version = 2"));
    let store = h.store.clone();
    let v1_clone = v1.clone();
    wait_for("loading version 2", async || store.dag("versions").await.unwrap().unwrap().active_version != v1_clone)
        .await;
    let v2 = h.store.dag("versions").await.unwrap().unwrap().active_version;

    let pinned = trigger(
        &h.store,
        "versions",
        TriggerOptions { version: Some(v1.clone()), triggered_by: "alice".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let latest = h.trigger("versions", json!({})).await;
    assert_eq!(h.wait(&pinned.run_id).await, RunState::Success);
    assert_eq!(h.wait(&latest.run_id).await, RunState::Success);
    assert_eq!(h.output(&pinned.run_id, "say").await["params"], json!({"version": 1}));
    assert_eq!(h.output(&latest.run_id, "say").await["params"], json!({"version": 2}));
    assert_eq!(pinned.version, v1);
    assert_eq!(latest.version, v2);
    let err = trigger(&h.store, "versions", TriggerOptions { version: Some("v0000".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "DAG `versions` has no version `v0000`");
}
