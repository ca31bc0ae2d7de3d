//! The OpenAPI document: served, complete (every reference resolves, every operation documents
//! its answers and errors), and true to the server (every documented operation is routed).

use serde_json::Value;

use crate::Server;

/// Every `$ref` under `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => found.push(r),
                    _ => refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_complete_and_lists_exactly_the_routes_that_answer() {
    let server = Server::start().await;
    let response = server.http.get(server.url("/api/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc, serde_json::to_value(sandflow_api::openapi()).unwrap(), "served as built");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    // Every reference points at a schema the document holds.
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 30, "{found:?}");
    for r in &found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "{r} does not resolve");
    }
    for name in ["RunRow", "TaskInstanceRow", "TryRow", "DagSummary", "PushReport", "Diagnostic", "ErrorBody"] {
        assert!(doc["components"]["schemas"].get(name).is_some(), "{name} is missing");
    }

    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("default"), "{method} {path}: no error answer");
            assert!(responses.keys().any(|k| k.starts_with('2')), "{method} {path}: no success answer");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path}: no tag");
            // Every documented path parameter is declared.
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
                .unwrap_or_default();
            let in_path: Vec<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            assert_eq!(declared, in_path, "{method} {path}: path parameters");

            // Routed: an unknown id answers the handler's own error, never the fallback's
            // `no_route` (nor 405). Streams (events, logs) are only checked for their status.
            let url = server.url(&path.replace(['{', '}'], "").replace("dag_id", "nope").replace("run_id", "nope"));
            let request = match method.as_str() {
                "get" => server.http.get(&url),
                "post" => server.http.post(&url),
                "put" => server.http.put(&url),
                "patch" => server.http.patch(&url),
                _ => server.http.delete(&url),
            };
            let response = request.header("content-type", "application/json").body("{}").send().await.unwrap();
            let status = response.status().as_u16();
            assert_ne!(status, 405, "{method} {path}");
            if response.headers().get("content-type").is_some_and(|t| t.to_str().unwrap().contains("json")) {
                let body: Value = response.json().await.unwrap_or(Value::Null);
                assert_ne!(body["code"], "no_route", "{method} {path} is documented but not routed");
            } else {
                assert!(status < 400, "{method} {path}: {status}");
            }
        }
    }
    // The routes of host/api/src/routes/mod.rs, counted by method: a route added without its
    // annotation could not be registered there, and one documented twice would show here.
    assert_eq!(operations, 74, "{:?}", paths.keys().collect::<Vec<_>>());
}
