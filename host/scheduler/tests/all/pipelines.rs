//! Mapping, branching, sensors, pools, priorities and max_active_tasks, in real runs.

use std::time::Duration;

use sandflow_core::state::{RunState, TaskState};
use sandflow_store::TryRow;
use serde_json::json;

use crate::Harness;

const MAPPED: &str = r#"
id = "mapped"
[tasks.each]
plugin = "plugins/echo.wasm"
map_over = "conf.items"
[tasks.after]
plugin = "plugins/echo.wasm"
upstream = ["each"]
"#;

#[tokio::test]
async fn mapping_over_one_element_and_over_none() {
    let mut h = Harness::start(&[("mapped", MAPPED)]).await;
    let (run, state) = h.run("mapped", json!({"items": ["only"]})).await;
    assert_eq!(state, RunState::Success);
    let after = h.output(&run.run_id, "after").await;
    assert_eq!(after["inputs"]["each"][0]["map_item"], "only");

    let (run, state) = h.run("mapped", json!({"items": []})).await;
    assert_eq!(state, RunState::Success, "skipped leaves are fine");
    let each = h.ti(&run.run_id, "each").await;
    assert_eq!(each.state, TaskState::Skipped);
    assert_eq!(each.reason.as_deref(), Some("map_over conf.items is an empty list"));
    assert_eq!(h.ti(&run.run_id, "after").await.state, TaskState::Skipped);
}

#[tokio::test]
async fn mapping_over_5000_elements() {
    let dag = r#"
id = "wide_map"
[tasks.each]
plugin = "plugins/noop.wasm"
map_over = "conf.items"
[tasks.after]
plugin = "plugins/noop.wasm"
upstream = ["each"]
"#;
    let mut h = Harness::start_with(&[("wide_map", dag)], |c| c.parallelism = 64).await;
    let items: Vec<u32> = (0..5000).collect();
    let (run, state) = h.run("wide_map", json!({ "items": items })).await;
    assert_eq!(state, RunState::Success);
    let tis = h.store.task_instances(&run.run_id).await.unwrap();
    let children: Vec<_> = tis.iter().filter(|t| t.task_id == "each" && t.map_index >= 0).collect();
    assert_eq!(children.len(), 5000);
    for child in &children {
        assert_eq!(child.state, TaskState::Success);
        assert_eq!(child.map_item, Some(serde_json::json!(child.map_index)), "each instance keeps its item");
    }
    assert_eq!(h.output(&run.run_id, "each").await.as_array().unwrap().len(), 5000);
    assert_eq!(h.ti(&run.run_id, "after").await.state, TaskState::Success);
}

#[tokio::test]
async fn mapped_outputs_reach_downstream_in_map_index_order() {
    let dag = r#"
id = "ordered"
[tasks.list]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { output = [5, 4, 3, 2, 1, 0, 6, 7, 8, 9] } }
[tasks.each]
plugin = "plugins/echo.wasm"
upstream = ["list"]
map_over = "inputs.list"
[tasks.after]
plugin = "plugins/echo.wasm"
upstream = ["each"]
"#;
    let mut h = Harness::start(&[("ordered", dag)]).await;
    let (run, state) = h.run("ordered", json!({})).await;
    assert_eq!(state, RunState::Success);
    let after = h.output(&run.run_id, "after").await;
    let items: Vec<_> = after["inputs"]["each"].as_array().unwrap().iter().map(|o| o["map_item"].clone()).collect();
    assert_eq!(items, [5, 4, 3, 2, 1, 0, 6, 7, 8, 9].map(|n| json!(n)));
    let one = h.store.tries(&run.run_id, "each", 3).await.unwrap();
    assert!(one[0].log.as_deref().unwrap().contains("echo: task each try 1"));
}

#[tokio::test]
async fn mapping_over_an_upstream_output_and_over_something_that_is_not_a_list() {
    let dag = r#"
id = "from_output"
[tasks.list]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { output = { customers = ["acme", "globex"], count = 2 } } }
[tasks.per_customer]
plugin = "plugins/echo.wasm"
upstream = ["list"]
map_over = "inputs.list.customers"
[tasks.not_a_list]
plugin = "plugins/echo.wasm"
upstream = ["list"]
map_over = "inputs.list.count"
"#;
    let mut h = Harness::start(&[("from_output", dag)]).await;
    let (run, state) = h.run("from_output", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let items: Vec<_> =
        h.output(&run.run_id, "per_customer").await.as_array().unwrap().iter().map(|o| o["map_item"].clone()).collect();
    assert_eq!(items, [json!("acme"), json!("globex")]);
    let bad = h.ti(&run.run_id, "not_a_list").await;
    assert_eq!(bad.state, TaskState::Failed);
    assert_eq!(bad.reason.as_deref(), Some("map_over inputs.list.count is not a list: it is a number"));
}

