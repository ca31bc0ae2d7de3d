//! The server the API's and the UI's tests run against: the API on a free loopback port over a
//! fresh store (SQLite, or PostgreSQL when one is configured), with a scheduler and a worker when
//! a test runs DAGs, and a client holding the first admin's token. Included by both test
//! binaries (`#[path]`), so each uses what it needs of it.
#![allow(dead_code)]

use std::time::Duration;

use sandflow_sandbox::{Sandbox, SandboxConfig};
use sandflow_scheduler::{Scheduler, SchedulerConfig};
use sandflow_service::{Service, ServiceConfig};
use sandflow_store::{Durability, Store};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A server on a free loopback port over a fresh store, and a client for it (with an admin's
/// token: `admin`, made as a first start makes it).
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Store,
    pub service: Service,
    /// The first admin's token.
    pub admin_token: String,
    /// Tokens of users made by [`Server::token_of`], by name.
    tokens: tokio::sync::Mutex<std::collections::HashMap<String, String>>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub enum Backend {
    Sqlite,
    Postgres,
}

impl Server {
    /// The API alone over a new SQLite file.
    pub async fn start() -> Server {
        Server::start_on(Backend::Sqlite, false).await
    }

    /// The API with a scheduler and an in-process worker, as `standalone` runs them.
    pub async fn with_scheduler() -> Server {
        Server::start_on(Backend::Sqlite, true).await
    }

    pub async fn start_on(backend: Backend, scheduler: bool) -> Server {
        Server::start_configured(backend, scheduler, ServiceConfig::default()).await
    }

    /// The API (with a scheduler if asked) with the service set up as `config` says.
    pub async fn start_configured(backend: Backend, scheduler: bool, config: ServiceConfig) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = match backend {
            Backend::Sqlite => Store::open(&dir.path().join("sandflow.db"), Durability::Normal).await.unwrap(),
            Backend::Postgres => {
                let url = sandflow_test_postgres::fresh_database().await;
                Store::connect(&sandflow_store::DatabaseUrl::parse(&url).unwrap()).await.unwrap()
            }
        };
        let cache = dir.path().join("code");
        let sandbox = Sandbox::new(SandboxConfig {
            cache_dir: Some(cache),
            max_concurrent_tries: 16,
            ..SandboxConfig::default()
        })
        .unwrap();
        let stop = CancellationToken::new();
        if scheduler {
            // The worker gives tries what the service lets DAGs ask for (and opens secrets with its key).
            let scheduling = SchedulerConfig {
                poll_interval: Duration::from_millis(100),
                parallelism: 8,
                grants: config.grants.clone(),
                ..Default::default()
            };
            let scheduler = Scheduler::new(store.clone(), sandbox.clone(), scheduling);
            // Owned as standalone owns it, so actions go to this scheduler, not to one the
            // service would start for them.
            let owner = store.own_scheduling("the API tests").await.unwrap();
            let stopped = stop.clone();
            tokio::spawn(async move {
                let _owner = owner;
                scheduler.run_with_worker(stopped).await
            });
        }
        let service = Service::new(store.clone(), sandbox, config);
        let admin_token = service.first_admin().await.unwrap().expect("a new store has no users").token;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(sandflow_api::serve(listener, sandflow_api::AppState::new(service.clone()), stop.clone()));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {admin_token}").parse().unwrap());
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
        Server { base, http, store, service, admin_token, tokens: Default::default(), stop, _dir: dir }
    }

    /// A token of user `name` with `role` (the user is made the first time).
    pub async fn token_with_role(&self, name: &str, role: sandflow_store::Role) -> String {
        let mut tokens = self.tokens.lock().await;
        if let Some(token) = tokens.get(name) {
            return token.clone();
        }
        let admin = sandflow_service::auth::Principal::local("test");
        self.service.add_user(&admin, name, role, None).await.unwrap();
        let token = self.service.issue_token(&admin, name, None, "test").await.unwrap().token;
        tokens.insert(name.to_string(), token.clone());
        token
    }

    /// A token of user `name` (an admin, made the first time).
    pub async fn token_of(&self, name: &str) -> String {
        self.token_with_role(name, sandflow_store::Role::Admin).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let token = self.token_of("alice").await;
        answer(self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.unwrap()).await
    }

    /// `POST path` with bytes of a content type, as `user`.
    pub async fn post_bytes(&self, path: &str, content_type: &str, bytes: Vec<u8>, user: &str) -> (u16, Value) {
        let request = self
            .http
            .post(self.url(path))
            .header("content-type", content_type)
            .bearer_auth(self.token_of(user).await)
            .body(bytes);
        answer(request.send().await.unwrap()).await
    }

    /// Pushes a bundle (a .tar.gz) as `user` with a query string (`experiment=x`, or empty).
    pub async fn push(&self, bundle: Vec<u8>, query: &str, user: &str) -> (u16, Value) {
        self.post_bytes(&format!("/api/v1/bundles?{query}"), "application/gzip", bundle, user).await
    }

    /// `PUT path` with a JSON body, as the first admin.
    pub async fn put_as_admin(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.http.put(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// `PATCH path` with a JSON body, as the first admin.
    pub async fn patch_as_admin(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.http.patch(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// `POST path` with a JSON body, as the first admin.
    pub async fn post_as_admin(&self, path: &str, body: Value) -> (u16, Value) {
        answer(self.http.post(self.url(path)).json(&body).send().await.unwrap()).await
    }

    /// `DELETE path`, as the first admin.
    pub async fn delete_as_admin(&self, path: &str) -> (u16, Value) {
        answer(self.http.delete(self.url(path)).send().await.unwrap()).await
    }

    /// Waits for a run to end; returns its final JSON.
    pub async fn wait_run(&self, run_id: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, run) = self.get(&format!("/api/v1/runs/{}", enc(run_id))).await;
            assert_eq!(status, 200, "{run}");
            if matches!(run["state"].as_str(), Some("success" | "failed")) {
                return run;
            }
            assert!(std::time::Instant::now() < deadline, "run {run_id} did not end: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Percent-encodes a path segment.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A .tar.gz of `files` (path, bytes).
pub fn targz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *bytes).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}
