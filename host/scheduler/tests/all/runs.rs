//! Runs end to end: outputs flow downstream, retries, timeouts, limits on runs and tries, pauses,
//! triggers from tasks, schedules.

use std::time::Duration;

use sandflow_core::state::{RunState, TaskState};
use sandflow_scheduler::Notice;
use serde_json::json;

use crate::Harness;

const CHAIN: &str = r#"
id = "chain"
[tasks.a]
plugin = "plugins/echo.wasm"
params = { n = 1 }
[tasks.b]
plugin = "plugins/echo.wasm"
upstream = ["a"]
params = { n = 2 }
[tasks.c]
plugin = "plugins/echo.wasm"
upstream = ["b"]
"#;

#[tokio::test]
async fn outputs_flow_to_downstream_tasks_as_inputs() {
    let mut h = Harness::start(&[("chain", CHAIN)]).await;
    let (run, state) = h.run("chain", json!({"customer": "acme"})).await;
    assert_eq!(state, RunState::Success);
    let c = h.output(&run.run_id, "c").await;
    assert_eq!(c["inputs"]["b"]["params"], json!({"n": 2}));
    assert_eq!(c["inputs"]["b"]["inputs"]["a"]["params"], json!({"n": 1}));
    assert_eq!(c["conf"], json!({"customer": "acme"}));
    let run = h.store.run(&run.run_id).await.unwrap().unwrap();
    assert_eq!(run.triggered_by, "test");
    assert!(run.started_at.unwrap() <= run.ended_at.unwrap());
    let tries = h.store.tries(&run.run_id, "a", -1).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert!(tries[0].log.as_deref().unwrap().contains("echo: task a try 1"), "{:?}", tries[0].log);
    assert!(tries[0].fuel_used.unwrap() > 0);
}

#[tokio::test]
async fn a_failing_task_is_retried_then_fails_with_its_reason() {
    let dag = r#"
id = "flaky"
[defaults]
retries = 2
retry_delay = "100ms"
[tasks.always_fails]
plugin = "plugins/hostile.wasm"
params = { mode = "exit", code = 3 }
[tasks.after]
plugin = "plugins/noop.wasm"
upstream = ["always_fails"]
[tasks.recovers]
plugin = "plugins/hostile.wasm"
params = { mode = "flaky", succeed_on_try = 2 }
"#;
    let mut h = Harness::start(&[("flaky", dag)]).await;
    let (run, state) = h.run("flaky", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let ti = h.ti(&run.run_id, "always_fails").await;
    assert_eq!((ti.state, ti.try_number), (TaskState::Failed, 3));
    assert!(ti.reason.as_deref().unwrap().starts_with("exit code 3 (plugin sha256:"), "{:?}", ti.reason);
    let tries = h.store.tries(&run.run_id, "always_fails", -1).await.unwrap();
    assert_eq!(tries.iter().map(|t| t.outcome.as_deref().unwrap()).collect::<Vec<_>>(), ["exit_code"; 3]);
    for pair in tries.windows(2) {
        let waited = pair[1].started_at - pair[0].ended_at.unwrap();
        assert!(waited >= chrono::Duration::milliseconds(100), "retry delay respected: {waited}");
    }
    assert_eq!(h.ti(&run.run_id, "after").await.state, TaskState::UpstreamFailed);
    let recovers = h.ti(&run.run_id, "recovers").await;
    assert_eq!((recovers.state, recovers.try_number), (TaskState::Success, 2));
    assert_eq!(h.output(&run.run_id, "recovers").await, json!({"succeeded_on_try": 2}));
}

#[tokio::test]
async fn exponential_backoff_doubles_the_delay() {
    let dag = r#"
id = "backoff"
[tasks.fails]
plugin = "plugins/hostile.wasm"
params = { mode = "exit" }
retries = 2
retry_delay = "200ms"
retry_exponential_backoff = true
"#;
    let mut h = Harness::start(&[("backoff", dag)]).await;
    let (run, _) = h.run("backoff", json!({})).await;
    let tries = h.store.tries(&run.run_id, "fails", -1).await.unwrap();
    assert_eq!(tries.len(), 3);
    let second_wait = tries[2].started_at - tries[1].ended_at.unwrap();
    assert!(second_wait >= chrono::Duration::milliseconds(400), "second retry waits 2 × 200 ms: {second_wait}");
}

#[tokio::test]
async fn a_task_timeout_ends_the_try() {
    let dag = r#"
id = "slow"
[tasks.spin]
plugin = "plugins/hostile.wasm"
params = { mode = "loop" }
timeout = "300ms"
fuel = 900000000000
"#;
    let mut h = Harness::start(&[("slow", dag)]).await;
    let (run, state) = h.run("slow", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let ti = h.ti(&run.run_id, "spin").await;
    assert!(ti.reason.as_deref().unwrap().starts_with("timed out after 300ms (plugin sha256:"), "{:?}", ti.reason);
}

#[tokio::test]
async fn a_result_that_triggers_another_dag_starts_its_run() {
    let dag = r#"
id = "parent"
[tasks.kick]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { output = "kicked", trigger = [{ dag_id = "chain", conf = { from = "parent" } }] } }
"#;
    let mut h = Harness::start(&[("parent", dag), ("chain", CHAIN)]).await;
    let (run, state) = h.run("parent", json!({})).await;
    assert_eq!(state, RunState::Success);
    let child = h.store.runs(Some("chain"), 10).await.unwrap().pop().expect("a chain run was created");
    assert_eq!(child.triggered_by, format!("task:parent/{}/kick", run.run_id));
    assert_eq!(h.wait(&child.run_id).await, RunState::Success);
    assert_eq!(h.output(&child.run_id, "c").await["conf"], json!({"from": "parent"}));
}

#[tokio::test]
async fn runs_a_result_triggers_are_committed_with_the_try_that_asked_for_them() {
    let dag = r#"
id = "parent"
[tasks.kick]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { trigger = [{ dag_id = "chain", conf = { n = 1 } }, { dag_id = "chain", conf = { n = 2 } }] } }
"#;
    let mut h = Harness::start(&[("parent", dag), ("chain", CHAIN)]).await;
    let (run, state) = h.run("parent", json!({})).await;
    assert_eq!(state, RunState::Success);
    let tries = h.store.tries(&run.run_id, "kick", -1).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert!(tries[0].ended_at.is_some());
    // The worker reports the try's end; the scheduler's judgment of it ends the instance.
    let ended_at = h.ti(&run.run_id, "kick").await.ended_at.unwrap();
    let mut children = h.store.runs(Some("chain"), 10).await.unwrap();
    children.reverse();
    assert_eq!(children.len(), 2, "each request made exactly one run: {children:?}");
    // One decision, one transaction: the runs carry the time of the judgment that ended the
    // instance (a microsecond apart, so that their ids differ).
    assert_eq!(children[0].created_at, ended_at);
    assert_eq!(children[1].created_at, ended_at + chrono::Duration::microseconds(1));
    for (child, n) in children.iter().zip([1, 2]) {
        assert_eq!(child.triggered_by, format!("task:parent/{}/kick", run.run_id));
        assert_eq!(h.wait(&child.run_id).await, RunState::Success);
        assert_eq!(h.output(&child.run_id, "c").await["conf"], json!({ "n": n }));
    }
}