#[tokio::test]
async fn one_mapped_instance_is_retried_on_its_own() {
    let dag = r#"
id = "flaky_map"
[tasks.each]
plugin = "plugins/hostile.wasm"
map_over = "conf.items"
params = { mode = "flaky", succeed_on_try = 2 }
retries = 1
retry_delay = "50ms"
"#;
    let mut h = Harness::start(&[("flaky_map", dag)]).await;
    let (run, state) = h.run("flaky_map", json!({"items": [1, 2, 3]})).await;
    assert_eq!(state, RunState::Success);
    for index in 0..3 {
        let tries = h.store.tries(&run.run_id, "each", index).await.unwrap();
        assert_eq!(tries.len(), 2, "instance {index} failed once and was retried alone");
    }
}

const BRANCHY: &str = r#"
id = "branchy"
[tasks.choose]
plugin = "plugins/hostile.wasm"
kind = "branch"
params = { mode = "result", result = { branch = ["left"] } }
[tasks.left]
plugin = "plugins/noop.wasm"
upstream = ["choose"]
[tasks.right]
plugin = "plugins/noop.wasm"
upstream = ["choose"]
[tasks.after_right]
plugin = "plugins/noop.wasm"
upstream = ["right"]
[tasks.join]
plugin = "plugins/noop.wasm"
upstream = ["left", "after_right"]
trigger_rule = "none_failed_min_one_success"
"#;

#[tokio::test]
async fn a_branch_follows_its_choice_and_a_join_still_runs() {
    let mut h = Harness::start(&[("branchy", BRANCHY)]).await;
    let (run, state) = h.run("branchy", json!({})).await;
    assert_eq!(state, RunState::Success);
    let expected = [
        ("choose", TaskState::Success),
        ("left", TaskState::Success),
        ("right", TaskState::Skipped),
        ("after_right", TaskState::Skipped),
        ("join", TaskState::Success),
    ];
    for (task, want) in expected {
        assert_eq!(h.ti(&run.run_id, task).await.state, want, "{task}");
    }
    assert_eq!(h.ti(&run.run_id, "right").await.reason.as_deref(), Some("not chosen by branch choose"));
}

#[tokio::test]
async fn a_branch_naming_a_task_that_is_not_directly_downstream_fails() {
    let dag =
        BRANCHY.replace("branch = [\"left\"]", "branch = [\"join\"]").replace("id = \"branchy\"", "id = \"astray\"");
    let mut h = Harness::start(&[("astray", &dag)]).await;
    let (run, state) = h.run("astray", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let reason = h.ti(&run.run_id, "choose").await.reason.unwrap();
    assert!(
        reason.starts_with("branch names `join`, which is not directly downstream of `choose` (downstream: left, right) (plugin sha256:"),
        "{reason}"
    );
}

fn overlap(tries: &[TryRow]) -> usize {
    let mut events = Vec::new();
    for t in tries {
        events.push((t.started_at, 1i32));
        events.push((t.ended_at.unwrap(), -1));
    }
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test]
async fn a_sensor_pokes_until_done_without_holding_a_slot() {
    let dag = r#"
id = "sensing"
[tasks.wait]
plugin = "plugins/hostile.wasm"
kind = "sensor"
poke_interval = "300ms"
params = { mode = "poke", done_on_poke = 3 }
[tasks.other]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 50 }
"#;
    let mut h = Harness::start_with(&[("sensing", dag)], |c| c.parallelism = 1).await;
    let (run, state) = h.run("sensing", json!({})).await;
    assert_eq!(state, RunState::Success);
    let pokes = h.store.tries(&run.run_id, "wait", -1).await.unwrap();
    let outcomes: Vec<_> = pokes.iter().map(|t| t.outcome.clone().unwrap()).collect();
    assert_eq!(outcomes, ["rescheduled", "rescheduled", "success"]);
    for pair in pokes.windows(2) {
        assert!(
            pair[1].started_at - pair[0].ended_at.unwrap() >= chrono::Duration::milliseconds(300),
            "poke interval kept"
        );
    }
    // With one slot, `other` could only run because the waiting sensor did not hold it.
    let other = &h.store.tries(&run.run_id, "other", -1).await.unwrap()[0];
    assert!(other.ended_at.unwrap() < pokes[2].started_at, "other ran while the sensor waited");
}

