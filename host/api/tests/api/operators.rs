//! ABI v2 operators through the API: the progress a running try reports (`host.progress`) is on
//! its try while it runs, its log has the levels of `host.log`, and `host.metric`'s figures are
//! stored with the instance.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{targz, Server};

const DAG: &str = r#"
id = "v2"
[tasks.slow]
plugin = "plugins/operator.wasm"
params = { mode = "slow", seconds = 4 }
[tasks.echo]
plugin = "plugins/operator.wasm"
params = { mode = "echo" }
upstream = ["slow"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_operators_progress_levels_and_metrics_reach_the_api() {
    let server = Server::with_scheduler().await;
    let bundle =
        targz(&[("v2.toml", DAG.as_bytes()), ("plugins/operator.wasm", &sandflow_test_artifacts::bytes("operator"))]);
    let (status, report) = server.push(bundle, "", "alice").await;
    assert_eq!(status, 201, "{report}");
    let (_, plugins) = server.get("/api/v1/plugins").await;
    assert!(plugins.to_string().contains("v2_operator"), "the store tells v2 from v1: {plugins}");
    let (status, run) = server.post("/api/v1/dags/v2/runs", json!({})).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let tries = format!("/api/v1/runs/{run_id}/tasks/slow/tries");
    let mut seen: Option<Value> = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, body) = server.get(&tries).await;
        let running = body["items"].as_array().and_then(|t| t.first()).filter(|t| t["outcome"].is_null()).cloned();
        if let Some(t) = running.filter(|t| t["progress"].as_f64().is_some_and(|p| p > 0.0)) {
            seen = Some(t);
            break;
        }
    }
    let seen = seen.expect("the running try's progress was never on the API");
    assert!(seen["progress"].as_f64().unwrap() < 1.0, "{seen}");
    assert!(seen["progress_message"].as_str().unwrap().ends_with("% through"), "{seen}");

    assert_eq!(server.wait_run(&run_id).await["state"], "success");
    let (_, log) = server.get(&format!("/api/v1/runs/{run_id}/tasks/echo/tries/1/log")).await;
    let text = log["text"].as_str().unwrap();
    for line in [" WARN a warning", " ERROR an error line", " printed on stdout"] {
        assert!(text.contains(line), "{line:?} not in:\n{text}");
    }
    let (_, instances) = server.get(&format!("/api/v1/runs/{run_id}/tasks")).await;
    let echo = instances["items"].as_array().unwrap().iter().find(|t| t["task_id"] == "echo").unwrap();
    assert_eq!(echo["metrics"]["sent"], 7.0, "{echo}");
}
