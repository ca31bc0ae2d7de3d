//! Users, tokens and roles over real HTTP: every route × every role (from the OpenAPI document,
//! so a new route cannot be missed), tokens expired, revoked, of a disabled user; logins slowed
//! down; authors confined to their own experiments; budgets; CORS closed; tokens never shown.

use std::time::Duration;

use reqwest::Method;
use sandflow_api::Access;
use sandflow_service::auth::Principal;
use sandflow_store::{AuditQuery, Role};
use serde_json::{json, Value};

use crate::{chain_dag, enc, targz, Server};

/// A request to `path` with `token` (or none), with an empty JSON body.
async fn call(server: &Server, method: &Method, path: &str, token: Option<&str>) -> (u16, Value) {
    // A client without the harness's admin token.
    let mut request = reqwest::Client::new()
        .request(method.clone(), server.url(path))
        .header("content-type", "application/json")
        .body("{}");
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = tokio::time::timeout(Duration::from_secs(30), request.send()).await.unwrap().unwrap();
    let status = response.status().as_u16();
    // Streams (events, followed logs) are not read to their end.
    let body = if response.headers().get("content-type").is_some_and(|t| t.to_str().unwrap().contains("json")) {
        response.json().await.unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_access_table_says() {
    let server = Server::start().await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, server.token_with_role(&format!("a-{role}"), role).await));
    }
    let doc = serde_json::to_value(sandflow_api::openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method: Method = method.to_uppercase().parse().unwrap();
            let need = sandflow_api::access(&method, path)
                .unwrap_or_else(|| panic!("{method} {path} is not in the access table (host/api/src/auth.rs)"));
            // Ids nobody has: a route that lets the caller in answers its own 4xx (or 2xx).
            let url = path.replace(['{', '}'], "").replace("dag_id", "nope").replace("run_id", "nope");
            let (status, body) = call(&server, &method, &url, None).await;
            match need {
                Access::Public => assert_ne!(status, 401, "{method} {path} is public: {body}"),
                Access::AtLeast(_) => {
                    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")), "{method} {path}")
                }
            }
            let (status, _) = call(&server, &method, &url, Some("sf_not-a-token")).await;
            assert!(need == Access::Public || status == 401, "{method} {path}: a bad token is refused");
            for (role, token) in &tokens {
                // Logging out ends the token it came with: log out with a token of its own.
                let spent;
                let token = if path == "/api/v1/auth/logout" {
                    spent = server.token_with_role(&format!("b-{role}"), *role).await;
                    &spent
                } else {
                    token
                };
                let (status, body) = call(&server, &method, &url, Some(token)).await;
                let allowed = match need {
                    Access::Public => true,
                    Access::AtLeast(need) => *role >= need,
                };
                if allowed {
                    assert_ne!(status, 401, "{method} {path} as {role}: {body}");
                    // The one 403 a role that may call the route can get: an author asking for
                    // what is not their own experiment (checked by the service on the data).
                    if status == 403 {
                        assert_eq!(*role, Role::Author, "{method} {path} as {role}: {body}");
                        // Airflow's paths answer `detail` where /api/v1 answers `message`.
                        let message = body["message"].as_str().or(body["detail"].as_str()).unwrap();
                        assert!(message.contains("author") || message.contains("operator"), "{message}");
                    }
                } else {
                    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{method} {path} as {role}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 67, "{checked} operations");
    // Refused attempts to change something are in the audit log; refused reads are not.
    let refused = AuditQuery { outcome: Some("refused".into()), limit: 1000, ..Default::default() };
    let refused = server.store.audit(&refused).await.unwrap();
    assert!(refused.iter().any(|e| e.actor == "a-viewer" && e.action == "POST /api/v1/users"), "{refused:?}");
    assert!(refused.iter().all(|e| !e.action.starts_with("GET ")), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_revoked_and_disabled_users_tokens_are_refused_at_once() {
    let server = Server::start().await;
    let admin = Principal::local("test");
    server.service.add_user(&admin, "ada", Role::Viewer, None).await.unwrap();
    let token = server.service.issue_token(&admin, "ada", Some(Duration::from_secs(2)), "test").await.unwrap();
    let lasting = server.service.issue_token(&admin, "ada", None, "test").await.unwrap();
    assert_eq!(call(&server, &Method::GET, "/api/v1/dags", Some(&token.token)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, body) = call(&server, &Method::GET, "/api/v1/dags", Some(&token.token)).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("this token has expired")));

    // Revoked over the API: the very next request is refused.
    assert_eq!(call(&server, &Method::GET, "/api/v1/dags", Some(&lasting.token)).await.0, 200);
    let (status, _) = server.delete_as_admin(&format!("/api/v1/tokens/{}", lasting.id)).await;
    assert_eq!(status, 204);
    let (status, body) = call(&server, &Method::GET, "/api/v1/dags", Some(&lasting.token)).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("this token was revoked")));
    assert_eq!(server.delete_as_admin(&format!("/api/v1/tokens/{}", lasting.id)).await.0, 404, "revoked once");

    // A disabled user: every token of theirs, at once; enabled again, they work again.
    let third = server.service.issue_token(&admin, "ada", None, "test").await.unwrap();
    let (status, _) = server.patch_as_admin("/api/v1/users/ada", json!({"disabled": true})).await;
    assert_eq!(status, 200);
    let (status, body) = call(&server, &Method::GET, "/api/v1/dags", Some(&third.token)).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("this user is disabled")));
    server.patch_as_admin("/api/v1/users/ada", json!({"disabled": false})).await;
    assert_eq!(call(&server, &Method::GET, "/api/v1/dags", Some(&third.token)).await.0, 200);

    // Logging out revokes the token it came with, and only that one, whatever the role.
    let other = server.service.issue_token(&admin, "ada", None, "test").await.unwrap();
    assert_eq!(call(&server, &Method::POST, "/api/v1/auth/logout", Some(&other.token)).await.0, 204);
    let (status, body) = call(&server, &Method::GET, "/api/v1/dags", Some(&other.token)).await;
    assert_eq!((status, body["message"].as_str()), (401, Some("this token was revoked")));
    assert_eq!(call(&server, &Method::GET, "/api/v1/dags", Some(&third.token)).await.0, 200, "only that token");

    // A role change takes effect at once too.
    let (status, _) = call(&server, &Method::POST, "/api/v1/dags/nope/pause", Some(&third.token)).await;
    assert_eq!(status, 403);
    server.patch_as_admin("/api/v1/users/ada", json!({"role": "operator"})).await;
    let (status, _) = call(&server, &Method::POST, "/api/v1/dags/nope/pause", Some(&third.token)).await;
    assert_eq!(status, 404, "an operator may pause: this DAG does not exist");

    // Every change above is in the audit log, by whom and from where.
    let log = server.store.audit(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let revoke = log.iter().find(|e| e.action == "token.revoke" && e.actor == "admin").unwrap();
    assert_eq!((revoke.actor.as_str(), revoke.address.as_str()), ("admin", "127.0.0.1"));
    let logout = log.iter().find(|e| e.action == "token.revoke" && e.actor == "ada").unwrap();
    assert_eq!(logout.target, other.id, "a log out is audited as its own revocation");
    assert_eq!(log.iter().filter(|e| e.action == "user.change").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_answer_a_token_and_failures_are_slowed_down_per_user() {
    let server = Server::start().await;
    let (status, _) = server
        .post_as_admin("/api/v1/users", json!({"name": "bob", "role": "viewer", "password": "correct horse"}))
        .await;
    assert_eq!(status, 201);
    let login = |password: &str| {
        let body = json!({"username": "bob", "password": password, "some_newer_field": 1});
        reqwest::Client::new().post(server.url("/auth/token")).json(&body).send()
    };
    let response = login("correct horse").await.unwrap();
    assert_eq!(response.status(), 201);
    let answer: Value = response.json().await.unwrap();
    let token = answer["access_token"].as_str().unwrap().to_string();
    assert_eq!(call(&server, &Method::GET, "/api/v1/me", Some(&token)).await.1["name"], "bob");

    // Five wrong passwords cost nothing more than their answer; then each must wait.
    for _ in 0..5 {
        assert_eq!(login("wrong").await.unwrap().status(), 401);
    }
    let response = login("correct horse").await.unwrap();
    assert_eq!(response.status(), 429, "even the right password waits");
    assert!(response.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // An unknown user is answered as a wrong password is.
    let unknown = reqwest::Client::new()
        .post(server.url("/auth/token"))
        .json(&json!({"username": "nobody", "password": "x"}))
        .send()
        .await
        .unwrap();
    let status = unknown.status().as_u16();
    let body: Value = unknown.json().await.unwrap();
    assert!(status == 401 || status == 429, "{status}");
    if status == 401 {
        assert_eq!(body["message"], "wrong user name or password");
    }
    let failed =
        AuditQuery { action: Some("login".into()), outcome: Some("refused".into()), limit: 100, ..Default::default() };
    let failed = server.store.audit(&failed).await.unwrap();
    assert!(failed.len() >= 6, "{failed:?}");
    assert!(failed.iter().all(|e| !e.detail.to_string().contains("wrong\"")), "no password in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_author_triggers_and_clears_only_their_own_experiments() {
    let server = Server::with_scheduler().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let dag = chain_dag("shared", 1, 1);
    let bundle = || targz(&[("shared.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]);
    // The DAG is on the server (pushed by an admin); authors push experiments of it.
    assert_eq!(server.push(bundle(), "", "alice").await.0, 201);
    let ann = server.token_with_role("ann", Role::Author).await;
    let ben = server.token_with_role("ben", Role::Author).await;
    for (token, name) in [(&ann, "ann-x"), (&ben, "ben-x")] {
        let response = reqwest::Client::new()
            .post(server.url(&format!("/api/v1/bundles?experiment={name}")))
            .bearer_auth(token)
            .header("content-type", "application/gzip")
            .body(bundle())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }
    let trigger = |token: &str, experiment: Option<&str>| {
        reqwest::Client::new()
            .post(server.url("/api/v1/dags/shared/runs"))
            .bearer_auth(token.to_string())
            .json(&json!({"experiment": experiment}))
            .send()
    };
    assert_eq!(trigger(&ann, None).await.unwrap().status(), 403, "not the active version");
    assert_eq!(trigger(&ann, Some("ben-x")).await.unwrap().status(), 403, "not another author's");
    let own = trigger(&ann, Some("ann-x")).await.unwrap();
    assert_eq!(own.status(), 201);
    let run: Value = own.json().await.unwrap();
    let run_id = run["run_id"].as_str().unwrap();
    assert_eq!(run["triggered_by"], "ann");
    server.wait_run(run_id).await;
    let clear = |token: &str| {
        reqwest::Client::new()
            .post(server.url(&format!("/api/v1/runs/{}/clear", enc(run_id))))
            .bearer_auth(token.to_string())
            .json(&json!({}))
            .send()
    };
    let (status, body) = crate::answer(clear(&ben).await.unwrap()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(clear(&ann).await.unwrap().status(), 200);
    let refused =
        AuditQuery { actor: Some("ben".into()), outcome: Some("refused".into()), limit: 10, ..Default::default() };
    let refused = server.store.audit(&refused).await.unwrap();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!((refused[0].action.as_str(), refused[0].target.as_str()), ("run.clear", run_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_fuel_budget_refuses_the_next_trigger_with_the_figures() {
    let server = Server::with_scheduler().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let dag = chain_dag("costly", 1, 1);
    let (status, _) =
        server.push(targz(&[("costly.toml", dag.as_bytes()), ("plugins/echo.wasm", &echo)]), "", "alice").await;
    assert_eq!(status, 201);
    let carol = server.token_with_role("carol", Role::Operator).await;
    assert_eq!(server.put_as_admin("/api/v1/budgets/user/carol", json!({"fuel_per_day": 1})).await.0, 204);
    let trigger = || {
        reqwest::Client::new()
            .post(server.url("/api/v1/dags/costly/runs"))
            .bearer_auth(carol.clone())
            .json(&json!({}))
            .send()
    };
    let (status, run) = crate::answer(trigger().await.unwrap()).await;
    assert_eq!(status, 201, "nothing used yet: {run}");
    server.wait_run(run["run_id"].as_str().unwrap()).await;
    let (status, body) = crate::answer(trigger().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (429, Some("over_budget")), "{body}");
    assert!(body["used_today"].as_i64().unwrap() > 1 && body["fuel_per_day"] == 1, "{body}");
    let (_, view) = call(&server, &Method::GET, "/api/v1/me", Some(&carol)).await;
    assert_eq!(view["budget"]["remaining"], 0, "{view}");
    // A role's budget applies to a user without their own.
    server.delete_as_admin("/api/v1/budgets/user/carol").await;
    assert_eq!(crate::answer(trigger().await.unwrap()).await.0, 201);
    server.put_as_admin("/api/v1/budgets/role/operator", json!({"fuel_per_day": 0})).await;
    assert_eq!(crate::answer(trigger().await.unwrap()).await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_closed_and_oversized_headers_are_refused() {
    let server = Server::start().await;
    let preflight = reqwest::Client::new()
        .request(Method::OPTIONS, server.url("/api/v1/dags"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.headers().get("access-control-allow-origin").is_none(), "{:?}", preflight.headers());
    let get =
        server.http.get(server.url("/api/v1/dags")).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(get.status(), 200);
    assert!(get.headers().get("access-control-allow-origin").is_none());
    // A header of 1 MiB: refused by the HTTP layer, not read into memory.
    let big = "x".repeat(1 << 20);
    let answer = server.http.get(server.url("/api/v1/dags")).header("x-big", big).send().await;
    match answer {
        Ok(response) => assert_eq!(response.status(), 431),
        Err(e) => assert!(e.is_request() || e.is_connect() || e.to_string().contains("connection"), "{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_never_shows_in_debug_output_answers_or_the_audit_log() {
    let server = Server::start().await;
    let admin = Principal::local("test");
    server.service.add_user(&admin, "dee", Role::Viewer, Some("a long password")).await.unwrap();
    let issued = server.service.issue_token(&admin, "dee", None, "test").await.unwrap();
    assert!(!format!("{issued:?}").contains(&issued.token), "{issued:?}");
    let (_, me) = call(&server, &Method::GET, "/api/v1/me", Some(&issued.token)).await;
    assert!(!me.to_string().contains(&issued.token));
    let (_, tokens) = server.get("/api/v1/tokens").await;
    assert!(!tokens.to_string().contains(&issued.token) && !tokens.to_string().contains("hash"), "{tokens}");
    // A near miss is refused without echoing what was sent.
    let wrong = format!("{}0", issued.token);
    let (status, body) = call(&server, &Method::GET, "/api/v1/dags", Some(&wrong)).await;
    assert_eq!(status, 401);
    assert!(!body.to_string().contains(&wrong));
    let (_, users) = server.get("/api/v1/users").await;
    assert!(!users.to_string().contains("argon2"), "{users}");
    let log = server.store.audit(&AuditQuery { limit: 100, ..Default::default() }).await.unwrap();
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(&issued.token) && !text.contains("a long password"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_over_http_is_in_the_audit_log_with_who_and_where() {
    let server = Server::with_scheduler().await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let bundle = |n| targz(&[("logged.toml", chain_dag("logged", 1, n).as_bytes()), ("plugins/echo.wasm", &echo)]);
    assert_eq!(server.push(bundle(1), "", "alice").await.0, 201);
    let (_, second) = server.push(bundle(2), "no_activate=true", "alice").await;
    let v2 = second["dags"][0]["version"].as_str().unwrap().to_string();
    let (status, run) = server.post("/api/v1/dags/logged/runs", json!({"note": "audited"})).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["run_id"].as_str().unwrap().to_string();
    server.wait_run(&run_id).await;
    assert_eq!(server.post(&format!("/api/v1/runs/{}/clear", enc(&run_id)), json!({})).await.0, 200);
    server.wait_run(&run_id).await;
    let mark = json!({"state": "failed", "task_id": "t0"});
    assert_eq!(server.post(&format!("/api/v1/runs/{}/mark", enc(&run_id)), mark).await.0, 200);
    assert_eq!(server.post("/api/v1/dags/logged/pause", json!({})).await.0, 200);
    assert_eq!(server.post("/api/v1/dags/logged/unpause", json!({})).await.0, 200);
    assert_eq!(server.post(&format!("/api/v1/dags/logged/versions/{v2}/activate"), json!({})).await.0, 200);
    assert_eq!(server.put_as_admin("/api/v1/pools/gpu", json!({"slots": 2})).await.0, 200);
    assert_eq!(server.delete_as_admin("/api/v1/pools/gpu").await.0, 204);

    let (status, log) = server.get("/api/v1/audit?limit=100").await;
    assert_eq!(status, 200, "{log}");
    let entries = log["items"].as_array().unwrap();
    let find =
        |action: &str| entries.iter().find(|e| e["action"] == action).unwrap_or_else(|| panic!("no {action} in {log}"));
    for action in ["bundle.push", "dag.trigger", "run.clear", "run.mark", "dag.pause", "dag.unpause", "dag.activate"] {
        let entry = find(action);
        assert_eq!((entry["actor"].as_str(), entry["address"].as_str()), (Some("alice"), Some("127.0.0.1")), "{entry}");
        assert_eq!(entry["outcome"], "ok");
    }
    assert_eq!(find("dag.trigger")["detail"]["run_id"], run_id.as_str());
    assert_eq!(find("run.mark")["target"], run_id.as_str());
    assert_eq!(find("pool.set")["actor"], "admin");
    assert_eq!(find("pool.delete")["target"], "gpu");
    assert_eq!(entries.iter().filter(|e| e["action"] == "bundle.push").count(), 2);
    // The runs name their user, from the token, not from anything the client says.
    let (_, run) = server.get(&format!("/api/v1/runs/{}", enc(&run_id))).await;
    assert_eq!(run["triggered_by"], "alice");
    // Filters and pages.
    let (_, dags) = server.get("/api/v1/audit?action=dag.&limit=2").await;
    let page = dags["items"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    let before = page[1]["id"].as_i64().unwrap();
    let (_, next) = server.get(&format!("/api/v1/audit?action=dag.&limit=100&before={before}")).await;
    assert!(next["items"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < before));
    assert_eq!(server.get("/api/v1/audit?limit=0").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_downloads_need_the_role_the_server_is_set_to() {
    let config = sandflow_service::ServiceConfig { plugin_downloads: Role::Operator, ..Default::default() };
    let server = Server::start_configured(crate::Backend::Sqlite, false, config).await;
    let echo = sandflow_test_artifacts::bytes("echo");
    let (status, plugin) = server.post_bytes("/api/v1/plugins", "application/wasm", echo.clone(), "alice").await;
    assert!(status == 201 || status == 200, "{plugin}");
    let path = format!("/api/v1/plugins/{}/bytes", plugin["plugin_id"].as_str().unwrap());
    let viewer = server.token_with_role("val", Role::Viewer).await;
    let operator = server.token_with_role("oda", Role::Operator).await;
    let (status, body) = call(&server, &Method::GET, &path, Some(&viewer)).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")), "{body}");
    let response = reqwest::Client::new().get(server.url(&path)).bearer_auth(&operator).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().to_vec(), echo);
    // Reading what a plugin is stays a viewer's.
    let (status, _) = call(&server, &Method::GET, &path.replace("/bytes", ""), Some(&viewer)).await;
    assert_eq!(status, 200);
}

/// A log sink for the test's own thread (the current-thread runtime runs the server there).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn tokens_and_passwords_never_reach_the_servers_log() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = Server::start().await;
    let admin = Principal::local("test");
    server.service.add_user(&admin, "eve", Role::Viewer, Some("eve's long password")).await.unwrap();
    let issued = server.service.issue_token(&admin, "eve", None, "test").await.unwrap();
    // A good token, a near miss, a revoked one, a login right and wrong, a refused change.
    call(&server, &Method::GET, "/api/v1/dags", Some(&issued.token)).await;
    let near = format!("{}f", issued.token);
    call(&server, &Method::GET, "/api/v1/dags", Some(&near)).await;
    call(&server, &Method::POST, "/api/v1/users", Some(&issued.token)).await;
    for password in ["eve's long password", "a wrong password"] {
        let body = json!({"username": "eve", "password": password});
        reqwest::Client::new().post(server.url("/auth/token")).json(&body).send().await.unwrap();
    }
    server.service.revoke_token(&admin, &issued.id).await.unwrap();
    call(&server, &Method::GET, "/api/v1/dags", Some(&issued.token)).await;
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("DEBUG") || log.contains("INFO") || log.contains("TRACE"), "the log was captured: {log}");
    for secret in [&issued.token[3..], "eve's long password", "a wrong password", &server.admin_token[3..]] {
        assert!(!log.contains(secret), "{secret:?} is in the log:\n{log}");
    }
}
