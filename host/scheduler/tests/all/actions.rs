//! Clear (kill, then rerun) and mark, carried out by a running scheduler.

use std::time::Duration;

use sandflow_core::state::{RunState, TaskState};
use sandflow_scheduler::actions::{Action, MarkState};
use sandflow_store::ActionState;
use serde_json::json;

use crate::Harness;

const SLOW: &str = r#"
id = "slow"
[tasks.first]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 60000 }
[tasks.second]
plugin = "plugins/echo.wasm"
upstream = ["first"]
"#;

fn clear(run_id: &str, task: &str, downstream: bool) -> Action {
    Action::Clear {
        dag_id: "slow".into(),
        run_ids: vec![run_id.into()],
        task_ids: vec![task.into()],
        map_index: None,
        downstream,
        upstream: false,
        only_failed: false,
    }
}

#[tokio::test]
async fn clearing_a_running_task_kills_its_try_at_once_then_runs_it_again() {
    let h = Harness::start(&[("slow", SLOW)]).await;
    let run = h.trigger("slow", json!({})).await;
    h.until(&run.run_id, "first running", |tis| {
        tis.iter().any(|t| t.task_id == "first" && t.state == TaskState::Running)
    })
    .await;
    let asked = chrono::Utc::now();
    let summary = h.act(clear(&run.run_id, "first", false)).await;
    assert_eq!(summary, "cleared 1 task instance in 1 run (killed 1 running try)");
    h.until(&run.run_id, "the second try", |tis| {
        tis.iter().any(|t| t.task_id == "first" && t.try_number == 2 && t.state == TaskState::Running)
    })
    .await;
    let tries = h.store.tries(&run.run_id, "first", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("killed"));
    let killed_after = tries[0].ended_at.unwrap() - asked;
    assert!(killed_after < chrono::Duration::seconds(1), "killed {killed_after} after the clear was asked");
    let action = h.store.action(1).await.unwrap().unwrap();
    assert_eq!(
        (action.kind.as_str(), action.requested_by.as_str(), action.state.as_str()),
        ("clear", "tester", "done")
    );
}

#[tokio::test]
async fn clearing_with_downstream_reruns_everything_after_it() {
    let dag = r#"
id = "chain3"
[tasks.a]
plugin = "plugins/echo.wasm"
[tasks.b]
plugin = "plugins/echo.wasm"
upstream = ["a"]
[tasks.c]
plugin = "plugins/echo.wasm"
upstream = ["b"]
[tasks.side]
plugin = "plugins/echo.wasm"
"#;
    let mut h = Harness::start(&[("chain3", dag)]).await;
    let (run, state) = h.run("chain3", json!({})).await;
    assert_eq!(state, RunState::Success);
    let action = Action::Clear {
        dag_id: "chain3".into(),
        run_ids: vec![run.run_id.clone()],
        task_ids: vec!["b".into()],
        map_index: None,
        downstream: true,
        upstream: false,
        only_failed: false,
    };
    assert_eq!(h.act(action).await, "cleared 2 task instances in 1 run (killed 0 running tries)");
    assert_eq!(h.wait(&run.run_id).await, RunState::Success);
    let tries = |task: &'static str| {
        let store = h.store.clone();
        let run_id = run.run_id.clone();
        async move { store.tries(&run_id, task, -1).await.unwrap().len() }
    };
    assert_eq!((tries("a").await, tries("b").await, tries("c").await, tries("side").await), (1, 2, 2, 1));
}