#[tokio::test]
async fn triggering_an_unknown_dag_fails_the_task() {
    let dag = r#"
id = "lost"
[tasks.kick]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { trigger = [{ dag_id = "nowhere" }] } }
"#;
    let mut h = Harness::start(&[("lost", dag)]).await;
    let (run, state) = h.run("lost", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let reason = h.ti(&run.run_id, "kick").await.reason.unwrap();
    assert!(reason.starts_with("trigger: no DAG `nowhere` (known: lost) (plugin sha256:"), "{reason}");
    let tries = h.store.tries(&run.run_id, "kick", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("trigger_failed"));
    assert_eq!(h.store.runs(None, 10).await.unwrap().len(), 1, "no run but the one that failed");
}

#[tokio::test]
async fn one_bad_request_among_several_fails_the_task_and_creates_no_run() {
    let dag = r#"
id = "kicker"
[tasks.kick]
plugin = "plugins/hostile.wasm"
params = { mode = "result", result = { trigger = [{ dag_id = "chain" }, { dag_id = "nowhere" }] } }
"#;
    let mut h = Harness::start(&[("kicker", dag), ("chain", CHAIN)]).await;
    let (run, state) = h.run("kicker", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let tries = h.store.tries(&run.run_id, "kick", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("trigger_failed"));
    assert!(h.store.runs(Some("chain"), 10).await.unwrap().is_empty(), "the first request's run is not created alone");
}

#[tokio::test]
async fn max_active_runs_holds_runs_in_the_queue() {
    let dag = r#"
id = "one_at_a_time"
max_active_runs = 1
[tasks.wait]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 150 }
"#;
    let mut h = Harness::start(&[("one_at_a_time", dag)]).await;
    let runs = [
        h.trigger("one_at_a_time", json!({})).await,
        h.trigger("one_at_a_time", json!({})).await,
        h.trigger("one_at_a_time", json!({})).await,
    ];
    let mut running = 0;
    let mut most = 0;
    let mut ended = 0;
    while ended < runs.len() {
        match tokio::time::timeout(Duration::from_secs(30), h.notices.recv()).await.unwrap().unwrap() {
            Notice::RunStarted { .. } => {
                running += 1;
                most = most.max(running);
            }
            Notice::RunFinished { .. } => {
                running -= 1;
                ended += 1;
            }
            _ => {}
        }
    }
    assert_eq!(most, 1, "never more than one run of the DAG at once");
    let stored = h.store.runs(Some("one_at_a_time"), 10).await.unwrap();
    let mut spans: Vec<_> = stored.iter().map(|r| (r.started_at.unwrap(), r.ended_at.unwrap())).collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs did not overlap in the store either: {pair:?}");
    }
}

