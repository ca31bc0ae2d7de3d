//! `/metrics`: what the scheduler and worker of this process counted, and what the store holds,
//! in Prometheus' text format.

use serde_json::json;

use crate::{chain_dag, targz, Server};

/// The value of the sample `series` (name and labels, as rendered), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_runs_and_tries_by_outcome_with_histograms_and_the_queue() {
    let server = Server::with_scheduler().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let dag = chain_dag("metered", 2, 1);
    let (status, report) =
        server.push(targz(&[("metered.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "alice").await;
    assert_eq!(status, 201, "{report}");
    let (status, run) = server.post("/api/v1/dags/metered/runs", json!({})).await;
    assert_eq!(status, 201, "{run}");
    let run = server.wait_run(run["run_id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "success", "{run}");

    let response = server.http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = response.text().await.unwrap();
    // The recorder is the process's: other tests' runs count too, so these are lower bounds.
    assert!(sample(&text, r#"sandflow_runs_ended_total{state="success"}"#).is_some_and(|n| n >= 1.0), "{text}");
    assert!(sample(&text, r#"sandflow_tries_total{outcome="success"}"#).is_some_and(|n| n >= 2.0), "{text}");
    assert!(sample(&text, "sandflow_fuel_used_total").is_some_and(|n| n > 0.0), "{text}");
    assert!(sample(&text, r#"sandflow_try_duration_seconds_count{outcome="success"}"#).is_some_and(|n| n >= 2.0));
    assert!(text.contains(r#"sandflow_try_duration_seconds_bucket{outcome="success",le="0.1"}"#), "{text}");
    assert!(sample(&text, "sandflow_scheduling_delay_seconds_count").is_some_and(|n| n >= 2.0), "{text}");
    assert!(text.contains("# HELP sandflow_scheduling_delay_seconds"), "{text}");
    // Queue depth, from the store: this server's store has nothing waiting now.
    assert_eq!(sample(&text, r#"sandflow_task_instances{state="queued"}"#), Some(0.0), "{text}");
    assert_eq!(sample(&text, r#"sandflow_task_instances{state="running"}"#), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_depth_counts_what_waits_and_runs_in_the_store() {
    let server = Server::with_scheduler().await;
    let hostile = sandflow_test_artifacts::bytes("hostile");
    let dag = r#"
id = "naps"
[tasks.nap]
plugin = "plugins/hostile.wasm"
params = { mode = "sleep", ms = 20000 }
[tasks.after]
plugin = "plugins/hostile.wasm"
upstream = ["nap"]
"#;
    let (status, report) =
        server.push(targz(&[("naps.toml", dag.as_bytes()), ("plugins/hostile.wasm", &hostile)]), "", "a").await;
    assert_eq!(status, 201, "{report}");
    let (status, run) = server.post("/api/v1/dags/naps/runs", json!({})).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    for _ in 0..500 {
        let (_, tasks) = server.get(&format!("/api/v1/runs/{run_id}/tasks")).await;
        if tasks["items"].as_array().is_some_and(|t| t.iter().any(|t| t["state"] == "running")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let text = server.http.get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, r#"sandflow_task_instances{state="running"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, r#"sandflow_task_instances{state="queued"}"#), Some(0.0), "{text}");
    for state in ["scheduled", "up_for_retry", "up_for_reschedule"] {
        assert!(sample(&text, &format!(r#"sandflow_task_instances{{state="{state}"}}"#)).is_some(), "{state}: {text}");
    }
    let (status, _) = server.post(&format!("/api/v1/runs/{run_id}/mark"), json!({"state": "failed"})).await;
    assert_eq!(status, 200);
}
