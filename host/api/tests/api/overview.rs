//! What the UI's views read: a DAG's latest runs and next run in the list, the grid of runs ×
//! tasks with a mapped task counted, a run's timeline and critical path, plugins with their
//! languages and pins, and a bundle's dry run that stores nothing.

use serde_json::{json, Value};

use crate::{enc, targz, Backend, Server};

/// `src` → `each` (mapped over the run's `conf.items`) → `last`.
const SHAPES: &str = r#"
id = "shapes"
[tasks.src]
plugin = "plugins/echo.wasm"
[tasks.each]
plugin = "plugins/echo.wasm"
upstream = ["src"]
map_over = "conf.items"
[tasks.last]
plugin = "plugins/echo.wasm"
upstream = ["each"]
"#;

fn shapes_bundle(dag: &str) -> Vec<u8> {
    targz(&[("shapes.toml", dag.as_bytes()), ("plugins/echo.wasm", &sandflow_test_artifacts::bytes("echo"))])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grid_and_timeline_count_a_mapped_task_and_find_the_critical_path() {
    grid_and_timeline(Server::with_scheduler().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_the_grid_and_timeline_count_a_mapped_task_and_find_the_critical_path() {
    grid_and_timeline(Server::start_on(Backend::Postgres, true).await).await
}

async fn trigger(server: &Server, items: Value) -> String {
    let (status, run) = server.post("/api/v1/dags/shapes/runs", json!({"conf": {"items": items}})).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    assert_eq!(server.wait_run(&run_id).await["state"], "success");
    run_id
}

async fn grid_and_timeline(server: Server) {
    let (status, report) = server.push(shapes_bundle(SHAPES), "", "alice").await;
    assert_eq!(status, 201, "{report}");
    let first = trigger(&server, json!([1, 2, 3])).await;
    let second = trigger(&server, json!([1, 2, 3, 4, 5])).await;

    // The list and the DAG: the latest runs, newest first; no schedule, no next run.
    let (_, list) = server.get("/api/v1/dags").await;
    let shapes = list["items"].as_array().unwrap().iter().find(|d| d["dag_id"] == "shapes").unwrap().clone();
    let recent: Vec<&str> =
        shapes["recent_runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(recent, [second.as_str(), first.as_str()], "{shapes}");
    assert_eq!(shapes["last_run"]["run_id"], second.as_str());
    assert_eq!(shapes["next_run"], Value::Null, "a DAG without a schedule has no next run");
    let (_, dag) = server.get("/api/v1/dags/shapes").await;
    assert_eq!(dag["recent_runs"].as_array().unwrap().len(), 2, "{dag}");

    let (status, grid) = server.get("/api/v1/dags/shapes/grid?limit=25").await;
    assert_eq!(status, 200, "{grid}");
    let tasks: Vec<&str> = grid["tasks"].as_array().unwrap().iter().map(|t| t["task_id"].as_str().unwrap()).collect();
    assert_eq!(tasks, ["src", "each", "last"], "topological order");
    assert_eq!(grid["tasks"][1]["map_over"], "conf.items");
    let runs: Vec<&str> = grid["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(runs, [second.as_str(), first.as_str()]);
    let each = &grid["cells"][&first]["each"];
    assert_eq!((each["state"].as_str(), each["instances"].as_i64()), (Some("success"), Some(3)), "{grid}");
    assert_eq!(each["states"], json!({"success": 3}));
    assert_eq!(grid["cells"][&second]["each"]["instances"], 5);
    let src = &grid["cells"][&first]["src"];
    assert_eq!((src["instances"].as_i64(), src["try_number"].as_i64()), (Some(1), Some(1)), "{src}");
    assert!(src["started_at"].is_string() && src["ended_at"].is_string(), "{src}");
    let (_, one) = server.get("/api/v1/dags/shapes/grid?limit=1").await;
    assert_eq!(one["runs"].as_array().unwrap().len(), 1);
    assert!(one["cells"].get(&first).is_none(), "only the runs shown have cells: {one}");

    let (status, timeline) = server.get(&format!("/api/v1/runs/{}/timeline", enc(&second))).await;
    assert_eq!(status, 200, "{timeline}");
    assert_eq!((timeline["dag_id"].as_str(), timeline["state"].as_str()), (Some("shapes"), Some("success")));
    let each = timeline["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "each").unwrap();
    assert_eq!((each["instances"].as_i64(), each["map_index"].is_null()), (Some(5), true), "{each}");
    assert_eq!(each["tries"].as_array().unwrap().len(), 1, "five instances' first tries are one bar: {each}");
    for task in timeline["tasks"].as_array().unwrap() {
        let try1 = &task["tries"][0];
        assert_eq!(try1["outcome"], "success", "{task}");
        let (queued, started, ended) = (
            try1["queued_at"].as_str().expect("queued_at is recorded"),
            try1["started_at"].as_str().unwrap(),
            try1["ended_at"].as_str().unwrap(),
        );
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap();
        assert!(at(queued) <= at(started) && at(started) <= at(ended), "{task}");
    }
    assert_eq!(timeline["critical_path"], json!(["src", "each", "last"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grids_and_timelines_refuse_bad_limits_and_unknown_ids() {
    let server = Server::start().await;
    let (status, _) = server.push(shapes_bundle(SHAPES), "", "alice").await;
    assert_eq!(status, 201);
    let (status, grid) = server.get("/api/v1/dags/shapes/grid").await;
    assert_eq!((status, grid["runs"].as_array().map(Vec::len)), (200, Some(0)), "no runs yet: {grid}");
    for limit in ["0", "101", "-1"] {
        let (status, body) = server.get(&format!("/api/v1/dags/shapes/grid?limit={limit}")).await;
        assert_eq!((status, body["code"].as_str()), (422, Some("invalid")), "limit {limit}: {body}");
    }
    let (status, body) = server.get("/api/v1/dags/shapes/grid?limit=ten").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = server.get("/api/v1/dags/nope/grid").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) = server.get("/api/v1/runs/nope/timeline").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_dag_has_a_next_run_unless_paused() {
    let server = Server::start().await;
    let dag = "id = \"daily\"\nschedule = \"@daily\"\nis_paused_upon_creation = true\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\n";
    let bundle =
        targz(&[("daily.toml", dag.as_bytes()), ("plugins/echo.wasm", &sandflow_test_artifacts::bytes("echo"))]);
    assert_eq!(server.push(bundle, "", "alice").await.0, 201);
    let (_, paused) = server.get("/api/v1/dags/daily").await;
    assert_eq!((paused["is_paused"].as_bool(), &paused["next_run"]), (Some(true), &Value::Null), "{paused}");
    assert_eq!(server.post("/api/v1/dags/daily/unpause", json!({})).await.0, 200);
    let (_, list) = server.get("/api/v1/dags?search=daily").await;
    let next = list["items"][0]["next_run"].as_str().unwrap_or_else(|| panic!("a next run: {list}"));
    let next = chrono::DateTime::parse_from_rfc3339(next).unwrap();
    let now = chrono::Utc::now();
    // The first interval starts at the first midnight after the DAG was seen; its run is due at
    // its end.
    assert!(next <= now + chrono::Duration::days(2) && next > now, "{next}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_list_their_languages_and_the_versions_that_pin_them() {
    let server = Server::start().await;
    let (_, report) = server.push(shapes_bundle(SHAPES), "", "alice").await;
    let version = report["dags"][0]["version"].as_str().unwrap();
    let id = report["plugins"][0]["plugin_id"].as_str().unwrap();
    let (status, list) = server.get("/api/v1/plugins").await;
    assert_eq!(status, 200, "{list}");
    let echo = list["items"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap();
    assert_eq!(echo["used_by"], json!([{"dag_id": "shapes", "version": version}]), "{echo}");
    assert_eq!(echo["languages"], json!(["Rust"]), "rustc writes a producers section: {echo}");
    let (_, one) = server.get(&format!("/api/v1/plugins/{id}")).await;
    assert_eq!(one["languages"], json!(["Rust"]), "{one}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_push_reports_what_it_would_store_and_stores_nothing() {
    let server = Server::start().await;
    // A new DAG, dry: reported new and active, but nothing is there afterwards.
    let (status, dry) = server.push(shapes_bundle(SHAPES), "dry_run=true", "alice").await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    let d = &dry["dags"][0];
    assert_eq!(
        (d["new_dag"].as_bool(), d["new_version"].as_bool(), d["activated"].as_bool()),
        (Some(true), Some(true), Some(true))
    );
    assert_eq!(dry["plugins"][0]["new"], true);
    assert_eq!(server.get("/api/v1/dags/shapes").await.0, 404, "a dry run stores no DAG");
    assert_eq!(server.get("/api/v1/plugins").await.1["items"], json!([]), "nor a plugin");

    let (status, stored) = server.push(shapes_bundle(SHAPES), "", "alice").await;
    assert_eq!((status, stored["dry_run"].as_bool()), (201, Some(false)), "{stored}");
    let v1 = stored["dags"][0]["version"].clone();
    // A changed DAG, dry: a new version that would be active; the active one stays.
    let changed = SHAPES.replace("[tasks.last]", "[tasks.last]\nretries = 2");
    let (status, dry) = server.push(shapes_bundle(&changed), "dry_run=true", "alice").await;
    assert_eq!(status, 200, "{dry}");
    let d = &dry["dags"][0];
    assert_eq!(
        (d["new_dag"].as_bool(), d["new_version"].as_bool(), d["activated"].as_bool()),
        (Some(false), Some(true), Some(true))
    );
    assert_eq!(dry["plugins"][0]["new"], false);
    assert_ne!(d["version"], v1);
    let (_, dag) = server.get("/api/v1/dags/shapes").await;
    assert_eq!((&dag["active_version"], dag["versions"].as_array().unwrap().len()), (&v1, 1), "{dag}");
    // The same bundle, dry: nothing new.
    let (_, dry) = server.push(shapes_bundle(SHAPES), "dry_run=true", "alice").await;
    assert_eq!(
        (dry["dags"][0]["new_version"].as_bool(), dry["dags"][0]["activated"].as_bool()),
        (Some(false), Some(false))
    );

    // A bad bundle, dry: the same diagnostics as a real push, with file and line.
    let bad = "id = \"shapes\"\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\nupstream = [\"ghost\"]\n";
    let (status, refused) = server.push(shapes_bundle(bad), "dry_run=true", "alice").await;
    assert_eq!((status, refused["code"].as_str()), (422, Some("bundle_rejected")), "{refused}");
    let diagnostic = &refused["diagnostics"][0];
    assert_eq!(diagnostic["file"], "shapes.toml", "{refused}");
    assert!(diagnostic["line"].as_u64().is_some_and(|l| l > 0), "{refused}");
    let (status, _) = server.push(shapes_bundle(SHAPES), "dry_run=maybe", "alice").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_reports_a_run_that_begins_and_ends_between_two_polls() {
    let server = Server::with_scheduler().await;
    assert_eq!(server.push(shapes_bundle(SHAPES), "", "alice").await.0, 201);
    let mut stream = server.http.get(server.url("/api/v1/events?dag_id=shapes")).send().await.unwrap();
    assert_eq!(stream.status(), 200);
    // Let the stream's first poll pass, so what follows are changes.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let run_id = trigger(&server, json!([1])).await;
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ended = format!("\"run_id\":\"{run_id}\",\"state\":\"success\"");
    while !text.contains(&ended) {
        assert!(std::time::Instant::now() < deadline, "no end of {run_id} in the stream: {text}");
        if let Ok(Ok(Some(chunk))) = tokio::time::timeout(std::time::Duration::from_millis(500), stream.chunk()).await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
    assert!(text.contains("event: run") && text.contains("\"task_id\":\"last\""), "{text}");
    assert_eq!(text.matches(&ended).count(), 1, "an end is reported once: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_the_dag_list_has_its_runs_its_total_and_its_order() {
    let server = Server::with_scheduler().await;
    let dag = |id: &str| format!("id = \"{id}\"\ntags = [\"{id}-tag\"]\n[tasks.a]\nplugin = \"plugins/echo.wasm\"\n");
    let (a, b, c) = (dag("a"), dag("b"), dag("c"));
    let echo = sandflow_test_artifacts::bytes("echo");
    let files: Vec<(&str, &[u8])> = vec![
        ("a.toml", a.as_bytes()),
        ("b.toml", b.as_bytes()),
        ("c.toml", c.as_bytes()),
        ("plugins/echo.wasm", &echo),
    ];
    assert_eq!(server.push(targz(&files), "", "alice").await.0, 201);
    let (_, run) = server.post("/api/v1/dags/b/runs", json!({})).await;
    server.wait_run(run["run_id"].as_str().unwrap()).await;

    let ids = |page: &Value| -> Vec<String> {
        page["items"].as_array().unwrap().iter().map(|d| d["dag_id"].as_str().unwrap().to_string()).collect()
    };
    let (_, page) = server.get("/api/v1/dags?order_by=-dag_id&limit=2&offset=1").await;
    assert_eq!((ids(&page), page["total"].as_u64()), (vec!["b".to_string(), "a".to_string()], Some(3)), "{page}");
    assert_eq!(page["items"][0]["recent_runs"][0]["state"], "success", "a page's DAGs have their runs: {page}");
    assert!(page["items"][0]["recent_runs"][0].get("conf").is_none(), "in brief: {page}");
    let (_, page) = server.get("/api/v1/dags?last_run_state=success").await;
    assert_eq!((ids(&page), page["total"].as_u64()), (vec!["b".to_string()], Some(1)), "{page}");
    let (_, page) = server.get("/api/v1/dags?tag=c-tag&limit=1").await;
    assert_eq!((ids(&page), page["total"].as_u64()), (vec!["c".to_string()], Some(1)), "{page}");
    let (_, page) = server.get("/api/v1/dags?offset=10").await;
    assert_eq!((page["items"].as_array().map(Vec::len), page["total"].as_u64()), (Some(0), Some(3)), "{page}");
    let (status, body) = server.get("/api/v1/dags?order_by=size").await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")), "{body}");
}