#[tokio::test]
async fn parallelism_bounds_tries_across_dags() {
    let dag = r#"
id = "wide"
[tasks.a]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 200 }
[tasks.b]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 200 }
[tasks.c]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 200 }
[tasks.d]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 200 }
"#;
    let mut h = Harness::start_with(&[("wide", dag)], |c| c.parallelism = 2).await;
    let (run, state) = h.run("wide", json!({})).await;
    assert_eq!(state, RunState::Success);
    let mut events = Vec::new();
    for task in ["a", "b", "c", "d"] {
        let t = &h.store.tries(&run.run_id, task, -1).await.unwrap()[0];
        events.push((t.started_at, 1));
        events.push((t.ended_at.unwrap(), -1));
    }
    events.sort();
    let mut at_once = 0;
    let mut most = 0;
    for (_, delta) in events {
        at_once += delta;
        most = most.max(at_once);
    }
    assert_eq!(most, 2, "two tries at once, as configured");
}

#[tokio::test]
async fn a_paused_dag_keeps_its_runs_queued_until_unpaused() {
    let mut h = Harness::start(&[("chain", CHAIN)]).await;
    h.store.set_paused("chain", true).await.unwrap();
    h.handle.wake();
    let run = h.trigger("chain", json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.store.run(&run.run_id).await.unwrap().unwrap().state, RunState::Queued);
    h.store.set_paused("chain", false).await.unwrap();
    h.handle.wake();
    assert_eq!(h.wait(&run.run_id).await, RunState::Success);
}

#[tokio::test]
async fn new_dags_start_paused_when_configured() {
    let h = Harness::start_with(&[("chain", CHAIN)], |c| c.paused_at_creation = true).await;
    assert!(h.store.dag("chain").await.unwrap().unwrap().is_paused);
    let unpaused = CHAIN.replace("id = \"chain\"", "id = \"chain2\"\nis_paused_upon_creation = false");
    crate::write_dag(h.path(), "chain2", &unpaused);
    h.handle.wake();
    for _ in 0..50 {
        if let Some(dag) = h.store.dag("chain2").await.unwrap() {
            assert!(!dag.is_paused, "the file's setting wins");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chain2 was not loaded");
}

#[tokio::test]
async fn a_schedule_creates_runs_for_ended_intervals() {
    let dag = r#"
id = "every_second"
schedule = "* * * * * *"
start_date = "2026-01-01"
[tasks.a]
plugin = "plugins/noop.wasm"
"#;
    let h = Harness::start(&[("every_second", dag)]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let run = loop {
        if let Some(run) = h.store.runs(Some("every_second"), 1).await.unwrap().pop() {
            break run;
        }
        assert!(std::time::Instant::now() < deadline, "no scheduled run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(run.run_type, sandflow_store::RunType::Scheduled);
    let (start, end) = (run.interval_start.unwrap(), run.interval_end.unwrap());
    assert_eq!(end - start, chrono::Duration::seconds(1));
    assert!(run.created_at >= end, "created once its interval ended");
    assert_eq!(run.logical_date, start);
    assert!(start > chrono::Utc::now() - chrono::Duration::seconds(30), "catchup = false: no run for January");
}

#[tokio::test]
async fn two_dags_on_one_schedule_both_get_their_scheduled_runs() {
    let daily = |id: &str| {
        format!("id = \"{id}\"\nschedule = \"@daily\"\nstart_date = \"2026-01-01\"\n[tasks.a]\nplugin = \"plugins/noop.wasm\"\n")
    };
    let (first, second) = (daily("first"), daily("second"));
    let h = Harness::start(&[("first", &first), ("second", &second)]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut runs = Vec::new();
    for dag_id in ["first", "second"] {
        let run = loop {
            if let Some(run) = h.store.runs(Some(dag_id), 1).await.unwrap().pop() {
                break run;
            }
            assert!(std::time::Instant::now() < deadline, "{dag_id} got no scheduled run");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(run.run_type, sandflow_store::RunType::Scheduled);
        runs.push(run);
    }
    assert_eq!(runs[0].interval_start, runs[1].interval_start, "the same interval");
    assert_ne!(runs[0].run_id, runs[1].run_id);
    assert!(runs[0].run_id.starts_with("scheduled__first__"), "{}", runs[0].run_id);
}
