//! Trigger rules in real runs (the exhaustive table is in sandflow-core's unit tests).

use sandflow_core::state::{RunState, TaskState};
use serde_json::json;

use crate::Harness;

#[tokio::test]
async fn trigger_rules_decide_after_a_failure() {
    let dag = r#"
id = "rules"
[tasks.a]
plugin = "plugins/hostile.wasm"
params = { mode = "exit" }
[tasks.ok]
plugin = "plugins/noop.wasm"
[tasks.b_all_success]
plugin = "plugins/noop.wasm"
upstream = ["a"]
[tasks.c_all_done]
plugin = "plugins/noop.wasm"
upstream = ["a"]
trigger_rule = "all_done"
[tasks.d_one_failed]
plugin = "plugins/noop.wasm"
upstream = ["a", "ok"]
trigger_rule = "one_failed"
[tasks.e_all_failed]
plugin = "plugins/noop.wasm"
upstream = ["a"]
trigger_rule = "all_failed"
[tasks.f_none_failed]
plugin = "plugins/noop.wasm"
upstream = ["c_all_done"]
trigger_rule = "none_failed"
[tasks.g_all_failed_after_success]
plugin = "plugins/noop.wasm"
upstream = ["c_all_done"]
trigger_rule = "all_failed"
[tasks.h_after_skip]
plugin = "plugins/noop.wasm"
upstream = ["g_all_failed_after_success"]
[tasks.i_one_success]
plugin = "plugins/noop.wasm"
upstream = ["a", "ok"]
trigger_rule = "one_success"
"#;
    let mut h = Harness::start(&[("rules", dag)]).await;
    let (run, state) = h.run("rules", json!({})).await;
    let expected = [
        ("a", TaskState::Failed),
        ("ok", TaskState::Success),
        ("b_all_success", TaskState::UpstreamFailed),
        ("c_all_done", TaskState::Success),
        ("d_one_failed", TaskState::Success),
        ("e_all_failed", TaskState::Success),
        ("f_none_failed", TaskState::Success),
        ("g_all_failed_after_success", TaskState::Skipped),
        ("h_after_skip", TaskState::Skipped),
        ("i_one_success", TaskState::Success),
    ];
    for (task, want) in expected {
        assert_eq!(h.ti(&run.run_id, task).await.state, want, "{task}");
    }
    assert_eq!(h.ti(&run.run_id, "b_all_success").await.reason.as_deref(), Some("an upstream task failed"));
    assert_eq!(state, RunState::Failed, "a leaf (b) is upstream_failed");
}

#[tokio::test]
async fn a_run_whose_leaves_succeed_succeeds_despite_an_earlier_failure() {
    let dag = r#"
id = "cleanup"
[tasks.work]
plugin = "plugins/hostile.wasm"
params = { mode = "exit" }
[tasks.cleanup]
plugin = "plugins/noop.wasm"
upstream = ["work"]
trigger_rule = "all_done"
"#;
    let mut h = Harness::start(&[("cleanup", dag)]).await;
    let (_, state) = h.run("cleanup", json!({})).await;
    assert_eq!(state, RunState::Success, "as in Airflow, the run's state follows its leaves");
}

#[tokio::test]
async fn branch_or_sensor_answers_from_a_plain_task_fail_it() {
    let dag = r#"
id = "confused"
[tasks.branchy]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { branch = ["x"] } }
[tasks.sensory]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { sensor = { done = true } } }
"#;
    let mut h = Harness::start(&[("confused", dag)]).await;
    let (run, _) = h.run("confused", json!({})).await;
    let reason = h.ti(&run.run_id, "branchy").await.reason.unwrap();
    assert!(
        reason.starts_with(
            "the result has `branch`, but this task is not a branch task (kind = \"branch\") (plugin sha256:"
        ),
        "{reason}"
    );
    let reason = h.ti(&run.run_id, "sensory").await.reason.unwrap();
    assert!(reason.starts_with("the result has `sensor`, but this task is not a sensor task"), "{reason}");
    let tries = h.store.tries(&run.run_id, "branchy", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("invalid_result"));
}
