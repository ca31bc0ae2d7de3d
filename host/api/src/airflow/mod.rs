//! Airflow 3's REST API (`/api/v2`), the subset the official Python client
//! (`apache-airflow-client`) needs to read health and version, list and get DAGs, pause them,
//! trigger runs, list runs and their task instances, read a try's log, clear task instances and
//! set a task instance's state; mapped onto Sandflow's own use cases (the same service calls as
//! `/api/v1`, so roles, ownership checks, budgets and audit are the same). What the client
//! enforces, and so what these answers keep to (`host/api/AIRFLOW.md` has it endpoint by
//! endpoint): exact statuses (200 for a trigger), every required field with its strict type,
//! Airflow's enum values, UUIDs as ids, `conf` always an object, errors as `{"detail"}` with 422
//! for validation, unknown request fields ignored, `~` for "every DAG".

mod models;
mod routes;

pub(crate) use routes::*;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// Whether a path is answered in Airflow's manner.
fn is_airflow(path: &str) -> bool {
    path.starts_with("/api/v2/") || path == "/auth/token"
}

/// Rewrites the errors of Airflow's paths from Sandflow's `{"code", "message"}` to Airflow's
/// `{"detail"}` (the code kept beside it), and a malformed request from 400 to FastAPI's 422.
pub(crate) async fn errors_as_airflow(request: Request, next: Next) -> Response {
    if !is_airflow(request.uri().path()) {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let status = response.status();
    if status.is_success() || !is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return (status, axum::Json(json!({"detail": "internal error"}))).into_response();
    };
    let error: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let detail = error.get("message").cloned().unwrap_or_else(|| Value::String(String::from_utf8_lossy(&bytes).into()));
    let mut body = json!({"detail": detail, "code": error.get("code")});
    if let Some(diagnostics) = error.get("diagnostics") {
        body["diagnostics"] = diagnostics.clone();
    }
    if parts.status == StatusCode::BAD_REQUEST {
        parts.status = StatusCode::UNPROCESSABLE_ENTITY;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"))
}
