//! Bundles over HTTP: a push's DAG runs; a changed push is a new version; experiments of one DAG
//! run side by side on their own plugin bytes and compare; plugins by hash.

use serde_json::json;

use crate::{chain_dag, enc, targz, Backend, Server};

fn echo() -> Vec<u8> {
    sandflow_test_artifacts::bytes("echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_bundle_runs_and_a_changed_push_is_a_new_active_version() {
    pushed_bundle_runs(Server::with_scheduler().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_pushed_bundle_runs_and_a_changed_push_is_a_new_active_version() {
    pushed_bundle_runs(Server::start_on(Backend::Postgres, true).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_two_experiments_of_one_dag_run_side_by_side_and_compare() {
    experiments_side_by_side(Server::start_on(Backend::Postgres, true).await).await
}

async fn pushed_bundle_runs(server: Server) {
    let (echo, dag) = (echo(), chain_dag("pipeline", 3, 1));
    let (status, report) =
        server.push(targz(&[("pipeline.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "alice").await;
    assert_eq!(status, 201, "{report}");
    let pushed = &report["dags"][0];
    assert_eq!(
        (pushed["dag_id"].as_str(), pushed["new_dag"].as_bool(), pushed["tasks"].as_u64()),
        (Some("pipeline"), Some(true), Some(3))
    );
    assert_eq!(report["plugins"][0]["new"], true);
    let v1 = pushed["version"].as_str().unwrap().to_string();

    let (status, run) =
        server.post("/api/v1/dags/pipeline/runs", json!({"conf": {"k": [1, 2]}, "note": "first"})).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(
        (run["conf"]["k"][1].as_i64(), run["dag_paused"].as_bool()),
        (Some(2), Some(false)),
        "conf is an object"
    );
    let run = server.wait_run(run["run_id"].as_str().unwrap()).await;
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["triggered_by"], "alice");
    assert_eq!(run["tasks"].as_array().unwrap().len(), 3);
    assert!(run["tasks"][0]["output"].is_object(), "outputs are JSON objects, not strings: {run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (status, tries) = server.get(&format!("/api/v1/runs/{}/tasks/t0/tries", enc(run_id))).await;
    assert_eq!(status, 200, "{tries}");
    let first = &tries["items"][0];
    assert_eq!(first["outcome"], "success");
    assert!(first["fuel_used"].as_i64().unwrap() > 0 && first["peak_memory"].as_i64().unwrap() > 0, "{first}");
    assert_eq!(first["plugin_id"], report["plugins"][0]["plugin_id"]);
    let (status, log) = server.get(&format!("/api/v1/runs/{}/tasks/t0/tries/1/log?offset=0", enc(run_id))).await;
    assert_eq!((status, log["complete"].as_bool()), (200, Some(true)), "{log}");

    // The same bundle again: nothing new. A changed DAG: a new version, active.
    let again = targz(&[("pipeline.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]);
    let (_, report) = server.push(again, "", "alice").await;
    assert_eq!(
        (report["dags"][0]["new_version"].as_bool(), report["plugins"][0]["new"].as_bool()),
        (Some(false), Some(false))
    );
    let changed = chain_dag("pipeline", 4, 2);
    let (_, report) =
        server.push(targz(&[("pipeline.toml", changed.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "bob").await;
    let v2 = report["dags"][0]["version"].as_str().unwrap().to_string();
    assert!(report["dags"][0]["activated"].as_bool().unwrap() && v2 != v1, "{report}");
    let (_, dag) = server.get("/api/v1/dags/pipeline").await;
    assert_eq!(dag["active_version"], v2.as_str());
    let (_, diff) = server.get(&format!("/api/v1/dags/pipeline/versions/diff?from={v1}&to={v2}")).await;
    assert_eq!(diff["tasks_added"], json!(["t3"]), "{diff}");
    let changed: Vec<_> =
        diff["tasks_changed"].as_array().unwrap().iter().map(|c| c["task_id"].as_str().unwrap()).collect();
    assert_eq!(changed, ["t0", "t1", "t2"], "params changed: {diff}");
    assert_eq!(diff["tasks_changed"][0]["plugin_changed"], false);
    // --no-activate keeps the active version; activating is its own call.
    let third = chain_dag("pipeline", 2, 3);
    let (_, report) = server
        .push(targz(&[("pipeline.toml", third.as_bytes()), ("plugins/echo.wasm", &echo)]), "no_activate=true", "bob")
        .await;
    let v3 = report["dags"][0]["version"].as_str().unwrap().to_string();
    assert_eq!(report["dags"][0]["activated"], false);
    assert_eq!(server.get("/api/v1/dags/pipeline").await.1["active_version"], v2.as_str());
    let (status, _) = server.post(&format!("/api/v1/dags/pipeline/versions/{v3}/activate"), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/v1/dags/pipeline").await.1["active_version"], v3.as_str());
    let (_, versions) = server.get("/api/v1/dags/pipeline/versions").await;
    assert_eq!(versions["items"].as_array().unwrap().len(), 3);
    assert!(versions["items"].as_array().unwrap().iter().all(|v| v["origin"] == "bundle"));
    // The plugin knows who pins it.
    let id = report["plugins"][0]["plugin_id"].as_str().unwrap();
    let (_, plugin) = server.get(&format!("/api/v1/plugins/{}", enc(id))).await;
    assert_eq!(plugin["used_by"].as_array().unwrap().len(), 3, "{plugin}");
    let bytes = server.http.get(server.url(&format!("/api/v1/plugins/{}/bytes", enc(id)))).send().await.unwrap();
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), echo.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_experiments_of_one_dag_run_side_by_side_and_compare() {
    experiments_side_by_side(Server::with_scheduler().await).await
}

async fn experiments_side_by_side(server: Server) {
    let (echo, noop) = (echo(), sandflow_test_artifacts::bytes("noop"));
    let dag = chain_dag("train", 2, 1);
    let (status, _) =
        server.push(targz(&[("train.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "ops").await;
    assert_eq!(status, 201);
    // Alice changes a param; Bob swaps the plugin's bytes under the same path.
    let alice = chain_dag("train", 2, 7);
    let (status, a) = server
        .push(
            targz(&[("train.toml", alice.as_bytes()), ("plugins/echo.wasm", &echo)]),
            "experiment=alice-lr&note=higher",
            "alice",
        )
        .await;
    assert_eq!(status, 201, "{a}");
    let (_, b) = server
        .push(targz(&[("train.toml", dag.as_bytes()), ("plugins/echo.wasm", &noop)]), "experiment=bob-noop", "bob")
        .await;
    let (va, vb) = (a["dags"][0]["version"].as_str().unwrap(), b["dags"][0]["version"].as_str().unwrap());
    assert_ne!(va, vb);
    assert_eq!((a["dags"][0]["activated"].as_bool(), b["dags"][0]["activated"].as_bool()), (Some(false), Some(false)));
    let (_, dag_now) = server.get("/api/v1/dags/train").await;
    assert_ne!(dag_now["active_version"], va, "an experiment is never active");
    let (_, ra) = server.post("/api/v1/dags/train/runs", json!({"experiment": "alice-lr", "note": "a"})).await;
    let (_, rb) = server.post("/api/v1/dags/train/runs", json!({"experiment": "bob-noop"})).await;
    assert_eq!((ra["version"].as_str(), rb["version"].as_str()), (Some(va), Some(vb)), "{ra} {rb}");
    let (ra, rb) = (ra["run_id"].as_str().unwrap().to_string(), rb["run_id"].as_str().unwrap().to_string());
    let (done_a, done_b) = (server.wait_run(&ra).await, server.wait_run(&rb).await);
    assert_eq!((done_a["state"].as_str(), done_b["state"].as_str()), (Some("success"), Some("success")));
    assert_eq!((done_a["experiment"].as_str(), done_b["experiment"].as_str()), (Some("alice-lr"), Some("bob-noop")));
    assert_ne!(done_a["plugin_ids"], done_b["plugin_ids"], "each ran its own plugin bytes");
    let (_, runs) = server.get("/api/v1/runs?experiment=alice-lr").await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 1);
    let (status, cmp) = server.get(&format!("/api/v1/dags/train/compare?runs={},{}", enc(&ra), enc(&rb))).await;
    assert_eq!(status, 200, "{cmp}");
    let t0 = cmp["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "t0").unwrap();
    assert_eq!(t0["output_differs"], true, "echo and noop give different outputs: {t0}");
    assert!(t0["per_run"][0]["fuel_used"].as_i64().unwrap() > 0);
    assert_ne!(t0["per_run"][0]["plugin_id"], t0["per_run"][1]["plugin_id"]);
    let (_, experiments) = server.get("/api/v1/dags/train/experiments").await;
    let names: Vec<_> = experiments["items"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice-lr", "bob-noop"]);
    assert_eq!(experiments["items"][0]["versions"][0]["author"], "alice");
    // An experiment of a DAG the server does not have is refused, naming the way out.
    let (status, refused) = server
        .push(
            targz(&[("new.toml", chain_dag("brand_new", 1, 1).as_bytes()), ("plugins/echo.wasm", &echo)]),
            "experiment=x",
            "alice",
        )
        .await;
    assert_eq!((status, refused["diagnostics"][0]["code"].as_str()), (422, Some("unknown_dag")), "{refused}");
    assert_eq!(server.get("/api/v1/dags/brand_new").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_page_by_cursor_and_events_follow_a_run_to_its_end() {
    let server = Server::with_scheduler().await;
    let dag = chain_dag("paged", 1, 1);
    server.push(targz(&[("paged.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo())]), "", "ops").await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let (status, run) = server.post("/api/v1/dags/paged/runs", json!({})).await;
        assert_eq!(status, 201);
        ids.push(run["run_id"].as_str().unwrap().to_string());
    }
    let (_, first) = server.get("/api/v1/dags/paged/runs?limit=3&total=true").await;
    assert_eq!((first["items"].as_array().unwrap().len(), first["total"].as_i64()), (3, Some(7)));
    assert_eq!(first["items"][0]["run_id"], ids[6].as_str(), "newest first");
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, second) = server.get(&format!("/api/v1/dags/paged/runs?limit=3&cursor={cursor}")).await;
    assert_eq!(second["items"][0]["run_id"], ids[3].as_str());
    let (_, oldest) = server.get("/api/v1/runs?order_by=created_at&limit=1").await;
    assert_eq!(oldest["items"][0]["run_id"], ids[0].as_str());
    // Events of the last run: its snapshot, then changes, ending with the run's end.
    let response = server.http.get(server.url(&format!("/api/v1/runs/{}/events", enc(&ids[6])))).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(std::time::Duration::from_secs(60), response.text()).await.unwrap().unwrap();
    let last_run_event = text.split("\n\n").filter(|b| b.contains("event: run")).last().unwrap().to_string();
    assert!(last_run_event.contains("\"state\":\"success\""), "{text}");
    assert!(text.contains("event: task"), "{text}");
}