#[tokio::test]
async fn a_sensor_that_never_succeeds_times_out() {
    let dag = r#"
id = "impatient"
[tasks.wait]
plugin = "plugins/hostile.wasm"
kind = "sensor"
poke_interval = "100ms"
timeout = "400ms"
retries = 3
params = { mode = "poke", done_on_poke = 1000 }
"#;
    let mut h = Harness::start(&[("impatient", dag)]).await;
    let (run, state) = h.run("impatient", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let wait = h.ti(&run.run_id, "wait").await;
    assert!(
        wait.reason.as_deref().unwrap().starts_with("sensor timed out after 400ms (plugin sha256:"),
        "{:?}",
        wait.reason
    );
    let tries = h.store.tries(&run.run_id, "wait", -1).await.unwrap();
    assert!(tries.len() >= 4, "poked every 100 ms for 400 ms: {}", tries.len());
    assert_eq!(tries.last().unwrap().outcome.as_deref(), Some("sensor_timeout"));
}

#[tokio::test]
async fn a_pool_of_two_slots_never_runs_more_than_two() {
    let mut dag = String::from("id = \"pooled\"\n");
    for i in 0..6 {
        dag.push_str(&format!("[tasks.t{i}]\nplugin = \"plugins/hostile.wasm\"\npool = \"db\"\nparams = {{ mode = \"sleep\", ms = 150 }}\n"));
    }
    let mut h = Harness::start(&[("pooled", &dag)]).await;
    h.store.set_pool("db", 2, Some("two connections")).await.unwrap();
    h.handle.wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (run, state) = h.run("pooled", json!({})).await;
    assert_eq!(state, RunState::Success);
    let mut tries = Vec::new();
    for i in 0..6 {
        tries.extend(h.store.tries(&run.run_id, &format!("t{i}"), -1).await.unwrap());
    }
    assert_eq!(overlap(&tries), 2, "observed from the tries' own start and end times");
}

#[tokio::test]
async fn a_task_in_an_unknown_pool_or_too_big_for_its_pool_fails_clearly() {
    let dag = r#"
id = "poolless"
[tasks.nowhere]
plugin = "plugins/noop.wasm"
pool = "missing"
[tasks.huge]
plugin = "plugins/noop.wasm"
pool_slots = 500
"#;
    let mut h = Harness::start(&[("poolless", dag)]).await;
    let (run, _) = h.run("poolless", json!({})).await;
    assert_eq!(
        h.ti(&run.run_id, "nowhere").await.reason.as_deref(),
        Some("no pool `missing` (create it with: sandflow pools set missing SLOTS)")
    );
    assert_eq!(
        h.ti(&run.run_id, "huge").await.reason.as_deref(),
        Some("needs 500 slots of pool `default_pool`, which has 128")
    );
}

#[tokio::test]
async fn priority_weight_decides_who_runs_first_when_slots_are_short() {
    let dag = r#"
id = "priorities"
[tasks.low]
plugin = "plugins/noop.wasm"
priority_weight = 1
[tasks.high]
plugin = "plugins/noop.wasm"
priority_weight = 10
[tasks.middle]
plugin = "plugins/noop.wasm"
priority_weight = 5
"#;
    let mut h = Harness::start_with(&[("priorities", dag)], |c| c.parallelism = 1).await;
    let (run, _) = h.run("priorities", json!({})).await;
    let mut starts = Vec::new();
    for task in ["low", "high", "middle"] {
        starts.push((h.store.tries(&run.run_id, task, -1).await.unwrap()[0].started_at, task));
    }
    starts.sort();
    assert_eq!(starts.iter().map(|(_, t)| *t).collect::<Vec<_>>(), ["high", "middle", "low"]);
}

#[tokio::test]
async fn max_active_tasks_bounds_one_dags_tries() {
    let mut dag = String::from("id = \"narrow\"\nmax_active_tasks = 1\n");
    for i in 0..3 {
        dag.push_str(&format!(
            "[tasks.t{i}]\nplugin = \"plugins/hostile.wasm\"\nparams = {{ mode = \"sleep\", ms = 100 }}\n"
        ));
    }
    let mut h = Harness::start(&[("narrow", &dag)]).await;
    let (run, _) = h.run("narrow", json!({})).await;
    let mut tries = Vec::new();
    for i in 0..3 {
        tries.extend(h.store.tries(&run.run_id, &format!("t{i}"), -1).await.unwrap());
    }
    assert_eq!(overlap(&tries), 1);
}
