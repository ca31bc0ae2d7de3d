//! Artifacts and try records over HTTP: listed per run and per instance, downloaded (bytes and
//! hash as stored), unknown names and runs refused, readable by a viewer.

use sandflow_store::Role;
use serde_json::{json, Value};
use sha2::Digest;

use crate::{enc, targz, Server};

const DAG: &str = r#"
id = "artifacts"
[tasks.make]
plugin = "plugins/grants.wasm"
params = { mode = "tree", files = { "data.csv" = "1,2,3", "sub/notes.txt" = "hello" } }
[tasks.use]
plugin = "plugins/grants.wasm"
upstream = ["make"]
params = { mode = "read", path = "/in/make/data.csv" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_are_listed_downloaded_and_tries_read_back_by_a_viewer() {
    let server = Server::with_scheduler().await;
    let grants = sandflow_test_artifacts::bytes("grants");
    let bundle = targz(&[("artifacts.toml", DAG.as_bytes()), ("plugins/grants.wasm", &grants)]);
    let (status, pushed) = server.push(bundle, "", "alice").await;
    assert_eq!(status, 201, "{pushed}");
    let (status, run) = server.post("/api/v1/dags/artifacts/runs", json!({})).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["state"], "success", "{done}");

    let viewer = server.token_with_role("vera", Role::Viewer).await;
    let get = |path: String| {
        let token = viewer.clone();
        let url = server.url(&path);
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap() }
    };
    let run = enc(&run_id);
    let (status, all) = crate::answer(get(format!("/api/v1/runs/{run}/artifacts")).await).await;
    assert_eq!(status, 200, "{all}");
    let names: Vec<_> = all["items"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data.csv", "sub/notes.txt"]);
    let (status, of_use) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/use/artifacts")).await).await;
    assert_eq!((status, of_use), (200, json!({"items": []})));

    // A download is the stored bytes, named by their hash; a name with `/` is one encoded segment.
    let response = get(format!("/api/v1/runs/{run}/tasks/make/artifacts/{}", enc("sub/notes.txt"))).await;
    assert_eq!(response.status(), 200);
    let hash = response.headers()["x-sandflow-hash"].to_str().unwrap().to_string();
    assert_eq!(response.headers()["content-disposition"], "attachment; filename=\"notes.txt\"");
    assert_eq!(response.headers()["etag"].to_str().unwrap(), format!("\"{hash}\""));
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..], b"hello");
    assert_eq!(hash, format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))));
    assert_eq!(all["items"][1]["hash"], Value::from(hash));
    let with_try = get(format!("/api/v1/runs/{run}/tasks/make/artifacts/data.csv?try=1")).await;
    assert_eq!(with_try.bytes().await.unwrap().as_ref(), b"1,2,3");

    // What is not there says what is missing.
    let (status, body) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/make/artifacts/nope.csv")).await).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope.csv"), "{body}");
    let (status, _) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/make/artifacts/data.csv?try=2")).await).await;
    assert_eq!(status, 404);
    let (status, _) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/ghost/artifacts")).await).await;
    assert_eq!(status, 404);
    let (status, _) = crate::answer(get("/api/v1/runs/no_such_run/artifacts".to_string()).await).await;
    assert_eq!(status, 404);
    let (status, body) =
        crate::answer(get(format!("/api/v1/runs/{run}/tasks/make/artifacts/data.csv?try=x")).await).await;
    assert_eq!(status, 400, "{body}");

    // The record of a try: what `sandflow tasks replay` runs.
    let (status, record) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/use/tries/1/record")).await).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["plugin_id"], json!(format!("sha256:{}", hex::encode(sha2::Sha256::digest(&grants)))));
    assert_eq!(record["outcome"], "success");
    assert_eq!(record["inputs"][0]["path"], "make/data.csv");
    let context: Value = serde_json::from_str(record["context"].as_str().unwrap()).unwrap();
    assert_eq!(context["task_id"], "use");
    let (status, _) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/use/tries/2/record")).await).await;
    assert_eq!(status, 404);
    let (status, _) = crate::answer(get(format!("/api/v1/runs/{run}/tasks/use/tries/one/record")).await).await;
    assert_eq!(status, 400);

    // Without a token, nothing.
    let anonymous = reqwest::get(server.url(&format!("/api/v1/runs/{run}/artifacts"))).await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_never_reads_a_secret_a_task_was_given_and_printed() {
    let key = sandflow_core::secrets::SecretKey::from_bytes([5; 32]);
    let mut config = sandflow_service::ServiceConfig::default();
    config.grants.secret_key = Some(key.clone());
    let server = Server::start_configured(crate::Backend::Sqlite, true, config).await;
    let audit = sandflow_store::NewAudit {
        actor: "admin".into(),
        action: "secret.set".into(),
        target: "warehouse".into(),
        outcome: "ok".into(),
        address: "local".into(),
        detail: json!({}),
    };
    let value = "pa55-w0rd-of-the-warehouse";
    let sealed = key.seal("warehouse", value, [1; 24]);
    server.store.audited(&audit).set_secret("warehouse", &sealed).await.unwrap();
    let dag = "id = \"secretive\"\n[tasks.leak]\nplugin = \"plugins/grants.wasm\"\nsecrets = [\"warehouse\"]\nparams = { mode = \"env\" }\n";
    let grants = sandflow_test_artifacts::bytes("grants");
    let (status, pushed) =
        server.push(targz(&[("secretive.toml", dag.as_bytes()), ("plugins/grants.wasm", &grants)]), "", "alice").await;
    assert_eq!(status, 201, "{pushed}");
    let (_, run) = server.post("/api/v1/dags/secretive/runs", json!({})).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let done = server.wait_run(&run_id).await;
    assert_eq!(done["state"], "success", "{done}");
    // The plugin got the value (and put it in its output): the API shows `***`.
    let leak = done["tasks"].as_array().unwrap().iter().find(|t| t["task_id"] == "leak").unwrap();
    assert_eq!(leak["output"], json!({"WAREHOUSE": "***"}), "{leak}");

    let viewer = server.token_with_role("vera", Role::Viewer).await;
    let run = enc(&run_id);
    let mut seen = String::new();
    for path in [
        format!("/api/v1/runs/{run}"),
        format!("/api/v1/runs/{run}/tasks"),
        format!("/api/v1/runs/{run}/tasks/leak/tries"),
        format!("/api/v1/runs/{run}/tasks/leak/tries/1/log"),
        format!("/api/v1/runs/{run}/tasks/leak/tries/1/record"),
        format!("/api/v1/runs/{run}/artifacts"),
        "/api/v1/dags/secretive".to_string(),
        "/api/v1/audit".to_string(),
        "/api/v2/dags/secretive/dagRuns".to_string(),
    ] {
        let response = reqwest::Client::new().get(server.url(&path)).bearer_auth(&viewer).send().await.unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(status == 200 || status == 403, "{path}: {status} {body}");
        seen.push_str(&body);
    }
    assert!(seen.contains("***"), "the redacted output is there");
    assert!(!seen.contains(value), "a viewer read the secret: {seen}");
}
