//! The CLI's side of the HTTP API (`--server URL`): requests with the caller's token
//! (`SANDFLOW_TOKEN`, else the one a first start wrote in this home), errors read from the API's
//! `{"code", "message", "diagnostics"}` and shown as the local commands show theirs.

use anyhow::{anyhow, Context};
use serde_json::Value;

use crate::CliError;

/// A server the CLI talks to.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The bearer token; `Debug` never shows it.
    token: Option<Token>,
}

#[derive(Clone)]
struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The home's token file (`$SANDFLOW_HOME/token`), set once by `main`.
static HOME_TOKEN: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Says where this home's token file is (the one a first start wrote).
pub fn set_home_token_file(path: std::path::PathBuf) {
    let _ = HOME_TOKEN.set(path);
}

/// `SANDFLOW_TOKEN`, else the home's token file.
fn find_token() -> Option<Token> {
    if let Ok(token) = std::env::var("SANDFLOW_TOKEN") {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Some(Token(token));
        }
    }
    let file = HOME_TOKEN.get()?;
    let text = std::fs::read_to_string(file).ok()?;
    Some(Token(text.trim().to_string())).filter(|t| !t.0.is_empty())
}

impl Client {
    /// A client of the server at `url` (`http://host:port`, with or without a trailing `/`).
    pub fn new(url: &str) -> Result<Client, CliError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Usage(anyhow!("--server {url:?} is not an http:// or https:// URL")));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| CliError::Usage(anyhow!("setting up the HTTP client: {e}")))?;
        Ok(Client { base, http, token: find_token() })
    }

    /// The full URL of an API path (`/api/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, self.url(path));
        match &self.token {
            Some(Token(token)) => request.bearer_auth(token),
            None => request,
        }
    }

    /// `GET path` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::PUT, path).json(body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// `POST path` with raw bytes of `content_type`.
    pub async fn post_bytes(&self, path: &str, content_type: &str, bytes: Vec<u8>) -> Result<Value, CliError> {
        self.send(self.request(reqwest::Method::POST, path).header("content-type", content_type).body(bytes)).await
    }

    /// `GET path` as a response to stream (server-sent events).
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        let response = self.request(reqwest::Method::GET, path).send().await.map_err(|e| self.unreachable(e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        if !response.status().is_success() {
            return Err(api_error(response).await);
        }
        let text = response.text().await.map_err(|e| CliError::Failed(format!("reading the answer: {e}")))?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the server's answer is not JSON").map_err(CliError::Usage)
    }

    fn unreachable(&self, e: reqwest::Error) -> CliError {
        CliError::Failed(format!("could not reach the server at {}: {}", self.base, error_chain(&e)))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The API's error as the CLI's: 4xx is bad input (exit 2), 5xx the server failing (exit 1).
async fn api_error(response: reqwest::Response) -> CliError {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = body["message"].as_str().unwrap_or("(no message)").to_string();
    let mut text = format!("{message} [{} {}]", status.as_u16(), body["code"].as_str().unwrap_or("?"));
    if status == reqwest::StatusCode::UNAUTHORIZED {
        text.push_str("\n  (give a token: SANDFLOW_TOKEN=... from `sandflow users token NAME` where the server runs)");
    }
    if let Some(diagnostics) = body["diagnostics"].as_array() {
        for d in diagnostics {
            text.push_str(&format!("\n  {}", diagnostic_line(d)));
        }
    }
    if status.is_client_error() {
        CliError::Usage(anyhow!(text))
    } else {
        CliError::Failed(text)
    }
}

/// A diagnostic as compilers print theirs: `file:line:column: field: message (code)`.
pub fn diagnostic_line(d: &Value) -> String {
    let mut place = String::new();
    if let Some(file) = d["file"].as_str() {
        place.push_str(file);
        if let (Some(line), Some(column)) = (d["line"].as_u64(), d["column"].as_u64()) {
            place.push_str(&format!(":{line}:{column}"));
        }
        place.push_str(": ");
    }
    if let Some(field) = d["field"].as_str() {
        place.push_str(&format!("{field}: "));
    }
    format!("{place}{} ({})", d["message"].as_str().unwrap_or(""), d["code"].as_str().unwrap_or("?"))
}

/// Percent-encodes one path segment or query value (ids may hold `:`, `+`, spaces...).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Follows a run's events until it ends; returns its final state (`success`, `failed`).
pub async fn wait_for_run(
    client: &Client,
    run_id: &str,
    mut on_event: impl FnMut(&str, &Value),
) -> Result<String, CliError> {
    use futures_util::StreamExt;
    loop {
        let response = client.stream(&format!("/api/v1/runs/{}/events", encode(run_id))).await?;
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| CliError::Failed(format!("following the run: {e}")))?;
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let (mut event, mut data) = ("message".to_string(), String::new());
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event = name.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                on_event(&event, &value);
                if event == "run" {
                    if let Some(state @ ("success" | "failed")) = value["state"].as_str() {
                        return Ok(state.to_string());
                    }
                }
            }
        }
        // The stream ended without the run's end (the server restarted, or events were
        // skipped): read the run, and follow again if it still runs.
        let run = client.get(&format!("/api/v1/runs/{}", encode(run_id))).await?;
        if let Some(state @ ("success" | "failed")) = run["state"].as_str() {
            return Ok(state.to_string());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