#[tokio::test]
async fn clearing_only_failed_tasks_of_a_failed_run_reruns_them() {
    let dag = r#"
id = "once_broken"
[tasks.ok]
plugin = "plugins/echo.wasm"
[tasks.flaky]
plugin = "plugins/hostile.wasm"
params = { mode = "flaky", succeed_on_try = 2 }
[tasks.after]
plugin = "plugins/echo.wasm"
upstream = ["flaky"]
"#;
    let mut h = Harness::start(&[("once_broken", dag)]).await;
    let (run, state) = h.run("once_broken", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let action = Action::Clear {
        dag_id: "once_broken".into(),
        run_ids: vec![run.run_id.clone()],
        task_ids: vec![],
        map_index: None,
        downstream: false,
        upstream: false,
        only_failed: true,
    };
    assert_eq!(h.act(action).await, "cleared 2 task instances in 1 run (killed 0 running tries)");
    assert_eq!(h.wait(&run.run_id).await, RunState::Success);
    assert_eq!(h.store.tries(&run.run_id, "ok", -1).await.unwrap().len(), 1, "the good task did not run again");
    assert_eq!(h.ti(&run.run_id, "flaky").await.try_number, 2);
}

#[tokio::test]
async fn marking_a_running_task_failed_propagates_upstream_failed() {
    let h = Harness::start(&[("slow", SLOW)]).await;
    let run = h.trigger("slow", json!({})).await;
    h.until(&run.run_id, "first running", |tis| {
        tis.iter().any(|t| t.task_id == "first" && t.state == TaskState::Running)
    })
    .await;
    let action = Action::Mark {
        dag_id: "slow".into(),
        run_id: run.run_id.clone(),
        task_id: Some("first".into()),
        map_index: None,
        state: MarkState::Failed,
    };
    assert_eq!(h.act(action).await, format!("marked first failed in run {}", run.run_id));
    h.until(&run.run_id, "second upstream_failed", |tis| {
        tis.iter().any(|t| t.task_id == "second" && t.state == TaskState::UpstreamFailed)
    })
    .await;
    let first = h.ti(&run.run_id, "first").await;
    assert_eq!(first.state, TaskState::Failed);
    assert_eq!(first.reason.as_deref(), Some("marked failed by tester"));
    for _ in 0..100 {
        if h.store.run(&run.run_id).await.unwrap().unwrap().state == RunState::Failed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.store.run(&run.run_id).await.unwrap().unwrap().state, RunState::Failed);
    let tries = h.store.tries(&run.run_id, "first", -1).await.unwrap();
    assert_eq!(tries[0].outcome.as_deref(), Some("killed"), "the running try was stopped");
}

#[tokio::test]
async fn marking_a_failed_task_success_lets_its_downstream_run() {
    let dag = r#"
id = "fixable"
[tasks.broken]
plugin = "plugins/hostile.wasm"
params = { mode = "exit" }
[tasks.next]
plugin = "plugins/echo.wasm"
upstream = ["broken"]
trigger_rule = "all_done"
[tasks.strict]
plugin = "plugins/echo.wasm"
upstream = ["broken"]
"#;
    let mut h = Harness::start(&[("fixable", dag)]).await;
    let (run, state) = h.run("fixable", json!({})).await;
    assert_eq!(state, RunState::Failed);
    let action = Action::Mark {
        dag_id: "fixable".into(),
        run_id: run.run_id.clone(),
        task_id: Some("broken".into()),
        map_index: None,
        state: MarkState::Success,
    };
    h.act(action).await;
    let clear_strict = Action::Clear {
        dag_id: "fixable".into(),
        run_ids: vec![run.run_id.clone()],
        task_ids: vec!["strict".into()],
        map_index: None,
        downstream: false,
        upstream: false,
        only_failed: false,
    };
    h.act(clear_strict).await;
    assert_eq!(h.wait(&run.run_id).await, RunState::Success);
    assert_eq!(h.ti(&run.run_id, "strict").await.state, TaskState::Success);
}

#[tokio::test]
async fn an_action_on_an_unknown_run_or_task_fails_with_a_reason() {
    let h = Harness::start(&[("slow", SLOW)]).await;
    let id = h
        .store
        .enqueue_action("clear", &serde_json::to_value(clear("no-such-run", "first", false)).unwrap(), "tester")
        .await
        .unwrap();
    h.handle.wake();
    for _ in 0..200 {
        let row = h.store.action(id).await.unwrap().unwrap();
        if !matches!(row.state, ActionState::Pending | ActionState::Running) {
            assert_eq!(
                (row.state.as_str(), row.result.as_deref()),
                ("failed", Some("DAG `slow` has no run `no-such-run`"))
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("not carried out");
}

#[tokio::test]
async fn a_run_another_process_cleared_and_decided_is_picked_up_and_runs() {
    let dag = r#"
id = "elsewhere"
[tasks.only]
plugin = "plugins/echo.wasm"
"#;
    let mut h = Harness::start(&[("elsewhere", dag)]).await;
    let (run, state) = h.run("elsewhere", json!({})).await;
    assert_eq!(state, RunState::Success);
    // Another process (a command line finding no owner of the store) carries out a clear and
    // decides what it unblocks: the instance is committed as scheduled, and nothing queues it.
    let clear = Action::Clear {
        dag_id: "elsewhere".into(),
        run_ids: vec![run.run_id.clone()],
        task_ids: vec![],
        map_index: None,
        downstream: false,
        upstream: false,
        only_failed: false,
    };
    h.store.enqueue_action("clear", &serde_json::to_value(&clear).unwrap(), "elsewhere").await.unwrap();
    let sandbox = sandflow_sandbox::Sandbox::new(sandflow_sandbox::SandboxConfig::default()).unwrap();
    let config = sandflow_scheduler::SchedulerConfig { create_scheduled_runs: false, ..Default::default() };
    let mut other = sandflow_scheduler::Scheduler::new(h.store.clone(), sandbox, config);
    let results = other.carry_out_pending().await.unwrap();
    assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
    // The running scheduler picks the run up and queues the scheduled instance.
    h.until(&run.run_id, "the cleared task ran again", |tis| {
        tis.iter().any(|ti| ti.task_id == "only" && ti.state == TaskState::Success && ti.try_number == 2)
    })
    .await;
    assert_eq!(h.wait(&run.run_id).await, RunState::Success);
}
